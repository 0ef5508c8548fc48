"""The `vggrepro` command: one subcommand per stage, plus helpers.

    vggrepro prepare | mean_rgb | train --run R | evaluate --run R | fuse | report
    vggrepro model --config E --num-classes 1000 --json
    vggrepro validate            check params.yaml, the workspace and dvc.yaml
    vggrepro dvc-yaml [--check]  render dvc.yaml from the stage registry
    vggrepro use FILE            make FILE (e.g. params/imagenet-vgg19.yaml) the params.yaml, re-render dvc.yaml
    vggrepro predict IMAGE... --model runs/E_jit/model.pt   top-5 classes of images by a trained run
    vggrepro import-weights --arch vgg19 --input F.pth --output F.pt   torchvision's weights as a checkpoint
    vggrepro bench noop|stamp|loader|data|train|eval   benchmarks (ratios from one run)

Every stage validates the whole params.yaml first. A problem with the inputs or the machine
(vggrepro's Error, or a file that cannot be read or written) is one line on stderr, exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from vggrepro import paths
from vggrepro.params import ParamsError, load_params, split_batch
from vggrepro.runtime.errors import Error
from vggrepro.runtime.signals import Stopped

DVC_YAML = Path(paths.DVC_YAML)
PARAMS_YAML = Path(paths.PARAMS_FILE)
PREVIOUS_PARAMS = Path(paths.PREVIOUS_PARAMS)  # what `vggrepro use` replaced


def get_args_parser() -> argparse.ArgumentParser:
    from vggrepro import __version__

    parser = argparse.ArgumentParser(prog="vggrepro", description=__doc__.split("\n")[0])
    params_help = f"the params file (default: {paths.PARAMS_FILE})"
    parser.add_argument("--params", default=paths.PARAMS_FILE, help=params_help)
    parser.add_argument("--version", action="version", version=f"vggrepro {__version__}")
    # --params after the subcommand too: SUPPRESS keeps the top-level value unless it is given there
    anywhere = argparse.ArgumentParser(add_help=False)
    anywhere.add_argument("--params", default=argparse.SUPPRESS, help=params_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, what: str) -> argparse.ArgumentParser:
        """A subcommand whose --help opens with what it does, and that takes --params."""
        return sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".", parents=[anywhere])

    command("prepare", "generate or ingest the dataset into data/manifest.csv")
    command("mean_rgb", "mean RGB of the training split")
    for name in ("train", "evaluate"):
        p = command(name, f"{name} one run of the grid")
        p.add_argument("--run", help="a run name from params.yaml's runs")
        # The same as --run, for the torchrun launch: torchrun's own parser takes --run for an
        # abbreviation of its --run-path (vggrepro.runtime.distributed.torchrun_argv).
        p.add_argument("run_name", nargs="?", help=argparse.SUPPRESS)
    command("fuse", "average the posteriors of the ensembles in params.yaml's fuse (Table 6)")
    command("report", "write reports/results.md, the tables, figures and reports/metrics.json")
    p = command("model", "describe a Table 1 configuration")
    p.add_argument("--config", required=True, help="A, A-LRN, B, C, D or E")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--head-width", type=int, default=4096)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = command("validate", "check params.yaml, the workspace and dvc.yaml; print a summary of the grid")
    p.add_argument("--write-knobs", action="store_true", help="also write each stage's knob file (DVC's first stage)")
    p = command("bench", "benchmarks: ratios measured in one run, medians")
    p.add_argument(
        "what", choices=["noop", "stamp", "loader", "data", "train", "eval"],
        help="noop: both engines' no-op rerun against a toy pipeline; stamp: the dataset stamp on 100,000 files; "
        "loader: the training input pipeline against a PIL loop and the training step; "
        "data: prepare, mean_rgb and the input pipeline against PIL loops; "
        "train: our training loop against a plain torchvision-style loop, and MFU; "
        "eval: dense against 150-crop evaluation at three scales",
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--photos", type=Path, help="data: also a folder of ILSVRC-2012 photographs (<wnid>_<name>.JPEG)")
    p.add_argument("--geometry", choices=["params", "paper"], default="params", help="train, eval: params.yaml's, or crop 224 at full width")
    p.add_argument("--config", default="E", help="train, eval: the configuration (default E, VGG-19)")
    p.add_argument("--images", type=int, default=16, help="eval: validation images evaluated (default 16)")
    p.add_argument("--batch", type=int, help="train: images a step (default train.batch_size)")
    p = command("use", "make a params file the workspace's params.yaml and re-render dvc.yaml")
    p.add_argument("file", type=Path, help="e.g. params/imagenet-vgg19.yaml")
    p = command("import-weights", "torchvision's published VGG weights (.pth) as a project checkpoint")
    p.add_argument("--arch", required=True, help="vgg11, vgg13, vgg16 or vgg19 (Table 1's A, B, D, E)")
    p.add_argument("--input", required=True, type=Path, help="a torchvision state_dict, e.g. vgg19-dcbb9e9d.pth")
    p.add_argument("--output", required=True, type=Path, help="the checkpoint to write, e.g. models/vgg19.pt")
    p = command("predict", "the top classes of images by a trained run, by the paper's dense protocol at its Q")
    p.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, WebP)")
    p.add_argument("--model", type=Path, default=Path("runs/E_jit/model.pt"), help="a run's model.pt (default: runs/E_jit/model.pt)")
    p.add_argument("--top", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--q", type=int, help="test scale in pixels (default: the run's own, from its checkpoint)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p = command("dvc-yaml", "render dvc.yaml from the stage registry")
    p.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml on disk differs")
    return parser


def _model(args) -> int:
    from vggrepro.model import ModelSpec, count_params, weight_layers

    spec = ModelSpec(args.config, args.num_classes, args.width, args.head_width, args.crop)
    info = {
        "config": spec.config,
        "params": count_params(spec),
        "weight_layers": weight_layers(spec),
        **{k: getattr(spec, k) for k in ("num_classes", "width", "head_width", "crop")},
    }
    print(json.dumps(info) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def _predict(args) -> int:
    from vggrepro.prediction import predict

    for path, best in zip(args.images, predict(args.images, args.model, top=args.top, q=args.q)):
        if args.json:
            print(json.dumps({"image": str(path), "top": best}))
        else:
            print(f"{path}: " + "; ".join(f"{c['name']} ({c['wnid']}) {c['probability']:.3f}" for c in best))
    return 0


def _dvc_yaml(args) -> int:
    """dvc.yaml from the registry: the graph only, so data.root need not be there yet."""
    from vggrepro.engine import registry

    text = registry.dvc_yaml(registry.build(load_params(args.params, files=False)))
    if args.check:
        if not DVC_YAML.exists() or DVC_YAML.read_text() != text:
            print("dvc.yaml is stale: it differs from the stage registry; run `vggrepro dvc-yaml`", file=sys.stderr)
            return 1
        return 0
    DVC_YAML.write_text(text)
    print(f"wrote {DVC_YAML}")
    return 0


def _use(args) -> int:
    """params.yaml := FILE (validated first), the previous one kept, dvc.yaml re-rendered."""
    from vggrepro.engine import registry
    from vggrepro.runtime import io

    if args.file.resolve() == PARAMS_YAML.resolve():
        raise ParamsError(f"{args.file}: already the workspace's params file")
    # A bad file stops here, params.yaml untouched; a data.root or weights file not there yet
    # does not (the shipped ImageNet files name a folder to edit), and is said below.
    params = load_params(args.file, files=False)
    if PARAMS_YAML.exists():
        io.write_text(PREVIOUS_PARAMS, PARAMS_YAML.read_text())
    io.write_text(PARAMS_YAML, args.file.read_text())
    io.write_text(DVC_YAML, registry.dvc_yaml(registry.build(load_params(PARAMS_YAML, files=False))))
    kept = f"; the previous one is {PREVIOUS_PARAMS}" if PREVIOUS_PARAMS.exists() else ""
    print(f"{PARAMS_YAML}: now {args.file} ({len(params.runs)} runs); dvc.yaml re-rendered{kept}")
    try:
        load_params(PARAMS_YAML)
    except ParamsError as err:
        print(f"before running, edit {err}")
    return 0


def _validate(args) -> int:
    if args.write_knobs:  # DVC's first stage
        from vggrepro import engine

        checked = engine.pre_run("dvc", args.params)
        if checked is None:
            print(f"{args.params}: unchanged since it was last validated; dataset stamp refreshed")
            return 0
        params, _ = checked
    else:
        from vggrepro.data import embedded_owner
        from vggrepro.engine import guard, registry

        params = load_params(args.params)
        embedded_owner.check(params)
        if Path(args.params).resolve() == PARAMS_YAML.resolve():  # another file: not what dvc.yaml follows
            guard.check_dvc_yaml(registry.build(params))
    print(f"{args.params}: valid; {len(params.runs)} runs: {', '.join(params.runs)}")
    if not args.write_knobs:  # by hand: how the file resolves (DVC's validate stage stays short)
        print("\n".join(_resolved(params)))
    return 0


def _compute_here(train: dict) -> str | None:
    """train.device and train.precision with what they resolve to on this machine (auto decides
    per machine); None for train.device cuda on a machine without a GPU."""
    import torch  # by hand only: the validate stage's own run stays short

    from vggrepro.runtime import device

    try:
        here = device.resolve_device(train["device"], cuda_available=torch.cuda.is_available())
    except device.DeviceError:
        return None
    precision = device.resolve_precision(train["precision"], here)
    return f"device {train['device']} ({here} here), precision {train['precision']} ({precision} here)"


def _resolved(params) -> list[str]:
    """One line for the batch and one per run: what each knob resolves to."""
    t = params.raw["train"]
    nproc = t["nproc"]
    micro, steps = split_batch(t, nproc)
    here = _compute_here(t) or f"device {t['device']} (no GPU here), precision {t['precision']}"
    lines = [
        f"  batch {t['batch_size']} = {nproc} process(es) x {steps} micro-batch(es) x {micro} images; "
        f"{here}, crop {params.crop} px"
    ]
    for name, run in params.runs.items():
        chain = [name, *params.init_chain(name)]
        root = params.runs[chain[-1]].init
        px = f"{params.pixels(run.scale[0])}" + (f"..{params.pixels(run.scale[1])}" if run.jittered else "")
        lines.append(
            f"  {name}: {run.config}, S {run.scale_label} ({px} px), from {' <- '.join(chain[1:] + [root]) if len(chain) > 1 else root}, "
            + (f"lr {run.lr:g}, divided by {1 / t['lr_factor']:g} after epochs {', '.join(map(str, run.lr_steps))} of {run.max_epochs}"
               if run.lr_steps else f"lr {run.lr:g}, at most {run.max_epochs} epochs")
        )
    cores = os.cpu_count() or 1
    for key, value in (("threads", params.raw["threads"]), ("data.workers", params.raw["data"]["workers"])):
        if value > cores:  # a note, not an error: the stages may run on a larger node (SLURM)
            lines.append(f"  note: {key} {value} is more than this machine's {cores} cores; run here, the stages "
                         "would share them (slower, same results)")
    if "(no GPU here)" in here:  # a note, not an error: a cluster's login node validates, GPU nodes train
        lines.append("  note: train.device cuda and no GPU here: the train and evaluate stages would stop here "
                     "with one line; run them where there is one")
    return lines


def _stage(args) -> int:
    params = load_params(args.params)  # before importing torch: a bad file fails fast
    run = getattr(args, "run", None) or getattr(args, "run_name", None)
    if args.command in paths.PER_RUN_STAGES and run is None:
        raise ParamsError(f"which run? expected --run NAME (one of {', '.join(params.runs)})")
    if run is not None and run not in params.runs:
        swept = [n for n, r in params.runs.items() if r.base == run and r.seed is not None]
        if swept:
            raise ParamsError(f"{args.params}: runs.{run}: swept over seeds; expected one of {', '.join(swept)}")
        raise ParamsError(f"{args.params}: runs.{run}: no such run (expected one of {', '.join(params.runs)})")
    from vggrepro.data import embedded_owner
    from vggrepro.engine import guard, outputs_record, registry
    from vggrepro.stages import StageRun, lock_stage, run_stage

    name = paths.stage_name(args.command, run)
    stage = next(s for s in registry.build(params) if s.name == name)
    # A stage run by hand needs no `vggrepro validate --write-knobs` first: its knob and code
    # digest files (its view of params.yaml and its code) are brought up to date here, as the
    # engines' check does, rewritten only where they changed.
    embedded_owner.check(params)  # as the engines' check does first: a refused folder changes no file
    guard.write_knobs(params, [stage])
    guard.write_code_digests([stage])
    with lock_stage(name) as locked:
        result = run_stage(args.command, params, StageRun(name, tuple(stage.deps)), run)
        if locked:  # the stage command itself, not a process under its torchrun
            outputs_record.record(stage)  # Snakemake reruns a stage whose output is edited by hand
    print(json.dumps({"stage": args.command, **result}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.command == "model":
            return _model(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "use":
            return _use(args)
        if args.command == "dvc-yaml":
            return _dvc_yaml(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "import-weights":
            from vggrepro.published import import_file

            print(json.dumps(import_file(args.arch, args.input, args.output)))
            return 0
        if args.command == "bench":
            bench = importlib.import_module(f"vggrepro.bench.{args.what}")
            chosen = {"params_file": args.params}  # the benches that read params.yaml read this one
            if args.what == "data":
                bench.main(repeat=args.repeat, photos=args.photos, **chosen)
            elif args.what == "train":
                bench.main(repeat=args.repeat, geometry=args.geometry, config=args.config, batch=args.batch, **chosen)
            elif args.what == "eval":
                bench.main(repeat=args.repeat, geometry=args.geometry, config=args.config, images=args.images, **chosen)
            elif args.what == "loader":
                bench.main(repeat=args.repeat, **chosen)
            else:
                bench.main(repeat=args.repeat)
            return 0
        return _stage(args)
    except Error as err:  # a problem with the inputs or the machine, said in one line
        print(f"vggrepro {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if not err.filename:
            raise  # names no file: not a missing or unwritable one, keep the traceback
        # a file that cannot be read or written: name it, no traceback
        print(f"vggrepro {args.command}: error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    except Stopped as err:  # SIGTERM or SIGINT during training: progress saved (vggrepro.runtime.signals)
        print(f"vggrepro {args.command}: {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print(f"vggrepro {args.command}: interrupted; no output was written", file=sys.stderr)
        return 130
