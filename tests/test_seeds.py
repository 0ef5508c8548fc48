"""A sweep over training seeds (params.yaml's `seeds`): each run once per seed, the seed in its
name, stage names and output paths; the same stages in both engines; the report of a sweep in
reports/findings.md."""

import copy
import subprocess

import pytest
import torch

import faults
from conftest import make_project, tiny_params, tool
from vggrepro import paths
from vggrepro.engine import registry
from vggrepro.params import ParamsError, parse_params
from vggrepro.stages.train import run_seed


def sweep(seeds=(0, 1, 2), **changes) -> dict:
    raw = copy.deepcopy(tiny_params())
    raw["seeds"] = list(seeds)
    raw.update(changes)
    return raw


def test_a_sweep_names_each_run_once_per_seed_and_chains_within_a_seed():
    params = parse_params(sweep())
    assert list(params.runs) == [f"{r}_seed{k}" for r in ("A_256", "B_256", "B_jit") for k in (0, 1, 2)]
    jit = params.runs["B_jit_seed1"]
    assert (jit.base, jit.seed, jit.init) == ("B_jit", 1, "B_256_seed1")
    assert params.init_chain("B_jit_seed2") == ["B_256_seed2", "A_256_seed2"]
    assert params.multi_crop_runs == ["B_jit_seed0", "B_jit_seed1", "B_jit_seed2"]
    fused = list(params.raw["fuse"])
    assert fused == [f"B & B jittered, dense (seed {k})" for k in (0, 1, 2)]
    assert params.raw["fuse"][fused[1]] == ["B_256_seed1/dense", "B_jit_seed1/dense"]
    assert params.base(fused[1]) == "B & B jittered, dense"


def test_the_seed_is_in_every_stage_name_output_path_and_knob_file():
    params = parse_params(sweep(seeds=[3, 5]))
    stages = {s.name: s for s in registry.build(params)}
    assert {"train_B_jit_seed3", "train_B_jit_seed5", "evaluate_A_256_seed5"} <= set(stages)
    assert not {"train_B_jit", "evaluate_A_256"} & set(stages)
    assert paths.model("B_jit_seed5") in [o.path for o in stages["train_B_jit_seed5"].outs]
    assert paths.model("B_256_seed5") in stages["train_B_jit_seed5"].deps  # its start: the same seed's run
    assert '"seed": 5' in registry.knobs(params, stages["train_B_jit_seed5"])
    report = [o.path for o in stages["report"].outs]
    assert paths.FINDINGS.markdown in report and paths.RESULTS.markdown not in report
    assert all(p.startswith(paths.FINDINGS.folder + "/") for p in report if p != paths.FINDINGS.markdown)


def test_without_seeds_the_runs_keep_their_names_and_the_report_its_place():
    params = parse_params(copy.deepcopy(tiny_params()))
    assert list(params.runs) == ["A_256", "B_256", "B_jit"] and params.seeds is None
    assert params.runs["B_jit"].seed is None and params.runs["B_jit"].base == "B_jit"
    assert paths.RESULTS.markdown in [o.path for o in registry.build(params)[-1].outs]


def test_seed_k_of_a_sweep_trains_as_the_run_alone_and_other_seeds_do_not():
    alone = parse_params(copy.deepcopy(tiny_params()))  # seed: 0
    swept = parse_params(sweep())
    assert run_seed(swept, "B_jit_seed0") == run_seed(alone, "B_jit")
    assert len({run_seed(swept, f"B_jit_seed{k}") for k in (0, 1, 2)}) == 3
    assert run_seed(swept, "B_jit_seed1") != run_seed(swept, "B_256_seed1")


@pytest.mark.parametrize("seeds, expected", [
    ([], "seeds: [] is invalid"),
    ([1, 1], "seeds: [1, 1] is invalid"),
    ([-1], "seeds.0: -1 is invalid"),
    ([1.5], "seeds.0: 1.5 is not an integer"),
])
def test_a_bad_seed_list_is_one_line(seeds, expected):
    with pytest.raises(ParamsError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        parse_params(sweep(seeds=seeds))


def test_a_sweeps_errors_name_the_runs_as_written():
    raw = sweep()
    raw["runs"]["B_jit"]["init"] = "B_512"
    with pytest.raises(ParamsError, match=r"runs\.B_jit\.init: 'B_512' is neither a run"):
        parse_params(raw)


def _listed(cmd, cwd) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_both_engines_plan_the_sweeps_stages_under_the_registrys_names(tmp_path):
    project = make_project(tmp_path / "ws", sweep(seeds=[0, 1]))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([tool("dvc"), "init", "-q"], cwd=project, check=True)
    expected = [s.name for s in registry.build(parse_params(sweep(seeds=[0, 1])))]
    dvc = [line.split()[0] for line in _listed([tool("dvc"), "stage", "list"], project).splitlines() if line.strip()]
    assert dvc == expected
    snakemake = _listed([tool("snakemake"), "--list-rules"], project).split()
    assert sorted(snakemake) == sorted([n for n in expected if n != registry.VALIDATE] + ["all"])


@pytest.mark.slow
def test_a_sweep_runs_alike_in_both_engines_and_seed_0_as_the_run_alone(tmp_path, tiny_runs):
    """Two seeds of the tiny grid, to the end under each engine: the same findings report, the
    seed in every output path, and seed 0's weights those of the grid without a sweep."""
    raw = sweep(seeds=[0, 1])
    done = {}
    for engine in ("dvc", "snakemake"):
        workspace = faults.setup(tmp_path / engine, engine, raw)
        faults.run_to_end(workspace, engine)
        done[engine] = workspace
    for report in (paths.FINDINGS.markdown, paths.FINDINGS.metrics, paths.FINDINGS.findings_table, paths.FINDINGS.table(3)):
        assert (done["dvc"] / report).read_bytes() == (done["snakemake"] / report).read_bytes(), report
    markdown = (done["dvc"] / paths.FINDINGS.markdown).read_text()
    assert "2 training seeds (0, 1;" in markdown and "| B_jit_seed1 | B | [256;512] |" in markdown
    assert not (done["dvc"] / "runs/B_jit").exists() and (done["dvc"] / "runs/B_jit_seed1/model.pt").exists()
    alone = tiny_runs["dvc"][0]
    for run in ("A_256", "B_jit"):
        a = torch.load(alone / paths.model(run), weights_only=True)["state_dict"]
        b = torch.load(done["dvc"] / paths.model(f"{run}_seed0"), weights_only=True)["state_dict"]
        c = torch.load(done["dvc"] / paths.model(f"{run}_seed1"), weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), run
        assert not all(torch.equal(a[k], c[k]) for k in a), run


def test_a_run_named_as_an_init_scheme_is_refused_and_schemes_stay_schemes():
    raw = sweep()
    raw["runs"]["kaiming"] = {"config": "A", "scale": 256, "init": "kaiming"}
    with pytest.raises(ParamsError, match=r"runs\.kaiming: a run may not be named as an init scheme"):
        parse_params(raw)
    assert parse_params(sweep()).runs["A_256_seed2"].init == "glorot"


def test_a_swept_run_named_as_written_says_which_names_it_has(tmp_path):
    from conftest import vggrepro_here

    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(sweep(seeds=[0, 4])))
    done = vggrepro_here("train", "--run", "B_jit", cwd=tmp_path)
    assert done.returncode == 2 and "runs.B_jit: swept over seeds; expected one of B_jit_seed0, B_jit_seed4" in done.stderr, done


def test_a_summary_figure_draws_each_run_as_its_mean_over_seeds_with_the_seeds_interval(monkeypatch):
    import pandas as pd
    import torch

    from vggrepro.stages import report

    n = 1000
    rates = {"A_256_seed2": 0.2, "A_256_seed5": 0.4, "B_jit_seed2": 0.3, "B_jit_seed5": 0.3}

    def wrong(run, protocol):
        k = round(rates[run] * n)
        return torch.cat([torch.ones(k), torch.zeros(n - k)]).double(), [f"val/{i}.JPEG" for i in range(n)]

    monkeypatch.setattr(report, "_wrong_per_image", wrong)
    swept = parse_params(sweep(seeds=[2, 5]))
    t3 = pd.DataFrame({"run": list(rates), "config": ["A", "A", "B", "B"], "top-1 err": [20.0, 40.0, 30.0, 30.0],
                       "top-1 low": [0.0] * 4, "top-1 high": [0.0] * 4, "top-5 err": [1.0, 3.0, 2.0, 2.0]})
    out = report.over_seeds(swept, t3, lambda row: "dense-single")
    assert out["run"].tolist() == ["A_256", "B_jit"] and out["config"].tolist() == ["A", "B"]
    assert out["top-1 err"].tolist() == [30.0, 30.0] and out["top-5 err"].tolist() == [2.0, 2.0]
    a, b = out.iloc[0], out.iloc[1]
    assert a["top-1 low"] < -50 and a["top-1 high"] > 100  # two seeds 20 points apart: Student's t, 1 dof
    assert 26 < b["top-1 low"] < 29 and 31 < b["top-1 high"] < 34  # seeds alike: the images' +-2.8 points alone
    t5 = t3.assign(method=["dense", "dense", "dense", "multi-crop"])
    assert report.over_seeds(swept, t5, lambda row: "dense")[["run", "method"]].values.tolist() == [
        ["A_256", "dense"], ["B_jit", "dense"], ["B_jit", "multi-crop"]]
    empty = pd.DataFrame(columns=["run", "method", "top-1 err"])  # Table 5 of a grid with no multi-crop run
    assert list(report.over_seeds(swept, empty, None).columns) == ["run", "method", "top-1 err"]
    alone = parse_params(copy.deepcopy(tiny_params()))
    assert report.over_seeds(alone, empty, None) is empty and report.over_seeds(alone, t3, None) is t3
