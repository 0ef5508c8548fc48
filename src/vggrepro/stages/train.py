"""train_<run>: trains one run of the grid (Sec. 3.1), from random weights or from another run.

    vggrepro train --run D_256

Plain mini-batch SGD with momentum and weight decay at a constant learning rate; the
checkpoint carries the weights, the resolved config and the final metrics.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict

import torch
import torch.nn.functional as F
from tqdm import tqdm

from vggrepro import io, paths, workspace
from vggrepro.data import ingest, loader, train_batches
from vggrepro.data.normalise import channels, to_input
from vggrepro.data.transforms import TrainTransform
from vggrepro.model import VGG, ModelSpec, init_weights, load_checkpoint, transfer_from
from vggrepro.params import Params, Run


def run_seed(params: Params, run: str) -> int:
    # Stable across processes and engines (Python's hash() is salted per process).
    return params.raw["seed"] * 1_000_003 + zlib.crc32(run.encode())


def model_spec(params: Params, run: Run, num_classes: int) -> ModelSpec:
    m = params.raw["model"]
    return ModelSpec(
        config=run.config,
        num_classes=num_classes,
        width=m["width"],
        head_width=m["head_width"],
        crop=params.crop,
        dropout=m.get("dropout", 0.5),
    )


def init_scheme(params: Params, run: Run) -> str:
    """The random scheme at the root of the run's initialisation chain."""
    chain = params.init_chain(run.name)
    return params.runs[chain[-1]].init if chain else run.init


def normalisation(params: Params) -> tuple[list[float], list[float]]:
    """(mean, std) the inputs are normalised with: Sec. 2.1 subtracts the mean RGB only."""
    moments = io.read_json(paths.MEAN_RGB)
    if params.raw["model"].get("normalise", "mean") == "mean_std":
        return moments["mean_rgb"], moments["std_rgb"]
    return moments["mean_rgb"], [1.0, 1.0, 1.0]


def build_model(params: Params, run: Run, num_classes: int, generator: torch.Generator) -> tuple[VGG, list[str]]:
    model = VGG(model_spec(params, run, num_classes))
    init_weights(model, init_scheme(params, run), generator)
    copied: list[str] = []
    if run.init_run is not None:  # Sec. 3.1: start from a shallower or lower-scale net
        source = load_checkpoint(paths.model(run.init_run))
        copied = transfer_from(model, source["state_dict"], source["run"]["config"])
    return model, copied


def train_transform(params: Params, run: Run) -> TrainTransform:
    """Sec. 3.1's augmentation for this run, each transform a knob of params.yaml's `augment`."""
    aug = params.raw["augment"]
    return TrainTransform(
        scale=(params.pixels(run.scale[0]), params.pixels(run.scale[1])),
        crop=params.crop,
        flip=aug["flip"],
        colour_shift=aug["colour_shift"],
    )


def train_epoch(model, batches, optimizer, *, mean, std, desc: str) -> dict[str, float]:
    model.train()
    loss_sum, wrong, seen = 0.0, 0, 0
    # disable=None: a progress bar on a terminal, nothing in logs
    progress = tqdm(loader.one_line_errors(batches), total=len(batches), desc=desc, leave=False, disable=None)
    for images, shift, y in progress:
        x = to_input(images, mean=mean, std=std, shift=shift, memory_format=torch.channels_last)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(y)
        wrong += int((logits.argmax(1) != y).sum())
        seen += len(y)
    if loss_sum != loss_sum:
        raise FloatingPointError("training loss became NaN; lower the learning rate")
    return {"loss": loss_sum / seen, "train_top1_err": 100.0 * wrong / seen}


def run(params: Params, run_name: str) -> dict:
    run = params.runs[run_name]
    cfg = params.raw["train"]
    seed = run_seed(params, run_name)
    torch.manual_seed(seed)  # dropout draws from the global generator
    g = torch.Generator().manual_seed(seed)  # the initialisation's draws

    files = loader.FileList(ingest.read_manifest(paths.MANIFEST, "train"))
    num_classes = len(ingest.read_classes(paths.CLASSES))
    mean, std = normalisation(params)
    batches, sampler = train_batches.train_loader(
        files=files,
        root=workspace.data_root(params),
        transform=train_transform(params, run),
        seed=seed,
        batch_size=cfg["batch_size"],
        workers=loader.workers(params),
    )
    model, copied = build_model(params, run, num_classes, g)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=run.lr, momentum=cfg.get("momentum", 0.9), weight_decay=cfg.get("weight_decay", 5e-4)
    )
    log = []
    for epoch in range(1, run.epochs + 1):
        start = time.perf_counter()
        sampler.set_epoch(epoch)  # the epoch's order and draws: a function of (seed, epoch, index)
        metrics = train_epoch(
            model, batches, optimizer, mean=channels(mean), std=channels(std), desc=f"{run_name} epoch {epoch}"
        )
        seconds = time.perf_counter() - start
        line = {"epoch": epoch, "lr": run.lr, **metrics}
        log.append(line)
        # Speed goes to the console only: the log file is a pure function of the inputs.
        print(json.dumps({"run": run_name, **line, "images_per_s": round(len(files) / seconds)}), flush=True)
    io.write_text(paths.train_log(run_name), "".join(json.dumps(x) + "\n" for x in log))
    checkpoint = {
        "state_dict": model.state_dict(),
        "spec": asdict(model.spec),
        "run": asdict(run),
        "copied_from_init": copied,
        "normalise": {"mean": mean, "std": std},  # what evaluation must apply to its inputs
        "params": {k: params.raw[k] for k in ("seed", "model", "geometry", "train", "augment")},
        "metrics": {k: log[-1][k] for k in ("loss", "train_top1_err")},
        "provenance": io.provenance(),
    }
    io.write_torch(paths.model(run_name), checkpoint)
    return {"run": run_name, **checkpoint["metrics"], "copied_from_init": copied}
