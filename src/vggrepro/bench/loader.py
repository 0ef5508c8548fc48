"""The training input pipeline against the training step, and against a plain PIL loop.

    vggrepro bench loader [--repeat 3]

Run it in a workspace where prepare and mean_rgb have run. On the first images of the
training split, at params.yaml's geometry and model width, with the S of the grid's first
fixed-scale run and its jittered range, it measures in one run (images/s, medians):

- loader: vggrepro's DataLoader (decode, rescale, crop, flip, colour shift) with 0, 1 and
  data.workers workers, warm (its workers already started), and its first epoch (with the
  start of the workers);
- pil: a plain single-process loop doing the same per image with PIL (open, RGB, resize,
  crop, flip, to a tensor), the baseline of the ratio;
- step: one SGD step of configs A and E on batches already in memory (train.batch_size);
- train: the step fed by the loader, as the train stage runs it.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from vggrepro import paths
from vggrepro.data import ingest, loader
from vggrepro.data.normalise import channels, to_input
from vggrepro.data.train_batches import train_loader
from vggrepro.data.transforms import TrainTransform
from vggrepro.model import VGG, ModelSpec
from vggrepro.params import load_params
from vggrepro.training import sgd

IMAGES = 2000
STEPS = 30


def _loader_rate(files, root, transform, *, batch_size: int, workers: int, repeat: int) -> tuple[float, float]:
    """(warm images/s, first-epoch images/s including the workers' start)."""
    start = time.perf_counter()
    batches, sampler = train_loader(
        files=files, root=root, transform=transform, seed=0, batch_size=batch_size, workers=workers
    )
    rates = []
    for epoch in range(1, repeat + 2):
        sampler.set_epoch(epoch)
        images = sum(len(labels) for _, _, labels in batches)  # the short last batch is dropped
        now = time.perf_counter()
        rates.append(images / (now - start))
        start = now
    return statistics.median(rates[1:]), rates[0]


def _pil_rate(root, files, *, scale: tuple[int, int], crop: int) -> float:
    from PIL import Image

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(len(files)):
        with Image.open(root / files.path(i)) as im:
            im = im.convert("RGB")
            s = int(rng.integers(scale[0], scale[1] + 1))
            w, h = im.size
            size = (s, round(h * s / w)) if w < h else (round(w * s / h), s)
            im = im.resize(size, Image.BILINEAR)
            top, left = int(rng.integers(0, size[1] - crop + 1)), int(rng.integers(0, size[0] - crop + 1))
            im = im.crop((left, top, left + crop, top + crop))
            if rng.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    return len(files) / (time.perf_counter() - start)


def _model(params, config: str, classes: int):
    m = params.raw["model"]
    model = VGG(ModelSpec(config, classes, m["width"], m["head_width"], params.crop, m["dropout"]))
    model = model.to(memory_format=torch.channels_last).train()
    # lr 0: the same work per step, and weights that never drift into denormal-slow values
    # (a net trained on one batch over and over soon would).
    return model, sgd(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)


def _step(model, optimizer, x, y) -> None:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _step_rate(model, optimizer, *, batch_size: int, crop: int, classes: int) -> float:
    x = torch.randn(batch_size, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch_size,))
    for _ in range(5):
        _step(model, optimizer, x, y)
    start = time.perf_counter()
    for _ in range(STEPS):
        _step(model, optimizer, x, y)
    return STEPS * batch_size / (time.perf_counter() - start)


def _train_rate(model, optimizer, batches, sampler, *, files: int) -> float:
    mean = channels([0.0, 0.0, 0.0])
    std = channels([1.0, 1.0, 1.0])
    sampler.set_epoch(1)
    for images, shift, y in batches:  # the workers' start and a warm-up
        _step(model, optimizer, to_input(images, mean=mean, std=std, shift=shift, memory_format=torch.channels_last), y)
    sampler.set_epoch(2)
    start, seen = time.perf_counter(), 0
    for images, shift, y in batches:
        _step(model, optimizer, to_input(images, mean=mean, std=std, shift=shift, memory_format=torch.channels_last), y)
        seen += len(y)
    return seen / (time.perf_counter() - start)


def _input_rates(files, root, *, scale, crop: int, batch_size: int, worker_counts, repeat: int) -> dict:
    transform = TrainTransform(scale=scale, crop=crop, flip=True, colour_shift=0.1)
    pil = statistics.median(_pil_rate(root, files, scale=scale, crop=crop) for _ in range(repeat))
    row = {"pil": round(pil)}
    print(f"  pil loop, one process: {pil:.0f}")
    for workers in worker_counts:
        warm, first = _loader_rate(files, root, transform, batch_size=batch_size, workers=workers, repeat=repeat)
        row[f"loader_{workers}w"], row[f"loader_{workers}w_first_epoch"] = round(warm), round(first)
        print(f"  loader, {workers} workers: {warm:.0f}, x{warm / pil:.2f} the pil loop ({first:.0f} first epoch)")
    return row


def _training_rates(params, files, root, *, config: str, scale, classes: int, worker_counts) -> dict:
    batch_size, crop = params.raw["train"]["batch_size"], params.crop
    model, optimizer = _model(params, config, classes)
    step = _step_rate(model, optimizer, batch_size=batch_size, crop=crop, classes=classes)
    row = {"step": round(step)}
    print(f"  config {config}: the step alone {step:.0f}")
    for workers in worker_counts:
        transform = TrainTransform(scale=scale, crop=crop, flip=True, colour_shift=0.1)
        batches, sampler = train_loader(
            files=files, root=root, transform=transform, seed=0, batch_size=batch_size, workers=workers
        )
        row[f"train_{workers}w"] = round(_train_rate(model, optimizer, batches, sampler, files=len(files)))
        print(f"  config {config}: the step fed by the loader, {workers} workers: {row[f'train_{workers}w']}")
    return row


def main(repeat: int = 3, params_file: str = "params.yaml") -> dict:
    params = load_params(params_file)
    torch.set_num_threads(params.raw["threads"])
    files = loader.FileList(ingest.read_manifest(paths.MANIFEST, "train")[:IMAGES])
    root, classes = params.data_root, len(ingest.read_classes(paths.CLASSES))
    batch_size, crop = params.raw["train"]["batch_size"], params.crop
    worker_counts = sorted({0, 1, loader.workers(params)})
    runs = list(params.runs.values())
    fixed = next((r for r in runs if not r.jittered), runs[0])
    jittered = next((r for r in runs if r.jittered), fixed)
    pixels = {r.name: (params.pixels(r.scale[0]), params.pixels(r.scale[1])) for r in (fixed, jittered)}
    print(
        f"{len(files)} training images, crop {crop}, batch {batch_size}, {params.raw['threads']} threads; "
        f"images/s, medians of {repeat}"
    )
    result: dict = {"images": len(files), "batch_size": batch_size, "crop": crop, "threads": params.raw["threads"]}
    for run in (fixed, jittered):
        print(f"S={run.scale_label} ({pixels[run.name][0]}..{pixels[run.name][1]} px):")
        result[f"S={run.scale_label}"] = _input_rates(
            files, root, scale=pixels[run.name], crop=crop, batch_size=batch_size,
            worker_counts=worker_counts, repeat=repeat,
        )
    print(f"training at S={fixed.scale_label}:")
    for config in ("A", "E"):
        result[f"config {config}"] = _training_rates(
            params, files, root, config=config, scale=pixels[fixed.name], classes=classes, worker_counts=worker_counts
        )
    return result
