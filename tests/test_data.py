"""The embedded dataset, ILSVRC-2012 ingestion, decoding and the mean RGB."""

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from conftest import SHARED_DATA
from vggrepro.data import embedded, images, ingest, scan
from vggrepro.stages.mean_rgb import rgb_moments

SPEC = embedded.EmbeddedSpec(classes=5, train_per_class=3, val_per_class=2, min_side=40, max_side=90, seed=3)


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def read(root: Path, cache: Path) -> tuple[list[ingest.Entry], dict[str, str]]:
    dataset = scan.read_dataset(root, source="ilsvrc2012", seed=0, val_fraction=0.1, on_bad_file="skip", cache_dir=cache)
    return dataset.entries, dataset.names


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embedded")
    embedded.generate(SPEC, root)
    return root


def test_generation_is_deterministic(dataset, tmp_path):
    embedded.generate(SPEC, tmp_path)
    assert digest(tmp_path) == digest(dataset)


def test_layout_is_ilsvrc_2012(dataset):
    wnid = embedded.wnid(0)
    assert (dataset / "train" / wnid / f"{wnid}_0.JPEG").is_file()
    assert (dataset / "val" / "ILSVRC2012_val_00000001.JPEG").is_file()
    header, first = (dataset / "LOC_val_solution.csv").read_text().splitlines()[:2]
    assert header == "ImageId,PredictionString"
    image_id, prediction = first.split(",")
    wnid, *box = prediction.split()
    assert image_id == "ILSVRC2012_val_00000001" and wnid.startswith("n9") and len(box) == 4


def test_images_vary_in_size_and_aspect(dataset):
    shapes = {tuple(images.decode(p).shape) for p in (dataset / "train").rglob("*.JPEG")}
    assert len(shapes) > 10
    for c, h, w in shapes:
        assert c == 3 and SPEC.min_side <= min(h, w) <= SPEC.max_side and max(h, w) <= 1.5 * min(h, w) + 1


def test_ingestion_reads_flat_val_with_solution_csv(dataset, tmp_path):
    entries, synsets = read(dataset, tmp_path)
    assert len(synsets) == SPEC.classes
    assert sum(e.split == "train" for e in entries) == SPEC.classes * SPEC.train_per_class
    val = [e for e in entries if e.split == "val"]
    assert len(val) == SPEC.classes * SPEC.val_per_class
    # Labels are the sorted-wnid index, as torchvision's ImageNet uses.
    assert all(e.label == sorted(synsets).index(e.wnid) for e in entries)


def test_ingestion_reads_folderised_val(dataset, tmp_path):
    root = tmp_path / "folderised"
    shutil.copytree(dataset / "train", root / "train")
    flat, _ = read(dataset, tmp_path / "cache")
    for e in flat:
        if e.split == "val":
            dest = root / "val" / e.wnid / Path(e.path).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(dataset / e.path, dest)
    entries, _ = read(root, tmp_path / "cache")
    assert sorted((Path(e.path).name, e.label) for e in entries if e.split == "val") == sorted(
        (Path(e.path).name, e.label) for e in flat if e.split == "val"
    )


def test_val_label_of_an_unknown_class_is_one_line(dataset, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(dataset, root)
    csv = root / "LOC_val_solution.csv"
    csv.write_text(csv.read_text().replace(embedded.wnid(1), "n12345678", 1))
    with pytest.raises(ingest.DatasetError, match=r"LOC_val_solution.csv:\d+: wnid 'n12345678'"):
        read(root, tmp_path / "cache")


def test_missing_val_labels_is_one_line(dataset, tmp_path):
    root = tmp_path / "nolabels"
    shutil.copytree(dataset, root)
    (root / "LOC_val_solution.csv").unlink()
    with pytest.raises(ingest.DatasetError, match="no val/<wnid>/ folders, no LOC_val_solution.csv and no ILSVRC2012_devkit_t12/data/"):
        read(root, tmp_path / "cache")


def test_a_broken_jpeg_is_named(tmp_path):
    bad = tmp_path / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ingest.DatasetError, match=r"broken.JPEG: not a decodable image \(Image is incomplete or truncated\)"):
        images.decode(bad)


def test_mean_and_std_rgb_are_exact(dataset, tmp_path):
    entries = [e for e in read(dataset, tmp_path)[0] if e.split == "train"]
    mean, std, pixels = rgb_moments(dataset, entries)
    stacked = torch.cat([images.decode(dataset / e.path).flatten(1).double() for e in entries], dim=1)
    assert pixels == stacked.shape[1]
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), stacked.mean(dim=1), rtol=0, atol=1e-9)
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), stacked.std(dim=1, correction=0), rtol=0, atol=1e-7)


def test_rescale_sets_the_smallest_side():
    img = torch.zeros(3, 90, 150, dtype=torch.uint8)
    assert images.rescale(img, 60).shape == (3, 60, 100)
    assert images.rescale(img.transpose(1, 2), 60).shape == (3, 100, 60)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real ILSVRC-2012 sample images not found at {SHARED_DATA}")
def test_real_ilsvrc_photographs_decode_to_rgb():
    paths = sorted(SHARED_DATA.glob("*.JPEG"))
    assert len(paths) == 200
    sides = []
    for p in paths:
        img = images.decode(p)
        assert img.dtype == torch.uint8 and img.shape[0] == 3, p.name  # grayscale JPEGs come back as RGB
        sides.append(min(img.shape[1:]))
        assert min(images.rescale(img, 256).shape[1:]) == 256
    assert min(sides) < 224 < max(sides)
