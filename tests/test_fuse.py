"""Fusion of nets (Table 6) and the paper's tables: one member is itself, members must score
the same images, bad posteriors stop the stage, and the tables mirror the paper's rows."""

import copy

import pytest
import torch

from conftest import tiny_params
from vggrepro import paths
from vggrepro.params import ParamsError, parse_params
from vggrepro.protocols import BadPosteriors
from vggrepro.report import tables
from vggrepro.runtime import io
from vggrepro.stages import fuse


def posteriors(seed: int, n: int = 12, classes: int = 6) -> torch.Tensor:
    return torch.softmax(torch.randn(n, classes, generator=torch.Generator().manual_seed(seed)) * 3, dim=1)


def save(run: str, protocol: str, p: torch.Tensor, labels: torch.Tensor, names=None) -> None:
    names = names or [f"val/{i}.JPEG" for i in range(len(p))]
    io.write_torch(paths.protocol_posteriors(run, protocol), {"posteriors": p, "labels": labels, "paths": names})


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    labels = torch.arange(12) % 6
    for seed, run in enumerate(("A_256", "B_256", "B_jit")):
        for protocol in ("dense-single", "dense"):
            save(run, protocol, posteriors(seed * 10 + len(protocol)), labels)
    return labels


def params_with(fusions: dict, **evaluate):
    raw = copy.deepcopy(tiny_params())
    raw["fuse"] = fusions
    raw["evaluate"].update(evaluate)
    return parse_params(raw)


def test_a_fusion_of_one_net_is_that_net_and_of_two_their_mean(workspace):
    labels = workspace
    params = params_with({"one": ["B_jit/dense"], "two": ["A_256/dense", "B_256/dense"]})
    fuse.run(params)
    one = torch.load(paths.fused("one"), weights_only=True)
    alone = torch.load(paths.protocol_posteriors("B_jit", "dense"), weights_only=True)
    assert torch.equal(one["posteriors"], alone["posteriors"]) and torch.equal(one["labels"], labels)
    two = torch.load(paths.fused("two"), weights_only=True)["posteriors"]
    a, b = (torch.load(paths.protocol_posteriors(r, "dense"), weights_only=True)["posteriors"] for r in ("A_256", "B_256"))
    torch.testing.assert_close(two, (a + b) / 2, rtol=0, atol=1e-7)
    metrics = io.read_json(paths.FUSION_METRICS)
    assert metrics["two"]["members"] == ["A_256/dense", "B_256/dense"]
    from vggrepro.metrics import topk_error

    assert metrics["one"]["top1_err"] == round(topk_error(alone["posteriors"], labels, 1), 4)


def test_members_outside_the_grid_are_left_out_and_named(workspace):
    params = params_with({"paper": ["B_256/dense", "E_256/dense"], "none": ["D_jit/dense"]})
    fuse.run(params)
    metrics = io.read_json(paths.FUSION_METRICS)
    assert metrics["paper"]["members"] == ["B_256/dense"] and metrics["paper"]["left_out"] == ["E_256/dense"]
    assert metrics["none"] == {"members": [], "left_out": ["D_jit/dense"]}
    tbl = tables.table6(params, metrics)
    assert tbl["members"].tolist() == ["B_256/dense", "none in this grid"] and tbl["nets"].tolist() == [1, 0]
    assert tbl["left out (not in the grid)"].tolist() == ["E_256/dense", "D_jit/dense"]


def test_members_scoring_other_images_stop_with_one_line(workspace):
    labels = workspace
    save("B_jit", "dense", posteriors(99), labels, names=[f"val/other{i}.JPEG" for i in range(12)])
    with pytest.raises(fuse.FuseError, match=r"^fuse: B_jit/dense scored other images than A_256/dense"):
        fuse.run(params_with({"x": ["A_256/dense", "B_jit/dense"]}))


def test_a_nan_member_stops_the_fusion_naming_it(workspace):
    labels = workspace
    bad = posteriors(5)
    bad[3, 2] = float("nan")
    save("B_256", "dense", bad, labels)
    with pytest.raises(BadPosteriors, match=r"^B_256 \(dense\): 1 of 12 posterior rows are not finite"):
        fuse.run(params_with({"x": ["A_256/dense", "B_256/dense"]}))


@pytest.mark.parametrize(
    "fusions, evaluate, message",
    [
        ({"x": ["B_jit/dense-multi"]}, {}, "names protocol 'dense-multi'; expected one of dense-single, dense,"),
        ({"x": ["B_256/multi-crop"]}, {}, "needs B_256's multi-crop posteriors; add B_256 to evaluate.multi_crop"),
        ({"x": ["B_256"]}, {}, "does not match"),
    ],
)
def test_bad_fusion_params_are_one_line(fusions, evaluate, message):
    with pytest.raises(ParamsError, match=message) as err:
        params_with(fusions, **evaluate)
    assert "\n" not in str(err.value)


def evals_for(params) -> dict:
    out = {}
    for i, name in enumerate(params.runs):
        protocols = {p: {"top1_err": 50.0 + i, "top5_err": 20.0 + i} for p in ("dense-single", "dense")}
        if name in params.raw["evaluate"]["multi_crop"]:
            protocols.update({p: {"top1_err": 40.0 + i, "top5_err": 10.0 + i} for p in ("multi-crop", "multi-crop+dense")})
        out[name] = {"protocols": protocols}
    return out


def test_tables_mirror_the_papers_rows():
    raw = copy.deepcopy(tiny_params())
    raw["runs"] = {
        "A_256": {"config": "A", "scale": 256, "init": "glorot"},
        "D_256": {"config": "D", "scale": 256, "init": "A_256"},
        "D_384": {"config": "D", "scale": 384, "init": "D_256"},
        "D_jit": {"config": "D", "scale": [256, 512], "init": "D_384"},
    }
    raw["evaluate"]["multi_crop"] = ["D_jit"]
    raw["fuse"] = {"D & E, [256;512]/{256,384,512}, dense": ["D_jit/dense", "E_jit/dense"]}
    params = parse_params(raw)
    evals = evals_for(params)
    t3 = tables.table3(params, evals, {n: 1 for n in params.runs})
    assert t3[["run", "test Q", "paper top-1", "paper top-5"]].values.tolist() == [
        ["A_256", "256", 29.6, 10.4], ["D_256", "256", 27.0, 8.8], ["D_384", "384", 26.8, 8.7], ["D_jit", "384", 25.6, 8.1],
    ]
    t4 = tables.table4(params, evals)
    assert t4["paper top-1"].iloc[0] != t4["paper top-1"].iloc[0]  # A: NaN, the paper's Table 4 has no A row
    assert t4[["run", "test Q", "paper top-1"]].values.tolist()[1:] == [
        ["D_256", "224,256,288", 26.6], ["D_384", "352,384,416", 26.5], ["D_jit", "256,384,512", 24.8],
    ]
    assert t4["run"].iloc[0] == "A_256"
    assert t4["top-1 err"].tolist() == [50.0, 51.0, 52.0, 53.0]  # the dense multi-scale numbers, not single-scale
    t5 = tables.table5(params, evals)
    assert t5[["method", "top-1 err", "paper top-1", "paper top-5"]].values.tolist() == [
        ["dense", 53.0, 24.8, 7.5], ["multi-crop", 43.0, 24.6, 7.5], ["multi-crop & dense", 43.0, 24.4, 7.2],
    ]
    # Only D of the paper's D & E: the paper's numbers would compare unlike things.
    part = {"members": ["D_jit/dense"], "left_out": ["E_jit/dense"], "top1_err": 1.0, "top5_err": 0.5}
    t6 = tables.table6(params, {"D & E, [256;512]/{256,384,512}, dense": part})
    assert t6[["nets", "paper top-1", "paper top-5"]].values.tolist() == [[1, None, None]]
    raw["runs"]["E_256"] = {"config": "E", "scale": 256, "init": "A_256"}
    raw["runs"]["E_384"] = {"config": "E", "scale": 384, "init": "E_256"}
    raw["runs"]["E_jit"] = {"config": "E", "scale": [256, 512], "init": "E_384"}
    raw["fuse"]["D & E, [256;512]/{256,384,512}, multi-crop"] = ["D_jit/multi-crop", "E_jit/dense"]  # not the row's
    raw["evaluate"]["multi_crop"] = ["D_jit"]
    params = parse_params(raw)
    whole = {"members": ["D_jit/dense", "E_jit/dense"], "left_out": [], "top1_err": 1.0, "top5_err": 0.5}
    mixed = {"members": ["D_jit/multi-crop", "E_jit/dense"], "left_out": [], "top1_err": 1.0, "top5_err": 0.5}
    t6 = tables.table6(params, {"D & E, [256;512]/{256,384,512}, dense": whole, "D & E, [256;512]/{256,384,512}, multi-crop": mixed})
    assert t6["paper top-1"].tolist()[0] == 24.0 and t6["paper top-5"].tolist()[0] == 7.1
    assert t6[["paper top-1", "paper top-5"]].iloc[1].isna().all()  # multi-crop for D, dense for E: not the row
    csv = tables.to_csv(t4)
    assert csv.splitlines()[0] == "run,config,train S,test Q,top-1 err,top-5 err,paper top-1,paper top-5"
    assert csv.splitlines()[1] == "A_256,A,256,\"224,256,288\",50.0000,20.0000,,"
    assert csv.splitlines()[2] == "D_256,D,256,\"224,256,288\",51.0000,21.0000,26.6000,8.6000"


def test_multi_crop_runs_the_grid_does_not_hold_are_left_out():
    params = params_with({}, multi_crop=["Z_9", "B_jit"])
    assert params.multi_crop_runs == ["B_jit"]
