import pytest
import torch

from vggrepro.metrics import topk_error, true_class_rank


def test_topk_error_counts_the_true_class_among_the_k_highest():
    posteriors = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
    labels = torch.tensor([0, 1, 0])
    assert topk_error(posteriors, labels, 1) == pytest.approx(100 * 2 / 3)
    assert topk_error(posteriors, labels, 2) == pytest.approx(100 * 1 / 3)
    assert topk_error(posteriors, labels, 3) == 0


def test_a_tie_with_the_true_class_counts_against_the_model():
    posteriors = torch.tensor([[0.4, 0.4, 0.2]])
    assert true_class_rank(posteriors, torch.tensor([0])).item() == 1
    assert true_class_rank(posteriors, torch.tensor([1])).item() == 1
    assert topk_error(posteriors, torch.tensor([1]), 1) == 100.0
    assert topk_error(posteriors, torch.tensor([1]), 2) == 0.0


def test_a_row_that_is_not_finite_is_an_error_at_every_k():
    posteriors = torch.tensor([[float("nan"), 0.0, 0.0], [0.7, 0.2, 0.1], [float("inf"), 0.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    assert topk_error(posteriors, labels, 1) == pytest.approx(200 / 3)
    assert topk_error(posteriors, labels, 3) == pytest.approx(200 / 3)
    assert topk_error(posteriors, labels, 5) == pytest.approx(200 / 3)  # k beyond the classes


def test_topk_error_equals_a_brute_force_count_with_many_ties():
    """Scores on a coarse grid tie often; a tie with the true class counts against the model."""
    g = torch.Generator().manual_seed(0)
    posteriors = torch.randint(0, 4, (500, 7), generator=g).float()
    labels = torch.randint(0, 7, (500,), generator=g)
    for k in (1, 2, 5):
        wrong = 0
        for row, label in zip(posteriors.tolist(), labels.tolist()):
            at_least = sum(1 for c, v in enumerate(row) if c != label and v >= row[label])
            wrong += at_least >= k
        assert topk_error(posteriors, labels, k) == pytest.approx(100.0 * wrong / 500)
