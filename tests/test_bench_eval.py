"""vggrepro bench eval: the FLOPs it sets beside its pixel rates, and a run on a prepared workspace."""

from __future__ import annotations

import re

import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import make_project, tiny_params, vggrepro_here
from vggrepro.bench.eval import forward_flops
from vggrepro.model import VGG, ModelSpec


def test_flops_counted_on_fake_tensors_are_those_of_a_real_pass():
    spec = ModelSpec("A", 10, 0.0625, 16, 64)
    model = VGG(spec)
    counted = forward_flops(spec, [(64, 64), (96, 128), (96, 128)])
    assert set(counted) == {(64, 64), (96, 128)}
    for (h, w), flops in counted.items():
        with FlopCounterMode(display=False) as real, torch.no_grad():
            model.score_map(torch.zeros(1, 3, h, w))
        assert flops == real.get_total_flops() > 0
    # Multi-crop runs the crop classifier (forward, its FC layers as matmuls), not the score map:
    # the bench counts the crop's FLOPs on the score map, so the two must do the same work.
    with FlopCounterMode(display=False) as crop, torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert counted[(64, 64)] == crop.get_total_flops()


def test_a_dense_pixel_costs_a_crops_flops_only_where_the_fc_layers_see_one_feature_position():
    # Crop 32: FC6 is a 1 x 1 convolution, so every layer's FLOPs scale with the pixels.
    small = forward_flops(ModelSpec("A", 10, 0.0625, 16, 32), [(32, 32), (128, 128)])
    assert small[(128, 128)] == 16 * small[(32, 32)]
    # Crop 64: FC6 is 2 x 2; a 128-px image has 4 crops' pixels but 9 overlapping FC windows.
    wide = forward_flops(ModelSpec("A", 10, 0.0625, 16, 64), [(64, 64), (128, 128)])
    assert wide[(128, 128)] > 4 * wide[(64, 64)]


def test_bench_eval_prints_rates_pixels_and_flops_on_a_prepared_workspace(tmp_path):
    project = make_project(tmp_path / "ws", tiny_params())
    assert vggrepro_here("prepare", cwd=project).returncode == 0
    done = vggrepro_here("bench", "eval", "--images", "4", "--repeat", "1", "--config", "A", cwd=project)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("config A, crop 32,") and "4 images" in lines[0]
    assert any("input pixels: multi-crop x" in line for line in lines)
    computed = next(line for line in lines if "computed pixels/s" in line)
    flops = next(line for line in lines if line.strip().startswith("FLOPs (torch's counter)"))
    # At crop 32 a computed pixel costs a crop pixel's FLOPs: the FLOPs an input pixel are the
    # padding's ratio, and the FLOP rate's ratio is the computed pixel rate's.
    padding = re.search(r"the padding is x([\d.]+) the image", computed).group(1)
    computed_rate = re.search(r"\(x([\d.]+) multi-crop's;", computed).group(1)
    assert re.search(rf"x{padding} multi-crop's an input pixel", flops), (computed, flops)
    assert re.search(rf"\(dense x{computed_rate}\)$", flops), (computed, flops)
