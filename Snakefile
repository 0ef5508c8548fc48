# The stage graph for Snakemake: one rule per stage of vggrepro's stage registry, the same
# registry dvc.yaml is rendered from, so both engines run the same commands under the same
# names. At parse time, before any job starts, vggrepro.guard validates params.yaml and the
# workspace and writes each stage's knob file (an input of the stage: a changed value reruns
# exactly the stages that read it); vggrepro.outputs_record reruns a stage whose output was
# edited by hand, and vggrepro.timesync lets outputs that DVC restored and holds current count
# as current here too.
#
#     snakemake --cores 2
#     snakemake --profile workflow/profiles/local
#
# profiles/default (read by every run here) makes the plain command rerun after a kill.
#
# Snakemake's --config does not reach the stages, which read params.yaml themselves: edit
# params.yaml instead (or use `dvc exp run -S key=value`).
import sys

from vggrepro import outputs_record, pipeline_lock, registry, timesync
from vggrepro.guard import guard
from vggrepro.params import ParamsError

try:
    PARAMS, STAGES = guard(dvc_yaml=False)
except ParamsError as err:
    sys.exit(f"snakemake: error: {err}")
if workflow.is_main_process:  # not in a cluster job, which sees outputs Snakemake removed
    outputs_record.ensure_edit_counts(STAGES)
    outputs_record.flag_edited(STAGES)  # an output edited or deleted by hand reruns its stage
timesync.align(STAGES)

# One pipeline at a time in a workspace, of either engine (vggrepro.pipeline_lock). Held from
# here, after planning and before the first job, until this process ends; Snakemake's own lock
# is off (profiles/default), since a killed run leaves it behind. Jobs on a cluster parse this
# file too but run no onstart.
onstart:
    try:
        pipeline_lock.acquire("snakemake")
    except pipeline_lock.PipelineRunning as err:
        sys.exit(f"snakemake: error: {err}")


report: "workflow/report/workflow.rst"  # snakemake --report report.html: the tables and figures


rule all:
    input:
        registry.final_targets(STAGES),


include: "workflow/rules/stages.smk"
