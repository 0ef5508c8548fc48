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
        # One GPU per training or evaluation job (none with train.device: cpu). Locally it limits nothing unless the run
        # passes `--resources gpu=K` (then K such jobs at once; Snakemake assigns no device,
        # so a stage leases one through vggrepro.lease); the SLURM executor submits --gpus=1.
        resources:
            gpu=1 if _stage.name.startswith(("train_", "evaluate_")) and PARAMS.raw["train"].get("device", "auto") != "cpu" else 0,
        shell:
            "{params.cmd}"
