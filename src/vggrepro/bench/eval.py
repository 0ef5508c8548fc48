"""Dense against multi-crop evaluation (Sec. 3.2, 4.3, Table 5): images/s of each at three
test scales, and their ratio, in one run.

    vggrepro bench eval [--repeat 3] [--geometry params|paper] [--config E] [--images 16]

Run it in a workspace where prepare has run. On the first --images validation images, decoded
once beforehand: dense evaluation (the whole image and its flip at each Q) and 150-crop
multi-crop evaluation (a 5 x 5 grid and flips at each Q), both batched by vggrepro.protocols on
train.device in train.precision, medians of --repeat passes after a warm-up. Q is {256, 384,
512} in the paper's pixels (scaled to params.yaml's geometry, or as they are at --geometry
paper: crop 224, full width). Dense should cost several times less a picture: it counts about
6x fewer input pixels, as it does not recompute the overlapping crops (Sec. 3.2). A pixel it
computes costs what a crop's pixel does in FLOPs; it also computes the padding that centres
the pooling grid on a side that is no multiple of 32 (1.26x the image at the demo geometry's
Q, a few percent at the paper's), and this is reported apart.

Measured on a 2-core CPU (bf16, channels_last), E at the demo geometry (crop 64, width x0.125), 128
images, nothing else running, medians of 3: dense 155.7 images/s against multi-crop's 27.8
(x5.61 a picture), x0.88 multi-crop's rate per input pixel and x1.11 per computed pixel, the
padding being x1.26 the image. Earlier, with another job running and one pass each: x0.72 and
x0.83 per input pixel at the demo geometry, and x0.59 at the paper's (4 images): there the
CPU's convolutions ran VGG-19's conv layers over a 384 x 512 map 25% slower a pixel than over a
batch of 224-px crops. Whether dense is cheaper a pixel is the device's: on this CPU it is not.
"""

from __future__ import annotations

import statistics
import time

import torch

from vggrepro import paths, protocols
from vggrepro.data import ingest, loader
from vggrepro.data.images import rescale
from vggrepro.data.normalise import channels
from vggrepro.model import DOWNSAMPLING, VGG, ModelSpec, init_weights
from vggrepro.params import PAPER_CROP, load_params
from vggrepro.runtime import device

PAPER_QS = (256, 384, 512)  # Table 5: S in [256;512], Q in {256, 384, 512}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _rate(evaluate, n: int, dev: torch.device, repeat: int) -> float:
    evaluate()  # warm-up: kernels, the autotuner
    rates = []
    for _ in range(repeat):
        _sync(dev)
        start = time.perf_counter()
        evaluate()
        _sync(dev)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main(repeat: int = 3, geometry: str = "params", config: str = "E", images: int = 16, params_file: str = "params.yaml") -> dict:
    params = load_params(params_file)
    torch.set_num_threads(params.raw["threads"])
    compute = device.compute(params.raw["train"])
    classes = len(ingest.read_classes(paths.CLASSES))
    if geometry == "paper":
        crop, width, head, qs = PAPER_CROP, 1.0, 4096, list(PAPER_QS)
    else:
        crop, width, head = params.crop, params.raw["model"]["width"], params.raw["model"]["head_width"]
        qs = [params.pixels(q) for q in PAPER_QS]
    model = VGG(ModelSpec(config, classes, width, head, crop))
    init_weights(model, "kaiming", torch.Generator().manual_seed(0))
    model = model.to(compute.device, memory_format=torch.channels_last).eval()
    files = loader.FileList(ingest.read_manifest(paths.MANIFEST, "val")[:images])
    decoded = list(loader.scaled_images(files, params.data_root, None, workers=loader.workers(params)))
    mean, std = channels([0.0] * 3).to(compute.device), channels([1.0] * 3).to(compute.device)
    options = dict(mean=mean, std=std, flip=True, compute=compute)
    print(f"config {config}, crop {crop}, width x{width}, Q {qs} px, {len(decoded)} images, "
          f"{params.raw['threads']} threads, {compute.describe()}; images/s, medians of {repeat}")
    dense = _rate(lambda: protocols.dense_posteriors(model, decoded, qs=qs, **options), len(decoded), compute.device, repeat)
    crops = _rate(lambda: protocols.multi_crop_posteriors(model, decoded, qs=qs, **options), len(decoded), compute.device, repeat)
    # Input pixels a picture: each rescaled image and its flip, against 50 crops a scale.
    sides = [rescale(im, q).shape[1:] for im in decoded for q in qs]
    dense_px = sum(2 * h * w for h, w in sides)
    computed_px = sum(2 * (h + -h % DOWNSAMPLING) * (w + -w % DOWNSAMPLING) for h, w in sides)  # padded
    crop_px = len(decoded) * len(qs) * 2 * protocols.GRID**2 * crop * crop
    # Input pixels a second: the image's own pixels (dense's padding to the pooling grid is cost,
    # not input), against the crops' pixels. The paper's argument for dense (Sec. 3.2) is that
    # it computes the overlapping crops' convolutions once: it should cost less a pixel.
    dense_pps, crop_pps = dense * dense_px / len(decoded), crops * crop_px / len(decoded)
    result = {
        "dense": round(dense, 2), "multi_crop": round(crops, 2), "ratio_dense_vs_multi_crop": round(dense / crops, 2),
        "pixel_ratio": round(crop_px / dense_px, 2), "pixel_rate_ratio_dense_vs_multi_crop": round(dense_pps / crop_pps, 2),
        "computed_pixel_rate_ratio_dense_vs_multi_crop": round(dense_pps * computed_px / dense_px / crop_pps, 2),
    }
    print(f"  dense, {len(qs)} scales with flips:       {dense:.2f}")
    print(f"  multi-crop, 150 crops over {len(qs)} scales: {crops:.2f}")
    print(f"  dense is x{dense / crops:.2f} the multi-crop rate (input pixels: multi-crop x{crop_px / dense_px:.2f} dense's)")
    print(f"  input pixels/s: dense {dense_pps / 1e6:.2f}M, multi-crop {crop_pps / 1e6:.2f}M "
          f"(dense x{dense_pps / crop_pps:.2f} multi-crop's pixel rate)")
    print(f"  computed pixels/s, dense's padding to multiples of {DOWNSAMPLING} included: dense "
          f"{dense_pps * computed_px / dense_px / 1e6:.2f}M (x{dense_pps * computed_px / dense_px / crop_pps:.2f} multi-crop's; "
          f"the padding is x{computed_px / dense_px:.2f} the image)")
    return result
