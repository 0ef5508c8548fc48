"""params.yaml validation: every bad file stops with one line naming the key and the value."""

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_project, tiny_params, tool, vggrepro
from vggrepro.params import ParamsError, load_params, parse_params


def edited(edit) -> dict:
    params = tiny_params()
    edit(params)
    return params


def _set(path: str, value):
    def edit(params):
        *parents, last = path.split(".")
        node = params
        for p in parents:
            node = node[p]
        node[last] = value

    return edit


BAD = {
    "unknown key": (_set("train.learning_rate", 0.1), ["train.learning_rate", "unknown key"]),
    "unknown section": (_set("optimiser", {}), ["optimiser", "unknown key"]),
    "wrong type": (_set("train.lr", "fast"), ["train.lr", "'fast'"]),
    "impossible value": (_set("train.max_epochs", 0), ["train.max_epochs", "0"]),
    "unknown config": (_set("runs.A_256.config", "F"), ["runs.A_256.config", "'F'"]),
    "top-5 error 0 by construction": (_set("data.embedded.classes", 5), ["data.embedded.classes", "5", "minimum of 6"]),
    "S_min > S_max": (_set("runs.B_jit.scale", [512, 256]), ["runs.B_jit.scale", "S_min (512) > S_max (256)"]),
    "bad scale": (_set("runs.B_jit.scale", [256]), ["runs.B_jit.scale", "[256]"]),
    "lr_steps not increasing": (_set("runs.A_256.lr_steps", [3, 2]), ["runs.A_256.lr_steps: [3, 2]", "increasing epochs"]),
    "an lr step at max_epochs": (lambda p: p["runs"]["A_256"].update(max_epochs=4, lr_steps=[2, 4]),
                                 ["runs.A_256.lr_steps: [2, 4]", "below the run's max_epochs 4"]),
    "train.lr_steps past a run's limit": (_set("train.lr_steps", [5]),
                                          ["train.lr_steps (for A_256): [5]", "below the run's max_epochs 1",
                                           "expected [] (one epoch has no later rate)"]),
    "crop larger than S": (_set("runs.A_256.scale", 200), ["runs.A_256.scale", "200", "smaller than the crop"]),
    "crop not a multiple of 32": (_set("geometry.crop", 48), ["geometry.crop", "48"]),
    "init from a missing run": (_set("runs.B_256.init", "Z_256"), ["runs.B_256.init", "'Z_256'"]),
    "init cycle": (_set("runs.A_256.init", "B_jit"), ["init", "cycle", "A_256 -> B_jit -> B_256 -> A_256"]),
    "bad run name": (_set("runs.E-jit", {"config": "E", "scale": 256, "init": "glorot"}), ["runs", "'E-jit'"]),
    "missing key": (lambda p: p["train"].pop("lr"), ["train", "'lr' is a required property"]),
    # Bounds: what torch, the OS and the memory accept (issue 17)
    "seed 2^64": (_set("seed", 2**64), ["seed", "18446744073709551616", "maximum of 2147483647"]),
    "threads 1e20": (_set("threads", 10**20), ["threads", "maximum of 256"]),
    "batch 1e20": (_set("train.batch_size", 10**20), ["train.batch_size", "maximum of 65536"]),
    "S_max 1e20": (_set("runs.B_jit.scale", [256, 10**20]), ["runs.B_jit.scale", "100000000000000000000"]),
    "workers 100000": (_set("data.workers", 100000), ["data.workers", "maximum of 64"]),
    "crop 8192": (_set("geometry.crop", 8192), ["geometry.crop", "maximum of 1024"]),
    "train_per_class 1e8": (_set("data.embedded.train_per_class", 10**8), ["data.embedded.train_per_class", "maximum of 5000"]),
    "run name of 300": (_set("runs." + "A" * 300, {"config": "A", "scale": 256, "init": "glorot"}),
                        ["runs: run name 'AAAA", "at most 100 characters"]),
    "NUL byte": (_set("data.root", "data/emb\x00edded"), ["data.root: holds a NUL byte"]),
    "~nosuchuser": (_set("data.root", "~nosuchuser/embedded"), ["data.root: '~nosuchuser/embedded': no user 'nosuchuser'"]),
    "ilsvrc2012 without its folder": (_set("data", {"source": "ilsvrc2012", "root": "no/such/imagenet"}),
                                      ["data.root: 'no/such/imagenet': no such folder"]),
    "imagefolder at the project root": (_set("data", {"source": "imagefolder", "root": "."}),
                                        ["data.root: '.' holds the whole project"]),
    "activations beyond memory": (lambda p: (_set("geometry.crop", 1024)(p), _set("train.batch_size", 65536)(p)),
                                  ["train.batch_size: 65536 images a micro-batch at geometry.crop 1024 (A_256: A,",
                                   "to train, above this machine's", "expected a smaller train.device_batch"]),
    # Refused by a stage after an engine deleted its outputs, so refused here (issue 17's review)
    "one generated image a class": (_set("data.embedded.train_per_class", 1),
                                    ["data.embedded.train_per_class: 1 image a class leaves none to hold out"]),
    "a batch larger than the generated split": (_set("train.batch_size", 61),
                                                ["train.batch_size: 61 is more than the 54 generated training images",
                                                 "(6 classes x 10, train.holdout 0.05)"]),
    "two fuse names, one file": (lambda p: p["fuse"].update({"E a": ["B_256/dense"], "E-a": ["B_256/dense"]}),
                                 ["fuse: entry names 'E a' and 'E-a' would both write fusion/e-a.pt"]),
    "a fuse name without letters": (lambda p: p["fuse"].update({"!!!": ["B_256/dense"]}),
                                    ["fuse: entry name '!!!' has no letter or digit"]),
    "a data.root of 5,000 characters": (_set("data.root", "d/" * 2500), ["data.root: 'd/d/d/", "a path over 4,095 bytes"]),
    "a folder name over 255 bytes": (_set("data.root", "x" * 300), ["data.root: 'xxxx", "a folder name over 255 bytes"]),
    "imported weights missing": (_set("runs.tv", {"config": "A", "scale": 256, "init": "import", "weights": "missing.pt"}),
                                 ["runs.tv.weights: 'missing.pt': no such file"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_params_raise_one_line_naming_key_and_value(case):
    edit, fragments = BAD[case]
    with pytest.raises(ParamsError) as err:
        parse_params(edited(edit))
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_a_train_level_lr_steps_binds_the_runs_that_train_not_an_imported_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tv.pt").write_bytes(b"")
    params = tiny_params()
    params["train"].update(max_epochs=4, lr_steps=[2])
    params["runs"]["tv"] = {"config": "A", "scale": 256, "init": "import", "weights": "tv.pt", "max_epochs": 1}
    assert parse_params(params).runs["tv"].imported
    params["runs"]["tv"]["init"] = "kaiming"
    del params["runs"]["tv"]["weights"]
    with pytest.raises(ParamsError, match=r"train.lr_steps \(for tv\): \[2\]"):
        parse_params(params)


def test_a_chain_draws_what_it_does_not_copy_as_its_root_did_and_normal_below_an_import(tmp_path, monkeypatch):
    # Training (init_weights) and the report's Initialisation line both read this one rule.
    monkeypatch.chdir(tmp_path)
    Path("tv.pt").write_bytes(b"")
    params = tiny_params()
    assert [parse_params(params).init_scheme(n) for n in ("A_256", "B_256", "B_jit")] == ["glorot"] * 3
    params["runs"]["A_256"] = {"config": "A", "scale": 256, "init": "import", "weights": "tv.pt"}
    assert [parse_params(params).init_scheme(n) for n in ("A_256", "B_256", "B_jit")] == ["normal"] * 3


@pytest.mark.parametrize("case", ["unknown key", "S_min > S_max", "init cycle"])
def test_cli_prints_one_line_and_no_traceback(case, tmp_path):
    edit, fragments = BAD[case]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(edited(edit)))
    done = vggrepro("train", "--run", "A_256", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert all(f in lines[0] for f in fragments), lines[0]


def test_snakemake_stops_before_any_job_with_one_line(tmp_path):
    project = make_project(tmp_path / "p", tiny_params())
    bad = edited(_set("runs.B_jit.scale", [512, 256]))
    (project / "params.yaml").write_text(yaml.safe_dump(bad))
    done = subprocess.run(
        [tool("snakemake"), "--cores", "1"], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    errors = [l for l in (done.stderr + done.stdout).splitlines() if "runs.B_jit.scale" in l]
    assert errors and "S_min (512) > S_max (256)" in errors[0], done.stderr
    assert not (project / "data").exists()


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ParamsError, match="no such file"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("seed: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_the_default_params_are_valid_and_hold_vgg19s_chain_and_the_cpu_grid_table_3():
    params = load_params(ROOT / "params.yaml")
    rows = [(r.config, r.scale_label) for r in params.runs.values()]
    assert rows == [("A", "256"), ("E", "256"), ("E", "384"), ("E", "[256;512]")]
    # The findings profile's control of E_jit: the same start, length, lr and schedule at a fixed S.
    findings = load_params(ROOT / "params/findings.yaml")
    for seed in findings.seeds:
        for config in "CDE":
            jit, more = findings.runs[f"{config}_jit_seed{seed}"], findings.runs[f"{config}_384_more_seed{seed}"]
            assert (more.init.removesuffix(f"_seed{seed}"), more.max_epochs, more.lr, more.lr_steps) == (
                jit.init.removesuffix(f"_seed{seed}"), jit.max_epochs, jit.lr, jit.lr_steps)
            assert more.scale == (384, 384) and jit.scale == (256, 512) and more.config == jit.config == config
    full = load_params(ROOT / "params/cpu-table3.yaml")
    assert [(r.config, r.scale_label) for r in full.runs.values()] == [
        ("A", "256"), ("A-LRN", "256"), ("B", "256"), ("C", "256"), ("C", "384"), ("C", "[256;512]"),
        ("D", "256"), ("D", "384"), ("D", "[256;512]"), ("E", "256"), ("E", "384"), ("E", "[256;512]"),
    ]
    # Sec. 3.1's chain: deeper nets from A, S=384 from S=256, jittered from S=384.
    assert full.init_chain("E_jit") == ["E_384", "E_256", "A_256"]
    assert params.init_chain("E_jit") == ["E_384", "E_256", "A_256"]


def test_run_overrides_fall_back_to_train_defaults():
    params = parse_params(tiny_params())
    assert (params.runs["B_jit"].lr, params.runs["B_jit"].max_epochs) == (0.001, 1)
    assert params.runs["B_jit"].single_scale_q == 384 and params.pixels(384) == 55


def test_a_valid_edit_is_not_mutated():
    raw = tiny_params()
    snapshot = copy.deepcopy(raw)
    parse_params(raw)
    assert raw == snapshot


def load_text(tmp_path, edit) -> object:
    """load_params on the tiny params as YAML text after a textual edit."""
    text = edit(yaml.safe_dump(tiny_params(), sort_keys=False))
    (tmp_path / "params.yaml").write_text(text)
    return load_params(tmp_path / "params.yaml")


def test_yaml_1_2_as_dvc_reads_it(tmp_path):
    """`1e-3` is a float (PyYAML's YAML 1.1 reads a string); `yes` is a string, not true."""
    params = load_text(tmp_path, lambda t: t.replace("lr: 0.01,", "lr: 1e-3,").replace("lr: 0.01\n", "lr: 1e-3\n"))
    assert params.raw["train"]["lr"] == 0.001 and params.runs["A_256"].lr == 0.001
    with pytest.raises(ParamsError, match=r"evaluate\.flip: 'yes' is invalid"):
        load_text(tmp_path, lambda t: t.replace("evaluate:\n  flip: true", "evaluate:\n  flip: yes"))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("runs:\n", "runs:\n  B_jit: {config: A, scale: 256, init: glorot}\n"), "duplicate key 'B_jit' at line"),
        (lambda t: t + "seed: 1\n", "duplicate key 'seed' at line"),
        (lambda t: t.replace("lr: 0.01", "lr: .nan"), "train.lr: nan is not a finite number"),
        (lambda t: t.replace("lr: 0.01", "lr: -.inf"), "train.lr: -inf is not a finite number"),
        (lambda t: t.replace("width: 0.0625", "width: .NaN"), "model.width: nan is not a finite number"),
        (lambda t: t.replace("batch_size: 16", "batch_size: 16.0"), "train.batch_size: 16.0 is not an integer (write 16)"),
        (lambda t: t.replace("head_width: 16", "head_width: 16.5"), "model.head_width: 16.5 is not an integer"),
        (lambda t: t.replace("threads: 2", "threads: 2.0"), "threads: 2.0 is not an integer (write 2)"),
        (lambda t: t.replace("threads: 2", "threads: true"), "threads: True is invalid"),
        (lambda t: t.replace("root: data/embedded", "root: runs/data"), "data.root: 'runs/data' overlaps the project's 'runs'"),
        (lambda t: t.replace("root: data/embedded", "root: data"), "data.root: 'data' overlaps the project's 'data/manifest.csv'"),
        (lambda t: t.replace("root: data/embedded", "root: ."), "data.root: '.' holds the whole project"),
        (lambda t: t.replace("root: data/embedded", "root: .."), "data.root: '..' holds the whole project"),
        (lambda t: t.replace("root: data/embedded", f"root: {Path.cwd() / 'runs/x'}"), "overlaps the project's 'runs'"),
        (lambda t: t.replace("root: data/embedded", "root: ./src/../reports"), "overlaps the project's 'reports'"),
        (lambda t: t.replace("  A_256:\n", "  7:\n", 1), "runs.7: the key 7 is not a name"),
    ],
)
def test_one_reading_of_params_yaml(tmp_path, edit, expected):
    with pytest.raises(ParamsError) as err:
        load_text(tmp_path, edit)
    assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_params_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"# caf\xe9\n" + yaml.safe_dump(tiny_params()).encode())
    with pytest.raises(ParamsError, match=r"not UTF-8 text \(byte 0xe9 at line 1\); expected UTF-8"):
        load_params(path)


def test_the_memory_estimate_counts_every_layer_output_and_weight_of_the_built_net():
    """vggrepro.table1 counts without torch; the built net must hold exactly those
    outputs and weights, at a crop and at a Q that is no multiple of 32."""
    import torch

    from vggrepro import table1
    from vggrepro.model import VGG, ModelSpec, count_params

    for config in ("A", "A-LRN", "C", "E"):
        spec = ModelSpec(config, num_classes=7, width=0.25, head_width=48, crop=64)
        assert table1.count_params(config, 0.25, 48, 64, 7) == count_params(spec)
        net = VGG(spec)
        for side in (64, 101):
            seen = []
            hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.numel()))
                     for name, m in net.features.named_children() if not name.startswith("relu")]
            with torch.no_grad():
                net.features(torch.zeros(1, 3, side, side))
            for h in hooks:
                h.remove()
            assert table1.layer_outputs(config, 0.25, side) == seen, (config, side)


def test_memory_is_checked_against_this_machine_or_the_gpu_the_stages_use(monkeypatch, tmp_path):
    from vggrepro.runtime import machine

    monkeypatch.setattr(machine, "machine_bytes", lambda: 2**30)  # a 1 GiB machine
    params = edited(lambda p: (_set("model.width", 1.0)(p), _set("model.head_width", 4096)(p),
                               _set("geometry.crop", 224)(p), _set("train.batch_size", 64)(p),
                               _set("data.embedded.train_per_class", 20)(p)))
    with pytest.raises(ParamsError, match=r"train.batch_size: 64 images a micro-batch at geometry.crop 224 "
                                          r"\(A_256: A, model.width 1, train.precision auto\) need at least 2.5 GiB"):
        parse_params(params)
    params["train"]["device_batch"] = 8  # 8 images at once: 1.8 GiB of weights, gradients and momentum still
    with pytest.raises(ParamsError, match=r"train.device_batch: 8 images a micro-batch"):
        parse_params(params)
    params["model"]["head_width"] = 256  # small FC layers: 8 images fit; B_jit's dense pass at Q=512 still fits
    parse_params(params)
    params["runs"]["B_jit"]["scale"] = [256, 4096]  # Q = 4096: 2 x 128 channels x 4096^2 x 2 bytes
    with pytest.raises(ParamsError, match=r"runs.B_jit.scale: dense evaluation at its largest Q \(4096 px at "
                                          r"geometry.crop 224; B, model.width 1, train.precision auto\) needs at least"):
        parse_params(params)
    params["runs"]["B_jit"]["scale"] = [256, 512]
    params["train"].pop("device_batch")
    params["train"]["nproc"] = 16  # 16 processes on this CPU, 4 images each: 16 copies of the weights
    with pytest.raises(ParamsError, match=r"train.batch_size: 4 images a micro-batch in each of train.nproc 16 processes"):
        parse_params(params)
    params["train"]["device"] = "cuda"  # no nvidia-smi here: a GPU's memory is not known, not checked
    monkeypatch.setattr(machine.shutil, "which", lambda name: None)
    parse_params(params)
    fake = tmp_path / "nvidia-smi"  # two GPUs of 2 GiB and 1 GiB: each process checked against the smaller
    fake.write_text("#!/bin/sh\necho 2048; echo 1024\n")
    fake.chmod(0o755)
    monkeypatch.setattr(machine.shutil, "which", lambda name: str(fake))
    assert machine.gpu_bytes() == 2**30
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the stages see the 2 GiB one only
    assert machine.gpu_bytes() == 2 * 2**30
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    params["train"]["nproc"] = 1  # one GPU: all 64 images at once
    with pytest.raises(ParamsError, match=r"train.batch_size: 64 images a micro-batch at geometry.crop 224 .* above the "
                                          r"GPU's 1.0 GiB"):
        parse_params(params)
    assert machine.runs_on_this_cpu("cpu")
    assert not machine.runs_on_this_cpu("cuda")


def test_snakemakes_config_and_configfile_are_refused_in_one_line_not_ignored(tmp_path):
    """The stages read params.yaml alone: `--config seed=5` would say "Nothing to be done" and
    change nothing, so it stops before any job, naming the way that works."""
    project = make_project(tmp_path / "p", tiny_params())
    (project / "other.yaml").write_text("seed: 5\n")
    for extra in (["--config", "seed=5"], ["--configfile", "other.yaml"]):
        done = subprocess.run([tool("snakemake"), "-n", *extra], cwd=project, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("snakemake: error:")]
        assert errors == [
            "snakemake: error: --config/--configfile (seed) would change nothing: every stage reads params.yaml "
            "alone; set the knob there (e.g. `seed: 5`), or run `dvc exp run -S seed=5`"
        ], done.stderr
    assert not (project / "data").exists()


def test_a_yaml_alias_bomb_or_deep_nesting_is_one_line_before_any_value_is_built(tmp_path):
    """Nine levels of ten aliases in 400 bytes: 10^9 values for every walker; 5,000 brackets:
    a RecursionError in the reader. Both refused from the parser's events, at once."""
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    (tmp_path / "bomb.yaml").write_text(bomb)
    with pytest.raises(ParamsError, match=r"bomb.yaml: a YAML alias \(\*a\) at line 2; expected every value written out"):
        load_params(tmp_path / "bomb.yaml")
    (tmp_path / "deep.yaml").write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ParamsError, match=r"deep.yaml: nested more than 16 levels deep at line 1"):
        load_params(tmp_path / "deep.yaml")
