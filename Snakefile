# The stage graph for Snakemake: one rule per stage of vggrepro's stage registry, the same
# registry dvc.yaml is rendered from, so both engines run the same commands under the same
# names. At parse time, before any job starts, vggrepro.engine.pre_run does what DVC's first
# stage does: validates params.yaml and the workspace and writes each stage's knob file (an
# input of the stage: a changed value reruns exactly the stages that read it); it also reruns a
# stage whose output was edited by hand, lets outputs that DVC restored and holds current count
# as current here too, and holds the workspace for this pipeline once the jobs are planned.
#
#     snakemake --cores 2
#     snakemake --profile workflow/profiles/local
#
# profiles/default (read by every run here) makes the plain command rerun after a kill.
#
# Snakemake's --config and --configfile do not reach the stages, which read params.yaml
# themselves: pre_run refuses them in one line (edit params.yaml, or `dvc exp run -S key=value`).
from vggrepro import engine
from vggrepro import paths
from vggrepro.engine import registry

# Validate params.yaml and the workspace, write the knob files, stamp the data, count edits by
# hand, trust DVC's restored outputs, and lock the workspace once the jobs are planned.
PARAMS, STAGES = engine.pre_run("snakemake", workflow=workflow, config=config)


report: "workflow/report/workflow.rst"  # snakemake --report report.html: the tables and figures


rule all:
    input:
        registry.final_targets(STAGES),


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"
