"""vggrepro: Simonyan & Zisserman's VGG paper as a reproducibility workflow.

The paper's code sits at this level (params, model, training, schedule, protocols, metrics,
published, paper); data/, stages/ and report/ build on it; engine/ makes DVC and Snakemake
decide alike; runtime/ holds process-level helpers that import nothing else of the package.
"""

import sys

__version__ = "0.1.0"


def predict(images, model="runs/E_jit/model.pt", **options) -> list[list[dict]]:
    """The top classes of each image by a trained run (vggrepro.prediction.predict). Imported
    when called, so `import vggrepro` stays free of torch, and through importlib, so no stage's
    code digest (vggrepro.engine.codedeps follows import statements) covers a helper no stage runs."""
    import importlib

    return importlib.import_module("vggrepro.prediction").predict(images, model, **options)


def provenance() -> dict[str, str]:
    """What made an output: the versions of vggrepro and of the libraries it computed with.

    No git revision or time: an output depends only on its inputs, so an unchanged stage
    gives the same bytes after a commit and downstream stages are not rerun for nothing.
    """
    info = {"vggrepro": __version__}
    for name in ("torch", "torchvision"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = str(module.__version__)  # torch.__version__ is a TorchVersion object
    return info
