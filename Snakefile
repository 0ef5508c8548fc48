# The stage graph for Snakemake: one rule per stage of vggrepro's stage registry, the same
# registry dvc.yaml is rendered from, so both engines run the same commands under the same
# names. params.yaml is validated here, before any job starts.
#
#     snakemake --cores 2
#     snakemake --profile workflow/profiles/slurm     (a cluster, with the SLURM executor plugin)
#
# Snakemake's --config does not reach the stages, which read params.yaml themselves: edit
# params.yaml instead (or use `dvc exp run -S key=value`).
import sys

from vggrepro import registry
from vggrepro.params import ParamsError, load_params

try:
    PARAMS = load_params("params.yaml")
except ParamsError as err:
    sys.exit(f"snakemake: error: {err}")

STAGES = registry.build(PARAMS)


rule all:
    input:
        registry.final_targets(STAGES),


include: "workflow/rules/stages.smk"
