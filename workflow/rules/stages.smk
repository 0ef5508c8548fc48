# One rule per stage of vggrepro.registry (STAGES and PARAMS come from the Snakefile);
# nothing here names a stage by hand.

for _stage in STAGES:

    # The command is bound through params, not written in shell:, because a rule defined in
    # a loop would otherwise run the last stage's command. `knobs` holds the values of the
    # params.yaml keys the stage reads, so changing one reruns the rule, as DVC does.
    rule:
        name:
            _stage.name
        input:
            _stage.deps,
        output:
            [directory(o.path) if o.directory else o.path for o in _stage.outs],
        params:
            cmd=_stage.cmd,
            knobs=registry.knobs(PARAMS, _stage),
        threads: PARAMS.raw["threads"]
        shell:
            "{params.cmd}"
