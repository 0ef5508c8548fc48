"""Ingestion without ../shared: the class list, bad files, the fingerprint cache, one-line errors.

Photographs are made with PIL (tests/ingest_trees.synthetic_photos), so every test here runs
anywhere; the bad-file test also runs on the real ILSVRC-2012 sample where ../shared holds it
(copied, never linked).
"""

import builtins
import errno
import io
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
from ingest_trees import (
    BAD_NAME,
    BAD_NAME_SHOWN,
    age,
    bad_tree,
    huge_header_jpeg,
    kaggle_tree,
    labels_are_sorted_indices,
    place,
    read,
    small_tree,
    synthetic_photos,
    wnid,
    write_devkit,
)
from vggrepro.data import badfiles, datastamp, fingerprint, images, ingest, scan, vallabels


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    return synthetic_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def no_racy_wait(monkeypatch):
    """Trust files changed just now (fingerprint.RACY_NS is tested on its own below)."""
    monkeypatch.setattr(fingerprint, "RACY_NS", 0)


def real_or_synthetic(request, tmp_path_factory) -> list[Path]:
    if request.param == "real":
        if not SHARED_DATA.is_dir():
            pytest.skip(f"real ILSVRC-2012 sample images not found at {SHARED_DATA}")
        return sorted(SHARED_DATA.glob("*.JPEG"))
    return synthetic_photos(tmp_path_factory.mktemp("photos"), n=8)


any_photos = pytest.fixture(params=["synthetic", "real"])(real_or_synthetic)


# --- the class list: labels never shift -----------------------------------------------------


def label_of(dataset: scan.Dataset) -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(sorted(dataset.names))}


def test_labels_match_torchvision_imagefolder_with_an_empty_and_a_linked_class(photos, tmp_path):
    from torchvision.datasets import ImageFolder

    root = tmp_path / "pets"
    for k, name in enumerate(["ant", "eel"]):
        for p in photos[4 * k : 4 * k + 4]:
            place(p, root / "train" / name / p.name.lower())
    (root / "train" / "bee").mkdir()  # empty
    (root / "train" / "cat").mkdir(parents=True)
    Image.open(photos[9]).save(root / "train" / "cat" / "cat.bmp", format="BMP")
    outside = tmp_path / "elsewhere" / "dog photos"
    for p in photos[10:13]:
        place(p, outside / p.name.lower())
    os.symlink(outside, root / "train" / "dog")  # a linked class
    os.symlink(root / "train" / "ant", root / "train" / "fox")  # a second link to a class folder: a class too
    dataset = read(root, tmp_path, source="imagefolder", val_fraction=0.25)
    expected = ImageFolder(str(root / "train"), allow_empty=True).class_to_idx
    assert label_of(dataset) == expected == {"ant": 0, "bee": 1, "cat": 2, "dog": 3, "eel": 4, "fox": 5}
    assert {e.wnid: e.label for e in dataset.entries} == {w: expected[w] for w in ("ant", "dog", "eel", "fox")}
    assert sum(e.wnid == "dog" for e in dataset.entries) == 3 and sum(e.wnid == "fox" for e in dataset.entries) == 4
    rows = {(r.path, r.kind, r.action) for r in dataset.bad}
    assert rows == {
        ("train/bee/", "empty_class", "kept_class"),
        ("train/cat/", "empty_class", "kept_class"),
        ("train/cat/cat.bmp", "unsupported_format", "excluded"),
    }
    assert dataset.summary()["classes"] == 6 and dataset.summary()["empty_classes"] == 2
    detail = {r.path: r.detail for r in dataset.bad}
    assert detail["train/bee/"] == "no training image; kept as class 1 so that no label shifts (it cannot be learnt)"


def test_a_class_whose_only_image_is_bad_keeps_its_label(photos, tmp_path):
    """The reviewer's repro: a 20-class Kaggle tree, n01440764's only image made 0 bytes."""
    top = tmp_path / "kaggle"
    cls_loc = kaggle_tree(photos, top, photos[5:])
    (cls_loc / "train" / wnid(photos[0]) / photos[0].name).write_bytes(b"")
    with (top / "LOC_synset_mapping.txt").open("a") as f:
        f.write("n99999999 a class with no folder\n")
    dataset = read(top, tmp_path)
    assert len(dataset.names) == 21
    labels = label_of(dataset)
    assert labels[wnid(photos[0])] == 0 and labels[wnid(photos[1])] == 1 and labels["n99999999"] == 20
    labels_are_sorted_indices(dataset)
    assert {e.wnid: e.label for e in dataset.entries}[wnid(photos[1])] == 1
    kept = {r.path: r for r in dataset.bad if r.kind == "empty_class"}
    assert set(kept) == {f"ILSVRC/Data/CLS-LOC/train/{wnid(photos[0])}/", "ILSVRC/Data/CLS-LOC/train/n99999999/"}
    assert all(r.action == "kept_class" for r in kept.values())
    assert kept["ILSVRC/Data/CLS-LOC/train/n99999999/"].detail.startswith("listed in LOC_synset_mapping.txt but no folder")
    assert kept[f"ILSVRC/Data/CLS-LOC/train/{wnid(photos[0])}/"].detail.startswith("every training image excluded (1)")
    assert ingest.classes_csv(dataset.names).splitlines()[1] == f'0,{wnid(photos[0])},"tench, other name"'


def test_the_devkit_meta_mat_is_the_class_list_without_a_mapping_file(photos, tmp_path):
    root = tmp_path / "ILSVRC2012"
    for p in photos[:10]:  # a subset of the devkit's 20 classes on disk
        place(p, root / "train" / wnid(p) / p.name)
    for k, p in enumerate(photos[:4], start=1):
        place(p, root / "val" / f"ILSVRC2012_val_{k:08d}.JPEG")
    write_devkit(root, photos, photos[:4])
    dataset = read(root, tmp_path)
    assert sorted(dataset.names) == sorted(wnid(p) for p in photos)
    assert dataset.summary()["empty_classes"] == 10 and dataset.names[wnid(photos[15])] == f"words of {wnid(photos[15])}"
    labels_are_sorted_indices(dataset)


# --- bad files -----------------------------------------------------------------------------


def test_every_bad_file_kind_is_converted_or_excluded_with_a_reason(any_photos, tmp_path, no_racy_wait):
    root = tmp_path / "ds"
    made = bad_tree(any_photos, root)
    age(root)
    dataset = read(root, tmp_path)
    rows = {(r.path, r.kind): r for r in dataset.bad}
    expected = {
        (made["truncated"], "truncated", "excluded"),
        (made["empty_file"], "empty_file", "excluded"),
        (made["not_an_image"], "not_an_image", "excluded"),
        (made["too_large"], "too_large", "excluded"),
        (made["too_elongated"], "too_elongated", "excluded"),
        (made["wrong_suffix"], "wrong_suffix", "converted"),
        (made["cmyk"], "cmyk", "converted"),
        (made["hidden"], "hidden", "excluded"),
        (made["unsupported_format"], "unsupported_format", "excluded"),
        (made["grayscale"], "grayscale", "converted"),
        (made["palette"], "palette", "converted"),
        (made["alpha"], "alpha", "converted"),
        (made["16bit"], "16bit", "converted"),
        (made["16bit"], "grayscale", "converted"),
        (made["exif_rotated"], "exif_rotated", "converted"),
        (made["empty_class"], "empty_class", "kept_class"),
        (made["only_bad"], "truncated", "excluded"),
        ("train/n99999999/", "empty_class", "kept_class"),
        (made["symlink_loop"], "symlink_loop", "excluded"),
        (made["symlink_loop"].replace("loop_a", "loop_b"), "symlink_loop", "excluded"),
        (made["folder_loop"], "symlink_loop", "excluded"),
        (made["broken_link"], "broken_link", "excluded"),
        (made["other_file"], "other_file", "ignored"),
        (made["bad_name"], "bad_name", "excluded"),
        (made["unlabelled"], "unlabelled", "excluded"),
    }
    assert {(p, k, r.action) for (p, k), r in rows.items()} == expected
    summary = dataset.summary()
    # files once each, by their final action; the two empty classes and the folder loop are no files
    assert (summary["excluded"], summary["converted"], summary["ignored"], summary["empty_classes"]) == (13, 7, 1, 2)
    assert summary["bad_files"]["symlink_loop"] == 3 and summary["classes"] == 8  # the empty classes are classes
    assert rows[(made["too_large"], "too_large")].detail == (
        "the header claims 180,000,000 pixels, above the limit of 178,956,970 (PIL's decompression-bomb threshold); not decoded"
    )
    assert rows[(made["too_elongated"], "too_elongated")].detail == (
        "400x20: the long side is 20.0 times the short one, above the limit of 16 (the rescale to S or Q sets the "
        "short side); not decoded"
    )
    assert not [r.detail for r in dataset.bad if ".cpp" in r.detail or "/__w/" in r.detail]  # no build paths

    manifest = {e.path: e for e in dataset.entries}
    excluded = {r.path for r in dataset.bad if r.action != "converted"}
    assert not excluded & set(manifest)
    for kind in ("wrong_suffix", "cmyk", "grayscale", "palette", "alpha", "16bit", "exif_rotated", "small", "mpo", "webp"):
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
    gray16 = np.asarray(Image.open(root / made["16bit"])).astype(np.uint16)
    assert torch.equal(images.decode(root / made["16bit"])[0], torch.from_numpy((gray16 >> 8).astype(np.uint8)))
    assert (manifest[made["small"]].width, manifest[made["small"]].height) == (20, 15)  # kept: the rescale to S upsamples
    assert (manifest[made["mpo"]].width, manifest[made["mpo"]].height) == (160, 120)  # the first picture

    # A rerun, from the cache or with worker processes, writes the same bytes.
    for again in (read(root, tmp_path), read(root, tmp_path / "uncached", workers=2)):
        assert ingest.manifest_csv(again.entries) == ingest.manifest_csv(dataset.entries)
        assert badfiles.csv_text(again.bad) == badfiles.csv_text(dataset.bad)
    assert read(root, tmp_path).decoded == 0


def test_worker_processes_give_the_same_fingerprints(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "MIN_FOR_WORKERS", 0)
    root = tmp_path / "ds"
    bad_tree(photos, root)
    alone = read(root, tmp_path / "alone", workers=0)
    two = read(root, tmp_path / "two", workers=2)
    assert (two.decoded, ingest.manifest_csv(two.entries)) == (alone.decoded, ingest.manifest_csv(alone.entries))
    assert badfiles.csv_text(two.bad) == badfiles.csv_text(alone.bad)


def test_a_huge_header_is_refused_before_decoding(tmp_path, monkeypatch):
    """60000 x 60000 in 675 bytes: the decoder would allocate 10.8 GB."""
    bomb = tmp_path / "bomb.JPEG"
    bomb.write_bytes(huge_header_jpeg(60000, 60000))
    monkeypatch.setattr(images, "decode_bytes", lambda data: pytest.fail("decoded"))
    fp = fingerprint.probe(str(bomb))
    assert fp.notes == ((
        "too_large",
        "the header claims 3,600,000,000 pixels, above the limit of 178,956,970 (PIL's decompression-bomb threshold); not decoded",
    ),)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's own check off: ours still holds
    with pytest.raises(images.TooLarge, match=r"claims 60000x60000 = 3,600,000,000 pixels"):
        images.read_header(bomb.read_bytes())  # our limit, whatever PIL's setting
    assert images.read_header(huge_header_jpeg(2000, 1000)).width == 2000  # below the limit: read


def test_an_elongated_image_is_refused_from_its_header_or_else_from_its_decoded_size(tmp_path, monkeypatch):
    """Rescaled to a short side of Q, a 10 x 17,000,000 strip would hold 1.7 million Q x Q squares."""
    assert images.read_header(huge_header_jpeg(16, 1)).width == 16  # 16:1, the limit itself: accepted
    with pytest.raises(images.TooElongated, match=r"^17x1: "):
        images.read_header(huge_header_jpeg(17, 1))
    with pytest.raises(images.TooElongated, match=r"^10x17000000: the long side is 1,700,000.0 times"):
        images.check_shape(10, 17_000_000)
    strip = tmp_path / "strip.png"
    Image.new("RGB", (2, 40), (200, 30, 30)).save(strip)
    assert fingerprint.probe(str(strip)).notes[0][0] == "too_elongated"
    monkeypatch.setattr(images, "read_header", lambda data: None)  # a header PIL cannot read: the decoder's size decides
    assert fingerprint.probe(str(strip)).notes == ((
        "too_elongated",
        "2x40: the long side is 20.0 times the short one, above the limit of 16 (the rescale to S or Q sets the "
        "short side); not decoded",
    ),)


def test_errors_that_may_pass_are_not_cached_and_details_hold_no_build_path(photos, tmp_path, monkeypatch, no_racy_wait):
    root = tmp_path / "ds"
    small_tree(photos, root)
    victim = root / "train" / wnid(photos[1]) / photos[1].name
    real = images.decode_bytes
    victim_bytes = victim.read_bytes()

    def allocation_fails(data):
        if bytes(data) == victim_bytes:
            raise RuntimeError(
                "[enforce fail at /pytorch/c10/core/impl/alloc_cpu.cpp:117] . DefaultCPUAllocator: "
                "can't allocate memory: you tried to allocate 10800000000 bytes. Error code 12 (Cannot allocate memory)"
            )
        return real(data)

    with monkeypatch.context() as m:
        m.setattr(images, "decode_bytes", allocation_fails)
        first = read(root, tmp_path)
    rel = victim.relative_to(root).as_posix()
    row = next(r for r in first.bad if r.path == rel)
    assert (row.kind, row.action) == ("out_of_memory", "excluded")
    assert row.detail == (
        "decoding ran out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate "
        "10800000000 bytes. Error code 12 (Cannot allocate memory)); tried again next time"
    )
    with monkeypatch.context() as m:
        m.setattr(images, "decode_bytes", lambda data: (_ for _ in ()).throw(MemoryError()))
        fp = fingerprint.probe(str(victim))
    assert fp.notes[0][0] == "out_of_memory" and fp.excluded
    assert not fingerprint.Cache(tmp_path, root).keeps((1, 0, 1, 0), fp)  # never cached, however old
    again = read(root, tmp_path)
    # both copies of that photograph (train and val hold the same bytes) are tried again, and pass
    assert (again.decoded, again.cached) == (2, 10) and rel in {e.path for e in again.entries}
    assert images.describe(RuntimeError("decode_jpeg, /__w/vision/torchvision/csrc/io/image/cpu/decode_jpeg.cpp:171, Bad")) == "Bad"
    assert images.describe(RuntimeError("failed at /build/x/decode_png.cpp:79: out of bound")) == "failed at <source>: out of bound"


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
    # an empty class is no bad file: fail does not stop at it
    (root / "train" / "n99999998").mkdir()
    target.unlink()
    assert read(root, tmp_path, on_bad_file="fail").summary()["empty_classes"] == 1


def test_a_file_without_read_permission_is_excluded_and_retried(photos, tmp_path, monkeypatch, no_racy_wait):
    root = tmp_path / "ds"
    small_tree(photos, root)
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
        (f"train/{wnid(photos[0])}/", "empty_class", "every training image excluded (1); kept as class 0 so that no label shifts (it cannot be learnt)"),
        (rel, "unreadable", "cannot be read (Permission denied)"),
    ]
    assert rel not in {e.path for e in dataset.entries} and len(dataset.names) == 6
    assert f"val/{wnid(photos[0])}/{photos[0].name}" in {e.path for e in dataset.entries}  # its class is a class
    readable = read(root, tmp_path)  # an unreadable file is not cached as bad: chmod keeps mtime
    assert rel in {e.path for e in readable.entries} and (readable.decoded, readable.cached) == (1, 11)


def test_a_file_name_that_is_not_utf8_is_a_row_and_a_class_folder_so_named_one_line(photos, tmp_path, no_racy_wait):
    root = tmp_path / "ds"
    small_tree(photos, root)
    folder = root / "train" / wnid(photos[0])
    shutil.copyfile(folder / photos[0].name, os.fsencode(folder) + b"/" + BAD_NAME)
    os.mkdir(os.fsencode(folder) + b"/sub-" + BAD_NAME[:-4])
    dataset = read(root, tmp_path)
    assert {(r.path, r.kind, r.action) for r in dataset.bad} == {
        (f"train/{wnid(photos[0])}/{BAD_NAME_SHOWN}", "bad_name", "excluded"),
        (f"train/{wnid(photos[0])}/sub-caf\\xe9/", "bad_name", "excluded"),
    }
    assert list((tmp_path / "cache").glob("fingerprints-*.csv"))  # the cache was saved
    assert badfiles.csv_text(dataset.bad).isascii()
    datastamp.stamp(root)  # no crash either
    os.mkdir(os.fsencode(root / "train") + b"/n0\xff")
    with pytest.raises(ingest.DatasetError) as err:
        read(root, tmp_path)
    assert str(err.value) == (
        f"{root}/train/n0\\xff: a class folder whose name is not UTF-8; rename it (leaving it out would shift every later label)"
    )


# --- layouts: one-line errors and sibling folders ------------------------------------------------


def test_a_val_class_unknown_to_train_is_one_line(photos, tmp_path):
    small_tree(photos, tmp_path / "ds")
    place(photos[10], tmp_path / "ds" / "val" / "n99999999" / "x.JPEG")
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


@pytest.mark.parametrize("name", [vallabels.SOLUTION_CSV, "LOC_synset_mapping.txt", vallabels.GROUND_TRUTH])
@pytest.mark.parametrize("problem", ["unreadable", "not UTF-8"])
def test_an_unreadable_label_file_is_one_line(photos, tmp_path, monkeypatch, name, problem):
    if name == vallabels.GROUND_TRUTH:
        root = tmp_path / "ds"
        for k, p in enumerate(photos[:4], start=1):
            place(p, root / "train" / wnid(p) / p.name)
            place(p, root / "val" / f"ILSVRC2012_val_{k:08d}.JPEG")
        write_devkit(root, photos[:4], photos[:4])
        target = root / vallabels.DEVKIT / "data" / name
    else:
        root = tmp_path / "kaggle"
        kaggle_tree(photos[:4], root, photos[:4])
        target = root / name
    assert read(root, tmp_path).summary()["val"] == 4
    if problem == "unreadable":
        real_open = builtins.open

        def fake_open(file, *args, **kwargs):  # tests run as root, where chmod 000 blocks nothing
            if str(file) == str(target):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)  # pathlib's
        expected = f"{target}: cannot be read (Permission denied); expected a readable text file"
    else:
        target.write_bytes(target.read_bytes() + b"\xff\xfe\n")
        expected = f"{target}: not UTF-8 text (byte "
    with pytest.raises(ingest.DatasetError) as err:
        read(root, tmp_path)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_a_meta_mat_without_a_field_is_one_line(photos, tmp_path):
    root = tmp_path / "ds"
    for k, p in enumerate(photos[:3], start=1):
        place(p, root / "train" / wnid(p) / p.name)
        place(p, root / "val" / f"ILSVRC2012_val_{k:08d}.JPEG")
    write_devkit(root, photos[:3], photos[:3])
    meta = root / vallabels.DEVKIT / "data" / "meta.mat"
    synsets = np.zeros((3, 1), dtype=[(f, "O") for f in ("ILSVRC2012_ID", "WNID", "words")])  # no num_children
    for i, p in enumerate(photos[:3]):
        synsets[i, 0] = (i + 1, wnid(p), "words")
    scipy.io.savemat(str(meta), {"synsets": synsets})
    with pytest.raises(ingest.DatasetError) as err:
        read(root, tmp_path)
    assert str(err.value).startswith(f"{meta}: its synsets have no field 'num_children'; expected a 'synsets' struct array")


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_an_imagefolder_val_folder_may_be_named_val_valid_or_validation(photos, tmp_path, val_name):
    root = tmp_path / "pets"
    for k, name in enumerate(["ant", "bee"]):
        place(photos[2 * k], root / "train" / name / "a.jpg")
        place(photos[2 * k + 1], root / val_name / name / "b.jpg")
    place(photos[5], root / "train" / "ant" / ".hidden.jpg")
    (root / "README.md").write_text("about the data")
    dataset = read(root, tmp_path, source="imagefolder")
    assert [(e.split, e.path) for e in dataset.entries] == [
        ("train", "train/ant/a.jpg"), ("train", "train/bee/a.jpg"), ("val", f"{val_name}/ant/b.jpg"), ("val", f"{val_name}/bee/b.jpg")
    ]
    assert {(r.path, r.kind, r.action) for r in dataset.bad} == {
        ("train/ant/.hidden.jpg", "hidden", "excluded"),
        ("README.md", "other_file", "ignored"),
    }
    place(photos[6], root / "test" / "ant" / "c.jpg")
    with pytest.raises(ingest.DatasetError) as err:
        read(root, tmp_path, source="imagefolder")
    assert str(err.value) == (
        f"{root}/test: a folder beside train/ that would not be read; expected train/ and at most one val folder "
        f"(val/, valid/, validation/): move test/ out of data.root"
    )
    shutil.rmtree(root / "test")
    other = "val" if val_name != "val" else "valid"
    (root / other).mkdir()
    with pytest.raises(ingest.DatasetError, match=r"pets: both val.*/ and val.*/; expected one val folder beside train/"):
        read(root, tmp_path, source="imagefolder")


@pytest.mark.parametrize("fmt, options", [("WEBP", {"lossless": True}), ("PNG", {}), ("JPEG", {"quality": 100})])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_decodes_upright_in_every_format(fmt, options, orientation):
    """torchvision orients JPEG and PNG; WebP is oriented by vggrepro itself: all as PIL does."""
    pixels = np.random.default_rng(orientation).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[badfiles.EXIF_ORIENTATION] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, exif=exif.tobytes(), **options)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
    decoded = images.decode_bytes(buf.getvalue()).permute(1, 2, 0).numpy()
    assert decoded.shape == upright.shape
    tolerance = 0 if fmt != "JPEG" else 40  # a JPEG's own loss; its shape and layout are the point
    assert np.abs(decoded.astype(int) - upright.astype(int)).mean() <= tolerance / 4


# --- the fingerprint cache -----------------------------------------------------------------


def test_the_cache_skips_unchanged_files_and_sees_a_replaced_one(photos, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    small_tree(photos, root)
    first = read(root, tmp_path)
    assert (first.decoded, first.cached) == (12, 0)
    assert read(root, tmp_path).decoded == 12  # files changed within RACY_NS are not trusted yet
    monkeypatch.setattr(fingerprint, "RACY_NS", 0)
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
    # New decoding or checking code (or another Pillow) trusts no verdict of the old one.
    monkeypatch.setattr(fingerprint, "verdict_code", lambda: "code of another version")
    fourth = read(root, tmp_path)
    assert (fourth.decoded, fourth.cached) == (12, 0)


def test_the_cache_is_keyed_on_the_checking_code_itself():
    header = fingerprint.verdict_code()
    assert "code " in header and "Pillow" in header and "torchvision" in header


def edit_in_place_keeping_size_and_mtime(path: Path) -> None:
    """What exiftool -P does: new bytes, same size, the old mtime put back."""
    st = path.stat()
    time.sleep(0.02)  # past the file system's timestamp tick, so the ctime moves
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the entropy-coded data, before the EOI marker
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_an_in_place_edit_that_restores_the_mtime_is_seen(photos, tmp_path, no_racy_wait):
    root = tmp_path / "ds"
    small_tree(photos, root)
    age(root)
    first = read(root, tmp_path)
    assert read(root, tmp_path).cached == 12
    stamp = datastamp.stamp(root)
    edited = root / "val" / wnid(photos[2]) / photos[2].name
    edit_in_place_keeping_size_and_mtime(edited)
    assert datastamp.stamp(root) != stamp
    again = read(root, tmp_path)
    assert (again.decoded, again.cached) == (1, 11)
    changed = [(a.path, a.size == b.size) for a, b in zip(first.entries, again.entries) if a != b]
    assert changed == [(edited.relative_to(root).as_posix(), True)]


def test_a_killed_first_pass_keeps_what_it_decoded(photos, tmp_path, monkeypatch, no_racy_wait):
    monkeypatch.setattr(fingerprint, "CHECKPOINT", 3)
    root = tmp_path / "ds"
    small_tree(photos, root)
    real_probe = fingerprint.probe
    calls, parts_on_disk = [], []

    def killed_at_the_eighth(path):
        calls.append(path)
        if len(calls) == 8:
            parts_on_disk.extend(sorted((tmp_path / "cache").glob("*.part-*.csv")))
            raise KeyboardInterrupt
        return real_probe(path)

    with monkeypatch.context() as m:
        m.setattr(fingerprint, "probe", killed_at_the_eighth)
        with pytest.raises(KeyboardInterrupt):
            read(root, tmp_path)
    # two checkpoints of 3 were on disk before the kill (a SIGKILL keeps them); Ctrl-C adds the 7th
    assert [p.name.rsplit(".", 2)[-2] for p in parts_on_disk] == ["part-000001", "part-000002"]
    assert not list((tmp_path / "cache").glob(".*.tmp"))
    second = read(root, tmp_path)
    assert (second.decoded, second.cached) == (5, 7)
    assert not list((tmp_path / "cache").glob("*.part-*.csv"))  # folded into the cache
    assert (read(root, tmp_path).decoded, read(root, tmp_path).cached) == (0, 12)


# --- prepare, the stage ----------------------------------------------------------------------


def test_prepare_writes_the_manifest_classes_and_bad_files(photos, tmp_path):
    data = tmp_path / "photos"
    for k, name in enumerate(["American alligator", "tench", "zebra"]):
        for p in photos[5 * k : 5 * k + 4]:
            place(p, data / name / p.name.lower())
    (data / "tench" / "empty.jpeg").write_bytes(b"")
    (data / "unicorn").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    params = tiny_params()
    params["data"] = {"source": "imagefolder", "root": str(data), "val_fraction": 0.25, "workers": 0}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = vggrepro("prepare", cwd=project)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: summary[k] for k in ("classes", "train", "val", "excluded", "empty_classes", "bad_files")} == {
        "classes": 4, "train": 9, "val": 3, "excluded": 1, "empty_classes": 1,
        "bad_files": {"empty_class": 1, "empty_file": 1},
    }
    manifest = (project / "data/manifest.csv").read_text().splitlines()
    assert manifest[0] == "split,path,label,wnid,width,height,size,blake2b" and len(manifest) == 13
    assert (project / "data/bad_files.csv").read_text() == (
        "path,kind,action,detail\ntench/empty.jpeg,empty_file,excluded,0 bytes\n"
        "unicorn/,empty_class,kept_class,no training image; kept as class 2 so that no label shifts (it cannot be learnt)\n"
    )
    assert (project / "data/classes.csv").read_text().splitlines()[1:] == [
        "0,American alligator,American alligator", "1,tench,tench", "2,unicorn,unicorn", "3,zebra,zebra"
    ]
    assert list((project / ".vggrepro/cache").glob("fingerprints-*.csv"))
    assert ingest.read_manifest(project / "data/manifest.csv", "val")[0].width > 0


def test_prepare_opens_only_regular_files(photos, tmp_path):
    """A named pipe, a link to a device and a folder named like images get a not_a_file row
    each: nothing blocks (a pipe would hold the decoder forever) and nothing is read."""
    data = tmp_path / "photos"
    for k, name in enumerate(["tench", "zebra"]):
        for p in photos[4 * k : 4 * k + 4]:
            place(p, data / name / p.name.lower())
    os.mkfifo(data / "tench" / "p.JPEG")
    (data / "tench" / "zero.JPEG").symlink_to("/dev/zero")
    (data / "zebra" / "x.JPEG").mkdir()
    place(photos[0], data / "zebra" / "x.JPEG" / "inside.jpeg")
    project = tmp_path / "project"
    project.mkdir()
    params = tiny_params()
    params["data"] = {"source": "imagefolder", "root": str(data), "val_fraction": 0.25, "workers": 2}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = vggrepro("prepare", cwd=project)  # the helper's timeout: a blocked read fails the test
    assert done.returncode == 0, done.stderr
    rows = (project / "data/bad_files.csv").read_text().splitlines()[1:]
    assert rows == [
        "tench/p.JPEG,not_a_file,excluded,\"a named pipe, not a regular file; not read\"",
        "tench/zero.JPEG,not_a_file,excluded,\"a character device, not a regular file; not read\"",
        "zebra/x.JPEG/,not_a_file,excluded,a folder named like an image; not read",
    ], rows
    assert "inside.jpeg" not in (project / "data/manifest.csv").read_text()


def _alive(pid: int) -> bool:
    """Running, not a zombie (a reparented child may wait for a reaper that never comes)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_no_decoding_worker_outlives_a_killed_prepare(photos, tmp_path):
    import signal
    import subprocess
    import sys

    data = tmp_path / "photos"
    for k in range(2000):
        place(photos[k % len(photos)], data / f"class{k % 2}" / f"{k}.jpeg")
    project = tmp_path / "project"
    project.mkdir()
    params = tiny_params()
    params["data"] = {"source": "imagefolder", "root": str(data), "val_fraction": 0.25, "workers": 2}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    stage = subprocess.Popen([sys.executable, "-m", "vggrepro", "prepare"], cwd=project,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    deadline = time.monotonic() + 120
    while not children and stage.poll() is None and time.monotonic() < deadline:
        listed = Path(f"/proc/{stage.pid}/task/{stage.pid}/children")
        children = [int(p) for p in listed.read_text().split()] if listed.exists() else []
        time.sleep(0.05)
    assert children, "prepare ended or never started its decoding workers"
    stage.send_signal(signal.SIGKILL)
    stage.wait()
    # At once: torch's own watchdog looks every 5 s, between tasks.
    deadline = time.monotonic() + 2
    while any(map(_alive, children)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(map(_alive, children)), [p for p in children if _alive(p)]


@pytest.mark.slow  # seconds: the default suite must stay under 10 minutes with its install
def test_the_same_bytes_in_train_and_val_get_a_row_and_a_broken_class_link_stops_prepare(photos, tmp_path):
    data = tmp_path / "photos"
    for split in ("train", "val"):
        for k, name in enumerate(["tench", "zebra"]):
            for p in photos[4 * k + (split == "val") * 2 : 4 * k + 2 + (split == "val") * 2]:
                place(p, data / split / name / p.name.lower())
    place(photos[0], data / "val" / "zebra" / "copy.jpeg")  # tench's training image, under another label
    project = tmp_path / "project"
    project.mkdir()
    params = tiny_params()
    params["data"] = {"source": "imagefolder", "root": str(data), "workers": 0}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = vggrepro("prepare", cwd=project)
    assert done.returncode == 0, done.stderr
    rows = (project / "data/bad_files.csv").read_text().splitlines()[1:]
    assert rows == [f"val/zebra/copy.jpeg,duplicate_across_splits,kept,the same bytes as training image "
                    f"train/tench/{photos[0].name.lower()}; kept"], rows
    assert "val/zebra/copy.jpeg" in (project / "data/manifest.csv").read_text()
    (data / "train" / "perch").symlink_to(tmp_path / "gone")  # sorts between tench and zebra
    before = (project / "data/classes.csv").read_text()
    done = vggrepro("prepare", cwd=project)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "train/perch: a class folder that cannot be followed" in done.stderr
    assert (project / "data/classes.csv").read_text() == before


def test_a_file_over_the_size_limit_is_never_read(tmp_path, monkeypatch):
    """A 6 GB file named .jpg would take 12 GB: read whole, then copied by the decoder."""
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(images.MAX_FILE_BYTES + 1)  # sparse: no disk used
    monkeypatch.setattr("builtins.open", _refuse_reads(open))
    fp = fingerprint.probe(str(big))
    assert fp.notes == (("too_large", "1,073,741,825 bytes, above the limit of 1,073,741,824 for one image file; not read"),)
    assert fp.size == images.MAX_FILE_BYTES + 1 and fp.excluded


def _refuse_reads(real_open):
    def opened(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        f.read = lambda *a: pytest.fail(f"read {path}")
        return f
    return opened
