# One rule per stage of vggrepro.engine.registry (STAGES and PARAMS come from the Snakefile);
# nothing here names a stage by hand. DVC's `validate` stage has no rule: the Snakefile
# runs the same checks at parse time.

TRAIN_RUNTIME_MIN = 3 * 24 * 60  # a training job's SLURM time limit
STAGE_RUNTIME_MIN = 4 * 60


def _gpus(stage):
    if PARAMS.raw["train"]["device"] == "cpu":
        return 0
    if stage.kind == "train":
        return PARAMS.raw["train"]["nproc"]
    return 1 if stage.kind == "evaluate" else 0


def _output(out):
    """An output as the rule declares it: a directory, or marked for `snakemake --report`
    with its caption (workflow/report/) and category."""
    if out.directory:
        return directory(out.path)
    if out.report:
        category, caption = out.report
        return report(out.path, caption=f"../report/{caption}", category=category)
    return out.path


for _stage in registry.snakemake_stages(STAGES):

    # The command is bound through params, not written in shell:, because a rule defined in
    # a loop would otherwise run the last stage's command. The stage's params.yaml values
    # reach it as an input, its knob file, so Snakemake reruns it when one changes, even
    # after DVC made the outputs (Snakemake has no record of those).
    rule:
        name:
            _stage.name
        input:
            # and the count of edits found in its outputs (vggrepro.engine.outputs_record), which DVC,
            # hashing every output itself, does without
            [*_stage.deps, paths.edits(_stage.name)],
        output:
            [_output(o) for o in _stage.outs],
        params:
            cmd=_stage.cmd,
        threads: PARAMS.raw["threads"]
        # fuse and report average saved posteriors and write tables: seconds, no GPU. On a
        # cluster they run in the main process rather than queue as jobs of their own.
        localrule: _stage.kind in ("fuse", "report")
        # GPUs per job: train.nproc for a training run (one per torchrun process), one for an
        # evaluation, none with train.device: cpu. Locally it limits nothing unless the run passes
        # `--resources gpu=K` (then at most K GPUs busy at once; Snakemake assigns no device, so a
        # stage leases its own through vggrepro.runtime.lease); the SLURM executor submits --gpus=N.
        # cpus_per_task and runtime are for SLURM (locally unused): torch's threads plus the
        # decoding workers, and days for a training run (it resumes if the limit cuts it short).
        resources:
            gpu=_gpus(_stage),
            cpus_per_task=PARAMS.raw["threads"] + PARAMS.raw["data"]["workers"],
            runtime=TRAIN_RUNTIME_MIN if _stage.kind == "train" else STAGE_RUNTIME_MIN,
        shell:
            "{params.cmd}"
