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


@pytest.mark.slow  # seconds: the default suite must stay under 10 minutes with its install
def test_one_large_image_costs_its_bytes_not_four_times_them(tmp_path):
    """A 6,000 x 6,000 PNG (108 MB decoded) summed in slices: the worker's peak stays far below
    the 1.6 GB that widening the whole image to int32 and squaring it took (a 13,300 x 13,300
    PNG, just under images.MAX_PIXELS, peaked at 8.7 GB before, 1.1 GB now)."""
    import subprocess
    import sys

    from PIL import Image

    from vggrepro.data.ingest import Entry

    Image.new("RGB", (6000, 6000), (120, 60, 30)).save(tmp_path / "big.png", compress_level=1)
    rows = [Entry("train", "big.png", "a", 0)]
    mean, _, pixels = rgb_moments(tmp_path, rows, workers=0)
    assert pixels == 36_000_000 and mean == [120.0, 60.0, 30.0]
    probe = (
        "import resource, sys; from pathlib import Path; from vggrepro.data.ingest import Entry; "
        "from vggrepro.stages.mean_rgb import rgb_moments; "
        f"rgb_moments(Path({str(tmp_path)!r}), [Entry('train', 'big.png', 'a', 0)], workers=1); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # the worker's, in KiB
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) < 800_000, done.stdout
