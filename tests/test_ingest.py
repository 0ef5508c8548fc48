"""Ingestion on real photographs: every layout, every bad-file kind, the fingerprint cache.

The 200 ILSVRC-2012 photographs of ../shared/data/imagenet-sample (one per class, named
<wnid>_<name>.JPEG) are laid out in each layout in a temporary folder; the bad files are made
from them with PIL. Files are hard-linked, not copied, where the test does not change them.
"""

import builtins
import errno
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from PIL import Image, ImageOps

from conftest import SHARED_DATA, tiny_params, vggrepro
from vggrepro.data import badfiles, fingerprint, images, ingest, scan

pytestmark = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real ILSVRC-2012 sample images not found at {SHARED_DATA}"
)
HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    found = sorted(SHARED_DATA.glob("*.JPEG"))
    assert len(found) == 200
    return found


def wnid(photo: Path) -> str:
    return photo.name[:9]


def place(photo: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(photo, dest)
    except OSError:  # another file system
        shutil.copy2(photo, dest)


def read(root, tmp_path: Path, **kw) -> scan.Dataset:
    kw.setdefault("source", "ilsvrc2012")
    return scan.read_dataset(root, cache_dir=tmp_path / "cache", **kw)


def labels_are_sorted_indices(dataset: scan.Dataset) -> None:
    order = sorted(dataset.names)
    wrong = [(e.path, e.label) for e in dataset.entries if e.label != order.index(e.wnid)]
    assert not wrong, wrong[:3]


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


def kaggle_tree(photos: list[Path], top: Path) -> Path:
    cls_loc = top / "ILSVRC" / "Data" / "CLS-LOC"
    for p in photos:
        place(p, cls_loc / "train" / wnid(p) / p.name)
    rows = ["ImageId,PredictionString"]
    for k, p in enumerate(reversed(val_sample(photos)), start=1):
        image_id = f"ILSVRC2012_val_{k:08d}"
        place(p, cls_loc / "val" / f"{image_id}.JPEG")
        rows.append(f"{image_id},{wnid(p)} 10 20 100 200 {wnid(p)} 5 5 50 50 ")
    (top / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (top / "LOC_synset_mapping.txt").write_text(
        "".join(f"{wnid(p)} {p.stem[10:].replace('_', ' ')}, other name\n" for p in photos)
    )
    return cls_loc


@pytest.mark.parametrize("given", ["top folder", "CLS-LOC folder"])
def test_kaggle_download_from_either_folder(photos, tmp_path, given):
    top = tmp_path / "imagenet-object-localization-challenge"
    cls_loc = kaggle_tree(photos, top)
    dataset = read(top if given == "top folder" else cls_loc, tmp_path)
    assert (len(dataset.names), dataset.summary()["train"], dataset.summary()["val"]) == (200, 200, 50)
    labels_are_sorted_indices(dataset)
    val = {e.path.rsplit("/", 1)[-1]: e.wnid for e in dataset.entries if e.split == "val"}
    assert val["ILSVRC2012_val_00000001.JPEG"] == wnid(val_sample(photos)[-1])
    assert dataset.names[wnid(photos[0])] == "tench, other name"
    prefix = "ILSVRC/Data/CLS-LOC/" if given == "top folder" else ""
    assert dataset.entries[0].path == f"{prefix}train/{wnid(photos[0])}/{photos[0].name}"


def write_devkit(folder: Path, photos: list[Path], val: list[Path]) -> None:
    """ILSVRC2012_devkit_t12/data/ as image-net.org ships it: IDs 1..n not in wnid order."""
    data = folder / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    leaves = list(reversed([wnid(p) for p in photos]))  # ILSVRC2012_ID 1 is the last wnid
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "wordnet_height", "num_train_images"]
    synsets = np.zeros((len(leaves) + 1, 1), dtype=[(f, "O") for f in fields])
    for i, w in enumerate(leaves):
        synsets[i, 0] = (i + 1, w, f"words of {w}", "", 0, 0, 1300)
    synsets[-1, 0] = (len(leaves) + 1, "n00001740", "entity", "", 3, 19, 0)  # an inner synset
    scipy.io.savemat(str(data / "meta.mat"), {"synsets": synsets})
    ids = [leaves.index(wnid(p)) + 1 for p in val]
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in ids))


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


def small_tree(photos: list[Path], root: Path, n: int = 6) -> list[Path]:
    """n classes, one photograph each in train and in val, shrunk so decoding takes no time."""
    for p in photos[:n]:
        for split in ("train", "val"):
            dest = root / split / wnid(p) / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.open(p).convert("RGB").resize((120, 90)).save(dest, quality=90)
    return photos[:n]


def test_a_val_class_unknown_to_train_is_one_line(photos, tmp_path):
    small_tree(photos, tmp_path / "ds")
    place(photos[100], tmp_path / "ds" / "val" / "n99999999" / "x.JPEG")
    with pytest.raises(ingest.DatasetError, match=r"val/n99999999: wnid 'n99999999' is not a class of the training set"):
        read(tmp_path / "ds", tmp_path)


def test_tilde_is_expanded(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    small_tree(photos, tmp_path / "ds")
    assert read("~/ds", tmp_path).summary()["train"] == 6


def test_an_unreadable_folder_is_one_line(photos, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    small_tree(photos, root)
    locked = root / "train" / wnid(photos[2])
    real_scandir = os.scandir

    def scandir(path="."):  # tests run as root, where chmod 000 blocks nothing
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ingest.DatasetError) as err:
        read(root, tmp_path)
    assert str(err.value) == f"{locked}: cannot be listed (Permission denied); expected a readable folder"


# --- bad files -----------------------------------------------------------------------------


def bad_tree(photos: list[Path], root: Path) -> dict[str, str]:
    """A folderised ILSVRC tree holding every bad-file kind; returns {kind: the path of one}."""
    good = small_tree(photos, root)
    c = [wnid(p) for p in good]
    cls = lambda k: root / "train" / c[k]  # noqa: E731
    photo = Image.open(photos[0]).convert("RGB").resize((160, 120))
    made = {}

    def save(kind: str, rel: str, write) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        made[kind] = rel

    raw = (cls(0) / good[0].name).read_bytes()
    save("truncated", f"train/{c[0]}/truncated.JPEG", lambda p: p.write_bytes(raw[: len(raw) // 2]))
    save("empty_file", f"train/{c[0]}/zero.JPEG", lambda p: p.write_bytes(b""))
    save("not_an_image", f"train/{c[0]}/text.JPEG", lambda p: p.write_text("just some text, not an image\n"))
    save("wrong_suffix", f"train/{c[1]}/png_inside.JPEG", lambda p: photo.save(p, format="PNG"))
    save("cmyk", f"train/{c[1]}/cmyk.JPEG", lambda p: photo.convert("CMYK").save(p, format="JPEG", quality=95))
    save("grayscale", f"train/{c[2]}/gray.png", lambda p: photo.convert("L").save(p))
    save("palette", f"train/{c[2]}/palette.png", lambda p: photo.convert("P").save(p))
    save("alpha", f"train/{c[2]}/rgba.PNG", lambda p: photo.convert("RGBA").save(p))
    gray16 = (np.asarray(photo.convert("L")).astype(np.uint16) * 257 + np.arange(120, dtype=np.uint16)[:, None])
    save("16bit", f"train/{c[3]}/sixteen.png", lambda p: Image.fromarray(gray16).save(p))
    exif = photo.getexif()
    exif[badfiles.EXIF_ORIENTATION] = 6  # rotate 90 degrees clockwise to view
    save("exif_rotated", f"train/{c[3]}/rotated.jpg", lambda p: photo.save(p, exif=exif, quality=95))
    save("small", f"train/{c[4]}/tiny.JPEG", lambda p: photo.resize((20, 15)).save(p))
    (root / "train" / "n99999998").mkdir()  # an empty class folder
    made["empty_class"] = "train/n99999998/"
    save("only_bad", "train/n99999999/broken.JPEG", lambda p: p.write_bytes(raw[:300]))  # a class of one bad file
    os.symlink("loop_b.JPEG", cls(4) / "loop_a.JPEG")
    os.symlink("loop_a.JPEG", cls(4) / "loop_b.JPEG")
    made["symlink_loop"] = f"train/{c[4]}/loop_a.JPEG"
    os.symlink("..", cls(5) / "up")  # a folder link back to train/
    made["folder_loop"] = f"train/{c[5]}/up/"
    os.symlink("nowhere.JPEG", cls(5) / "dangling.JPEG")
    made["broken_link"] = f"train/{c[5]}/dangling.JPEG"
    save("other_file", f"train/{c[5]}/notes.txt", lambda p: p.write_text("notes"))
    save("unlabelled", "train/loose.JPEG", lambda p: photo.save(p))
    (cls(0) / ".ipynb_checkpoints").mkdir()
    (cls(0) / ".ipynb_checkpoints" / "copy.JPEG").write_bytes(b"")  # hidden: no row, no image
    return made


def test_every_bad_file_kind_is_converted_or_excluded_with_a_reason(photos, tmp_path):
    root = tmp_path / "ds"
    made = bad_tree(photos, root)
    age(root)  # old enough to be cached (fingerprint.RACY_NS)
    dataset = read(root, tmp_path)
    rows = {(r.path, r.kind): r for r in dataset.bad}
    expected = {
        (made["truncated"], "truncated", "excluded"),
        (made["empty_file"], "empty_file", "excluded"),
        (made["not_an_image"], "not_an_image", "excluded"),
        (made["wrong_suffix"], "wrong_suffix", "converted"),
        (made["cmyk"], "cmyk", "converted"),
        (made["grayscale"], "grayscale", "converted"),
        (made["palette"], "palette", "converted"),
        (made["alpha"], "alpha", "converted"),
        (made["16bit"], "16bit", "converted"),
        (made["16bit"], "grayscale", "converted"),
        (made["exif_rotated"], "exif_rotated", "converted"),
        (made["empty_class"], "empty_class", "excluded"),
        (made["only_bad"], "truncated", "excluded"),
        ("train/n99999999/", "empty_class", "excluded"),
        (made["symlink_loop"], "symlink_loop", "excluded"),
        (made["symlink_loop"].replace("loop_a", "loop_b"), "symlink_loop", "excluded"),
        (made["folder_loop"], "symlink_loop", "excluded"),
        (made["broken_link"], "broken_link", "excluded"),
        (made["other_file"], "other_file", "ignored"),
        (made["unlabelled"], "unlabelled", "excluded"),
    }
    assert {(p, k, r.action) for (p, k), r in rows.items()} == expected
    summary = dataset.summary()
    assert summary["bad_files"]["symlink_loop"] == 3 and summary["excluded"] == 11 and summary["converted"] == 7
    assert summary["ignored"] == 1 and summary["classes"] == 6  # the two empty classes are none
    assert "every training image excluded" in rows[("train/n99999999/", "empty_class")].detail

    manifest = {e.path: e for e in dataset.entries}
    excluded = {r.path for r in dataset.bad if r.action != "converted"}
    assert not excluded & set(manifest)
    for kind in ("wrong_suffix", "cmyk", "grayscale", "palette", "alpha", "16bit", "exif_rotated", "small"):
        assert made[kind] in manifest, kind
    # What prepare accepts, training decodes: 8-bit RGB, upright, of the manifest's size.
    for e in dataset.entries:
        img = images.decode(root / e.path)
        assert (img.dtype, tuple(img.shape)) == (torch.uint8, (3, e.height, e.width)), e.path
    rotated = manifest[made["exif_rotated"]]
    assert (rotated.width, rotated.height) == (120, 160)  # stored 160 x 120, upright 120 x 160
    upright = np.asarray(ImageOps.exif_transpose(Image.open(root / made["exif_rotated"]))).transpose(2, 0, 1)
    assert np.abs(images.decode(root / made["exif_rotated"]).numpy().astype(int) - upright).mean() < 3
    cmyk = np.asarray(Image.open(root / made["cmyk"]).convert("RGB")).transpose(2, 0, 1)
    assert np.abs(images.decode(root / made["cmyk"]).numpy().astype(int) - cmyk).mean() < 3
    assert torch.equal(images.decode(root / made["16bit"])[0], torch.from_numpy((gray16_of(root / made["16bit"]) >> 8).astype(np.uint8)))
    assert (manifest[made["small"]].width, manifest[made["small"]].height) == (20, 15)  # kept: the rescale to S upsamples

    # A rerun, from the cache or with worker processes, writes the same bytes.
    for again in (read(root, tmp_path), read(root, tmp_path / "uncached", workers=2)):
        assert ingest.manifest_csv(again.entries) == ingest.manifest_csv(dataset.entries)
        assert badfiles.csv_text(again.bad) == badfiles.csv_text(dataset.bad)


def gray16_of(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.uint16)


def test_worker_processes_give_the_same_fingerprints(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "MIN_FOR_WORKERS", 0)
    root = tmp_path / "ds"
    bad_tree(photos, root)
    alone = read(root, tmp_path / "alone", workers=0)
    two = read(root, tmp_path / "two", workers=2)
    assert (two.decoded, ingest.manifest_csv(two.entries)) == (alone.decoded, ingest.manifest_csv(alone.entries))
    assert badfiles.csv_text(two.bad) == badfiles.csv_text(alone.bad)


def test_on_bad_file_fail_stops_at_the_first_one(photos, tmp_path):
    root = tmp_path / "ds"
    small_tree(photos, root)
    target = root / "train" / wnid(photos[1]) / "half.JPEG"
    raw = (root / "train" / wnid(photos[1]) / photos[1].name).read_bytes()
    target.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ingest.DatasetError) as err:
        read(root, tmp_path, on_bad_file="fail")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{target}: the data stops early")
    assert "(truncated); data.on_bad_file is fail" in message
    bad_tree(photos, tmp_path / "all")
    with pytest.raises(ingest.DatasetError, match=r"data.on_bad_file is fail"):
        read(tmp_path / "all", tmp_path, on_bad_file="fail")


def test_a_file_without_read_permission_is_excluded_and_retried(photos, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    small_tree(photos, root)
    age(root)
    locked = root / "train" / wnid(photos[0]) / photos[0].name
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):  # tests run as root, where chmod 000 blocks nothing
        if str(file) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(builtins, "open", fake_open)
        dataset = read(root, tmp_path)
    rel = locked.relative_to(root).as_posix()
    assert [(r.path, r.kind, r.detail) for r in dataset.bad] == [
        (f"train/{wnid(photos[0])}/", "empty_class", "every training image excluded; not a class, later labels shift"),
        (rel, "unreadable", "cannot be read (Permission denied)"),
        (f"val/{wnid(photos[0])}/{photos[0].name}", "unlabelled", f"its class '{wnid(photos[0])}' has no readable training image, so is no class"),
    ]
    assert rel not in {e.path for e in dataset.entries} and len(dataset.names) == 5
    readable = read(root, tmp_path)  # an unreadable file is not cached as bad: chmod keeps mtime
    assert rel in {e.path for e in readable.entries} and (readable.decoded, readable.cached) == (1, 11)


# --- the fingerprint cache -----------------------------------------------------------------


def age(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.utime(p, ns=(HOUR_AGO_NS, HOUR_AGO_NS))


def test_the_cache_skips_unchanged_files_and_sees_a_replaced_one(photos, tmp_path):
    root = tmp_path / "ds"
    small_tree(photos, root)
    first = read(root, tmp_path)
    assert (first.decoded, first.cached) == (12, 0)
    assert read(root, tmp_path).decoded == 12  # files written within RACY_NS are not trusted yet
    age(root)
    read(root, tmp_path)
    second = read(root, tmp_path)
    assert (second.decoded, second.cached) == (0, 12)
    assert ingest.manifest_csv(second.entries) == ingest.manifest_csv(first.entries)
    assert not list(root.rglob("*.csv")), "the cache must live outside the data root"
    replaced = root / "train" / wnid(photos[0]) / photos[0].name
    replaced.write_bytes((root / "train" / wnid(photos[1]) / photos[1].name).read_bytes())
    third = read(root, tmp_path)
    assert (third.decoded, third.cached) == (1, 11)
    changed = [a.path for a, b in zip(first.entries, third.entries) if a != b]
    assert changed == [replaced.relative_to(root).as_posix()]


def test_prepare_writes_the_manifest_classes_and_bad_files(photos, tmp_path):
    data = tmp_path / "photos"
    imagefolder_tree(photos[:40], data)
    (data / "tench" / "empty.jpeg").write_bytes(b"")
    project = tmp_path / "project"
    project.mkdir()
    params = tiny_params()
    params["data"] = {"source": "imagefolder", "root": str(data), "val_fraction": 0.25, "workers": 0}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = vggrepro("prepare", cwd=project)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: summary[k] for k in ("classes", "train", "val", "excluded", "bad_files")} == {
        "classes": 4, "train": 28, "val": 12, "excluded": 1, "bad_files": {"empty_file": 1}
    }
    manifest = (project / "data/manifest.csv").read_text().splitlines()
    assert manifest[0] == "split,path,label,wnid,width,height,size,blake2b" and len(manifest) == 41
    assert (project / "data/bad_files.csv").read_text() == (
        "path,kind,action,detail\ntench/empty.jpeg,empty_file,excluded,0 bytes\n"
    )
    assert (project / "data/classes.csv").read_text().splitlines()[1] == "0,American alligator,American alligator"
    assert list((project / ".vggrepro/cache").glob("fingerprints-*.csv"))
    assert ingest.read_manifest(project / "data/manifest.csv", "val")[0].width > 0
