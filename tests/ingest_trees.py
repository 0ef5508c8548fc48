"""Dataset trees for the ingestion tests, built in a temporary folder.

Photographs are either made here with PIL (synthetic_photos: every test can use them) or the
200 ILSVRC-2012 photographs of ../shared/data/imagenet-sample, named <wnid>_<name>.JPEG. Those
are shared with other sessions: they are copied (shutil.copyfile: new inode, new permissions),
never hard-linked or symlinked, so no write in a test can reach them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from vggrepro.data import badfiles, scan

HOUR_AGO_NS = time.time_ns() - 3600 * 10**9
SYNTHETIC_NAMES = [
    "tench", "goldfish", "great_white_shark", "tiger_shark", "hammerhead", "electric_ray", "stingray", "cock",
    "hen", "ostrich", "brambling", "goldfinch", "house_finch", "junco", "indigo_bunting", "robin", "bulbul",
    "jay", "magpie", "chickadee",
]


def synthetic_photos(folder: Path, n: int = 20) -> list[Path]:
    """n small JPEG 'photographs' named like the ILSVRC sample (<wnid>_<name>.JPEG), sorted by wnid."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    made = []
    for k in range(n):
        h, w = 90 + 6 * (k % 5), 120 + 8 * (k % 7)
        yy, xx = np.mgrid[0:h, 0:w]
        base = rng.integers(0, 256, 3)
        pixels = (base + np.stack([xx * 2, yy * 3, (xx + yy)], axis=-1) + rng.integers(0, 30, (h, w, 3))) % 256
        path = folder / f"n{1440764 + 1000 * k:08d}_{SYNTHETIC_NAMES[k % len(SYNTHETIC_NAMES)]}.JPEG"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        made.append(path)
    return made


def wnid(photo: Path) -> str:
    return photo.name[:9]


def place(photo: Path, dest: Path) -> None:
    """A copy of photo at dest (never a link: the photographs may be shared)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(photo, dest)


def read(root, tmp_path: Path, **kw) -> scan.Dataset:
    """The tree read as prepare reads it, less its duplicate_across_splits rows: these trees put
    the same few photographs in train and val, and the rows are tested on their own
    (test_ingest_files.test_the_same_bytes_in_train_and_val_...)."""
    kw.setdefault("source", "ilsvrc2012")
    for key in ("seed", "val_fraction", "on_bad_file"):  # the schema's defaults
        kw.setdefault(key, {"seed": 0, "val_fraction": 0.1, "on_bad_file": "skip"}[key])
    dataset = scan.read_dataset(root, cache_dir=tmp_path / "cache", **kw)
    return dataclasses.replace(dataset, bad=[r for r in dataset.bad if r.kind != "duplicate_across_splits"])


def labels_are_sorted_indices(dataset: scan.Dataset) -> None:
    order = sorted(dataset.names)
    wrong = [(e.path, e.label) for e in dataset.entries if e.label != order.index(e.wnid)]
    assert not wrong, wrong[:3]


def age(root: Path) -> None:
    """Sets every file's mtime an hour back (its ctime stays: see fingerprint.RACY_NS)."""
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.utime(p, ns=(HOUR_AGO_NS, HOUR_AGO_NS))


def small_tree(photos: list[Path], root: Path, n: int = 6) -> list[Path]:
    """n classes, one photograph each in train and in val, shrunk so decoding takes no time."""
    for p in photos[:n]:
        for split in ("train", "val"):
            dest = root / split / wnid(p) / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(p) as im:
                im.convert("RGB").resize((120, 90)).save(dest, quality=90)
    return photos[:n]


def huge_header_jpeg(width: int, height: int) -> bytes:
    """A valid 8 x 8 JPEG whose frame header (SOF0) claims width x height: a decompression bomb."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 150)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


BAD_NAME = b"caf\xe9.jpg"  # Latin-1, not UTF-8
BAD_NAME_SHOWN = "caf\\xe9.jpg"


def bad_tree(photos: list[Path], root: Path) -> dict[str, str]:
    """A folderised ILSVRC tree holding every bad-file kind; returns {kind: the path of one}."""
    good = small_tree(photos, root)
    c = [wnid(p) for p in good]
    cls = lambda k: root / "train" / c[k]  # noqa: E731
    with Image.open(photos[0]) as im:
        photo = im.convert("RGB").resize((160, 120))
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
    # 20000 x 9000 = 180M pixels: just above the limit, so even a broken check would only cost 540 MB
    save("too_large", f"train/{c[0]}/bomb.JPEG", lambda p: p.write_bytes(huge_header_jpeg(20000, 9000)))
    # 20 x 400: a thin strip, rescaled to Q it would hold 20 Q x Q squares
    save("too_elongated", f"train/{c[0]}/strip.png", lambda p: Image.new("RGB", (400, 20), (20, 90, 200)).save(p))
    save("wrong_suffix", f"train/{c[1]}/png_inside.JPEG", lambda p: photo.save(p, format="PNG"))
    save("cmyk", f"train/{c[1]}/cmyk.JPEG", lambda p: photo.convert("CMYK").save(p, format="JPEG", quality=95))
    save("hidden", f"train/{c[1]}/._cmyk.JPEG", lambda p: photo.save(p, format="JPEG"))  # macOS's AppleDouble
    save("unsupported_format", f"train/{c[1]}/picture.bmp", lambda p: photo.save(p, format="BMP"))
    save("grayscale", f"train/{c[2]}/gray.png", lambda p: photo.convert("L").save(p))
    save("palette", f"train/{c[2]}/palette.png", lambda p: photo.convert("P").save(p))
    save("alpha", f"train/{c[2]}/rgba.PNG", lambda p: photo.convert("RGBA").save(p))
    save("mpo", f"train/{c[2]}/phone.jpg", lambda p: photo.save(p, format="MPO", save_all=True, append_images=[photo.resize((80, 60))]))
    gray16 = np.asarray(photo.convert("L")).astype(np.uint16) * 257 + np.arange(120, dtype=np.uint16)[:, None]
    save("16bit", f"train/{c[3]}/sixteen.png", lambda p: Image.fromarray(gray16).save(p))
    exif = photo.getexif()
    exif[badfiles.EXIF_ORIENTATION] = 6  # rotate 90 degrees clockwise to view
    save("exif_rotated", f"train/{c[3]}/rotated.jpg", lambda p: photo.save(p, exif=exif, quality=95))
    save("webp", f"train/{c[3]}/web.webp", lambda p: photo.save(p, format="WEBP"))
    save("small", f"train/{c[4]}/tiny.JPEG", lambda p: photo.resize((20, 15)).save(p))
    (root / "train" / "n99999998").mkdir()  # an empty class folder
    made["empty_class"] = "train/n99999998/"
    save("only_bad", "train/n99999999/broken.JPEG", lambda p: p.write_bytes(raw[:300]))  # a class of one bad file
    os.symlink("loop_b.JPEG", cls(4) / "loop_a.JPEG")
    os.symlink("loop_a.JPEG", cls(4) / "loop_b.JPEG")
    made["symlink_loop"] = f"train/{c[4]}/loop_a.JPEG"
    os.symlink("..", cls(5) / "up")  # a folder link back to train/: a loop
    made["folder_loop"] = f"train/{c[5]}/up/"
    os.symlink("nowhere.JPEG", cls(5) / "dangling.JPEG")
    made["broken_link"] = f"train/{c[5]}/dangling.JPEG"
    save("other_file", f"train/{c[5]}/notes.txt", lambda p: p.write_text("notes"))
    fd = os.open(os.fsencode(cls(5)) + b"/" + BAD_NAME, os.O_WRONLY | os.O_CREAT, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    made["bad_name"] = f"train/{c[5]}/{BAD_NAME_SHOWN}"
    save("unlabelled", "train/loose.JPEG", lambda p: photo.save(p))
    (cls(0) / ".ipynb_checkpoints").mkdir()
    (cls(0) / ".ipynb_checkpoints" / "copy.JPEG").write_bytes(b"")  # in a hidden folder: no row, no image
    return made


def kaggle_tree(photos: list[Path], top: Path, val: list[Path]) -> Path:
    """The Kaggle download: CLS-LOC/train/<wnid>/, a flat val/ (val in reverse order), the LOC files."""
    cls_loc = top / "ILSVRC" / "Data" / "CLS-LOC"
    for p in photos:
        place(p, cls_loc / "train" / wnid(p) / p.name)
    rows = ["ImageId,PredictionString"]
    for k, p in enumerate(reversed(val), start=1):
        image_id = f"ILSVRC2012_val_{k:08d}"
        place(p, cls_loc / "val" / f"{image_id}.JPEG")
        rows.append(f"{image_id},{wnid(p)} 10 20 100 200 {wnid(p)} 5 5 50 50 ")
    (top / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (top / "LOC_synset_mapping.txt").write_text(
        "".join(f"{wnid(p)} {p.stem[10:].replace('_', ' ')}, other name\n" for p in photos)
    )
    return cls_loc


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
