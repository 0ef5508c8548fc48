"""Ingestion on real photographs: every layout, with the labels torchvision would give.

The 200 ILSVRC-2012 photographs of ../shared/data/imagenet-sample (one per class, named
<wnid>_<name>.JPEG) are laid out in each layout in a temporary folder. They are shared with
other sessions, so they are copied, never linked (tests/ingest_trees.place). Bad files, the
fingerprint cache and the class list are tested on photographs made with PIL, which need no
../shared (tests/test_ingest_files.py; its bad-file test also runs on these photographs).
"""

from pathlib import Path

import pytest
from PIL import Image

from conftest import SHARED_DATA
from ingest_trees import kaggle_tree, labels_are_sorted_indices, place, read, wnid, write_devkit
from vggrepro.data import ingest

pytestmark = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real ILSVRC-2012 sample images not found at {SHARED_DATA}"
)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    found = sorted(SHARED_DATA.glob("*.JPEG"))
    assert len(found) == 200
    return found


def val_sample(photos: list[Path]) -> list[Path]:
    return photos[::4]  # 50 val images, of 50 of the 200 classes


# --- layouts -------------------------------------------------------------------------------


def test_ilsvrc_folderised(photos, tmp_path):
    root = tmp_path / "imagenet"
    for p in photos:
        place(p, root / "train" / wnid(p) / p.name)
    for p in val_sample(photos):
        place(p, root / "val" / wnid(p) / p.name)
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden: never a class
    place(photos[0], root / "train" / ".ipynb_checkpoints" / "x.JPEG")
    dataset = read(root, tmp_path)
    assert dataset.summary()["classes"] == 200 and dataset.summary()["train"] == 200 and dataset.summary()["val"] == 50
    labels_are_sorted_indices(dataset)
    assert dataset.entries[0].path == f"train/{wnid(photos[0])}/{photos[0].name}" and dataset.entries[0].label == 0
    # the sample's three grayscale JPEGs are converted, not dropped
    assert {r.kind for r in dataset.bad} == {"grayscale"} and len(dataset.bad) == 3 + sum(
        Image.open(p).mode == "L" for p in val_sample(photos)
    )


@pytest.mark.parametrize("given", ["top folder", "CLS-LOC folder"])
def test_kaggle_download_from_either_folder(photos, tmp_path, given):
    top = tmp_path / "imagenet-object-localization-challenge"
    cls_loc = kaggle_tree(photos, top, val_sample(photos))
    dataset = read(top if given == "top folder" else cls_loc, tmp_path)
    assert (len(dataset.names), dataset.summary()["train"], dataset.summary()["val"]) == (200, 200, 50)
    labels_are_sorted_indices(dataset)
    val = {e.path.rsplit("/", 1)[-1]: e.wnid for e in dataset.entries if e.split == "val"}
    assert val["ILSVRC2012_val_00000001.JPEG"] == wnid(val_sample(photos)[-1])
    assert dataset.names[wnid(photos[0])] == "tench, other name"
    prefix = "ILSVRC/Data/CLS-LOC/" if given == "top folder" else ""
    assert dataset.entries[0].path == f"{prefix}train/{wnid(photos[0])}/{photos[0].name}"


@pytest.mark.parametrize("devkit_at", ["under the root", "beside the root"])
def test_image_net_org_flat_val_with_the_devkit(photos, tmp_path, devkit_at):
    root = tmp_path / "ILSVRC2012"
    for p in photos:
        place(p, root / "train" / wnid(p) / p.name)
    val = val_sample(photos)
    for k, p in enumerate(val, start=1):
        place(p, root / "val" / f"ILSVRC2012_val_{k:08d}.JPEG")
    write_devkit(root if devkit_at == "under the root" else tmp_path, photos, val)
    dataset = read(root, tmp_path)
    assert (len(dataset.names), dataset.summary()["train"], dataset.summary()["val"]) == (200, 200, 50)
    labels_are_sorted_indices(dataset)
    got = [e.wnid for e in dataset.entries if e.split == "val"]
    assert got == [wnid(p) for p in val]
    assert dataset.names[wnid(photos[0])] == f"words of {wnid(photos[0])}"


def imagefolder_tree(photos: list[Path], root: Path, names: list[str] | None = None) -> list[str]:
    """Classes of 10 photographs each, named after each group's first photograph (or names)."""
    classes = []
    for g in range(len(photos) // 10):
        group = photos[g * 10 : (g + 1) * 10]
        name = names[g] if names else group[0].stem[10:].replace("_", " ") + (" (it's a class)" if g == 3 else "")
        classes.append(name)
        for p in group:
            place(p, root / name / (p.stem + (".jpg" if g % 2 else ".jpeg")))
    return classes


def test_imagefolder_with_a_seeded_stratified_val_split(photos, tmp_path):
    root = tmp_path / "photos"
    classes = imagefolder_tree(photos, root)
    (root / ".ipynb_checkpoints").mkdir()
    place(photos[0], root / ".ipynb_checkpoints" / "a.jpg")
    (root / classes[0] / "README.txt").write_text("not an image")
    dataset = read(root, tmp_path, source="imagefolder", val_fraction=0.2, seed=0)
    assert sorted(dataset.names) == sorted(classes)
    assert (dataset.summary()["train"], dataset.summary()["val"]) == (160, 40)
    labels_are_sorted_indices(dataset)
    per_class = {c: sum(e.split == "val" and e.wnid == c for e in dataset.entries) for c in classes}
    assert set(per_class.values()) == {2}, per_class
    assert [(r.path, r.kind, r.action) for r in dataset.bad if r.kind != "grayscale"] == [
        (f"{classes[0]}/README.txt", "other_file", "ignored")
    ]
    again = read(root, tmp_path / "again", source="imagefolder", val_fraction=0.2, seed=0)
    other_seed = read(root, tmp_path, source="imagefolder", val_fraction=0.2, seed=1)
    val = lambda d: {e.path for e in d.entries if e.split == "val"}  # noqa: E731
    assert val(again) == val(dataset) and val(other_seed) != val(dataset)
    assert ingest.manifest_csv(again.entries) == ingest.manifest_csv(dataset.entries)


def test_imagefolder_with_its_own_val_folder(photos, tmp_path):
    root = tmp_path / "photos"
    names = imagefolder_tree(photos[:150], root / "train")
    imagefolder_tree(photos[150:], root / "val", names[:5])  # val images of 5 of the 15 classes
    dataset = read(root, tmp_path, source="imagefolder")
    assert (len(dataset.names), dataset.summary()["train"], dataset.summary()["val"]) == (15, 150, 50)
    labels_are_sorted_indices(dataset)
    (root / "val" / "no such class").mkdir()
    place(photos[0], root / "val" / "no such class" / "x.jpg")
    with pytest.raises(ingest.DatasetError, match=r"val/no such class: class 'no such class' has no folder in .*/train"):
        read(root, tmp_path, source="imagefolder")
    (root / "train").rename(root / "elsewhere")
    with pytest.raises(ingest.DatasetError, match=r"photos: a val/ folder but no train/; expected train/<class>/ beside"):
        read(root, tmp_path, source="imagefolder")
