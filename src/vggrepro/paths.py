"""Every file and folder the project writes, relative to the project root: one place for both
engines, the stages and the tests. Stage names are made here too (`stage_name`)."""

from __future__ import annotations

from dataclasses import dataclass

# --- Stage names: `<kind>_<run>` for the per-run stages, the kind alone for the others --------
PER_RUN_STAGES = ("train", "evaluate")


def stage_name(kind: str, run: str | None = None) -> str:
    """The stage's name in both engines: `train_E_jit`, `evaluate_E_jit`, `prepare`, ..."""
    if (run is None) != (kind not in PER_RUN_STAGES):
        raise ValueError(f"stage {kind!r} {'needs' if run is None else 'takes no'} run")  # a caller's bug
    return kind if run is None else f"{kind}_{run}"


# --- The project's own files: the knob surface, and DVC's graph (`vggrepro dvc-yaml`) -------
PARAMS_FILE = "params.yaml"
DVC_YAML = "dvc.yaml"

# --- The stages' outputs ------------------------------------------------------------------
MANIFEST = "data/manifest.csv"
CLASSES = "data/classes.csv"
BAD_FILES = "data/bad_files.csv"  # every image prepare converted or excluded, with the reason
MEAN_RGB = "data/mean_rgb.json"
RUNS_DIR = "runs"
FUSION_DIR = "fusion"
REPORTS_DIR = "reports"
SUMMARY_FIGURES = ("error-vs-depth", "error-vs-scale", "protocols")


@dataclass(frozen=True)
class ReportFiles:
    """What the report stage writes: the markdown, and beside it in `folder` the tables (the
    paper's Tables 3 to 6 and the findings, our numbers beside its numbers, as CSV), the figures
    and the metrics for `dvc metrics show`."""

    markdown: str
    folder: str

    @property
    def metrics(self) -> str:
        return f"{self.folder}/metrics.json"

    def table(self, number: int) -> str:
        return f"{self.folder}/tables/table{number}.csv"

    def table_page(self, number: int) -> str:
        """The same table as an HTML page, which `snakemake --report` shows as a table."""
        return f"{self.folder}/tables/table{number}.html"

    @property
    def findings_table(self) -> str:
        """The paper's claims, each comparison with its interval and verdict (vggrepro.report.findings)."""
        return f"{self.folder}/tables/findings.csv"

    def figure(self, name: str) -> str:
        return f"{self.folder}/figures/{name}.png"

    def figures(self, runs) -> list[str]:
        """Every figure of the report: training curves per run, then the summary figures."""
        return [self.figure(f"training-{run}") for run in runs] + [self.figure(name) for name in SUMMARY_FIGURES]


# A grid with one training seed reports in reports/results.md; a sweep over seeds (params.yaml's
# `seeds`, params/findings.yaml) in reports/findings.md, so both can be kept side by side.
RESULTS = ReportFiles(f"{REPORTS_DIR}/results.md", REPORTS_DIR)
FINDINGS = ReportFiles(f"{REPORTS_DIR}/findings.md", f"{REPORTS_DIR}/findings")


def report_files(sweep: bool) -> ReportFiles:
    return FINDINGS if sweep else RESULTS


def model(run: str) -> str:
    return f"{RUNS_DIR}/{run}/model.pt"


TRAIN_LOG_NAME = "train_log.json"


def train_log(run: str) -> str:
    """A JSON list, one object per epoch: what `dvc plots show` and the report draw."""
    return f"{RUNS_DIR}/{run}/{TRAIN_LOG_NAME}"


def live_dir(run: str) -> str:
    """dvclive's folder of a training run (vggrepro.runtime.live): its step curves and progress."""
    return f"{RUNS_DIR}/{run}/live"


def live_plots(run: str) -> str:
    return f"{live_dir(run)}/plots"


def live_metric(run: str, metric: str) -> str:
    """dvclive's step file of one metric (vggrepro.runtime.live.METRICS), e.g. train/loss."""
    return f"{live_plots(run)}/metrics/{metric}.tsv"


def live_summary(run: str) -> str:
    """The epoch and global step the run has reached, for `dvc exp show` while it runs."""
    return f"{live_dir(run)}/metrics.json"


def protocol_posteriors(run: str, protocol: str) -> str:
    """The soft-max posteriors of the val split by one protocol (vggrepro.params.PROTOCOLS)."""
    return f"{RUNS_DIR}/{run}/eval/{protocol}.pt"


def eval_metrics(run: str) -> str:
    return f"{RUNS_DIR}/{run}/eval.json"


def fused(name: str) -> str:
    """The posteriors of a fuse entry (Table 6); its name made a file name."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower())
    return f"{FUSION_DIR}/{'-'.join(filter(None, slug.split('-')))}.pt"


FUSION_METRICS = f"{FUSION_DIR}/metrics.json"

# --- The project's own bookkeeping: .vggrepro/ (gitignored; safe to delete between runs) ----
STATE_DIR = ".vggrepro"
# The dataset folder's stamp (vggrepro.data.datastamp): an input of prepare.
DATA_STAMP = f"{STATE_DIR}/data-stamp.json"
# The stamp of the folder as the last prepare read it: a stage run by hand checks the folder
# against it before it reads an image (vggrepro.data.datastamp.check_unchanged_since_prepare).
PREPARED_STAMP = f"{STATE_DIR}/prepared-stamp.json"
# What the last full pre-run check read (vggrepro.engine.guard), so DVC's validate can skip it.
VALIDATED = f"{STATE_DIR}/validated.json"
# What `vggrepro use` replaced.
PREVIOUS_PARAMS = f"{STATE_DIR}/previous-params.yaml"
# One small file per stage holding the values of the params.yaml keys it reads, rewritten only
# when they change: an input of the stage in both engines, so a knob change reruns exactly the
# stages that read it (Snakemake decides on file times, DVC on hashes).
KNOBS_DIR = f"{STATE_DIR}/knobs"
# One file per stage listing the source files it runs with a digest of each
# (vggrepro.engine.codedeps), rewritten only when one changes: the stage's single code input in
# both engines, so editing a module a stage imports reruns it, and dvc.yaml and dvc.lock stay
# short (DVC parses and writes them on every call).
CODE_DIR = f"{STATE_DIR}/code"
# Kernel locks: one per stage (a second run of a running stage stops), and the pipeline's.
LOCKS_DIR = f"{STATE_DIR}/locks"
PIPELINE_LOCK = f"{LOCKS_DIR}/pipeline.lock"
# GPU leases, one folder per host (vggrepro.runtime.lease).
LEASES_DIR = f"{STATE_DIR}/leases"
# Resume points of train and evaluate stages, outside their outputs (vggrepro.runtime.resume).
RESUME_DIR = f"{STATE_DIR}/resume"
# What each stage's outputs were when it ended, and the count of edits found in them since
# (vggrepro.engine.outputs_record; Snakemake only).
OUTPUT_RECORDS_DIR = f"{STATE_DIR}/outputs"
EDITS_DIR = f"{STATE_DIR}/edits"
# The image fingerprint cache of prepare (vggrepro.data.fingerprint).
FINGERPRINT_CACHE_DIR = f"{STATE_DIR}/cache"


def knobs(stage: str) -> str:
    return f"{KNOBS_DIR}/{stage}.json"


def code_digest(stage: str) -> str:
    return f"{CODE_DIR}/{stage}.txt"


def stage_lock(stage: str) -> str:
    return f"{LOCKS_DIR}/{stage}.lock"


def resume_point(stage: str) -> str:
    return f"{RESUME_DIR}/{stage}.pt"


def output_record(stage: str) -> str:
    return f"{OUTPUT_RECORDS_DIR}/{stage}.json"


def edits(stage: str) -> str:
    """A count of the edits found in the stage's outputs: an input of its Snakemake rule."""
    return f"{EDITS_DIR}/{stage}.txt"


# Everything above that a stage writes, as the top folders or files: an embedded data.root may
# not be, hold or lie above any of them (prepare replaces the whole folder it generates), and
# every output a stage declares lies in one of them (tests/test_graph.py).
LOGS_DIR = "logs"  # Snakemake's log of each stage (its rules' log:)


def stage_log(stage: str) -> str:
    return f"{LOGS_DIR}/{stage}.log"


PROJECT_OUTPUTS = (MANIFEST, CLASSES, BAD_FILES, MEAN_RGB, RUNS_DIR, FUSION_DIR, REPORTS_DIR, STATE_DIR, LOGS_DIR)
# The project's own inputs, which no dataset folder may be or hold.
PROJECT_INPUTS = ("params.yaml", "dvc.yaml", "dvc.lock", "Snakefile", "src", "workflow", "profiles", "tests", ".dvc", ".git")


def in_dvc_cache(path, project=None) -> bool:
    """Whether a resolved path lies in the project's DVC cache (a dataset added with `dvc add`
    and cache.type symlink is links into it)."""
    from pathlib import Path

    project = Path(project) if project is not None else Path.cwd().resolve()
    return (project / ".dvc" / "cache").resolve() in Path(path).parents


def project_part(path, project=None) -> str | None:
    """What of the project a resolved path is, holds or lies in: "the whole project" (the
    project or a folder above it), one of PROJECT_OUTPUTS or PROJECT_INPUTS, or None.
    project: the project root, resolved (default: the working directory, where stages run)."""
    from pathlib import Path

    path, project = Path(path), Path(project) if project is not None else Path.cwd().resolve()
    if path == project or path in project.parents:
        return "the whole project"
    for taken in PROJECT_OUTPUTS + PROJECT_INPUTS:
        t = (project / taken).resolve()
        if path == t or t in path.parents or path in t.parents:
            return taken
    return None
