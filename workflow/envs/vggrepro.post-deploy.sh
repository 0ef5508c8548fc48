#!/usr/bin/env bash
# Snakemake runs this once, inside the new environment, from the project root (the workflow's
# working directory). The project is installed editable, its other dependencies at
# pyproject.toml's ranges: the stages run this checkout's code, as without --sdm conda
# (an installed copy would go stale: Snakemake rebuilds the environment only when a file here
# changes).
set -euo pipefail
python -m pip install -e .
