"""Dense against multi-crop evaluation (Sec. 3.2, 4.3, Table 5): images/s of each at three
test scales, and their ratio, in one run.

    vggrepro bench eval [--repeat 3] [--geometry params|paper] [--config E] [--images 16]

Run it in a workspace where prepare has run. On the first --images validation images, decoded
once beforehand: dense evaluation (the whole image and its flip at each Q) and 150-crop
multi-crop evaluation (a 5 x 5 grid and flips at each Q), both batched by vggrepro.protocols on
train.device in train.precision, medians of --repeat passes after a warm-up. Q is {256, 384,
512} in the paper's pixels (scaled to params.yaml's geometry, or as they are at --geometry
paper: crop 224, full width). Dense should cost several times less a picture: it counts about 6x
fewer input pixels, as it does not recompute the overlapping crops (Sec. 3.2). A pixel of it
costs more FLOPs than a crop's, though: its FC layers, run as convolutions, classify a
crop-sized window at every 32nd pixel (150 windows in a 512 x 672 image, where multi-crop
classifies 25 crops), and it computes the padding that centres the pooling grid on a side that
is no multiple of 32 (1.26x the image at the demo geometry's Q, 1.01x at the paper's). torch's
FLOP counter gives both protocols' FLOPs, so the pixel rates split into work done (FLOPs an
input pixel) and speed (FLOP/s): dense is cheaper an input pixel only on a device that runs
whole images that much faster than batches of crops.

Measured, E, nothing else running, medians of 3 (of 5 at the demo geometry):
- on a 2-core CPU with bf16 arithmetic (bf16, channels_last):
  - at the paper's geometry (crop 224, full width, 4 images): dense 0.53 images/s against
    multi-crop's 0.12 (x4.48 a picture), x0.74 multi-crop's rate an input pixel: dense does
    x1.12 the FLOPs an input pixel and runs at x0.83 the FLOP rate (578 against 697 GFLOP/s);
  - at the demo geometry (crop 64, width x0.125, 128 images): dense 226.8 against 47.8 (x4.74),
    x0.75 an input pixel: x1.27 the FLOPs (the padding) at x0.95 the FLOP rate;
- on 2 cores of an AMD EPYC with AVX2 only (fp32, channels_last):
  - at the paper's geometry (2 images): dense 0.10 against 0.02 (x4.77 a picture), x0.81 an
    input pixel: x1.13 the FLOPs at x0.91 the FLOP rate (118 against 129 GFLOP/s);
  - at the demo geometry (128 images): dense 55.68 against 10.60 (x5.25), x0.83 an input pixel:
    x1.28 the FLOPs at x1.06 the FLOP rate.
So on both CPUs dense is several times cheaper a picture and not cheaper a pixel: it would need
a FLOP rate x1.13 multi-crop's at 224, and x1.28 at the demo geometry. Whether a GPU runs whole
images that much faster a FLOP than crops, `scripts/device-check.sh` measures.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

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


def forward_flops(spec: ModelSpec, sides) -> dict[tuple[int, int], int]:
    """{(h, w): FLOPs of one image's score map at that input side}, counted by torch's
    FlopCounterMode on fake tensors: shapes only, nothing computed."""
    flops = {}
    with FakeTensorMode(), torch.no_grad():
        model = VGG(spec)
        for h, w in set(sides):
            with FlopCounterMode(display=False) as counter:
                model.score_map(torch.empty(1, 3, h, w))
            flops[(h, w)] = counter.get_total_flops()
    return flops


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
    padded = [(h + -h % DOWNSAMPLING, w + -w % DOWNSAMPLING) for h, w in sides]  # centred on the pooling grid
    dense_px = sum(2 * h * w for h, w in sides)
    computed_px = sum(2 * h * w for h, w in padded)
    crop_px = len(decoded) * len(qs) * 2 * protocols.GRID**2 * crop * crop
    # FLOPs a picture: a pixel of dense costs more than a crop's, as its FC layers (convolutions
    # over the feature map) classify a window at every position, and it computes the padding.
    flops = forward_flops(model.spec, [*padded, (crop, crop)])
    dense_flops = sum(2 * flops[side] for side in padded)
    crop_flops = len(decoded) * len(qs) * 2 * protocols.GRID**2 * flops[(crop, crop)]
    # Input pixels a second: the image's own pixels (dense's padding to the pooling grid is cost,
    # not input), against the crops' pixels. The paper's argument for dense (Sec. 3.2) is that
    # it computes the overlapping crops' convolutions once: fewer pixels a picture.
    dense_pps, crop_pps = dense * dense_px / len(decoded), crops * crop_px / len(decoded)
    result = {
        "dense": round(dense, 2), "multi_crop": round(crops, 2), "ratio_dense_vs_multi_crop": round(dense / crops, 2),
        "pixel_ratio": round(crop_px / dense_px, 2), "pixel_rate_ratio_dense_vs_multi_crop": round(dense_pps / crop_pps, 2),
        "computed_pixel_rate_ratio_dense_vs_multi_crop": round(dense_pps * computed_px / dense_px / crop_pps, 2),
        "flops_per_pixel_ratio_dense_vs_multi_crop": round(dense_flops / dense_px / (crop_flops / crop_px), 2),
        "flop_rate_ratio_dense_vs_multi_crop": round(dense * dense_flops / (crops * crop_flops), 2),
    }
    print(f"  dense, {len(qs)} scales with flips:       {dense:.2f}")
    print(f"  multi-crop, 150 crops over {len(qs)} scales: {crops:.2f}")
    print(f"  dense is x{dense / crops:.2f} the multi-crop rate (input pixels: multi-crop x{crop_px / dense_px:.2f} dense's)")
    print(f"  input pixels/s: dense {dense_pps / 1e6:.2f}M, multi-crop {crop_pps / 1e6:.2f}M "
          f"(dense x{dense_pps / crop_pps:.2f} multi-crop's pixel rate)")
    print(f"  computed pixels/s, dense's padding to multiples of {DOWNSAMPLING} included: dense "
          f"{dense_pps * computed_px / dense_px / 1e6:.2f}M (x{dense_pps * computed_px / dense_px / crop_pps:.2f} multi-crop's; "
          f"the padding is x{computed_px / dense_px:.2f} the image)")
    n = len(decoded)
    print(f"  FLOPs (torch's counter): dense {dense_flops / n / 1e9:,.4g}G a picture, x{result['flops_per_pixel_ratio_dense_vs_multi_crop']:.2f} "
          f"multi-crop's an input pixel; FLOP/s: dense {dense * dense_flops / n / 1e9:.3g}G, multi-crop "
          f"{crops * crop_flops / n / 1e9:.3g}G (dense x{result['flop_rate_ratio_dense_vs_multi_crop']:.2f})")
    return result
