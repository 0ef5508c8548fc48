"""Where each stage's outputs live, relative to the project root: one place for both engines."""

MANIFEST = "data/manifest.csv"
CLASSES = "data/classes.csv"
BAD_FILES = "data/bad_files.csv"  # every image prepare converted or excluded, with the reason
DATA_STAMP = ".vggrepro/data-stamp.json"  # vggrepro.datastamp: an input of prepare
MEAN_RGB = "data/mean_rgb.json"
RESULTS_MD = "reports/results.md"
METRICS_JSON = "reports/metrics.json"


def model(run: str) -> str:
    return f"runs/{run}/model.pt"


def train_log(run: str) -> str:
    """A JSON list, one object per epoch: what `dvc plots show` and the report draw."""
    return f"runs/{run}/train_log.json"


def posteriors(run: str) -> str:
    return f"runs/{run}/posteriors.pt"


def eval_metrics(run: str) -> str:
    return f"runs/{run}/eval.json"


# One small file per stage holding the values of the params.yaml keys it reads, rewritten only
# when they change: an input of the stage in both engines, so a knob change reruns exactly the
# stages that read it (Snakemake decides on file times, DVC on hashes).
KNOBS_DIR = ".vggrepro/knobs"


def knobs(stage: str) -> str:
    return f"{KNOBS_DIR}/{stage}.json"


# One file per stage listing the source files it runs with a digest of each (vggrepro.codedeps),
# rewritten only when one changes: the stage's single code input in both engines, so editing a
# module a stage imports reruns it, and dvc.yaml and dvc.lock stay short (DVC parses and writes
# them on every call).
CODE_DIR = ".vggrepro/code"


def code_digest(stage: str) -> str:
    return f"{CODE_DIR}/{stage}.txt"
