"""mean_rgb (Sec. 2.1): one streaming pass in workers, exact, equal to a numpy reference."""

import numpy as np
import pytest

from test_loader import write_jpegs
from vggrepro.data import images
from vggrepro.data.ingest import DatasetError
from vggrepro.stages.mean_rgb import IMAGES_PER_TASK, rgb_moments


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    return root, write_jpegs(root, IMAGES_PER_TASK + 11, seed=1)  # a full task and a short one


def numpy_reference(root, rows) -> tuple[np.ndarray, np.ndarray, int]:
    pixels = np.concatenate([images.decode(root / r.path).flatten(1).numpy().astype(np.float64) for r in rows], axis=1)
    return pixels.mean(axis=1), pixels.std(axis=1), pixels.shape[1]


def test_mean_and_std_equal_a_single_process_numpy_reference(dataset):
    root, rows = dataset
    want_mean, want_std, want_pixels = numpy_reference(root, rows)
    mean, std, pixels = rgb_moments(root, rows, workers=2)
    assert pixels == want_pixels
    np.testing.assert_allclose(mean, want_mean, rtol=1e-9, atol=0)
    np.testing.assert_allclose(std, want_std, rtol=1e-9, atol=0)


def test_the_worker_count_changes_no_bit(dataset):
    root, rows = dataset
    assert rgb_moments(root, rows, workers=0) == rgb_moments(root, rows, workers=2)
    # The sums are exact integers: the order of the images does not matter either.
    assert rgb_moments(root, rows[::-1], workers=1) == rgb_moments(root, rows, workers=0)


def test_no_training_images_is_one_line(tmp_path):
    with pytest.raises(DatasetError, match="no training images"):
        rgb_moments(tmp_path, [], workers=0)
