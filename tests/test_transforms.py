"""Sec. 3.1's training transforms: the statistics of each on a few thousand draws, each knob."""

import math

import numpy as np
import pytest
import torch

from vggrepro.data import normalise, transforms
from vggrepro.data.train_batches import sample_rng
from vggrepro.data.transforms import TrainTransform

DRAWS = 4000
SEED = 12345


def rngs(n: int = DRAWS):
    """The generators the loader gives n samples of one epoch."""
    return (sample_rng(SEED, 1, i) for i in range(n))


def chi2_limit(df: int, z: float = 4.0) -> float:
    """The chi-square statistic a uniform histogram exceeds with probability ~3e-5
    (Wilson-Hilferty), so a failure means a bias, not bad luck."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def assert_uniform(values: list[int], low: int, high: int) -> None:
    counts = np.bincount(np.asarray(values) - low, minlength=high - low + 1)
    assert len(counts) == high - low + 1, f"values outside [{low}, {high}]: {min(values)}..{max(values)}"
    assert counts.min() > 0, f"never drawn: {[low + i for i in np.flatnonzero(counts == 0)]}"
    expected = len(values) / len(counts)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    limit = chi2_limit(len(counts) - 1)
    assert chi2 < limit, f"chi2 {chi2:.1f} over {len(counts)} bins (limit {limit:.1f})"


def position_image(height: int, width: int) -> torch.Tensor:
    """Channel 0 holds the row, channel 1 the column: a crop tells where it was cut."""
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    return torch.stack([rows, cols, torch.zeros_like(rows)]).to(torch.uint8)


def test_s_is_uniform_over_s_min_to_s_max():
    # Sec. 3.1: S ~ U[S_min, S_max]; [256; 512] at the demo's 64/224 is [73; 146].
    assert_uniform([transforms.draw_scale(g, 73, 146) for g in rngs()], 73, 146)


def test_the_transform_rescales_each_image_to_the_s_it_draws(monkeypatch):
    # The rescale itself, not only the draw: a transform that rescaled every image to S_min
    # would turn scale jittering off without any other test noticing.
    sides = []
    real = transforms.rescale

    def recording(image, side):
        out = real(image, side)
        sides.append(min(out.shape[1:]))
        return out

    monkeypatch.setattr(transforms, "rescale", recording)
    jitter = TrainTransform(scale=(40, 60), crop=32, flip=True, colour_shift=0.1)
    image = torch.zeros(3, 50, 70, dtype=torch.uint8)
    for g in rngs(2000):
        jitter(image, g)
    assert_uniform(sides, 40, 60)


def test_a_fixed_s_draws_s_itself():
    assert {transforms.draw_scale(g, 73, 73) for g in rngs(50)} == {73}


@pytest.mark.parametrize("flip", [True, False])
def test_crop_positions_are_uniform_and_flip_rate_is_a_half(flip):
    # A square image already at S: the rescale leaves it as it is, and each crop's corner
    # pixel tells where the crop was cut and whether it was flipped.
    side, crop = 40, 32
    transform = TrainTransform(scale=(side, side), crop=crop, flip=flip, colour_shift=0.0)
    image = position_image(side, side + 9)  # 9 more columns than rows: both axes tested
    tops, lefts, flips = [], [], 0
    for g in rngs():
        patch, _ = transform(image, g)
        assert patch.shape == (3, crop, crop) and patch.dtype == torch.uint8
        row, first, last = int(patch[0, 0, 0]), int(patch[1, 0, 0]), int(patch[1, 0, -1])
        flipped = first > last
        tops.append(row)
        lefts.append(last if flipped else first)
        flips += flipped
    assert_uniform(tops, 0, side - crop)
    assert_uniform(lefts, 0, side + 9 - crop)
    if flip:
        sigma = math.sqrt(0.25 / DRAWS)
        assert abs(flips / DRAWS - 0.5) < 4 * sigma, f"flip rate {flips / DRAWS:.4f}, expected 0.5 +- {4 * sigma:.4f}"
    else:
        assert flips == 0


def test_colour_shift_covariance_matches_the_eigen_decomposition():
    # AlexNet's PCA shift: eigvec @ (alpha * eigval), alpha ~ N(0, 0.1^2), on the 0..255 scale.
    eigval, eigvec = transforms.pca_lighting()
    torch.testing.assert_close(torch.tensor(eigvec.T @ eigvec), torch.eye(3, dtype=torch.float64), atol=2e-3, rtol=0)
    shifts = np.stack([transforms.draw_colour_shift(g, 0.1) for g in rngs()])
    expected = (255 * 0.1) ** 2 * eigvec @ np.diag(eigval**2) @ eigvec.T
    # In the eigenbasis the covariance is diagonal, alphastd^2 eigval^2: compare there, where
    # the smallest variance (eigval 0.0045) is not swamped by the largest (0.2175).
    got = eigvec.T @ np.cov(shifts.T) @ eigvec
    want = eigvec.T @ expected @ eigvec
    variances, want_var = np.diag(got), np.diag(want)
    tolerance = 5 * math.sqrt(2 / DRAWS)  # the relative standard error of a variance, 5 times
    assert np.all(np.abs(variances / want_var - 1) < tolerance), (variances, want_var)
    correlation = got / np.sqrt(np.outer(variances, variances))
    assert np.all(np.abs(correlation - np.eye(3)) < 5 / math.sqrt(DRAWS)), correlation
    assert np.all(np.abs(shifts.mean(0)) < 5 * np.sqrt(np.diag(expected) / DRAWS)), shifts.mean(0)


def test_colour_shift_off_is_zero_and_keeps_the_other_draws():
    image = torch.randint(0, 256, (3, 50, 60), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    on = TrainTransform(scale=(40, 56), crop=32, flip=True, colour_shift=0.1)
    off = TrainTransform(scale=(40, 56), crop=32, flip=True, colour_shift=0.0)
    for i in range(20):
        patch_on, shift_on = on(image, sample_rng(SEED, 1, i))
        patch_off, shift_off = off(image, sample_rng(SEED, 1, i))
        assert torch.equal(patch_on, patch_off)  # turning one knob off leaves the others' draws
        assert torch.count_nonzero(shift_off) == 0 and torch.count_nonzero(shift_on) == 3


def test_to_input_shifts_then_subtracts_the_mean():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    shift = torch.randn(4, 3)
    mean, std = normalise.channels([120.0, 110.0, 100.0]), normalise.channels([60.0, 50.0, 70.0])
    got = normalise.to_input(images, mean=mean, std=std, shift=shift, memory_format=torch.channels_last)
    want = (images.float() + shift.view(4, 3, 1, 1) - mean) / std
    torch.testing.assert_close(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last)
    # Sec. 2.1: mean subtraction alone (model.normalise: mean) is std = 1.
    plain = normalise.to_input(images, mean=mean, std=normalise.channels([1.0, 1.0, 1.0]))
    torch.testing.assert_close(plain, images.float() - mean)
