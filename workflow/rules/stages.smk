# One rule per stage of vggrepro.engine.registry (STAGES and PARAMS come from the Snakefile,
# the helpers from common.smk); nothing here names a stage by hand. DVC's `validate` stage has
# no rule: the Snakefile runs the same checks at parse time.

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
        # The stage's own output, also on the terminal (bash's pipefail, in the prefix Snakemake
        # gives every shell command, keeps the stage's exit status through tee); appended, so a
        # rerun after a kill keeps the killed run's lines. Through the pipe the stage sees no
        # terminal: heartbeat lines instead of a progress bar (vggrepro.runtime.heartbeat).
        log:
            paths.stage_log(_stage.name),
        threads: PARAMS.raw["threads"]
        # The stage's software, used only under `--sdm conda`: the same command in an environment
        # of the project's pinned dependencies (workflow/envs/); otherwise Snakemake's own.
        conda:
            "../envs/vggrepro.yaml"
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
        # SLURM's scancel and time limit send SIGTERM to every process of the job at once. The
        # stage saves its resume point and says so in one line; tee ignores the signal so that
        # the line reaches the log, and the shell waits (its trap runs once the stage has ended)
        # so that Snakemake, and with it the job, outlive the save. Ctrl-C alike.
        shell:
            "trap : TERM INT; {params.cmd} 2>&1 | (trap '' TERM INT; exec tee -a {log})"
