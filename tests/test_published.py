"""`vggrepro import-weights`: torchvision's VGG state_dicts as project checkpoints.

The .pth files are randomly initialised torchvision models (weights=None never downloads);
vgg19 is built at full size once, vgg11 at full size with 10 classes; the error cases use
state_dicts with torchvision's keys and one-element tensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io as _io
import json
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.transforms import Normalize

from conftest import tiny_params, vggrepro
from vggrepro import cli
from vggrepro.data.normalise import channels, to_input
from vggrepro.model import VGG, ModelSpec, load_checkpoint, read_checkpoint
from vggrepro.params import ParamsError
from vggrepro.published import IMAGENET_MEAN, IMAGENET_STD, WeightsError, from_torchvision
from vggrepro.stages import StageRun

TOLERANCE = 1e-4


def _run_cli(*args: str) -> tuple[int, str, str]:
    out, err = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["import-weights", *args])
    return code, out.getvalue(), err.getvalue()


def _torchvision_model(arch: str, seed: int, **kwargs) -> torch.nn.Module:
    """A random torchvision VGG in eval mode, its biases random too (torchvision zeroes the
    linear ones), so a misplaced bias would show."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return model.eval()


def _max_diff(tv_model: torch.nn.Module, checkpoint: dict) -> float:
    ours = VGG(ModelSpec(**checkpoint["spec"]))
    ours.load_state_dict(checkpoint["state_dict"])
    ours.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        # forward and the convolutional score map (dense evaluation's path; 1 x 1 at 224)
        expected, got, dense = tv_model(x), ours(x), ours.score_map(x).flatten(1)
    assert got.shape == dense.shape == expected.shape
    diff = max((got - expected).abs().max().item(), (dense - expected).abs().max().item())
    print(
        f"\nmax abs difference: forward {(got - expected).abs().max().item():.3g}, "
        f"score_map {(dense - expected).abs().max().item():.3g} (outputs up to {expected.abs().max().item():.3g})"
    )
    return diff


@pytest.fixture(scope="module")
def vgg19(tmp_path_factory):
    """A full-size random vgg19 saved as torchvision saves it, imported through the CLI."""
    folder = tmp_path_factory.mktemp("vgg19")
    model = _torchvision_model("vgg19", seed=19)
    pth, out = folder / "vgg19-random.pth", folder / "vgg19.pt"
    torch.save(model.state_dict(), pth)
    code, stdout, stderr = _run_cli("--arch", "vgg19", "--input", str(pth), "--output", str(out))
    assert code == 0, stderr
    assert json.loads(stdout) == {"output": str(out), "arch": "vgg19", "config": "E", "num_classes": 1000}
    return model, read_checkpoint(out), pth


def test_vgg19_matches_torchvision(vgg19):
    model, checkpoint, pth = vgg19
    assert checkpoint["spec"] == {
        "config": "E", "num_classes": 1000, "width": 1.0, "head_width": 4096, "crop": 224, "dropout": 0.5,
    }
    assert checkpoint["run"] == {"name": "import:vgg19", "config": "E"}
    source = checkpoint["source"]
    assert source["arch"] == "vgg19" and source["file"] == pth.name
    assert source["sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()
    assert _max_diff(model, checkpoint) <= TOLERANCE


@pytest.mark.slow  # about 8 s; test_vgg19_matches_torchvision keeps the mapping in the default suite
def test_vgg11_with_its_own_class_count_matches_torchvision():
    model = _torchvision_model("vgg11", seed=11, num_classes=10)
    checkpoint = from_torchvision(model.state_dict(), "vgg11")
    assert (checkpoint["spec"]["config"], checkpoint["spec"]["num_classes"]) == ("A", 10)
    assert _max_diff(model, checkpoint) <= TOLERANCE


def test_stored_normalisation_is_torchvisions_on_0_255_inputs(vgg19):
    _, checkpoint, _ = vgg19
    image = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    norm = checkpoint["normalise"]
    ours = to_input(image, mean=channels(norm["mean"]), std=channels(norm["std"]))
    theirs = Normalize(IMAGENET_MEAN, IMAGENET_STD)(image.float() / 255)
    assert (ours - theirs).abs().max().item() <= 1e-5


def _keys_only(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's keys for arch, each a one-element tensor of the real tensor's rank."""
    with torch.device("meta"):
        state = getattr(torchvision.models, arch)(weights=None).state_dict()
    return {k: torch.zeros((1,) * v.dim()) for k, v in state.items()}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    files = {name: folder / f"{name}.pth" for name in ("vgg16", "vgg19_bn", "text", "list", "module")}
    torch.save(_keys_only("vgg16"), files["vgg16"])
    torch.save(_keys_only("vgg19_bn"), files["vgg19_bn"])
    files["text"].write_text("not a checkpoint\n")
    torch.save([1, 2, 3], files["list"])
    torch.save(torch.nn.Linear(2, 2), files["module"])  # a pickled module, not its state_dict
    files["missing"] = folder / "missing.pth"
    return files


@pytest.mark.parametrize(
    "name, arch, expected",
    [
        ("vgg16", "vgg19", "{f}: has 13 conv layers, vgg19 has 16 (is it vgg16?)"),
        ("vgg19_bn", "vgg19", "{f}: a batch-normalised VGG (vgg*_bn), which is not supported; expected vgg19"),
        ("vgg19_bn", "vgg19_bn", "vgg19_bn: batch-normalised VGG is not supported (not a Table 1 net); use vgg19"),
        ("text", "vgg19", "{f}: not a state_dict torch.load(weights_only=True) can read: "),
        ("module", "vgg19", "{f}: not a state_dict torch.load(weights_only=True) can read: "),
        ("list", "vgg19", "{f}: holds a list, not a state_dict (a dict of tensors)"),
        ("missing", "vgg19", "{f}: no such file"),
    ],
)
def test_a_bad_input_is_one_line(bad_files, tmp_path, name, arch, expected):
    f, out = bad_files[name], tmp_path / "out.pt"
    code, _, stderr = _run_cli("--arch", arch, "--input", str(f), "--output", str(out))
    assert code == 2 and not out.exists()
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("vggrepro import-weights: error: " + expected.format(f=f)), stderr


def test_a_wrong_shape_names_the_tensor():
    state = _keys_only("vgg19")
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    expected = r"^x.pth: features.0.weight has shape \(64, 1, 3, 3\), vgg19 expects \(64, 3, 3, 3\)$"
    with pytest.raises(WeightsError, match=expected):
        from_torchvision(state, "vgg19", source="x.pth")


def test_the_command_line_reports_a_missing_file(tmp_path):
    done = vggrepro("import-weights", "--arch", "vgg13", "--input", "nope.pth", "--output", "x.pt", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "vggrepro import-weights: error: nope.pth: no such file\n")


def _import_workspace(tmp_path, monkeypatch, wnids, config="A"):
    """A workspace whose classes.csv lists wnids in that (label) order, and params with one
    run that imports a checkpoint of `config` trained on the sorted wnids, as torchvision's are."""
    import csv as _csv

    from vggrepro.params import parse_params
    from vggrepro.runtime import io

    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    with open("data/classes.csv", "w", newline="") as f:
        w = _csv.writer(f)
        w.writerow(["label", "wnid", "name"])
        w.writerows([i, wnid, wnid] for i, wnid in enumerate(wnids))
    spec = ModelSpec(config, num_classes=len(wnids), width=0.0625, head_width=16, crop=224)
    torch.manual_seed(0)
    model = VGG(spec)
    checkpoint = {
        "state_dict": model.state_dict(), "spec": dataclasses.asdict(spec), "run": {"name": "import:x", "config": config},
        "normalise": {"mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0]}, "source": {"weights": "torchvision"},
    }
    io.write_torch("published.pt", checkpoint)
    raw = tiny_params()
    raw["geometry"]["crop"] = 224
    raw["runs"] = {"pub": {"config": "A", "scale": 256, "init": "import", "weights": "published.pt"}}
    raw["fuse"] = {}
    return parse_params(raw), model


def test_an_imported_run_is_the_checkpoint_with_its_classes_in_the_datasets_order(tmp_path, monkeypatch):
    from vggrepro.stages import train

    wnids = ["n03", "n01", "n02"]  # the dataset's label order; the weights index sorted wnids
    params, source = _import_workspace(tmp_path, monkeypatch, wnids)
    assert train.run(params, "pub", stage=StageRun("train_pub", ())) == {"run": "pub", "imported": "published.pt", "epochs": 0}
    model = load_checkpoint("runs/pub/model.pt")
    assert not model.training and model.normalise == ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = model(x), source.eval()(x)
    # our label i is wnid i; the source scored it at its sorted position
    assert torch.equal(ours, theirs[:, [sorted(wnids).index(w) for w in wnids]])
    assert json.loads(Path("runs/pub/train_log.json").read_text()) == []


def test_an_imported_checkpoint_of_another_config_or_class_count_is_one_line(tmp_path, monkeypatch):
    from vggrepro.stages import train

    params, _ = _import_workspace(tmp_path, monkeypatch, ["n01", "n02"], config="B")
    with pytest.raises(ParamsError, match=r"^runs.pub.weights: published.pt holds configuration B; the run says A$"):
        train.run(params, "pub", stage=StageRun("train_pub", ()))


def test_import_needs_weights_and_weights_need_import():
    from vggrepro.params import ParamsError, parse_params

    raw = tiny_params()
    raw["runs"]["A_256"]["init"] = "import"
    with pytest.raises(ParamsError, match="init: import needs weights"):
        parse_params(raw)
    raw["runs"]["A_256"].update(init="glorot", weights="x.pt")
    with pytest.raises(ParamsError, match="runs.A_256.weights: given without init: import"):
        parse_params(raw)
