"""The training transforms of Sec. 3.1, each a knob.

Per training image, in this order: an isotropic rescale so the smallest side is S (fixed, or
drawn from U[S_min, S_max] for scale jittering), one random crop, a random horizontal flip
(augment.flip) and AlexNet's PCA colour shift (augment.colour_shift, Krizhevsky et al. 2012,
Sec. 4.1). Every draw comes from the sample's own generator (vggrepro.data.train_batches), always
in the same order and whether or not its knob is on, so turning one transform off leaves the
others' draws as they were.

The crop stays uint8 until the batch is assembled: the colour shift is drawn per image but
added, with the mean subtraction (Sec. 2.1), to the whole batch at once
(vggrepro.data.normalise.to_input).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from vggrepro.data.images import rescale

PIXEL_RANGE = 255.0  # the PCA lighting is defined on [0, 1] images; ours are 0..255
# The ImageNet RGB covariance's eigenvalues and eigenvectors (one per column) behind AlexNet's
# PCA lighting (Krizhevsky et al. 2012, Sec. 4.1), as fb.resnet.torch applies them to [0, 1]
# images; Sec. 3.1 of the VGG paper adopts the shift. Kept here, not in the report's paper.yaml,
# so that correcting a reported number does not rerun every training.
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


def pca_lighting() -> tuple[np.ndarray, np.ndarray]:
    """(eigval (3,), eigvec (3, 3), one eigenvector per column) of the ImageNet RGB covariance."""
    return np.array(EIGVAL, dtype=np.float64), np.array(EIGVEC, dtype=np.float64)


@cache
def _colour_basis() -> np.ndarray:
    """255 eigvec diag(eigval): the shift is this times alpha (one matrix product per image)."""
    eigval, eigvec = pca_lighting()
    return PIXEL_RANGE * eigvec * eigval


def draw_scale(rng: np.random.Generator, s_min: int, s_max: int) -> int:
    """Sec. 3.1: S, uniform over the integers of [S_min, S_max]; S_min == S_max is a fixed S."""
    return int(rng.integers(s_min, s_max + 1))


def draw_crop(rng: np.random.Generator, height: int, width: int, crop: int) -> tuple[int, int]:
    """(top, left) of a crop x crop window, uniform over every position inside the image."""
    return int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))


def draw_flip(rng: np.random.Generator) -> bool:
    return bool(rng.random() < 0.5)


def draw_colour_shift(rng: np.random.Generator, alphastd: float) -> np.ndarray:
    """AlexNet's PCA colour shift, (3,) on the 0..255 scale: eigvec @ (alpha * eigval) with
    alpha ~ N(0, alphastd^2) per component; its covariance is (255 alphastd)^2 V diag(eigval^2) V^T."""
    return _colour_basis() @ (rng.normal(0.0, 1.0, size=3) * alphastd)


@dataclass(frozen=True)
class TrainTransform:
    """Sec. 3.1's augmentation of one training image; sides in pixels at this geometry."""

    scale: tuple[int, int]  # (S_min, S_max); equal for a fixed S
    crop: int
    flip: bool  # augment.flip
    colour_shift: float  # augment.colour_shift: alphastd; 0 turns it off

    def __post_init__(self) -> None:
        _colour_basis()  # computed once here, before the loader forks its workers

    def __call__(self, image: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 crop 3 x crop x crop, float32 colour shift (3,)) of a uint8 image 3 x H x W."""
        s = draw_scale(rng, *self.scale)
        image = rescale(image, s)
        top, left = draw_crop(rng, image.shape[1], image.shape[2], self.crop)
        flip = draw_flip(rng)
        shift = draw_colour_shift(rng, self.colour_shift)
        patch = image[:, top : top + self.crop, left : left + self.crop]
        if self.flip and flip:
            patch = patch.flip(-1)
        shift = shift if self.colour_shift > 0 else np.zeros(3)
        # The patch may be a view of the rescaled image: the batch's stack copies it once.
        return patch, torch.from_numpy(shift.astype(np.float32))
