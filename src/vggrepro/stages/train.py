"""train_<run>: trains one run of the grid (Sec. 3.1), from random weights or from another run.

    vggrepro train --run D_256

Sec. 3.1's recipe: mini-batch SGD with momentum and weight decay, a global batch split into
micro-batches, the learning rate divided by 10 when the held-out error plateaus (at most
train.lr_decreases times, then stop, or at max_epochs) or after the epochs of the run's
lr_steps, on train.device in train.precision.
A resume point every train.checkpoint_every steps and every epoch (vggrepro.runtime.resume) lets a
killed or stopped stage go on where it was; the checkpoint carries the weights, the resolved
config and the final metrics.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import torch

from vggrepro import paths, provenance, training
from vggrepro import schedule as schedules
from vggrepro.data import holdout, ingest, loader, train_batches
from vggrepro.data.normalise import channels
from vggrepro.data.transforms import TrainTransform
from vggrepro.model import VGG, ModelSpec, init_weights, read_checkpoint, transfer_from
from vggrepro.params import SPEED_ONLY_KEYS, Params, ParamsError, Run, split_batch
from vggrepro.runtime import device, distributed, io, lease, live, resume
from vggrepro.runtime.signals import Stopped, StopSignals
from vggrepro.stages import StageRun


def run_seed(params: Params, run: str) -> int:
    """The run's training seed: of its seed in a sweep (else params.yaml's seed) and its name as
    written: with `seed: 0`, a sweep's `E_jit_seed0` trains bit for bit as `E_jit` without one.
    Stable across processes and engines (Python's hash() is salted per process)."""
    r = params.runs[run]
    return (params.raw["seed"] if r.seed is None else r.seed) * 1_000_003 + zlib.crc32(r.base.encode())


def model_spec(params: Params, run: Run, num_classes: int) -> ModelSpec:
    m = params.raw["model"]
    return ModelSpec(
        config=run.config,
        num_classes=num_classes,
        width=m["width"],
        head_width=m["head_width"],
        crop=params.crop,
        dropout=m["dropout"],
    )


def use_by_hand(params: Params, run: Run) -> dict:
    """What `vggrepro predict` needs beside the weights: the class names in label order and
    the run's single test scale Q in pixels (Sec. 4.1: S, or the middle of a jittered range)."""
    return {
        "classes": [list(c) for c in ingest.read_class_names(paths.CLASSES)],
        "test_q_px": params.pixels(run.single_scale_q),
    }


def _import(params: Params, run_name: str, run: Run) -> dict:
    """A run that is a checkpoint from outside the grid (init: import): checked against the
    run and the dataset, its classes put in the dataset's label order, written as the run's model
    with an empty training log."""
    source = read_checkpoint(run.weights)
    spec = source["spec"]
    where = f"runs.{run_name}.weights: {run.weights}"
    if spec["config"] != run.config:
        raise ParamsError(f"{where} holds configuration {spec['config']}; the run says {run.config}")
    if spec["crop"] != params.crop:
        raise ParamsError(f"{where} was trained at crop {spec['crop']}; geometry.crop is {params.crop} (expected equal)")
    classes = ingest.read_classes(paths.CLASSES)
    state = dict(source["state_dict"])
    if spec["num_classes"] != len(classes):
        raise ParamsError(f"{where} scores {spec['num_classes']} classes; the dataset has {len(classes)}")
    if source.get("source", {}).get("weights") == "torchvision":
        # torchvision's ImageNet weights index the classes in sorted-wnid order (ImageFolder's);
        # our labels follow the dataset's class list: move FC8's rows to our order (exact).
        order = torch.tensor([sorted(classes).index(w) for w in classes])
        for key in ("head.fc8.weight", "head.fc8.bias"):
            state[key] = state[key][order]
    checkpoint = {
        # "source" moves into imported_from: the classes are in the dataset's order now, so a
        # run importing this file must not reorder them again
        **{k: v for k, v in source.items() if k not in ("state_dict", "run", "source")},
        "state_dict": state,
        "run": asdict(run),
        "imported_from": {"path": run.weights, **source.get("source", {})},
        "epochs": 0,
        **use_by_hand(params, run),
    }
    io.write_text(paths.train_log(run_name), "[]\n")
    io.write_torch(paths.model(run_name), checkpoint)
    return {"run": run_name, "imported": run.weights, "epochs": 0}


def normalisation(params: Params) -> tuple[list[float], list[float]]:
    """(mean, std) the inputs are normalised with: Sec. 2.1 subtracts the mean RGB only."""
    moments = io.read_json(paths.MEAN_RGB)
    if params.raw["model"]["normalise"] == "mean_std":
        return moments["mean_rgb"], moments["std_rgb"]
    return moments["mean_rgb"], [1.0, 1.0, 1.0]


def build_model(params: Params, run: Run, num_classes: int, generator: torch.Generator) -> tuple[VGG, list[str]]:
    model = VGG(model_spec(params, run, num_classes))
    init_weights(model, params.init_scheme(run.name), generator, std=params.raw["train"]["init_std"])
    copied: list[str] = []
    if run.init_run is not None:  # Sec. 3.1: start from a shallower or lower-scale net
        source = read_checkpoint(paths.model(run.init_run))
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


def holdout_batches(params: Params, run: Run, files: loader.FileList, *, batch_size: int, workers: int, pin: bool):
    """Centre crops of the held-out images at the run's single-scale Q (Sec. 3.2's Q)."""
    side = params.pixels(run.single_scale_q)
    dataset = loader.CenterCrops(files, params.data_root, side, params.crop)
    return loader.make_loader(dataset, workers=workers, batch_size=batch_size, pin_memory=pin)


def stopped(run_name: str, asked: training.StopPoll, position: training.Position) -> Stopped:
    return Stopped(
        f"{run_name}: stopped by {asked.name()} at the end of epoch {position.epoch - (position.step == 0)}; "
        "progress saved, rerun the stage to continue", asked.signum,
    )


def run(params: Params, run_name: str, *, stage: StageRun) -> dict:
    run = params.runs[run_name]
    if run.imported:
        return _import(params, run_name, run)
    cfg = params.raw["train"]
    seed = run_seed(params, run_name)
    world = distributed.from_env()
    nproc = cfg["nproc"]
    leases = Path(paths.LEASES_DIR)
    if nproc > 1 and world.size == 1:  # the stage command itself: lease nproc GPUs, run torchrun
        with lease.for_stage(cfg["device"], holder=stage.name, folder=leases, n=nproc):
            status = distributed.launch(distributed.torchrun_argv(nproc, params.path, run_name))
        if status:
            raise SystemExit(status)  # its processes said why, in one line
        return {"run": run_name, "processes": nproc}
    with lease.for_stage(cfg["device"], holder=stage.name, folder=leases):
        compute = device.compute(cfg, local_rank=world.local_rank)
        distributed.start(world, compute.device)
        try:
            # precision auto is resolved per GPU: on mixed GPUs every process takes process 0's
            # choice (one without bf16 arithmetic then emulates it, slower, not differently).
            compute = replace(compute, precision=distributed.from_main(world, compute.precision))
            return _train(params, run_name, run, cfg, seed, world, compute, stage)
        finally:
            distributed.stop(world)


def _train(params: Params, run_name: str, run: Run, cfg: dict, seed: int, world, compute, stage: StageRun) -> dict:
    # Dropout draws from the global generator (the device's, on a GPU): its own stream per process.
    torch.manual_seed(seed + world.rank)
    g = torch.Generator().manual_seed(seed)  # the initialisation's draws, the same on every process

    fit, held = holdout.split(
        ingest.read_manifest(paths.MANIFEST, "train"), fraction=cfg["holdout"], seed=params.raw["seed"]
    )
    files = loader.FileList(fit)
    held_files = loader.FileList(held)
    del fit, held  # flat arrays from here on: no Python object per image in the forked workers
    num_classes = len(ingest.read_classes(paths.CLASSES))
    mean, std = normalisation(params)
    device_batch, accumulation = split_batch(cfg, world=world.size)
    workers = loader.workers(params)
    batches, sampler = train_batches.train_loader(
        files=files,
        root=params.data_root,
        transform=train_transform(params, run),
        seed=seed,
        batch_size=cfg["batch_size"],
        workers=workers,
        rank=world.rank,
        world=world.size,
        pin_memory=compute.is_cuda,
    )
    if sampler.steps == 0:
        raise ParamsError(f"train.batch_size {cfg['batch_size']} is more than the {len(files)} training images of {run_name}")
    held_out = holdout_batches(params, run, held_files, batch_size=device_batch, workers=workers, pin=compute.is_cuda)
    model, copied = build_model(params, run, num_classes, g)
    model = model.to(compute.device, memory_format=torch.channels_last)
    optimizer = training.sgd(
        model.parameters(), lr=run.lr, momentum=cfg["momentum"], weight_decay=cfg["weight_decay"]
    )
    schedule = schedules.for_run(optimizer, cfg, run.lr_steps)
    # The processes' count is part of the key: each keeps its own sums and generators. So is the
    # precision computed in (auto resolves per machine): a run requeued from a bf16 GPU onto an
    # fp32-only one starts over rather than finish in another precision than its record says.
    point = stage.resume_point(f"processes={world.size}", f"precision={compute.precision}")
    position, sums = training.Position(), training.EpochSums.zeros(compute.device)
    here = (f"{world.size} x " if world.size > 1 else "") + compute.describe()
    computed_on = [here]  # where the run computed, in order: a resume on another machine adds one
    state = point.load() if world.main else None
    state = distributed.from_main(world, state)  # process 0's reading, everywhere
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        resume.set_rng_state(state["rng"][world.rank], compute.device)
        position = training.Position(**state["position"])
        sums = training.EpochSums.from_state(state["sums"][world.rank], compute.device)
        computed_on = list(dict.fromkeys([*state["computed_on"], here]))
        if world.main:
            print(f"{run_name}: resuming at epoch {position.epoch}, step {position.step} ({point.path})", flush=True)
            _write_log(run_name, position.history)  # the epochs done so far, as the killed run had them
    # the points so far, likewise
    curves = live.LiveLog(paths.live_dir(run_name), position.points, total_steps=run.max_epochs * sampler.steps) if world.main else None
    loop = training.Loop(
        distributed.wrap(model, world, compute.device), optimizer, compute,
        channels(mean).to(compute.device), channels(std).to(compute.device),
        accumulation=accumulation, global_batch=cfg["batch_size"],
    )

    def save() -> None:
        """A resume point; a collective under torchrun (every process calls it at the same step)."""
        rngs = distributed.gather(world, resume.rng_state(compute.device))
        all_sums = distributed.gather(world, sums.state())
        if world.main:
            point.save({
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "rng": rngs,
                "position": asdict(position),
                "sums": all_sums,
                "computed_on": computed_on,
            })

    def global_step() -> int:
        return (position.epoch - 1) * sampler.steps + position.step

    def step_point() -> None:
        """The epoch's running training loss and error so far (a collective under torchrun).
        None with a loss that is not finite: the run stops at its next check, which names the step."""
        totals = distributed.gather(world, (float(sums.loss), int(sums.wrong), sums.seen))
        seen, loss = sum(t[2] for t in totals), sum(t[0] for t in totals)
        if world.main and math.isfinite(loss):
            curves.add({"step": global_step(), "epoch": position.epoch, "train/loss": loss / seen,
                        "train/top1_err": 100.0 * sum(t[1] for t in totals) / seen})

    checkpoint_every = cfg["checkpoint_every"]
    with StopSignals() as signals:
        asked = training.StopPoll(signals, world, compute.device)
        while not position.stopped and position.epoch <= run.max_epochs:
            start, first_step = time.perf_counter(), position.step
            sampler.set_epoch(position.epoch, position.step)  # the order and draws: functions of (seed, epoch, index)
            last = position.history[-1] if position.history else None
            show = {"lr": f"{schedule.lr:.0e}", **({"loss": f"{last['loss']:.3f}"} if last else {})}
            training.train_epoch(
                loop, batches, run=run_name, position=position, sums=sums, steps_per_epoch=sampler.steps,
                checkpoint_every=checkpoint_every, save=save, asked=asked, show=show if world.main else None,
                point=step_point,
            )
            try:
                # Process 0 alone scores the held-out slice and every process takes its number:
                # the schedule's decisions (lr, stop) must be the same everywhere.
                held = training.holdout(model, held_out, compute, mean=loop.mean, std=loop.std,
                                        beat={"run": run_name, "epoch": position.epoch}) if world.main else None
                held_err, held_loss = distributed.from_main(world, held)
            except Exception:  # the loader's workers killed with the stage (scancel): keep the epoch
                if signals.received is None:
                    raise
                if world.size == 1:
                    save()
                raise stopped(run_name, asked, position) from None
            totals = distributed.gather(world, (float(sums.loss), int(sums.wrong), sums.seen))
            seen = sum(t[2] for t in totals)
            line = {
                "epoch": position.epoch,
                "lr": schedule.lr,
                "loss": sum(t[0] for t in totals) / seen,
                "train_top1_err": 100.0 * sum(t[1] for t in totals) / seen,
                "holdout_top1_err": held_err,
                "holdout_loss": held_loss,
            }
            position.history.append(line)
            position.stopped = schedule.step(held_loss if cfg["plateau_on"] == "loss" else held_err)
            position.epoch, position.step = position.epoch + 1, 0
            sums = training.EpochSums.zeros(compute.device)
            save()  # after the epoch's sums are reset and the schedule has stepped
            if world.main:  # the log grows while the run goes on (dvc plots show); the same bytes on a resume
                _write_log(run_name, position.history)
            if asked.now(every_step=True):
                raise stopped(run_name, asked, position)
            seconds = time.perf_counter() - start
            # Speed goes to the console only: the log file is a pure function of the inputs.
            if world.main:
                print(json.dumps({"run": run_name, **line, "seconds": round(seconds, 1),
                                  "images_per_s": round((sampler.steps - first_step) * cfg["batch_size"] / seconds)}), flush=True)
    if not world.main:
        return {"run": run_name, "rank": world.rank}
    curves.finish()
    return _write_outputs(params, run_name, run, model, position.history, copied, mean, std, computed_on, point)


def _write_log(run_name: str, log: list[dict]) -> None:
    io.write_text(paths.train_log(run_name), "[\n" + ",\n".join(json.dumps(x) for x in log) + "\n]\n" if log else "[]\n")


def _write_outputs(params, run_name, run, model, log, copied, mean, std, computed_on, point) -> dict:
    _write_log(run_name, log)
    train = {k: v for k, v in params.raw["train"].items() if f"train.{k}" not in SPEED_ONLY_KEYS}
    checkpoint = {
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "spec": asdict(model.spec),
        "run": asdict(run),
        "copied_from_init": copied,
        "normalise": {"mean": mean, "std": std},  # what evaluation must apply to its inputs
        "params": {**{k: params.raw[k] for k in ("seed", "model", "geometry", "augment")}, "train": train},
        "metrics": {k: log[-1][k] for k in ("loss", "train_top1_err", "holdout_top1_err")},
        "epochs": len(log),
        "compute": "; then ".join(computed_on),  # Compute.describe() of each machine it ran on
        "provenance": provenance(),
        **use_by_hand(params, run),
    }
    io.write_torch(paths.model(run_name), checkpoint)
    point.discard()
    return {"run": run_name, "epochs": len(log), **checkpoint["metrics"], "copied_from_init": copied}
