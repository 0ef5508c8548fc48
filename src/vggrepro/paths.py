"""Where each stage's outputs live, relative to the project root: one place for both engines."""

MANIFEST = "data/manifest.csv"
CLASSES = "data/classes.csv"
BAD_FILES = "data/bad_files.csv"  # every image prepare converted or excluded, with the reason
DATA_STAMP = ".vggrepro/data-stamp.json"  # vggrepro.datastamp: an input of prepare
MEAN_RGB = "data/mean_rgb.json"
RESULTS_MD = "reports/results.md"
METRICS_JSON = "reports/metrics.json"
FIGURES_DIR = "reports/figures"
SUMMARY_FIGURES = ("error-vs-depth", "error-vs-scale", "protocols")


def figure(name: str) -> str:
    return f"{FIGURES_DIR}/{name}.png"


def figures(runs) -> list[str]:
    """Every figure of the report: training curves per run, then the summary figures."""
    return [figure(f"training-{run}") for run in runs] + [figure(name) for name in SUMMARY_FIGURES]


def table(number: int) -> str:
    """One of the paper's tables, our numbers beside its numbers, as CSV."""
    return f"reports/tables/table{number}.csv"


def model(run: str) -> str:
    return f"runs/{run}/model.pt"


def train_log(run: str) -> str:
    """A JSON list, one object per epoch: what `dvc plots show` and the report draw."""
    return f"runs/{run}/train_log.json"


def protocol_posteriors(run: str, protocol: str) -> str:
    """The soft-max posteriors of the val split by one protocol (vggrepro.params.PROTOCOLS)."""
    return f"runs/{run}/eval/{protocol}.pt"


FUSION_DIR = "fusion"


def fused(name: str) -> str:
    """The posteriors of a fuse entry (Table 6); its name made a file name."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower())
    return f"{FUSION_DIR}/{'-'.join(filter(None, slug.split('-')))}.pt"


FUSION_METRICS = f"{FUSION_DIR}/metrics.json"


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
