"""The streaming input pipeline: the worker count changes nothing, nothing is held in memory
but the file list, and a bad image in a worker is one line naming it."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg

from vggrepro.data import images, loader, train_batches
from vggrepro.data.ingest import DatasetError
from vggrepro.data.transforms import TrainTransform

SEED = 7


@dataclass(frozen=True)
class Row:  # what the loader reads of a manifest entry
    path: str
    label: int
    height: int = 0  # upright size; 0 unknown
    width: int = 0


def write_jpegs(root: Path, n: int, seed: int = 0) -> list[Row]:
    """n JPEGs of varied size and aspect (short side 40..90), labels 0..4."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        h, w = (int(v) for v in torch.randint(40, 91, (2,), generator=g))
        small = torch.randint(0, 256, (3, h // 8 + 1, w // 8 + 1), dtype=torch.uint8, generator=g)
        image = torch.nn.functional.interpolate(small[None].float(), size=(h, w), mode="bilinear")[0].to(torch.uint8)
        rel = f"train/c{i % 5}/img_{i}.JPEG"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encode_jpeg(image, quality=90).numpy().tobytes())
        rows.append(Row(rel, i % 5, h, w))
    return rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list[Row]]:
    root = tmp_path_factory.mktemp("jpegs")
    return root, write_jpegs(root, 40)


def first_batches(
    root: Path, rows: list[Row], *, workers: int, epoch: int = 1, count: int = 2, scale=(36, 72), keep_resident=False
) -> list:
    transform = TrainTransform(scale=scale, crop=32, flip=True, colour_shift=0.1)  # jittered S by default
    batches, sampler = train_batches.train_loader(
        files=loader.FileList(rows), root=root, transform=transform, seed=SEED, batch_size=8, workers=workers,
        keep_resident=keep_resident,
    )
    sampler.set_epoch(epoch)
    out = []
    for batch in batches:
        out.append(batch)
        if len(out) == count:
            break
    return out


def test_any_worker_count_gives_the_same_batches_bitwise(dataset):
    root, rows = dataset
    reference = first_batches(root, rows, workers=0)
    for workers in (1, 2):
        for got, want in zip(first_batches(root, rows, workers=workers), reference, strict=True):
            for g, w, what in zip(got, want, ("images", "colour shifts", "labels")):
                assert g.dtype == w.dtype and torch.equal(g, w), f"{what} differ with {workers} workers"
    images_, shifts, labels = reference[0]
    assert images_.shape == (8, 3, 32, 32) and images_.dtype == torch.uint8
    assert shifts.shape == (8, 3) and labels.shape == (8,)


@pytest.mark.parametrize("scale", [(36, 72), (45, 45)], ids=["jittered", "fixed"])
def test_images_held_in_memory_give_the_streamed_batches_bitwise(dataset, scale):
    """Decoded once (and rescaled once for a fixed S) or decoded every epoch: the same bits."""
    root, rows = dataset
    files = loader.FileList(rows)
    held = train_batches.resident_images(files, root, scale, workers=1)
    assert held is not None and len(held) == len(rows)
    if scale[0] == scale[1]:
        assert all(min(im.shape[1:]) == scale[0] for im in held)  # rescaled once, to S
    for epoch in (1, 2):
        streamed = first_batches(root, rows, workers=1, epoch=epoch, count=4, scale=scale)
        resident = first_batches(root, rows, workers=1, epoch=epoch, count=4, scale=scale, keep_resident=True)
        for got, want in zip(resident, streamed, strict=True):
            for g, w in zip(got, want, strict=True):
                assert torch.equal(g, w)


def test_images_stay_on_disk_when_they_would_not_fit_or_their_size_is_unknown(dataset, monkeypatch):
    root, rows = dataset
    files = loader.FileList(rows)
    exact = sum(3 * r.height * r.width for r in rows)
    assert train_batches.resident_bytes(files, (36, 72)) == exact
    fixed = train_batches.resident_bytes(files, (45, 45))
    assert fixed == sum(3 * 45 * -(-45 * max(r.height, r.width) // min(r.height, r.width)) for r in rows)
    monkeypatch.setattr(train_batches, "RESIDENT_BYTES", exact - 1)
    assert train_batches.resident_images(files, root, (36, 72), workers=0) is None
    unknown = loader.FileList([Row(r.path, r.label) for r in rows])
    assert train_batches.resident_bytes(unknown, (36, 72)) is None


def test_the_order_is_a_function_of_seed_and_epoch(dataset):
    root, rows = dataset
    order = train_batches.epoch_order(SEED, 1, len(rows))
    assert sorted(order.tolist()) == list(range(len(rows)))
    assert np.array_equal(order, train_batches.epoch_order(SEED, 1, len(rows)))
    assert not np.array_equal(order, train_batches.epoch_order(SEED, 2, len(rows)))
    assert not np.array_equal(order, train_batches.epoch_order(SEED + 1, 1, len(rows)))
    (first, _, labels), *_ = first_batches(root, rows, workers=0, count=1)
    assert labels.tolist() == [rows[i].label for i in order[:8]]
    (again, _, _), *_ = first_batches(root, rows, workers=0, epoch=2, count=1)
    assert not torch.equal(first, again)  # another epoch: another order and other draws


def test_a_sample_is_the_same_wherever_it_falls(dataset):
    # The draws of a sample depend on (seed, epoch, index), not on its position in a batch.
    root, rows = dataset
    transform = TrainTransform(scale=(36, 72), crop=32, flip=True, colour_shift=0.1)
    data = train_batches.TrainImages(loader.FileList(rows), root, transform, SEED)
    patch, shift, label = data[(3, 17)]
    image = images.decode(root / rows[17].path)
    want_patch, want_shift = transform(image, train_batches.sample_rng(SEED, 3, 17))
    assert torch.equal(patch, want_patch) and torch.equal(shift, want_shift) and label == rows[17].label


def test_loading_leaves_torch_global_generator_alone(dataset):
    # Dropout draws from torch's global generator: the loader must not shift it.
    root, rows = dataset
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    first_batches(root, rows, workers=1)
    assert torch.equal(torch.rand(3), want)


def test_val_images_come_rescaled_to_q_in_order(dataset):
    root, rows = dataset
    rows = rows[: loader.IMAGES_PER_TASK + 3]  # a full task and a short one
    files = loader.FileList(rows)
    for workers in (0, 2):
        got = list(loader.scaled_images(files, root, 37, workers=workers))
        assert len(got) == len(rows)
        for image, row in zip(got, rows):
            assert torch.equal(image, images.rescale(images.decode(root / row.path), 37)), row.path
            assert min(image.shape[1:]) == 37


def test_file_list_round_trips_paths_and_labels():
    rows = [Row("train/n01/a.JPEG", 3), Row("val/ünïcode x.jpg", 0), Row("v", 7)]
    files = loader.FileList(rows)
    assert len(files) == 3
    assert [files.path(i) for i in range(3)] == [r.path for r in rows]
    assert files.labels.tolist() == [3, 0, 7]


def test_an_undecodable_image_in_a_worker_is_one_line(dataset, tmp_path):
    root, rows = dataset
    bad = tmp_path / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    files = loader.FileList([Row("broken.JPEG", 0)])
    with pytest.raises(DatasetError) as err:
        list(loader.scaled_images(files, tmp_path, 37, workers=1))
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(bad)), message
