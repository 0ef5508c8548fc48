"""A seeded fuzz of what a user types into params.yaml and drops into a dataset: validate and
prepare answer each with one line or a bad_files.csv row, never a traceback, never a hang, and a
refused input changes no output."""

import copy
import hashlib
import os
import random
from pathlib import Path

import yaml
from PIL import Image

from conftest import tiny_params, vggrepro_here
from ingest_trees import huge_header_jpeg, place, synthetic_photos

SEED = 20261206
CASES = 60
# Values a user might type anywhere, most of them wrong somewhere.
VALUES = [
    2**64, -(2**63), 10**20, -1, 0, 1, 3, 0.5, -0.5, 1e300, 32.0, "", "x", "fast", " ", "\x00", "a" * 400,
    "~nosuchuser/x", "../..", ".", "/", "runs", [], [1], [512, 256], {}, {"a": 1}, None, True, False,
]


def _keys(node, prefix=()):
    """Every dotted path of a params mapping, leaves and sections."""
    for key, value in node.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _keys(value, (*prefix, key))


def _mutated(rng: random.Random) -> dict:
    params = copy.deepcopy(tiny_params())
    for _ in range(rng.choice((1, 1, 2))):
        *parents, last = rng.choice(list(_keys(params)))
        node = params
        for p in parents:
            node = node[p]
        node[last] = rng.choice(VALUES)
    return params


def _outputs(project: Path) -> dict[str, str]:
    return {
        str(p.relative_to(project)): hashlib.md5(p.read_bytes()).hexdigest()
        for top in ("data", "runs", "reports") if (project / top).exists()
        for p in sorted((project / top).rglob("*")) if p.is_file()
    }


def _one_line(done) -> None:
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_bad_params_get_one_line_from_validate_and_prepare_and_change_nothing(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    assert vggrepro_here("prepare", cwd=project).returncode == 0
    before = _outputs(project)
    rng = random.Random(SEED)
    refused = 0
    for case in range(CASES):
        params = _mutated(rng)
        try:
            (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
        except yaml.YAMLError:
            continue
        done = vggrepro_here("validate", cwd=project)
        if done.returncode == 0:  # a value that happens to be valid there: no stage may refuse it
            prepared = vggrepro_here("prepare", cwd=project)
            assert prepared.returncode == 0, (case, params, prepared.stderr)
            before = _outputs(project)
            continue
        refused += 1
        assert done.returncode == 2, (case, done.stderr)
        _one_line(done)
        prepared = vggrepro_here("prepare", cwd=project)
        assert prepared.returncode == 2, (case, params, prepared.stderr)
        _one_line(prepared)
        assert _outputs(project) == before, (case, params)
    assert refused > CASES // 2  # the fuzz mostly tried bad values


def test_bad_dataset_entries_get_a_row_or_one_line_and_nothing_blocks(tmp_path, monkeypatch):
    from vggrepro.data import fingerprint

    monkeypatch.setattr(fingerprint, "MIN_FOR_WORKERS", 0)  # data.workers: 2 decodes in workers even here
    photos = synthetic_photos(tmp_path / "photos", n=8)
    rng = random.Random(SEED)
    project = tmp_path / "p"
    project.mkdir()
    for case in range(4):
        data = tmp_path / f"data{case}"
        for k, photo in enumerate(photos):
            place(photo, data / f"class{k % 2}" / f"{k}.jpeg")
        kinds = rng.sample(sorted(ENTRIES), 4)
        for kind in kinds:
            ENTRIES[kind](data / f"class{rng.randrange(2)}", photos[0])
        params = tiny_params()
        params["data"] = {"source": "imagefolder", "root": str(data), "val_fraction": 0.25, "workers": rng.choice((0, 2))}
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        before = _outputs(project)
        done = vggrepro_here("prepare", cwd=project)  # a blocked read would never return
        if done.returncode == 2:
            _one_line(done)
            assert _outputs(project) == before, kinds
            continue
        assert done.returncode == 0, (kinds, done.stderr)
        rows = (project / "data/bad_files.csv").read_text()
        for kind in kinds:
            assert EXPECTED[kind] in rows, (kind, rows)


def _fifo(folder: Path, photo: Path) -> None:
    os.mkfifo(folder / "pipe.JPEG")


def _device(folder: Path, photo: Path) -> None:
    (folder / "zero.JPEG").symlink_to("/dev/zero")


def _folder(folder: Path, photo: Path) -> None:
    place(photo, folder / "dir.JPEG" / "inside.jpeg")


def _dangling(folder: Path, photo: Path) -> None:
    (folder / "dangling.JPEG").symlink_to(folder / "nothing-here")


def _empty(folder: Path, photo: Path) -> None:
    (folder / "empty.jpeg").write_bytes(b"")


def _truncated(folder: Path, photo: Path) -> None:
    (folder / "cut.jpeg").write_bytes(photo.read_bytes()[:200])


def _text(folder: Path, photo: Path) -> None:
    (folder / "notes.jpeg").write_text("not an image\n")


def _bomb(folder: Path, photo: Path) -> None:
    (folder / "bomb.jpeg").write_bytes(huge_header_jpeg(20000, 9000))


def _strip(folder: Path, photo: Path) -> None:
    Image.new("RGB", (40, 2), (30, 200, 30)).save(folder / "strip.png")


def _bad_name(folder: Path, photo: Path) -> None:
    place(photo, Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.jpeg")))


ENTRIES = {
    "fifo": _fifo, "device": _device, "folder": _folder, "dangling": _dangling, "empty": _empty,
    "truncated": _truncated, "text": _text, "bomb": _bomb, "strip": _strip, "bad_name": _bad_name,
}
EXPECTED = {
    "fifo": "pipe.JPEG,not_a_file", "device": "zero.JPEG,not_a_file", "folder": "dir.JPEG/,not_a_file",
    "dangling": "dangling.JPEG,broken_link", "empty": "empty.jpeg,empty_file", "truncated": "cut.jpeg,",
    "text": "notes.jpeg,not_an_image", "bomb": "bomb.jpeg,too_large", "strip": "strip.png,too_elongated",
    "bad_name": ",bad_name,",
}
