# One rule per stage of vggrepro.registry (STAGES and PARAMS come from the Snakefile);
# nothing here names a stage by hand. DVC's `validate` stage has no rule: the Snakefile
# runs the same checks at parse time.

for _stage in registry.snakemake_stages(STAGES):

    # The command is bound through params, not written in shell:, because a rule defined in
    # a loop would otherwise run the last stage's command. The stage's params.yaml values
    # reach it as an input, its knob file, so Snakemake reruns it when one changes, even
    # after DVC made the outputs (Snakemake has no record of those).
    rule:
        name:
            _stage.name
        input:
            _stage.deps,
        output:
            [directory(o.path) if o.directory else o.path for o in _stage.outs],
        params:
            cmd=_stage.cmd,
        threads: PARAMS.raw["threads"]
        shell:
            "{params.cmd}"
