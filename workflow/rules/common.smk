# Helpers of the rules in stages.smk (Snakemake's lint wants functions apart from rules).

TRAIN_RUNTIME_MIN = 3 * 24 * 60  # a training job's SLURM time limit
STAGE_RUNTIME_MIN = 4 * 60


def _gpus(stage):
    if PARAMS.raw["train"]["device"] == "cpu":
        return 0
    if stage.kind == "train":
        return PARAMS.raw["train"]["nproc"]
    return 1 if stage.kind == "evaluate" else 0


def _output(out):
    """An output as declared to Snakemake: a directory, or marked for `snakemake --report`
    with its caption (workflow/report/) and category."""
    if out.directory:
        return directory(out.path)
    if out.report:
        category, caption = out.report
        return report(out.path, caption=f"../report/{caption}", category=category)
    return out.path
