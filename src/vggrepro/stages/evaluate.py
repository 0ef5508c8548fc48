"""evaluate_<run>: the test protocols of Sec. 3.2 and 4 on the validation split.

Each validation image is decoded once, and from it (vggrepro.protocols):
- dense-single: dense evaluation at the single test scale Q (Q = S for a fixed S,
  0.5 (S_min + S_max) for a jittered S; Table 3);
- dense: dense evaluation averaged over three scales ({S-32, S, S+32}, or {S_min, mid, S_max};
  Table 4);
- for the runs in evaluate.multi_crop, multi-crop (a 5 x 5 grid of crops and their flips at
  each of the three scales, 150 crops; Table 5) and multi-crop+dense, the two averaged.
Dense runs once per distinct Q (the single Q is one of the three). Each protocol's posteriors
are checked (finite, rows summing to 1) and saved once, so fusion and the report never run a
forward pass again.

A killed evaluation resumes: every SAVE_EVERY_S seconds the posteriors so far are kept in a
resume point (vggrepro.runtime.resume, keyed on the stage's inputs), and a rerun goes on from the
chunk after it. Chunks are blocks of CHUNK images in file order, cut short where they would hold
more than CHUNK_PIXELS decoded pixels (so 128 of the largest images prepare accepts never sit in
memory at once: they would take 68 GB); cut the same way after a resume, so the posteriors are
the same bits as an uninterrupted run's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from vggrepro import paths, protocols
from vggrepro.data import ingest, loader
from vggrepro.data.normalise import channels
from vggrepro.metrics import topk_error
from vggrepro.model import VGG, load_checkpoint
from vggrepro.params import PROTOCOLS, Params
from vggrepro.runtime import device, io, lease
from vggrepro.runtime.device import CPU, Compute
from vggrepro.runtime.heartbeat import Heartbeat
from vggrepro.stages import StageRun

CHUNK = 128  # decoded validation images held at once: the batches form within a chunk
CHUNK_PIXELS = 128 * 500 * 375  # ... or fewer, so a chunk holds at most 72 MB (ILSVRC's usual 500 x 375)


def chunks(images) -> Iterator[list[torch.Tensor]]:
    """Blocks of decoded images (3 x H x W) in order: CHUNK of them, or fewer where they reach
    CHUNK_PIXELS pixels (an image above that alone)."""
    block, pixels = [], 0
    for image in images:
        block.append(image)
        pixels += image.shape[-1] * image.shape[-2]
        if len(block) == CHUNK or pixels >= CHUNK_PIXELS:
            yield block
            block, pixels = [], 0
    if block:
        yield block
# Seconds between resume points: ImageNet's 50,000 posteriors are 200 MB per scale and
# protocol, too many to write after every chunk; a kill loses at most this much work.
SAVE_EVERY_S = 300.0


def load_model(path: str, compute: Compute = CPU) -> tuple[VGG, torch.Tensor, torch.Tensor]:
    """The model on the compute's device, in eval mode, and the (mean, std) its inputs were
    normalised with, as (1, 3, 1, 1) tensors there."""
    model = load_checkpoint(path, compute.device).to(memory_format=torch.channels_last)
    mean, std = (channels(values).to(compute.device) for values in model.normalise)
    return model, mean, std


def _mean(parts: list[torch.Tensor]) -> torch.Tensor:
    # sum / len, as vggrepro.protocols averages scales: one scale gives exactly itself
    return sum(parts) / len(parts)


def evaluate_all(
    model: VGG, images, *, q_single: int, qs: list[int], multi_crop: bool, total: int, desc: str,
    done: dict | None = None, checkpoint: Callable[[dict], None] | None = None, **options
) -> dict[str, torch.Tensor]:
    """Posteriors of every protocol the run asks for, from one pass over the decoded images.

    images are those after the done["images"] that a resume point already holds posteriors
    for; checkpoint, if given, is called with such a point at most every SAVE_EVERY_S seconds.
    """
    dense_qs = list(dict.fromkeys([q_single, *qs]))
    dense_opts = {k: v for k, v in options.items() if k != "batch"}
    crop_opts = {k: v for k, v in options.items() if k != "pool"}
    dense: dict[int, list[torch.Tensor]] = {q: [] for q in dense_qs}
    crops: dict[int, list[torch.Tensor]] = {q: [] for q in (qs if multi_crop else [])}
    finished = 0
    if done is not None:
        finished = done["images"]
        dense = {q: [done["dense"][q]] for q in dense_qs}
        crops = {q: [done["crops"][q]] for q in crops}

    def point() -> dict:
        for parts in (*dense.values(), *crops.values()):
            parts[:] = [torch.cat(parts)]  # once per point, not per chunk
        return {"images": finished, "dense": {q: p[0] for q, p in dense.items()}, "crops": {q: p[0] for q, p in crops.items()}}

    last_save = time.monotonic()
    # disable=None: a progress bar on a terminal; in a log, a heartbeat line every minute instead
    with (tqdm(total=total, initial=finished, desc=desc, unit="img", leave=False, disable=None) as progress,
          Heartbeat("evaluate", {"run": desc, "protocols": "dense" + (", multi-crop" if multi_crop else "")},
                    total=total, start=finished) as beat):
        for block in chunks(images):
            for q in dense_qs:
                dense[q].append(protocols.dense_at_q(model, block, q, **dense_opts))
            for q in crops:
                crops[q].append(protocols.multi_crop_at_q(model, block, q, **crop_opts))
            finished += len(block)
            progress.update(len(block))
            beat.done(finished)
            if checkpoint is not None and finished < total and time.monotonic() - last_save >= SAVE_EVERY_S:
                checkpoint(point())
                last_save = time.monotonic()
    at_q = {q: torch.cat(parts) for q, parts in dense.items()}
    out = {"dense-single": at_q[q_single], "dense": _mean([at_q[q] for q in qs])}
    if multi_crop:
        out["multi-crop"] = _mean([torch.cat(crops[q]) for q in qs])
        out["multi-crop+dense"] = (out["dense"] + out["multi-crop"]) / 2  # Table 5: posteriors averaged
    return out


def run(params: Params, run_name: str, *, stage: StageRun) -> dict:
    with lease.for_stage(params.raw["train"]["device"], holder=stage.name, folder=Path(paths.LEASES_DIR)):
        return _evaluate(params, run_name, stage)


def _evaluate(params: Params, run_name: str, stage: StageRun) -> dict:
    run = params.runs[run_name]
    compute = device.compute(params.raw["train"])
    model, mean, std = load_model(paths.model(run_name), compute)
    entries = ingest.read_manifest(paths.MANIFEST, "val")
    settings = params.raw["evaluate"]
    flip, pool = settings["flip"], settings["pool"]
    multi_crop = run_name in params.multi_crop_runs
    q_single = params.pixels(run.single_scale_q)
    qs = [params.pixels(q) for q in run.multi_scale_q]
    files = loader.FileList(entries)
    # The device is part of the key: posteriors from two devices joined would match no run.
    point = stage.resume_point(compute.describe())
    done = point.load()
    if done is not None:
        print(f"{run_name}: resuming evaluation after image {done['images']} of {len(files)} ({point.path})", flush=True)
    skip = 0 if done is None else done["images"]
    # Workers decode each whole image; the protocols rescale it to each Q.
    decoded = loader.scaled_images(
        loader.FileList(entries[skip:]), params.data_root, None, workers=loader.workers(params)
    )
    found = evaluate_all(
        model, decoded, q_single=q_single, qs=qs, multi_crop=multi_crop, total=len(files),
        desc=f"{run_name} Q={','.join(map(str, qs))}", mean=mean, std=std, flip=flip, pool=pool, compute=compute,
        done=done, checkpoint=point.save,
    )
    labels = torch.from_numpy(files.labels)
    metrics = {
        "compute": compute.describe(),
        # where training computed, for the report (auto resolves per machine); None: not trained in this grid
        "trained_on": None if run.imported else model.trained_on,
        "images": len(entries),
        "flip": flip,
        "pool": pool,
        "test_q": run.single_scale_q,
        "test_q_px": q_single,
        "multi_scale_q": list(run.multi_scale_q),
        "multi_scale_q_px": qs,
        "protocols": {},
    }
    for protocol, posteriors in found.items():
        protocols.check_posteriors(posteriors, run=run_name, protocol=protocol)
        saved = {"posteriors": posteriors, "labels": labels, "paths": [e.path for e in entries], "protocol": protocol}
        io.write_torch(paths.protocol_posteriors(run_name, protocol), saved)
        metrics["protocols"][protocol] = {
            "name": PROTOCOLS[protocol],
            "top1_err": round(topk_error(posteriors, labels, 1), 4),
            "top5_err": round(topk_error(posteriors, labels, 5), 4),
        }
    io.write_json(paths.eval_metrics(run_name), metrics)
    point.discard()
    return {"run": run_name, **{p: m["top1_err"] for p, m in metrics["protocols"].items()}}
