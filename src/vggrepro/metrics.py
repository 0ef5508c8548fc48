"""Top-k error with ties scored explicitly.

A class whose posterior equals the true class's counts as ranked above it, so a tie never
helps the model (bf16 logits tie often; we keep posteriors in fp32, and still score ties).
"""

from __future__ import annotations

import torch


def true_class_rank(posteriors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """0 when the true class alone has the highest posterior; a row with a value that is not
    finite ranks last (NaN compares false to everything and would otherwise rank first)."""
    true = posteriors.gather(1, labels.view(-1, 1))
    rank = (posteriors >= true).sum(dim=1) - 1
    # Last beyond any k: a rank of num_classes would pass k > num_classes as correct.
    return torch.where(torch.isfinite(posteriors).all(dim=1), rank, torch.iinfo(rank.dtype).max)


def top1_wrong(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many of the rows are top-1 errors, ties and non-finite rows counted wrong, as a 0-d
    tensor on the scores' device (training counts it without waiting for the device)."""
    return (true_class_rank(scores, labels) >= 1).sum()


def topk_error(posteriors: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Percentage of images whose true class is not among the k highest posteriors."""
    return 100.0 * float((true_class_rank(posteriors, labels) >= k).double().mean())
