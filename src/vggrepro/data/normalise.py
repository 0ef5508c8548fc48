"""The network's input from uint8 images: the mean RGB subtracted, the paper's only
preprocessing (Sec. 2.1), after the training colour shift where there is one."""

from __future__ import annotations

import torch


def channels(values: list[float]) -> torch.Tensor:
    """Per-channel values (mean or std) as a (1, 3, 1, 1) tensor that broadcasts over a batch."""
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


def to_input(
    images: torch.Tensor,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    shift: torch.Tensor | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Float input from a uint8 batch N x 3 x H x W: plus the colour shift (N, 3) of each image
    (Sec. 3.1), minus the mean, divided by std (ones unless model.normalise: mean_std).

    mean and std are (1, 3, 1, 1). The memory format should be the model's (training runs
    channels-last, the faster layout for convs here).
    """
    x = images.float()
    if shift is not None:
        x = x + shift.view(-1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=memory_format)
