"""Stage commands on bad input: one line naming the thing and what was expected, no traceback."""

import argparse
import os

import pytest
import torch
import yaml

from conftest import tiny_params, vggrepro, vggrepro_here
from vggrepro.runtime import io


@pytest.fixture
def bare(tmp_path):
    """A folder with a valid params.yaml and nothing built yet."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    return tmp_path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["mean_rgb"], "data/manifest.csv: no such file; run the prepare stage first"),
        (["train", "--run", "A_256"], "data/manifest.csv: no such file; run the prepare stage first"),
        (["evaluate", "--run", "A_256"], "runs/A_256/model.pt: no such checkpoint; run its train stage first"),
        (["train", "--run", "Z_999"], "runs.Z_999: no such run (expected one of A_256, B_256, B_jit)"),
        (["report"], "runs/A_256/eval.json: no such file"),
    ],
)
def test_missing_inputs_are_one_line(bare, args, expected):
    done = vggrepro_here(*args, cwd=bare)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr, done.stderr


def test_no_params_file_is_one_line(tmp_path):
    done = vggrepro_here("prepare", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "vggrepro prepare: error: params.yaml: no such file; expected the project's params.yaml"


def test_ilsvrc_source_without_a_dataset_is_one_line(bare):
    params = tiny_params()
    params["data"] = {"source": "ilsvrc2012", "root": "no/such/imagenet"}
    (bare / "params.yaml").write_text(yaml.safe_dump(params))
    done = vggrepro_here("prepare", cwd=bare)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "data.root: 'no/such/imagenet': no such folder; expected the extracted ilsvrc2012 dataset" in done.stderr


def test_an_interrupted_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    target = tmp_path / "out.json"
    io.write_json(target, {"done": 1})
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_path(target) as tmp:
            tmp.write_text('{"half')
            raise KeyboardInterrupt
    assert io.read_json(target) == {"done": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_dvc_yaml_check_reports_a_stale_file(bare):
    assert vggrepro("dvc-yaml", cwd=bare).returncode == 0
    assert vggrepro("dvc-yaml", "--check", cwd=bare).returncode == 0
    with open(bare / "dvc.yaml", "a") as f:
        f.write("# edited by hand\n")
    done = vggrepro("dvc-yaml", "--check", cwd=bare)
    assert done.returncode == 1 and "dvc.yaml is stale" in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--width", "0"], "width 0.0 is not a positive finite multiplier"),
        (["--width", "-1"], "width -1.0 is not a positive finite multiplier"),
        (["--width", "nan"], "width nan is not a positive finite multiplier"),
        (["--crop", "0"], "crop 0 is not a positive multiple of 32"),
        (["--num-classes", "0"], "num_classes 0 is not a positive integer"),
        (["--head-width", "0"], "head_width 0 is not a positive integer"),
    ],
)
def test_model_refuses_impossible_shapes_in_one_line(tmp_path, args, expected):
    done = vggrepro_here("model", "--config", "E", *args, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith(f"vggrepro model: error: {expected}"), done.stderr


def test_an_unreadable_file_is_one_line(bare, monkeypatch):
    """An OSError anywhere (permission, a full disk) names the file, without a traceback."""
    from vggrepro import cli

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "params.yaml")

    monkeypatch.chdir(bare)
    monkeypatch.setattr(cli, "_validate", refuse)
    import contextlib
    import io as _io

    err = _io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["validate"]) == 2
    assert err.getvalue() == "vggrepro validate: error: params.yaml: Permission denied\n"


@pytest.mark.parametrize("name, runs", [("imagenet-vgg19.yaml", 7), ("imagenet-table3.yaml", 12)])
def test_use_switches_the_workspace_to_a_shipped_params_file(tmp_path, name, runs):
    from conftest import ROOT, make_project

    ws = make_project(tmp_path / "ws", tiny_params())
    before = (ws / "params.yaml").read_text()
    shipped = ROOT / "params" / name
    done = vggrepro("--params", str(shipped), "validate", cwd=ws)  # its data.root is the user's to set
    assert done.returncode == 2 and "data.root: '~/data/ILSVRC2012': no such folder" in done.stderr, done.stderr
    pointed = tmp_path / "pointed.yaml"
    imagenet = tmp_path / "ILSVRC2012"
    imagenet.mkdir()
    pointed.write_text(shipped.read_text().replace("~/data/ILSVRC2012", str(imagenet)))
    done = vggrepro("--params", str(pointed), "validate", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert f"valid; {runs} runs" in done.stdout and "batch 256 = 1 process(es) x 2 micro-batch(es) x 128 images" in done.stdout
    gpu = torch.cuda.is_available()
    here = "device cuda (cuda:0 here), precision auto (" if gpu else "device cuda (no GPU here), precision auto,"
    assert here in done.stdout and ("note: train.device cuda and no GPU here" in done.stdout) != gpu, done.stdout
    note = f"note: data.workers 12 is more than this machine's {os.cpu_count()} cores"  # a GPU node's 12: a note here
    assert (note in done.stdout) == (os.cpu_count() < 12), done.stdout
    done = vggrepro("use", str(shipped), cwd=ws)
    assert done.returncode == 0, done.stderr
    assert "before running, edit params.yaml: data.root: '~/data/ILSVRC2012': no such folder" in done.stdout, done.stdout
    assert (ws / "params.yaml").read_text() == shipped.read_text()
    assert (ws / ".vggrepro" / "previous-params.yaml").read_text() == before
    dvc = yaml.safe_load((ws / "dvc.yaml").read_text())
    assert sum(s.startswith("train_") for s in dvc["stages"]) == runs
    assert vggrepro("dvc-yaml", "--check", cwd=ws).returncode == 0


def test_use_refuses_a_bad_file_and_leaves_params_yaml_alone(tmp_path):
    from conftest import make_project

    ws = make_project(tmp_path / "ws", tiny_params())
    before = (ws / "params.yaml").read_text(), (ws / "dvc.yaml").read_text()
    bad = tiny_params()
    bad["runs"]["B_256"]["init"] = "B_jit"  # a cycle
    (ws / "other.yaml").write_text(yaml.safe_dump(bad))
    done = vggrepro("use", "other.yaml", cwd=ws)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "cycle" in done.stderr
    assert ((ws / "params.yaml").read_text(), (ws / "dvc.yaml").read_text()) == before


def _tree(root, images_per_class: int) -> None:
    from PIL import Image

    for c, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
        for split, n in (("train", images_per_class), ("val", 1)):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (48, 40), colour).save(root / split / c / f"{c}{i}.jpg")


def _imagefolder(bare, root) -> None:
    params = tiny_params()
    params["data"].update(source="imagefolder", root=str(root))
    params["train"]["batch_size"] = 1
    (bare / "params.yaml").write_text(yaml.safe_dump(params))


def test_prepare_refuses_a_training_split_with_no_class_of_two_images(bare, tmp_path):
    """The held-out slice would be empty: prepare says so before it writes anything, so no
    engine reaches a train stage (and deletes its outputs) to find out. (validate refuses a
    generated set of one image a class before that.)"""
    _tree(tmp_path / "ones", 1)
    _imagefolder(bare, tmp_path / "ones")
    done = vggrepro_here("prepare", cwd=bare)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "data: no class of the 2 training images in 2 classes has two" in done.stderr
    assert not (bare / "data" / "manifest.csv").exists()


def test_prepare_refuses_a_link_from_the_dataset_into_the_project(bare, tmp_path):
    """validate keeps data.root apart from the project; a class folder linked into it from
    inside the dataset would make the project's figures a class."""
    _tree(tmp_path / "ds", 2)
    (bare / "reports").mkdir()
    (tmp_path / "ds" / "train" / "figs").symlink_to(bare / "reports")
    _imagefolder(bare, tmp_path / "ds")
    done = vggrepro_here("prepare", cwd=bare)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "train/figs: a link into the project's own files (reports)" in done.stderr
    assert not (bare / "data" / "manifest.csv").exists()
    (tmp_path / "ds" / "train" / "figs").unlink()  # links into DVC's cache (`dvc add`, cache.type symlink) are data
    cached = bare / ".dvc" / "cache" / "files" / "md5" / "ab"
    cached.mkdir(parents=True)
    (tmp_path / "ds" / "train" / "cat" / "cat0.jpg").rename(cached / "cdef")
    (tmp_path / "ds" / "train" / "cat" / "cat0.jpg").symlink_to(cached / "cdef")
    done = vggrepro_here("prepare", cwd=bare)
    assert done.returncode == 0, done.stderr


def test_a_stage_run_by_hand_writes_its_own_knob_and_code_files(tmp_path):
    """The README's "any stage can be run by hand" holds in a fresh clone: no validate first."""
    from conftest import make_project

    project = make_project(tmp_path / "p", tiny_params())
    for args in (["prepare"], ["mean_rgb"], ["train", "--run", "A_256"]):
        done = vggrepro_here(*args, cwd=project)
        assert done.returncode == 0, (args, done.stderr)
    assert (project / ".vggrepro/knobs/train_A_256.json").is_file()
    assert (project / ".vggrepro/code/train_A_256.txt").read_text().count("src/vggrepro/") > 5


def test_a_stage_run_by_hand_refuses_an_image_changed_since_prepare(tmp_path):
    """The engines rerun prepare when the folder changes; by hand, train would read an image
    the manifest does not describe. It stops with one line before writing anything."""
    from conftest import make_project

    project = make_project(tmp_path / "p", tiny_params())
    for args in (["prepare"], ["mean_rgb"]):
        assert vggrepro_here(*args, cwd=project).returncode == 0
    image = next((project / "data/embedded/train").rglob("*.JPEG"))
    image.write_bytes(image.read_bytes()[:-1] + b"\0")  # the same size, other bytes
    done = vggrepro_here("train", "--run", "A_256", cwd=project)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "changed since prepare (an image replaced, added or removed); rerun prepare" in done.stderr
    assert not (project / "runs").exists()
    assert vggrepro_here("prepare", cwd=project).returncode == 0
    assert vggrepro_here("train", "--run", "A_256", cwd=project).returncode == 0


def test_every_subcommand_says_what_it_does_and_takes_params_anywhere(bare, capsys):
    from vggrepro import __version__, cli

    parser = cli.get_args_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        assert sub.description and sub.description.endswith("."), name
        assert "--params" in sub.format_help(), name
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"vggrepro {__version__}\n"
    before, after = parser.parse_args(["--params", "x.yaml", "train"]), parser.parse_args(["train", "--params", "x.yaml"])
    assert before.params == after.params == "x.yaml" and parser.parse_args(["fuse"]).params == "params.yaml"
    done = vggrepro_here("train", "--params", "nope.yaml", "--run", "A_256", cwd=bare)
    assert done.stderr == "vggrepro train: error: nope.yaml: no such file; expected the project's params.yaml\n"
    done = vggrepro_here("train", cwd=bare)  # one prefix, not two
    assert done.stderr == "vggrepro train: error: which run? expected --run NAME (one of A_256, B_256, B_jit)\n"


@pytest.mark.parametrize("bf16", [True, False])
def test_validate_by_hand_says_what_auto_resolves_to_on_this_machine(tmp_path, monkeypatch, bf16):
    from conftest import make_project

    ws = make_project(tmp_path / "ws", tiny_params())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": "X", "avx512_bf16": bf16})
    done = vggrepro_here("validate", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert f"device auto (cpu here), precision auto ({'bf16' if bf16 else 'fp32'} here), crop" in done.stdout, done.stdout
