"""`vggrepro predict` and vggrepro.predict: a trained run's top classes of any image, by the
evaluate stage's own dense protocol at the run's Q, with the class names its checkpoint holds."""

import json
from dataclasses import asdict

import pytest
import torch
from PIL import Image

import vggrepro
from conftest import vggrepro_here
from vggrepro import protocols
from vggrepro.data.normalise import channels
from vggrepro.model import VGG, ModelSpec, init_weights
from vggrepro.runtime.device import Compute

CLASSES = [["n001", "plain disk"], ["n002", "striped square"], ["n003", "dotted star"]]


@pytest.fixture
def checkpoint(tmp_path):
    spec = ModelSpec("A", num_classes=3, width=0.0625, head_width=16, crop=32)
    net = VGG(spec)
    init_weights(net, "kaiming", torch.Generator().manual_seed(0))
    mean, std = [120.0, 110.0, 100.0], [60.0, 55.0, 50.0]
    path = tmp_path / "model.pt"
    torch.save({"spec": asdict(spec), "state_dict": net.state_dict(), "normalise": {"mean": mean, "std": std},
                "classes": CLASSES, "test_q_px": 41, "params": {"train": {"precision": "bf16"}}}, path)
    return path, net, mean, std


def _photos(tmp_path) -> list:
    g = torch.Generator().manual_seed(1)
    paths = []
    for i, size in enumerate([(60, 45), (45, 70)]):
        pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8).numpy()
        paths.append(tmp_path / f"photo{i}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=95)
    return paths


def test_predict_is_the_dense_protocol_at_the_runs_q_with_its_class_names(checkpoint, tmp_path):
    path, net, mean, std = checkpoint
    photos = _photos(tmp_path)
    got = vggrepro.predict(photos, path, top=2)
    from vggrepro.data.images import decode

    net.eval()
    expected = protocols.dense_at_q(net, [decode(p) for p in photos], 41, mean=channels(mean), std=channels(std),
                                    flip=True, compute=Compute(torch.device("cpu"), "bf16", False))
    for best, row in zip(got, expected):
        p, i = row.topk(2)
        assert [c["wnid"] for c in best] == [CLASSES[k][0] for k in i.tolist()]
        assert [c["name"] for c in best] == [CLASSES[k][1] for k in i.tolist()]
        assert [c["probability"] for c in best] == [round(float(v), 4) for v in p]
    assert vggrepro.predict(photos[:1], path, top=9)[0][0]["probability"] > 0  # top beyond the classes: all 3
    assert len(vggrepro.predict(photos[:1], path, top=9)[0]) == 3


def test_the_command_prints_a_line_per_image_and_one_line_errors(checkpoint, tmp_path):
    path, *_ = checkpoint
    photos = _photos(tmp_path)
    done = vggrepro_here("predict", *map(str, photos), "--model", str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == list(map(str, photos)) and len(lines[0]["top"]) == 3
    done = vggrepro_here("predict", str(photos[0]), "--model", str(path), "--top", "1", cwd=tmp_path)
    assert done.stdout.startswith(f"{photos[0]}: ") and done.stdout.count("(n00") == 1
    for args, message in (
        (["nope.jpg", "--model", str(path)], "nope.jpg: no such image file"),
        ([str(photos[0]), "--model", "none.pt"], "none.pt: no such checkpoint"),
    ):
        done = vggrepro_here("predict", *args, cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    strip = tmp_path / "strip.png"
    Image.new("RGB", (400, 20)).save(strip)
    done = vggrepro_here("predict", str(strip), "--model", str(path), cwd=tmp_path)
    assert done.returncode == 2 and "strip.png: 400x20: the long side is 20.0 times" in done.stderr


def test_predict_scores_as_the_runs_evaluation_did(checkpoint, tmp_path):
    """eval.json beside model.pt says how the evaluate stage scored the run: without the flip,
    pooling posteriors, in fp32 here; predict follows it."""
    path, net, mean, std = checkpoint
    (path.parent / "eval.json").write_text(json.dumps(
        {"flip": False, "pool": "posteriors", "compute": "cpu (CPU), fp32, channels_last"}))
    photos = _photos(tmp_path)
    from vggrepro.data.images import decode

    net.eval()
    expected = protocols.dense_at_q(net, [decode(p) for p in photos], 41, mean=channels(mean), std=channels(std),
                                    flip=False, pool="posteriors", compute=Compute(torch.device("cpu"), "fp32", False))
    got = vggrepro.predict(photos, path, top=3)
    for best, row in zip(got, expected):
        assert [c["probability"] for c in best] == [round(float(v), 4) for v in row.topk(3).values]
