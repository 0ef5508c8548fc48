"""evaluate_<run>: dense single-scale evaluation (Sec. 3.2, Table 3).

Each validation image is isotropically rescaled so its smallest side is Q (Q = S for a fixed
S, 0.5 (S_min + S_max) for a jittered S), the fully convolutional net is applied to the whole
image, its class score map is averaged, and the soft-max posteriors of the image and its
horizontal flip are averaged. The posteriors are saved for later fusion.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from vggrepro import device, io, lease, paths, workspace
from vggrepro.data import images, ingest, loader
from vggrepro.data.normalise import channels, to_input
from vggrepro.device import CPU, Compute
from vggrepro.metrics import topk_error
from vggrepro.model import VGG, ModelSpec, load_checkpoint
from vggrepro.params import Params


@torch.inference_mode()
def posteriors_at_q(
    model: VGG, image: torch.Tensor, *, mean: torch.Tensor, std: torch.Tensor, flip: bool, compute: Compute = CPU
) -> torch.Tensor:
    """Soft-max class posteriors (classes,) of one uint8 image already rescaled to Q, in fp32
    on the CPU: the class score map averaged (the model's forward, in the run's precision),
    then the soft-max in fp32, then the image's and its flip's posteriors averaged."""
    x = to_input(compute.to_device(image.unsqueeze(0)), mean=mean, std=std, memory_format=torch.channels_last)
    if flip:
        x = torch.cat([x, x.flip(-1)])
    with compute.autocast():
        scores = model(x)
    return torch.softmax(scores.float(), dim=1).mean(dim=0).cpu()


def dense_posteriors(
    model: VGG, image: torch.Tensor, *, q: int, mean: torch.Tensor, std: torch.Tensor, flip: bool, compute: Compute = CPU
) -> torch.Tensor:
    """Soft-max class posteriors (classes,) of one uint8 image at scale Q, in fp32."""
    return posteriors_at_q(model, images.rescale(image, q), mean=mean, std=std, flip=flip, compute=compute)


def load_model(path: str, compute: Compute = CPU) -> tuple[VGG, torch.Tensor, torch.Tensor]:
    """The model on the compute's device and the (mean, std) its inputs were normalised with,
    as (1, 3, 1, 1) tensors there."""
    checkpoint = load_checkpoint(path)
    model = VGG(ModelSpec(**checkpoint["spec"]))
    model.load_state_dict(checkpoint["state_dict"])
    model = model.to(compute.device, memory_format=torch.channels_last)
    mean, std = (channels(checkpoint["normalise"][k]).to(compute.device) for k in ("mean", "std"))
    return model.eval(), mean, std


def run(params: Params, run_name: str) -> dict:
    run = params.runs[run_name]
    held_device = lease.for_stage(params.raw["train"], holder=f"evaluate_{run_name}")  # noqa: F841 - held until exit
    compute = device.compute(params.raw["train"])
    model, mean, std = load_model(paths.model(run_name), compute)
    entries = ingest.read_manifest(paths.MANIFEST, "val")
    q = params.pixels(run.single_scale_q)
    flip = params.raw["evaluate"].get("flip", True)
    files = loader.FileList(entries)
    # Workers decode each whole image and rescale it to Q; the net sees one image (and its flip) a step.
    scaled = loader.scaled_images(files, workspace.data_root(params), q, workers=loader.workers(params))
    # disable=None: a progress bar on a terminal, nothing in logs
    progress = tqdm(scaled, total=len(files), desc=f"{run_name} dense Q={q}", leave=False, disable=None)
    posteriors = torch.stack(
        [posteriors_at_q(model, image, mean=mean, std=std, flip=flip, compute=compute) for image in progress]
    )
    labels = torch.from_numpy(files.labels)
    saved = {"posteriors": posteriors, "labels": labels, "paths": [e.path for e in entries]}
    io.write_torch(paths.posteriors(run_name), saved)
    metrics = {
        "protocol": "dense single-scale" + (", flip-averaged" if flip else ""),
        "compute": compute.describe(),
        "test_q": run.single_scale_q,
        "test_q_px": q,
        "images": len(entries),
        "top1_err": round(topk_error(posteriors, labels, 1), 4),
        "top5_err": round(topk_error(posteriors, labels, 5), 4),
    }
    io.write_json(paths.eval_metrics(run_name), metrics)
    return {"run": run_name, **metrics}
