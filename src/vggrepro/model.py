"""VGG configurations of Table 1 as data, with a convolutional head.

The head is the paper's test-time form (Sec. 3.2): FC1 is a k x k convolution with
k = crop / 32 and FC2, FC3 are 1 x 1 convolutions. One set of weights therefore scores a
crop (a 1 x 1 score map) and a whole image at any scale Q (a dense score map, averaged).

    vggrepro model --config E --num-classes 1000 --json
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vggrepro.params import INIT_SCHEMES, PAPER_CROP, PAPER_HEAD_WIDTH
from vggrepro.runtime.errors import Error, MissingFile
from vggrepro.table1 import CONFIGS, DOWNSAMPLING, TABLE1, conv_width


class ModelError(Error):
    """A configuration, checkpoint or transfer that does not fit the net; one line."""

# The first four conv layers of A, copied into deeper nets (Sec. 3.1); named by block and
# position, so they land on the layer of the same block and position, where shapes match.
A_LAYERS_COPIED = ("conv1_1", "conv2_1", "conv3_1", "conv3_2")
HEAD_LAYERS = ("fc6", "fc7", "fc8")
LRN_SIZE, LRN_ALPHA = 5, 1e-4  # AlexNet's window and alpha, in AlexNet's formula


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes the shape of a network."""

    config: str  # a key of TABLE1
    num_classes: int = 1000
    width: float = 1.0  # multiplies every conv width; 1.0 is the paper's
    head_width: int = PAPER_HEAD_WIDTH  # channels of FC1 and FC2
    crop: int = PAPER_CROP  # training crop; FC1's kernel is crop / 32
    dropout: float = 0.5  # Sec. 3.1: after FC1 and FC2

    def __post_init__(self) -> None:
        if self.config not in TABLE1:
            raise ModelError(f"config {self.config!r} is not one of {', '.join(CONFIGS)}")
        if not (isinstance(self.crop, int) and self.crop >= DOWNSAMPLING and self.crop % DOWNSAMPLING == 0):
            raise ModelError(f"crop {self.crop!r} is not a positive multiple of {DOWNSAMPLING}")
        if not (isinstance(self.num_classes, int) and self.num_classes >= 1):
            raise ModelError(f"num_classes {self.num_classes!r} is not a positive integer")
        if not (isinstance(self.head_width, int) and self.head_width >= 1):
            raise ModelError(f"head_width {self.head_width!r} is not a positive integer")
        if not (isinstance(self.width, (int, float)) and 0 < self.width < float("inf")):
            raise ModelError(f"width {self.width!r} is not a positive finite multiplier (1.0 is Table 1)")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ModelError(f"dropout {self.dropout!r} is not in [0, 1)")


class BandedLRN(nn.LocalResponseNorm):
    """torch's LocalResponseNorm, computed another way: the sum of squares over the channel
    window as a 1 x 1 convolution with a banded 0/1 matrix (one GEMM), in fp32 whatever the
    autocast. torch's layer (avg_pool3d over a padded copy) made A-LRN train at a third of A's
    speed on the CPU. The same numbers to fp64 rounding (tests/test_model.py); no weights."""

    def __init__(self, channels: int, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__(size, alpha=alpha, beta=beta, k=k)
        index = torch.arange(channels)
        offset = index[None, :] - index[:, None]  # input channel - output channel
        band = ((offset >= -(size // 2)) & (offset <= (size - 1) // 2)).float()  # torch's window
        self.register_buffer("band", band[:, :, None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            a = x if x.dtype == torch.float64 else x.float()
            window = F.conv2d(a * a, self.band.to(a.dtype))
            return (a * (self.k + self.alpha / self.size * window).pow(-self.beta)).to(x.dtype)


def _layers(spec: ModelSpec) -> OrderedDict[str, nn.Module]:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch = 3
    for b, block in enumerate(TABLE1[spec.config], start=1):
        pos = 0
        for item in block:
            if item == "LRN":
                # A-LRN: AlexNet's LRN (Krizhevsky et al. 2012, Sec. 3.3; Table 1's note):
                # b = a / (k + alpha * sum over 5 channels of a^2)^beta, alpha 1e-4, beta 0.75, k 2.
                # torch's layer divides alpha by the window size (as Caffe does), so AlexNet's
                # alpha is passed as alpha * size (the VGG Caffe models write 0.0005 too).
                layers[f"lrn{b}"] = BandedLRN(in_ch, LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=0.75, k=2.0)
                continue
            pos += 1
            kernel, out = (1, int(item[3:])) if isinstance(item, str) else (3, item)
            out = conv_width(out, spec.width)
            layers[f"conv{b}_{pos}"] = nn.Conv2d(in_ch, out, kernel, padding=kernel // 2)
            layers[f"relu{b}_{pos}"] = nn.ReLU(inplace=True)
            in_ch = out
        layers[f"pool{b}"] = nn.MaxPool2d(2, 2)
    return layers


class VGG(nn.Module):
    """A Table 1 network whose classifier is fully convolutional."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.features = nn.Sequential(_layers(spec))
        last = [m for m in self.features if isinstance(m, nn.Conv2d)][-1].out_channels
        k = spec.crop // DOWNSAMPLING
        self.head = nn.Sequential(
            OrderedDict(
                fc6=nn.Conv2d(last, spec.head_width, k),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(spec.dropout),
                fc7=nn.Conv2d(spec.head_width, spec.head_width, 1),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(spec.dropout),
                fc8=nn.Conv2d(spec.head_width, spec.num_classes, 1),
            )
        )

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores at every position: (N, classes, h, w); 1 x 1 on a crop."""
        return self._class_scores(self.head[:-1](self.features(x)))

    def _class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """FC3 in fp32 even under bf16 autocast: bf16 scores 8 to 16 apart by 0.0625 tie often
        (about 3% of 1000-class rows), and ties count as errors. It costs one small matmul."""
        fc8 = self.head.fc8
        with torch.autocast(x.device.type, enabled=False):
            if x.dim() == 2:
                return F.linear(x.float(), fc8.weight.flatten(1), fc8.bias)
            return F.conv2d(x.float(), fc8.weight, fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N, classes): the score map averaged over space (Sec. 3.2).

        On a crop-sized input the map is 1 x 1 and this is the ordinary crop classifier, run
        as matrix products over the same weights: a k x k convolution over a k x k input is
        slower than the equal matmul (about 23% of a bf16 VGG-19 step on a CPU at 224).
        """
        features = self.features(x)
        k = self.spec.crop // DOWNSAMPLING
        if features.shape[-2:] == (k, k):
            return self._head_as_matmul(features)
        return self._class_scores(self.head[:-1](features)).mean(dim=(2, 3))

    def _head_as_matmul(self, features: torch.Tensor) -> torch.Tensor:
        h = self.head
        x = F.linear(_flat_like(features, h.fc6.weight), _flat_like(h.fc6.weight, h.fc6.weight), h.fc6.bias)
        x = h.drop6(h.relu6(x))
        x = F.linear(x, h.fc7.weight.flatten(1), h.fc7.bias)
        return self._class_scores(h.drop7(h.relu7(x)))


def _flat_like(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """t (N, C, k, k) as rows in the memory order of `weight`: (c, y, x) when the weight is
    contiguous, (y, x, c) when it is channels-last. Pairing each input with its weight the
    same way either order gives the convolution's sums, and the weight is read as a view
    (FC1 holds 100M parameters at full width: a copy a step would cost)."""
    if weight.is_contiguous():
        return t.flatten(1)
    return t.permute(0, 2, 3, 1).flatten(1)


def weight_layers(spec: ModelSpec) -> int:
    """Conv layers plus the three FC layers: 11, 11, 13, 16, 16, 19 for A .. E."""
    convs = sum(1 for block in TABLE1[spec.config] for item in block if item != "LRN")
    return convs + len(HEAD_LAYERS)


def count_params(spec: ModelSpec) -> int:
    # On the meta device no memory is allocated, so full-width E is counted instantly.
    with torch.device("meta"):
        model = VGG(spec)
    return sum(p.numel() for p in model.parameters())


def init_weights(model: VGG, scheme: str, generator: torch.Generator, std: float | None = None) -> None:
    """Random initialisation of every layer (Sec. 3.1); biases are zero.

    "normal": N(0, std^2), the paper's scheme for net A ("variance 10^-2"; params.yaml
      train.init_std says which reading; required for this scheme).
    "glorot": Glorot & Bengio (2010) uniform, which the paper notes works without pre-training.
    "kaiming": He et al. (2015) normal, fan-in with the ReLU gain, for every layer. It postdates
      the paper; with inputs of unit variance it keeps the narrow nets of the CPU default off
      the plateau (constant output, loss ln(classes)) where the other schemes sat for epochs.
    """
    if scheme == "normal" and std is None:
        raise ValueError("init normal needs its std (params.yaml train.init_std)")  # a caller's bug
    head = {id(m) for m in model.head.modules()}
    for m in model.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if scheme == "normal":
            nn.init.normal_(m.weight, mean=0.0, std=std, generator=generator)
        elif scheme == "glorot":
            # FC1-FC3 are the paper's fully connected layers: their fans are a Linear's (FC1:
            # 25088 in, 4096 out), not a conv's (which would count 4096 x 49 out, a 2.8x smaller bound).
            weight = m.weight.view(m.out_channels, -1) if id(m) in head else m.weight
            nn.init.xavier_uniform_(weight, generator=generator)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu", generator=generator)
        else:
            raise ModelError(f"init scheme {scheme!r} is not one of {', '.join(INIT_SCHEMES)}")
        nn.init.zeros_(m.bias)


def transfer_from(model: VGG, source_state: dict[str, torch.Tensor], source_config: str) -> list[str]:
    """Copies an initialising run's weights into model; returns the layer names copied.

    Same configuration (S=384 from S=256, jittered from S=384, Sec. 3.1): every layer.
    A into a deeper net (Sec. 3.1): the first four conv layers and the three FC layers; the
    other layers keep their random initialisation.
    """
    same = source_config == model.spec.config
    wanted = None if same else set(A_LAYERS_COPIED + HEAD_LAYERS)
    target = model.state_dict()
    copied = []
    for key, value in source_state.items():
        layer = key.split(".")[1]
        if wanted is not None and layer not in wanted:
            continue
        if key not in target or target[key].shape != value.shape:
            raise ModelError(
                f"cannot initialise {model.spec.config} from {source_config}: "
                f"{key} has shape {tuple(value.shape)}, expected "
                f"{tuple(target[key].shape) if key in target else 'no such layer'}"
            )
        target[key] = value
        copied.append(layer)
    model.load_state_dict(target)
    return sorted(set(copied))


CHECKPOINT_KEYS = ("spec", "state_dict", "normalise")  # what every project checkpoint holds


def read_checkpoint(path: str | Path) -> dict:
    """A project checkpoint as saved (weights, spec, run, normalisation), tensors on the CPU."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"{path}: no such checkpoint; run its train stage first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as err:  # torch's words for a bad archive
        raise ModelError(f"{path}: not a readable checkpoint ({type(err).__name__}); rerun the stage that writes it") from None
    missing = [k for k in CHECKPOINT_KEYS if not (isinstance(checkpoint, dict) and k in checkpoint)]
    if missing:
        raise ModelError(
            f"{path}: not a vggrepro checkpoint (no {missing[0]!r}); torchvision's weights become one with "
            "`vggrepro import-weights`"
        )
    return checkpoint


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> VGG:
    """The network of a project checkpoint (a trained run's, or published weights imported by
    `vggrepro import-weights`) on `device`, in eval mode. `model.normalise` holds the per-channel
    (mean, std) on the 0..255 scale its inputs must be normalised with
    (vggrepro.data.normalise.to_input)."""
    checkpoint = read_checkpoint(path)
    model = VGG(ModelSpec(**checkpoint["spec"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.normalise = (checkpoint["normalise"]["mean"], checkpoint["normalise"]["std"])
    model.trained_on = checkpoint.get("compute")  # where the train stage computed (stages/train.py)
    return model.to(device).eval()
