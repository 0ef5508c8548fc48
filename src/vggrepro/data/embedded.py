"""The embedded dataset: a deterministic image-classification set in the ILSVRC-2012 layout.

Each class is a shape with a surface pattern (10 shapes x 5 patterns) and a typical hue.
Every image draws its size, aspect ratio, object scale, position and colours at random over a
cluttered background, so the net must find the object at different scales, as on ImageNet. The files
are written exactly as ILSVRC-2012 is distributed, so `scan.read_dataset` reads them with the
very code that reads the real dataset:

    train/<wnid>/<wnid>_<k>.JPEG
    val/ILSVRC2012_val_<8 digits>.JPEG  + LOC_val_solution.csv
    LOC_synset_mapping.txt
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.io import encode_jpeg

SHAPES = ("disk", "square", "triangle", "diamond", "cross", "ring", "ellipse", "saltire", "half-disk", "frame")
PATTERNS = ("plain", "banded", "striped", "checked", "spotted")
MAX_CLASSES = len(SHAPES) * len(PATTERNS)
WNID_BASE = 90000000  # real ILSVRC wnids are n0xxxxxxx/n1xxxxxxx: ours cannot collide
JPEG_QUALITY = 90


@dataclass(frozen=True)
class EmbeddedSpec:
    """params.yaml's data.embedded (its defaults are the schema's) and the seed."""

    classes: int
    train_per_class: int
    val_per_class: int
    min_side: int  # shortest side of an image, pixels
    max_side: int
    seed: int


def wnid(label: int) -> str:
    return f"n{WNID_BASE + label:08d}"


def class_name(label: int) -> str:
    return f"{PATTERNS[label // len(SHAPES)]} {SHAPES[label % len(SHAPES)]}"


def _shape_mask(shape: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-mask of a shape in object coordinates u, v in [-1, 1]."""
    au, av = u.abs(), v.abs()
    r = torch.sqrt(u * u + v * v)
    if shape == "disk":
        return r <= 1
    if shape == "square":
        return (au <= 0.85) & (av <= 0.85)
    if shape == "triangle":
        return (v <= 0.85) & (v >= 2 * au - 1)
    if shape == "diamond":
        return au + av <= 1
    if shape == "cross":
        return ((au <= 0.3) & (av <= 1)) | ((av <= 0.3) & (au <= 1))
    if shape == "ring":
        return (r <= 1) & (r >= 0.55)
    if shape == "ellipse":
        return (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1
    if shape == "saltire":
        return ((u - v).abs() <= 0.4) & ((u + v).abs() <= 0.4) | (((u - v).abs() <= 0.35) | ((u + v).abs() <= 0.35)) & (r <= 1.1)
    if shape == "half-disk":
        return (r <= 1) & (v >= -0.1)
    if shape == "frame":
        return (au <= 0.9) & (av <= 0.9) & ((au >= 0.55) | (av >= 0.55))
    raise ValueError(shape)


def _pattern(pattern: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """1 where the pattern's second colour shows, 0 elsewhere."""
    if pattern == "plain":
        return torch.zeros_like(u)
    if pattern == "banded":
        return (torch.sin(v * 2 * math.pi) > 0).float()
    if pattern == "striped":
        return (torch.sin(u * 2 * math.pi) > 0).float()
    if pattern == "checked":
        return ((torch.sin(u * 2 * math.pi) > 0) ^ (torch.sin(v * 2 * math.pi) > 0)).float()
    if pattern == "spotted":
        return ((torch.remainder(u * 2, 1) - 0.5) ** 2 + (torch.remainder(v * 2, 1) - 0.5) ** 2 < 0.09).float()
    raise ValueError(pattern)


def _rand(g: torch.Generator, lo: float = 0.0, hi: float = 1.0, n: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _object_colour(label: int, g: torch.Generator) -> torch.Tensor:
    """A colour near the class's own hue, of random saturation and brightness.

    Like ImageNet's classes, each class has typical colours that vary from image to image;
    the hues of neighbouring labels are far apart (golden-ratio spacing), and many classes
    share a hue, so shape and pattern still have to be learnt.
    """
    hue = (label * 0.618034 + float(_rand(g, -0.04, 0.04))) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, float(_rand(g, 0.5, 1.0)), float(_rand(g, 0.5, 1.0)))
    return torch.tensor(rgb).view(3, 1, 1) * 255


def render(label: int, g: torch.Generator, spec: EmbeddedSpec) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """One image (uint8, 3 x H x W) of class `label` and its object box (x1, y1, x2, y2)."""
    short = int(torch.randint(spec.min_side, spec.max_side + 1, (1,), generator=g))
    aspect = float(_rand(g, 1.0, 1.5))  # long side / short side; orientation drawn below
    long_ = round(short * aspect)
    h, w = (short, long_) if bool(torch.rand(1, generator=g) < 0.5) else (long_, short)
    ys = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
    xs = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)

    # Clutter: a colour gradient, then distractor blobs of random colour and size.
    c0, c1 = _rand(g, 0, 255, 3).view(3, 1, 1), _rand(g, 0, 255, 3).view(3, 1, 1)
    angle = float(_rand(g, 0, 2 * math.pi))
    t = ((xs * math.cos(angle) + ys * math.sin(angle)) / max(h, w) + 1) / 2
    img = c0 * (1 - t) + c1 * t
    for _ in range(int(torch.randint(2, 6, (1,), generator=g))):
        bx, by = float(_rand(g, 0, w)), float(_rand(g, 0, h))
        br = float(_rand(g, 0.03, 0.10)) * short
        blob = ((xs - bx) / br) ** 2 + ((ys - by) / (br * float(_rand(g, 0.5, 2)))) ** 2 <= 1
        img = torch.where(blob, _rand(g, 0, 255, 3).view(3, 1, 1), img)

    # The object: scale 40-90% of the short side, anywhere it fits, a small tilt.
    size = float(_rand(g, 0.4, 0.9)) * short
    half = size / 2
    cx, cy = float(_rand(g, half, w - half)), float(_rand(g, half, h - half))
    tilt = float(_rand(g, -0.25, 0.25))
    du, dv = (xs - cx) / half, (ys - cy) / half
    u = du * math.cos(tilt) + dv * math.sin(tilt)
    v = -du * math.sin(tilt) + dv * math.cos(tilt)
    shape, pattern = SHAPES[label % len(SHAPES)], PATTERNS[label // len(SHAPES)]
    inside = _shape_mask(shape, u, v)
    colour = _object_colour(label, g)
    second = (colour + 128) % 256  # a contrasting colour for the pattern
    surface = torch.where(_pattern(pattern, u, v).bool(), second, colour)
    img = torch.where(inside, surface, img)
    img = img + 6 * torch.randn(3, h, w, generator=g)  # sensor noise
    box = (max(0, round(cx - half)), max(0, round(cy - half)), min(w, round(cx + half)), min(h, round(cy + half)))
    return img.round().clamp(0, 255).to(torch.uint8), box


def _image_seed(spec: EmbeddedSpec, split: str, label: int, k: int) -> int:
    # Each image has its own stream, so the set is the same however the work is split.
    return ((spec.seed * 2 + (split == "val")) * MAX_CLASSES + label) * 1_000_003 + k


def _write(path: Path, img: torch.Tensor) -> None:
    # No temporary file per image: the prepare stage generates the whole tree in a temporary
    # folder and renames it into place, so a killed run leaves no partial dataset.
    path.write_bytes(encode_jpeg(img, quality=JPEG_QUALITY).numpy().tobytes())


def _val_order(spec: EmbeddedSpec) -> list[tuple[int, int]]:
    """(label, k) of each val image in file order: shuffled, as ILSVRC's val set is."""
    items = [(c, k) for c in range(spec.classes) for k in range(spec.val_per_class)]
    perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(spec.seed))
    return [items[i] for i in perm.tolist()]


def generate(spec: EmbeddedSpec, root: Path) -> dict[str, int]:
    """Writes the whole dataset under root; returns counts. Deterministic in spec."""
    if not 1 <= spec.classes <= MAX_CLASSES:
        raise ValueError(f"embedded classes {spec.classes} is not in 1..{MAX_CLASSES}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text(
        "".join(f"{wnid(c)} {class_name(c)}\n" for c in range(spec.classes))
    )
    g = torch.Generator()
    for c in range(spec.classes):
        folder = root / "train" / wnid(c)
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(spec.train_per_class):
            g.manual_seed(_image_seed(spec, "train", c, k))
            img, _ = render(c, g, spec)
            _write(folder / f"{wnid(c)}_{k}.JPEG", img)
    (root / "val").mkdir(exist_ok=True)
    rows = ["ImageId,PredictionString"]
    for i, (c, k) in enumerate(_val_order(spec), start=1):
        g.manual_seed(_image_seed(spec, "val", c, k))
        img, box = render(c, g, spec)
        image_id = f"ILSVRC2012_val_{i:08d}"
        _write(root / "val" / f"{image_id}.JPEG", img)
        rows.append(f"{image_id},{wnid(c)} {' '.join(map(str, box))}")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return {"classes": spec.classes, "train": spec.classes * spec.train_per_class, "val": len(rows) - 1}
