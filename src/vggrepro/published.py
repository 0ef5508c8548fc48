"""Published weights: torchvision's ImageNet VGG state_dicts as project checkpoints.

torchvision's vgg11, vgg13, vgg16 and vgg19 are configurations A, B, D and E of Table 1
(the batch-normalised vgg*_bn are not the paper's nets and are refused). Its classifier is
fully connected on the 512 x 7 x 7 map (flattened as channel, row, column; its adaptive
average pool is the identity at 224 px), so FC1's (4096, 25088) matrix is our fc6 kernel
(4096, 512, 7, 7) and FC2, FC3 are our 1 x 1 fc7, fc8: the same function on a 224 crop.

    vggrepro import-weights --arch vgg19 --input vgg19-dcbb9e9d.pth --output models/vgg19.pt
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import asdict
from pathlib import Path

import torch

from vggrepro import provenance
from vggrepro.model import TABLE1, VGG, ModelSpec
from vggrepro.runtime import io
from vggrepro.runtime.errors import Error, MissingFile


class WeightsError(Error):
    """Published weights that are not the torchvision VGG state_dict asked for; one line."""

ARCHS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}  # torchvision name -> Table 1
CONV_COUNT = {arch: sum(len(block) for block in TABLE1[config]) for arch, config in ARCHS.items()}
CLASSIFIER = {"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"}
# torchvision's ImageNet normalisation is on [0, 1] inputs; to_input works on 0..255 values.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def check_arch(arch: str) -> str:
    """The Table 1 configuration of a torchvision arch name."""
    if arch.endswith("_bn"):
        raise WeightsError(f"{arch}: batch-normalised VGG is not supported (not a Table 1 net); use {arch[:-3]}")
    if arch not in ARCHS:
        raise WeightsError(f"{arch}: not a supported arch (expected one of {', '.join(ARCHS)})")
    return ARCHS[arch]


def _guess(convs: int) -> str:
    guesses = [a for a, n in CONV_COUNT.items() if n == convs]
    return f" (is it {guesses[0]}?)" if guesses else ""


def from_torchvision(state_dict: dict, arch: str, *, source: str = "state_dict") -> dict:
    """The project checkpoint of torchvision VGG weights; source names them in errors."""
    config = check_arch(arch)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise WeightsError(f"{source}: holds a {type(state_dict).__name__}, not a state_dict (a dict of tensors)")
    if any(k.endswith("running_mean") for k in state_dict):
        raise WeightsError(f"{source}: a batch-normalised VGG (vgg*_bn), which is not supported; expected {arch}")
    kernels = [k for k, v in state_dict.items() if k.startswith("features.") and k.endswith(".weight") and v.dim() == 4]
    convs = sorted(int(k.split(".")[1]) for k in kernels)  # numerically: features.10 after features.8
    if not convs:
        raise WeightsError(f"{source}: no features.N.weight conv kernels; not a torchvision VGG state_dict")
    if len(convs) != CONV_COUNT[arch]:
        raise WeightsError(f"{source}: has {len(convs)} conv layers, {arch} has {CONV_COUNT[arch]}{_guess(len(convs))}")
    with torch.device("meta"):  # the target's shapes, no memory
        target = VGG(ModelSpec(config, num_classes=1)).state_dict()
    ours = [k.split(".")[1] for k in target if k.startswith("features.") and k.endswith(".weight")]
    names = {f"features.{i}": f"features.{name}" for i, name in zip(convs, ours)}
    names.update({k: f"head.{v}" for k, v in CLASSIFIER.items()})
    expected = {f"{k}.{p}" for k in names for p in ("weight", "bias")}
    if set(state_dict) != expected:
        odd = sorted(set(state_dict) ^ expected)[0]
        what = "unexpected" if odd in state_dict else "missing"
        raise WeightsError(f"{source}: {what} key {odd}; not a torchvision {arch} state_dict")
    fc8 = state_dict["classifier.6.weight"]
    if fc8.dim() != 2 or fc8.shape[0] < 1:
        raise WeightsError(f"{source}: classifier.6.weight has shape {tuple(fc8.shape)}, {arch} expects (classes, 4096)")
    num_classes = fc8.shape[0]
    spec = ModelSpec(config, num_classes=num_classes)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in VGG(spec).state_dict().items()}
    converted = {}
    for key, value in state_dict.items():
        layer, param = key.rsplit(".", 1)
        ours_key = f"{names[layer]}.{param}"
        want = shapes[ours_key]
        theirs = (want[0], want[1:].numel()) if layer.startswith("classifier") and param == "weight" else tuple(want)
        if tuple(value.shape) != theirs:
            raise WeightsError(f"{source}: {key} has shape {tuple(value.shape)}, {arch} expects {theirs}")
        converted[ours_key] = value.reshape(want).contiguous()  # classifier: (out, in) -> (out, c, h, w)
    return {
        "state_dict": {k: converted[k] for k in shapes},
        "spec": asdict(spec),
        "run": {"name": f"import:{arch}", "config": config},  # "config": what train's init transfer reads
        "copied_from_init": [],
        "normalise": {"mean": [m * 255 for m in IMAGENET_MEAN], "std": [s * 255 for s in IMAGENET_STD]},
        "source": {"weights": "torchvision", "arch": arch},
        "provenance": provenance(),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_file(arch: str, input_path: str | Path, output_path: str | Path) -> dict:
    """Reads a torchvision .pth, writes the project checkpoint (atomically); returns a summary."""
    check_arch(arch)  # a bad name fails before a 500 MB read
    input_path = Path(input_path)
    if not input_path.is_file():
        raise MissingFile(f"{input_path}: no such file")
    try:
        state_dict = torch.load(input_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise WeightsError(f"{input_path}: not a state_dict torch.load(weights_only=True) can read: {first}") from None
    checkpoint = from_torchvision(state_dict, arch, source=str(input_path))
    checkpoint["source"].update(file=input_path.name, sha256=_sha256(input_path))
    io.write_torch(output_path, checkpoint)
    spec = checkpoint["spec"]
    return {"output": str(output_path), "arch": arch, "config": spec["config"], "num_classes": spec["num_classes"]}
