"""Where each stage's outputs live, relative to the project root: one place for both engines."""

MANIFEST = "data/manifest.csv"
CLASSES = "data/classes.csv"
MEAN_RGB = "data/mean_rgb.json"
RESULTS_MD = "reports/results.md"
METRICS_JSON = "reports/metrics.json"


def model(run: str) -> str:
    return f"runs/{run}/model.pt"


def train_log(run: str) -> str:
    return f"runs/{run}/train_log.jsonl"


def posteriors(run: str) -> str:
    return f"runs/{run}/posteriors.pt"


def eval_metrics(run: str) -> str:
    return f"runs/{run}/eval.json"
