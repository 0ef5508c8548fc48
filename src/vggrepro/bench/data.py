"""prepare, mean_rgb and the training input pipeline, each against a plain PIL loop.

    vggrepro bench data [--repeat 3] [--photos DIR]

Run it in a workspace where prepare has run. Each figure is images/s, the median of --repeat
passes, with its ratio to a single-process loop that does the same work per image with PIL,
timed in the same run on the same files:

- prepare: scan.read_dataset over the whole tree with an empty fingerprint cache (list the
  tree, read, hash, decode, check every file), in data.workers processes; the loop reads the
  bytes, hashes them (blake2b) and decodes them to RGB with PIL.
- mean_rgb: the stage's pass over the training split (exact integer sums, data.workers
  processes); the loop decodes with PIL and sums pixels and squares in numpy float64.
- input: the training DataLoader (decode, rescale to S, crop, flip, colour shift) at
  params.yaml's geometry, S the grid's first fixed scale, against bench loader's PIL loop.

On the embedded set (data.root) and, with --photos, on a folder of real photographs
(ILSVRC-2012's <wnid>_<name>.JPEG files, laid out here as ILSVRC-2012 is, folderised: each
photograph once in train/<wnid>/ and once in val/<wnid>/).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vggrepro.bench.loader import IMAGES, _input_rates
from vggrepro.data import loader, scan
from vggrepro.data.ingest import DatasetError
from vggrepro.params import load_params
from vggrepro.stages.mean_rgb import rgb_moments


def _median_rate(count: int, passes) -> float:
    """images/s: the median over passes (callables) of count / seconds."""
    rates = []
    for one_pass in passes:
        start = time.perf_counter()
        one_pass()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def _pil_prepare(root: Path, paths: list[str]) -> None:
    """Per file what prepare does: read, hash, parse the header, decode upright to RGB."""
    from PIL import Image, ImageOps

    for rel in paths:
        with open(root / rel, "rb") as f:
            data = f.read()
        hashlib.blake2b(data, digest_size=16).hexdigest()
        with Image.open(io.BytesIO(data)) as im:
            ImageOps.exif_transpose(im).convert("RGB").load()


def _pil_mean(root: Path, paths: list[str]) -> None:
    """Per image what mean_rgb does: decode, then exact integer sums of pixels and squares."""
    from PIL import Image

    total, squares = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    for rel in paths:
        with Image.open(root / rel) as im:
            x = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(np.int32)
        total += x.sum(0, dtype=np.int64)
        squares += (x * x).sum(0, dtype=np.int64)


def _ratio_line(what: str, ours: float, pil: float) -> dict:
    print(f"  {what:8s} ours {ours:7.0f}  pil loop {pil:7.0f}  x{ours / pil:.2f}")
    return {"ours": round(ours), "pil": round(pil), "ratio": round(ours / pil, 2)}


def _one_set(name: str, root: Path, *, source: str, params, repeat: int, workers: int) -> dict:
    seed = params.raw["seed"]
    with tempfile.TemporaryDirectory() as tmp:
        data = params.raw["data"]
        opts = dict(source=source, seed=seed, val_fraction=data["val_fraction"], on_bad_file=data["on_bad_file"], workers=workers)
        dataset = scan.read_dataset(root, **opts, cache_dir=Path(tmp) / "0")
        every = sorted(e.path for e in dataset.entries)
        train = [e for e in dataset.entries if e.split == "train"]
        print(f"{name}: {len(every)} images ({len(train)} train), {workers} workers; images/s, medians of {repeat}")
        ours = _median_rate(
            len(every),
            [
                lambda k=k: scan.read_dataset(root, **opts, cache_dir=Path(tmp) / str(k))
                for k in range(1, repeat + 1)
            ],
        )
    row = {"images": len(every), "workers": workers}
    row["prepare"] = _ratio_line("prepare", ours, _median_rate(len(every), [lambda: _pil_prepare(root, every)] * repeat))
    ours = _median_rate(len(train), [lambda: rgb_moments(root, train, workers=workers)] * repeat)
    row["mean_rgb"] = _ratio_line("mean_rgb", ours, _median_rate(len(train), [lambda: _pil_mean(root, [e.path for e in train])] * repeat))
    runs = list(params.runs.values())
    fixed = next((r for r in runs if not r.jittered), runs[0])
    scale = (params.pixels(fixed.scale[0]), params.pixels(fixed.scale[1]))
    print(f"  input at S={fixed.scale_label} ({scale[0]} px), crop {params.crop}, on {min(IMAGES, len(train))} images:")
    rates = _input_rates(
        loader.FileList(train[:IMAGES]), root, scale=scale, crop=params.crop,
        batch_size=params.raw["train"]["batch_size"], worker_counts=[workers], repeat=repeat,
    )
    row["input"] = {"ours": rates[f"loader_{workers}w"], "pil": rates["pil"], "ratio": round(rates[f"loader_{workers}w"] / rates["pil"], 2)}
    return row


def _photo_tree(photos: Path, into: Path) -> Path:
    """ILSVRC photographs named <wnid>_<name>.JPEG as {train,val}/<wnid>/<file>."""
    found = sorted(photos.glob("*.JPEG"))
    if not found:
        raise DatasetError(f"{photos}: no <wnid>_<name>.JPEG photographs; expected a folder like ILSVRC-2012's sample")
    for split in ("train", "val"):
        for photo in found:
            folder = into / split / photo.name.split("_")[0]
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, folder / photo.name)
    return into


def main(repeat: int = 3, photos: Path | None = None, params_file: str = "params.yaml") -> dict:
    params = load_params(params_file)
    workers = loader.workers(params)
    result = {
        "embedded": _one_set(
            "embedded", params.data_root, source=params.raw["data"]["source"],
            params=params, repeat=repeat, workers=workers,
        )
    }
    if photos is not None:
        with tempfile.TemporaryDirectory() as tmp:
            tree = _photo_tree(Path(photos).expanduser(), Path(tmp) / "photos")
            result["photos"] = _one_set("photos", tree, source="ilsvrc2012", params=params, repeat=repeat, workers=workers)
    return result
