"""Our training loop against a plain one, and model FLOP utilisation against a measured peak.

    vggrepro bench train [--repeat 3] [--geometry params|paper] [--config E] [--batch N]

Run it in a workspace where prepare and mean_rgb have run. On the training images, in one
run, images/s (medians of --repeat passes of STEPS steps, after a warm-up):

- ours: the train stage's loop (vggrepro.training.Loop) on train.device in train.precision,
  channels_last, fed by its DataLoader with data.workers workers (crop, flip, colour shift, and
  decode and rescale where the stage would: images are decoded once and held in memory where
  the whole training split fits, as the stage does, never at --geometry paper), and the same
  step on one batch already on the device (the step alone), and the DataLoader with no step
  (the loader alone: the ceiling of the fed rate where the step is faster, as a GPU's is on the
  narrow nets of a CPU grid);
- plain: a loop in the style of torchvision's reference script on the same images: PIL loading
  and torchvision transforms in a DataLoader with the same workers, the same network in fp32,
  NCHW, torch's default flags;
- MFU: the step's FLOP/s (3 x the forward pass's, counted by torch's FlopCounterMode) over the
  peak of a large matmul in the step's precision (bf16 or fp32) measured here on the same device.

--geometry paper runs the network at the paper's size (crop 224, full width, S = 256) whatever
params.yaml says; params keeps its geometry and width.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from vggrepro import paths
from vggrepro.data import ingest, loader
from vggrepro.data.normalise import channels
from vggrepro.data.train_batches import RESIDENT_BYTES, resident_bytes, train_loader
from vggrepro.data.transforms import TrainTransform
from vggrepro.model import VGG, ModelSpec, init_weights
from vggrepro.params import PAPER_CROP, load_params
from vggrepro.runtime import device
from vggrepro.training import EpochSums, Loop, sgd

STEPS = 10


class PilImages(torch.utils.data.Dataset):
    """torchvision's reference recipe: PIL, Resize(S), RandomCrop, RandomHorizontalFlip, ToTensor, Normalize."""

    def __init__(self, root: Path, files: loader.FileList, scale: int, crop: int) -> None:
        from torchvision import transforms as T

        self.root, self.files = root, files
        self.transform = T.Compose([
            T.Resize(scale), T.RandomCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.root / self.files.path(i)) as im:
            return self.transform(im.convert("RGB")), int(self.files.labels[i])


def matmul_peak(dev: torch.device, n: int, dtype: torch.dtype = torch.bfloat16) -> float:
    """FLOP/s of an n x n matmul, the median of 5 timings."""
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    times = []
    for k in range(6):
        _sync(dev)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(dev)
        if k:
            times.append((time.perf_counter() - start) / 4)
    return 2 * n**3 / statistics.median(times)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train_flops_per_image(spec: ModelSpec) -> float:
    """3 x the forward pass's FLOPs (the backward pass costs about twice the forward)."""
    model = VGG(spec)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, spec.crop, spec.crop))
    return 3.0 * counter.get_total_flops()


def _rate(run_steps, batch: int, dev: torch.device, repeat: int) -> float:
    run_steps(2)  # warm-up: workers, kernels, the autotuner
    rates = []
    for _ in range(repeat):
        _sync(dev)
        start = time.perf_counter()
        run_steps(STEPS)
        _sync(dev)
        rates.append(STEPS * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def _cycle(batches):
    while True:
        yield from batches


def _ours(model, compute, batches, batch: int, repeat: int, *, fed: bool) -> float:
    opt = sgd(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)  # lr 0: same work, no drift
    loop = Loop(model, opt, compute, channels([0.0] * 3).to(compute.device), channels([1.0] * 3).to(compute.device),
                accumulation=1, global_batch=batch)
    sums = EpochSums.zeros(compute.device)
    bad = torch.full((), -1, dtype=torch.int64, device=compute.device)
    count = torch.zeros((), dtype=torch.int64, device=compute.device)
    source = _cycle(batches)
    first = next(source)
    resident = tuple(t.to(compute.device) for t in first)

    def run_steps(n: int) -> None:
        for _ in range(n):
            loop.step(*(next(source) if fed else resident), sums, bad, count)

    return _rate(run_steps, batch, compute.device, repeat)


def _loader_alone(batches, batch: int, dev: torch.device, repeat: int, workers: int) -> float:
    """The input pipeline with no step: batches taken from its workers as fast as they come. A
    step faster than this (a GPU's, on a narrow net) waits for it: the fed rate's ceiling. The
    batches the workers hold ready are drawn first, and each timing draws several times that."""
    source = _cycle(batches)
    ready = loader.PREFETCH * max(workers, 1)
    for _ in range(ready):
        next(source)
    steps = max(3 * STEPS, 4 * ready)
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(steps):
            next(source)
        rates.append(steps * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def _plain(model, dev, batches, batch: int, repeat: int) -> float:
    model = model.to(memory_format=torch.contiguous_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    source = _cycle(batches)

    def run_steps(n: int) -> None:
        for _ in range(n):
            x, y = next(source)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    return _rate(run_steps, batch, dev, repeat)


def main(repeat: int = 3, geometry: str = "params", config: str = "E", batch: int | None = None, params_file: str = "params.yaml") -> dict:
    params = load_params(params_file)
    torch.set_num_threads(params.raw["threads"])
    t = params.raw["train"]
    compute = device.compute(t)
    dev = compute.device
    classes = len(ingest.read_classes(paths.CLASSES))
    if geometry == "paper":
        crop, width, head, scale = PAPER_CROP, 1.0, 4096, 256
    else:
        crop, width, head = params.crop, params.raw["model"]["width"], params.raw["model"]["head_width"]
        scale = params.pixels(256)
    batch = batch or t["batch_size"]
    spec = ModelSpec(config, classes, width, head, crop, params.raw["model"]["dropout"])
    workers = loader.workers(params)
    files = loader.FileList(ingest.read_manifest(paths.MANIFEST, "train")[: batch * 64])  # epochs of 64 steps
    root = params.data_root
    print(f"config {config}, crop {crop}, width x{width}, S {scale} px, batch {batch}, {workers} workers, "
          f"{params.raw['threads']} threads, {compute.describe()}; images/s, medians of {repeat}")

    def fresh_model() -> VGG:
        model = VGG(spec)
        init_weights(model, "kaiming", torch.Generator().manual_seed(0))
        return model.to(dev).train()

    transform = TrainTransform(scale=(scale, scale), crop=crop, flip=True, colour_shift=0.1)
    # As the train stage loads: the images held in memory where the whole training split fits
    # (train_batches.RESIDENT_BYTES), decoded every epoch otherwise; at the paper's geometry
    # always decoded, as ImageNet is.
    whole = loader.FileList(ingest.read_manifest(paths.MANIFEST, "train"))
    needed = resident_bytes(whole, (scale, scale))
    resident = geometry != "paper" and needed is not None and needed <= RESIDENT_BYTES
    del whole
    print(f"  loader: {'images decoded once and held in memory' if resident else 'every image decoded each time'}")
    ours_batches, sampler = train_loader(files=files, root=root, transform=transform, seed=0, batch_size=batch,
                                         workers=workers, pin_memory=compute.is_cuda, keep_resident=resident)
    ours_model = fresh_model().to(memory_format=torch.channels_last)
    step = _ours(ours_model, compute, ours_batches, batch, repeat, fed=False)
    fed = _ours(ours_model, compute, ours_batches, batch, repeat, fed=True)
    alone = _loader_alone(ours_batches, batch, dev, repeat, workers)
    del ours_model, ours_batches
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = False, True  # torch's defaults
    plain_batches = torch.utils.data.DataLoader(PilImages(root, files, scale, crop), batch_size=batch, shuffle=True,
                                                num_workers=workers, pin_memory=compute.is_cuda, drop_last=True,
                                                persistent_workers=workers > 0)
    plain = _plain(fresh_model(), dev, plain_batches, batch, repeat)
    flops = train_flops_per_image(spec)
    dtype = torch.bfloat16 if compute.precision == "bf16" else torch.float32
    peak = matmul_peak(dev, 8192 if compute.is_cuda else 2048, dtype)
    result = {
        "ours_fed": round(fed, 1), "ours_step": round(step, 1), "loader_alone": round(alone, 1), "plain": round(plain, 1),
        "resident": resident, "ratio_fed_vs_plain": round(fed / plain, 2), "ratio_step_vs_fed": round(step / fed, 2),
        "train_gflop_per_image": round(flops / 1e9, 2), "peak_gflops": round(peak / 1e9), "precision": compute.precision,
        "mfu_fed": round(fed * flops / peak, 3), "mfu_step": round(step * flops / peak, 3),
    }
    print(f"  ours, fed by the loader: {fed:.1f}  (x{fed / plain:.2f} the plain loop; MFU {result['mfu_fed']:.1%})")
    print(f"  ours, the step alone:    {step:.1f}  (MFU {result['mfu_step']:.1%})")
    print(f"  the loader alone ({workers} workers, no step): {alone:.1f}")
    print(f"  plain loop (PIL, fp32, NCHW): {plain:.1f}")
    print(f"  {flops / 1e9:.1f} GFLOP per training image; measured {compute.precision} matmul peak {peak / 1e12:.2f} TFLOP/s")
    return result
