"""What makes DVC and Snakemake decide alike: the stage registry, `pre_run`, code digests, output
records, file times, the pipeline lock. Used by the CLI and the Snakefile only; imports the
paper's code, data/ and runtime/, never a stage (no stage's code digest covers engine/).
"""

from __future__ import annotations

import sys

from vggrepro.engine import guard, outputs_record, pipeline_lock, registry, timesync
from vggrepro.engine.registry import PARAMS_FILE, Stage
from vggrepro.params import Params
from vggrepro.runtime import heartbeat
from vggrepro.runtime.errors import Error


def pre_run(engine: str, params_path: str = PARAMS_FILE, *, workflow=None, config=None) -> tuple[Params, list[Stage]] | None:
    """Everything both engines do before the first stage: params.yaml validated, the workspace
    checked (vggrepro.engine.guard), every stage's knob and code digest file written where its
    content changed, the dataset stamped, and the workspace locked for this pipeline
    (vggrepro.engine.pipeline_lock). Returns the params and the stages.

    engine "dvc" (its first stage, `vggrepro validate --write-knobs`): the lock first, held by a
    keeper until `dvc repro` ends; dvc.yaml checked against the registry; when nothing the
    checks read has changed since the last call, only the stamp is refreshed and None returned.
    Errors propagate (the CLI prints them as one line).

    engine "snakemake" (the Snakefile, at parse time; workflow: its `workflow` object): the
    lock is taken once the jobs are planned (Snakemake's onstart: never in a dry run or a
    cluster job); outputs edited by hand are counted (vggrepro.engine.outputs_record) in the
    main process only, and outputs DVC restored get current times (vggrepro.engine.timesync).
    config: Snakemake's `config`, which --config and --configfile fill; the stages read
    params.yaml alone, so a value given there would change nothing: refused. An error exits
    with one line.
    """
    if engine == "dvc":
        heartbeat.interval()  # a bad VGGREPRO_HEARTBEAT stops here, not in a stage whose outputs are gone
        pipeline_lock.hold_for_dvc()
        if guard.unchanged_since_last_guard(params_path):
            return None
        return guard.guard(params_path)
    if engine != "snakemake":
        raise ValueError(f"engine {engine!r}: expected dvc or snakemake")  # a caller's bug
    if config:
        keys = ", ".join(sorted(map(str, config)))
        sys.exit(
            f"snakemake: error: --config/--configfile ({keys}) would change nothing: every stage reads "
            f"{params_path} alone; set the knob there (e.g. `seed: 5`), or run `dvc exp run -S seed=5`"
        )
    try:
        heartbeat.interval()
        params, stages = guard.guard(params_path, dvc_yaml=False)
    except Error as err:
        sys.exit(f"snakemake: error: {err}")
    except OSError as err:  # a file the checks could not read or write: named, no traceback
        sys.exit(f"snakemake: error: {err.filename or ''}: {err.strerror or err}")
    if workflow.is_main_process:  # not in a cluster job, which sees outputs Snakemake removed
        outputs_record.ensure_edit_counts(stages)
        outputs_record.flag_edited(stages)  # an output edited or deleted by hand reruns its stage
    timesync.align(stages)
    # Snakemake's own lock is off (profiles/default), since a killed run leaves it behind.
    workflow.onstart(_lock_for_snakemake)  # what the Snakefile's `onstart:` block registers
    return params, stages


def _lock_for_snakemake(log=None) -> None:
    """Held from here, after planning and before the first job, until Snakemake ends."""
    try:
        pipeline_lock.acquire("snakemake")
    except pipeline_lock.PipelineRunning as err:
        sys.exit(f"snakemake: error: {err}")


__all__ = ["pre_run", "registry"]
