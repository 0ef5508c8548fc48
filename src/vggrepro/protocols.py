"""The paper's test-time protocols (Sec. 3.2, Sec. 4.1-4.3, Table 5), batched.

Every protocol gives fp32 soft-max class posteriors (n_images, classes) on the CPU for uint8
3 x H x W images of any size:

- dense at scale Q (Sec. 3.2): the image isotropically rescaled so its smallest side is Q, the
  fully convolutional net applied to the whole image, the class score map sum-pooled (averaged
  over space), soft-max, and the posteriors of the image and its horizontal flip averaged;
- multi-scale (Sec. 4.2, Table 4): posteriors averaged over several Q;
- multi-crop at scale Q (Sec. 4.3): a regular 5 x 5 grid of crop x crop crops spanning the
  rescaled image, each and its flip (50 crops a scale, 150 over 3 scales), each crop a normal
  forward pass, posteriors averaged over crops and scales;
- multi-crop & dense (Table 5): the average of the two.

Several images (dense: those whose rescaled shapes are equal) or crops go through one forward
pass, on the compute's device in its autocast precision; the soft-max is taken in fp32.

    posteriors = evaluate(model, images, protocol="dense", qs=[256, 384, 512], mean=mean, std=std)
    check_posteriors(posteriors, run="E-jitter", protocol="dense")
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F

from vggrepro.data.images import rescale
from vggrepro.data.normalise import to_input
from vggrepro.model import DOWNSAMPLING, VGG
from vggrepro.runtime.device import CPU, Compute
from vggrepro.runtime.errors import Error

PROTOCOLS = ("dense", "multi-crop", "multi-crop & dense")  # Table 5's names
POOLS = ("scores", "posteriors")
GRID = 5  # Sec. 4.3: a 5 x 5 grid of crops per scale
# Dense: input pixels per forward pass (flips included): 32 images of 384 x 512 with their flips.
MAX_PIXELS = 32 * 2 * 384 * 512
BATCH = 64  # multi-crop: crops (flips included) per forward pass
CHUNK = 128  # evaluate: decoded images held at once, for batching
SUM_TOLERANCE = 1e-4


class BadPosteriors(Error):
    """Posteriors that are not finite or do not sum to 1; one line."""


def check_posteriors(p: torch.Tensor, *, run: str, protocol: str) -> None:
    """Raises BadPosteriors unless p (n, classes) is finite with rows summing to 1 (1e-4).

    A NaN posterior never ranks above the true class, so it would score as 0% error.
    """
    where = f"{run} ({protocol})"
    if p.ndim != 2:
        raise BadPosteriors(f"{where}: posteriors have shape {tuple(p.shape)}, expected (images, classes)")
    p = p.double()
    bad = ~torch.isfinite(p).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise BadPosteriors(f"{where}: {int(bad.sum())} of {len(p)} posterior rows are not finite (first: row {first})")
    off = (p.sum(dim=1) - 1).abs()
    if (off > SUM_TOLERANCE).any():
        first = int((off > SUM_TOLERANCE).nonzero()[0])
        raise BadPosteriors(
            f"{where}: {int((off > SUM_TOLERANCE).sum())} of {len(p)} posterior rows do not sum to 1 "
            f"within {SUM_TOLERANCE:g} (row {first} sums to {float(p[first].sum()):.6g})"
        )


def crop_grid(h: int, w: int, crop: int, n: int = GRID) -> list[tuple[int, int]]:
    """Top-left (y, x) of an n x n regular grid of crop x crop crops spanning an h x w image,
    row by row; the four corners are included. Where a side equals crop its positions repeat."""
    if h < crop or w < crop:
        raise ValueError(f"a {crop} x {crop} crop does not fit a {h} x {w} image")
    return [(y, x) for y in _spaced(h - crop, n) for x in _spaced(w - crop, n)]


def _spaced(span: int, n: int) -> list[int]:
    # linspace(0, span, n) rounded; n == 1 is the centre
    if n == 1:
        return [span // 2]
    return [round(i * span / (n - 1)) for i in range(n)]


def _inference(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Runs fn under inference_mode and returns an ordinary tensor (callers may edit it in place)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> torch.Tensor:
        with torch.inference_mode():
            out = fn(*args, **kwargs)
        return out.clone()

    return wrapper


def _check(model: VGG, qs: Sequence[int], crop: int) -> None:
    if model.training:
        raise ValueError("the model is in training mode (dropout on); call model.eval() before evaluating")
    if not qs or not all(isinstance(q, int) and q > 0 for q in qs):
        raise ValueError(f"test scales {list(qs)!r}: expected a non-empty list of positive integers")
    # Dense too: FC1 is a crop/32 x crop/32 conv, so a smallest side below crop leaves no score map.
    if min(qs) < crop:
        raise ValueError(f"test scale Q={min(qs)} is below the crop size {crop}; expected Q >= {crop}")


def _over_scales(at_q: Callable[[int], torch.Tensor], qs: Sequence[int]) -> torch.Tensor:
    # sum / len: exactly the single-scale posteriors when there is one Q
    return sum(at_q(q) for q in qs) / len(qs)


def _input(images: list[torch.Tensor], *, mean, std, flip: bool, compute: Compute) -> torch.Tensor:
    """The normalised batch on the device, followed by its horizontal flips when flip."""
    x = to_input(compute.to_device(torch.stack(images)), mean=mean, std=std, memory_format=torch.channels_last)
    return torch.cat([x, x.flip(-1)]) if flip else x


def dense_score_map(model: VGG, x: torch.Tensor) -> torch.Tensor:
    """The class score map (N, classes, h, w) of a normalised batch x of whole images, the
    pooling grid centred on them."""
    return model.score_map(_centred_on_the_pooling_grid(x))


def _pooling_grid(h: int, w: int) -> tuple[int, int]:
    """The sides rounded up to multiples of the net's stride."""
    return h + -h % DOWNSAMPLING, w + -w % DOWNSAMPLING


def _centred_on_the_pooling_grid(x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """x padded to its sides rounded up to multiples of the net's stride, split evenly between
    the sides, by repeating the edge pixels. Every Q of the paper is a multiple of 32, so its
    five 2 x 2 pools tile the whole image; at any other size they tile only the top-left
    32 x floor(side / 32) pixels, and the bottom and right strips reached the score map through
    the conv margins alone (a bottom strip counted 0.3 to 0.9 of the top one at the demo
    geometry's Q). Centred, top and bottom weigh alike. Zeros (the mean colour) would put bands
    the net never saw in training: on 1,000 images A_256's error at Q 73 went from 23% to 44%;
    with repeated edges it stays within noise of the uncentred 23%."""
    h, w = x.shape[-2:]
    gh, gw = grid or _pooling_grid(h, w)
    dh, dw = gh - h, gw - w
    if not (dh or dw):
        return x
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")


def _fold_flips(p: torch.Tensor, flip: bool) -> torch.Tensor:
    """Each image's posteriors averaged with its flip's (the flips are the second half)."""
    if not flip:
        return p
    k = len(p) // 2
    return (p[:k] + p[k:]) / 2


def _pooled(score_map: torch.Tensor, pool: str) -> torch.Tensor:
    """Posteriors (N, classes) in fp32 from a score map (N, classes, h, w)."""
    if pool == "scores":  # the paper's sum-pooled score map, then soft-max
        return torch.softmax(score_map.float().mean(dim=(2, 3)), dim=1)
    return torch.softmax(score_map.float(), dim=1).mean(dim=(2, 3))  # soft-max at every position


def _scatter(parts: list[tuple[list[int], torch.Tensor]], n: int) -> torch.Tensor:
    """(n, classes) on the CPU from (image indices, device posteriors) parts; one copy at the end
    so the device never waits on the host mid-chunk."""
    index = torch.tensor([i for idx, _ in parts for i in idx], dtype=torch.long)
    p = torch.cat([p for _, p in parts]).cpu()
    out = torch.zeros(n, p.shape[1], dtype=torch.float32)
    return out.index_add_(0, index, p)  # index_add on the CPU: a fixed summation order


@_inference
def dense_at_q(
    model: VGG,
    images: Sequence[torch.Tensor],
    q: int,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    flip: bool = True,
    pool: str = "scores",
    compute: Compute = CPU,
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """Dense posteriors (n, classes) at scale Q (Sec. 3.2); images of equal rescaled shape share
    forward passes of at most max_pixels input pixels (at least one image and its flip)."""
    if pool not in POOLS:
        raise ValueError(f"pool {pool!r} is not one of {', '.join(POOLS)}")
    _check(model, [q], model.spec.crop)
    with _no_autotuning():
        return _dense_at_q(model, [rescale(img, q) for img in images], mean=mean, std=std, flip=flip, pool=pool,
                           compute=compute, max_pixels=max_pixels)


@contextlib.contextmanager
def _no_autotuning():
    """cuDNN's autotuner off: whole images come in many shapes, and tuning each new one costs
    more than it saves (crops, all of one shape, keep the run's setting)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _dense_at_q(model: VGG, scaled: list[torch.Tensor], *, mean, std, flip, pool, compute, max_pixels) -> torch.Tensor:
    # Images whose sides round up to the same multiples of 32 share forward passes, each padded
    # (centred) exactly as it would be alone: at the demo geometry no two embedded images have
    # one shape, and one-image passes cost several times more a pixel than batched crops.
    by_grid: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, img in enumerate(scaled):
        by_grid[_pooling_grid(*img.shape[-2:])].append(i)
    parts = []
    for grid, members in by_grid.items():
        per_pass = max(1, max_pixels // (grid[0] * grid[1] * (2 if flip else 1)))
        for start in range(0, len(members), per_pass):
            idx = members[start : start + per_pass]
            x = torch.cat([
                _centred_on_the_pooling_grid(to_input(compute.to_device(scaled[i][None]), mean=mean, std=std), grid)
                for i in idx
            ]).contiguous(memory_format=torch.channels_last)
            if flip:
                x = torch.cat([x, x.flip(-1)])
            with compute.autocast():
                score_map = model.score_map(x)
            parts.append((idx, _fold_flips(_pooled(score_map, pool), flip)))
    return _scatter(parts, len(scaled)) if scaled else torch.zeros(0, model.spec.num_classes)


def _crops(images: Sequence[torch.Tensor], q: int, crop: int, n: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(image index, crop view) over the grid of each image rescaled to Q; one rescaled image
    is made at a time, so memory stays bounded by the batch."""
    for i, img in enumerate(images):
        scaled = rescale(img, q)
        for y, x in crop_grid(scaled.shape[1], scaled.shape[2], crop, n):
            yield i, scaled[:, y : y + crop, x : x + crop]


@_inference
def multi_crop_at_q(
    model: VGG,
    images: Sequence[torch.Tensor],
    q: int,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    flip: bool = True,
    compute: Compute = CPU,
    batch: int = BATCH,
    n: int = GRID,
) -> torch.Tensor:
    """Multi-crop posteriors (n_images, classes) at scale Q (Sec. 4.3): n x n crops of the
    model's crop size and their flips, at most `batch` crops (flips included) a forward pass,
    across images."""
    crop = model.spec.crop
    _check(model, [q], crop)
    per_pass = max(1, batch // (2 if flip else 1))
    crops = _crops(images, q, crop, n)
    parts = []
    while group := list(itertools.islice(crops, per_pass)):
        idx = [i for i, _ in group]
        x = _input([c for _, c in group], mean=mean, std=std, flip=flip, compute=compute)
        with compute.autocast():
            scores = model(x)  # the ordinary crop classifier: a 1 x 1 score map
        parts.append((idx, _fold_flips(torch.softmax(scores.float(), dim=1), flip)))
    if not len(images):
        return torch.zeros(0, model.spec.num_classes)
    return _scatter(parts, len(images)) / (n * n)


def dense_posteriors(model: VGG, images: Sequence[torch.Tensor], *, qs: Sequence[int], **options) -> torch.Tensor:
    """Dense posteriors averaged over the scales qs (Sec. 3.2, 4.2); options as dense_at_q."""
    _check(model, qs, model.spec.crop)
    return _over_scales(lambda q: dense_at_q(model, images, q, **options), qs)


def multi_crop_posteriors(model: VGG, images: Sequence[torch.Tensor], *, qs: Sequence[int], **options) -> torch.Tensor:
    """Multi-crop posteriors averaged over the scales qs (Sec. 4.3); options as multi_crop_at_q."""
    _check(model, qs, model.spec.crop)
    return _over_scales(lambda q: multi_crop_at_q(model, images, q, **options), qs)


_DENSE_ONLY = ("pool", "max_pixels")
_CROP_ONLY = ("batch", "n")


def posteriors(
    model: VGG, images: Sequence[torch.Tensor], *, protocol: str, qs: Sequence[int], **options
) -> torch.Tensor:
    """Posteriors (n, classes) of a list of images by one of PROTOCOLS.

    options: mean, std (required), flip, compute; dense's pool and max_pixels; multi-crop's
    batch and n. Each protocol takes the options that concern it.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    dense_opts = {k: v for k, v in options.items() if k not in _CROP_ONLY}
    crop_opts = {k: v for k, v in options.items() if k not in _DENSE_ONLY}
    if protocol == "dense":
        return dense_posteriors(model, images, qs=qs, **dense_opts)
    if protocol == "multi-crop":
        return multi_crop_posteriors(model, images, qs=qs, **crop_opts)
    # Table 5: the soft-max outputs of the two averaged
    dense = dense_posteriors(model, images, qs=qs, **dense_opts)
    return (dense + multi_crop_posteriors(model, images, qs=qs, **crop_opts)) / 2


def evaluate(
    model: VGG,
    images: Iterable[torch.Tensor],
    *,
    protocol: str = "dense",
    qs: Sequence[int],
    chunk: int = CHUNK,
    **options,
) -> torch.Tensor:
    """Posteriors (n, classes), fp32 on the CPU, in input order, of a stream of decoded uint8
    images, holding at most `chunk` images at a time (ImageNet val is 50k images).

    options as posteriors(): mean, std, flip, compute, pool, max_pixels, batch, n.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    _check(model, qs, model.spec.crop)  # before the first image is decoded
    stream = iter(images)
    results = [torch.zeros(0, model.spec.num_classes)]
    while block := list(itertools.islice(stream, max(1, chunk))):
        results.append(posteriors(model, block, protocol=protocol, qs=qs, **options))
    return torch.cat(results)
