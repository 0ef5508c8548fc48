"""A trained run used by hand: the top classes of any image, by the paper's dense protocol.

    vggrepro predict photo.jpg --model runs/E_jit/model.pt
    >>> import vggrepro
    >>> vggrepro.predict(["photo.jpg"], "runs/E_jit/model.pt")[0][0]
    {'wnid': 'n02123045', 'name': 'tabby cat', 'probability': 0.83}

The checkpoint holds what this needs: the class names in label order, the run's single test
scale Q in pixels (Sec. 4.1) and the per-channel mean and std (on the 0..255 scale, as the
paper subtracts the mean RGB) its inputs are normalised with. Each image is rescaled so its
smallest side is Q, the fully-connected layers run as convolutions over it, the class score
map is averaged and the soft-max posteriors averaged with the flipped image's (Sec. 3.2),
as the evaluate stage's dense-single protocol does: with its flip, pool and precision where the
run's eval.json lies beside model.pt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import torch

from vggrepro import protocols
from vggrepro.data import images as image_io
from vggrepro.data.normalise import channels
from vggrepro.model import ModelError, load_checkpoint, read_checkpoint
from vggrepro.runtime.device import Compute, resolve_precision, set_determinism
from vggrepro.runtime.errors import Error, MissingFile


def predict(
    images: Sequence[str | Path | torch.Tensor],
    model: str | Path = "runs/E_jit/model.pt",
    *,
    top: int = 5,
    q: int | None = None,
    device: str = "cpu",
) -> list[list[dict]]:
    """For each image (a file, or a uint8 RGB tensor 3 x H x W), its `top` classes, most probable
    first: [{"wnid", "name", "probability"}, ...]. q: the test scale in pixels (default: the
    run's own)."""
    checkpoint = read_checkpoint(model)
    q = q if q is not None else checkpoint.get("test_q_px")
    if q is None:
        raise ModelError(f"{model}: holds no test scale (a checkpoint from before predict); pass q, e.g. --q 384")
    classes = checkpoint.get("classes") or [(str(i), str(i)) for i in range(checkpoint["spec"]["num_classes"])]
    evaluated = _evaluated_with(Path(model))
    precision = evaluated.get("precision") or checkpoint.get("params", {}).get("train", {}).get("precision", "fp32")
    compute = Compute(torch.device(device), resolve_precision(precision, torch.device(device)), False)
    set_determinism(compute.device, False)  # as the stages set it: on a GPU, no TF32 in fp32 matmuls
    net = load_checkpoint(model, compute.device).to(memory_format=torch.channels_last)
    mean, std = (channels(values).to(compute.device) for values in net.normalise)
    decoded = [img if isinstance(img, torch.Tensor) else _decode(Path(img)) for img in images]
    posteriors = protocols.dense_at_q(net, decoded, int(q), mean=mean, std=std, compute=compute,
                                      flip=evaluated.get("flip", True), pool=evaluated.get("pool", "scores"))
    protocols.check_posteriors(posteriors, run=str(model), protocol="dense")
    best = posteriors.topk(min(top, posteriors.shape[1]), dim=1)
    return [
        [{"wnid": classes[i][0], "name": classes[i][1], "probability": round(float(p), 4)} for p, i in zip(ps, ids)]
        for ps, ids in zip(best.values.tolist(), best.indices.tolist())
    ]


def _evaluated_with(model: Path) -> dict:
    """How the evaluate stage scored this run (its eval.json beside model.pt): flip, pool and
    precision, so that predict gives its dense-single posteriors; {} where there is none."""
    try:
        record = json.loads((model.parent / "eval.json").read_text())
    except (OSError, ValueError):
        return {}
    precision = re.search(r"\), (bf16|fp32), ", str(record.get("compute", "")))  # Compute.describe()
    found = {"flip": record.get("flip"), "pool": record.get("pool"), "precision": precision and precision[1]}
    return {k: v for k, v in found.items() if v is not None}


def _decode(path: Path) -> torch.Tensor:
    """The image as uint8 RGB, upright; the size limits prepare applies, as one line."""
    if not path.is_file():
        raise MissingFile(f"{path}: no such image file")
    data = path.read_bytes()
    try:
        image_io.read_header(data)  # a decompression bomb or a strip is refused before decoding
        return image_io.decode_bytes(data)
    except (image_io.TooLarge, image_io.TooElongated) as err:
        raise Error(f"{path}: {err}") from None
    except RuntimeError as err:
        raise Error(f"{path}: not a readable image ({image_io.describe(err)})") from None
