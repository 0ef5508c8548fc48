"""params.yaml: loading, validation and typed access.

Both engines call `load_params` before any work starts (the Snakefile at parse time, DVC's
first stage `validate`, every stage command at its start), so a bad file stops with one line
naming the key and the value. This module imports no torch: Snakemake parses it on every call.

Defaults live in the schema (params.schema.yaml) and nowhere else: `parse_params` fills every
key the file leaves out with the schema's `default`, so `Params.raw` holds every key a stage
reads and no module repeats a default. `Params.given` is the file as written (what DVC tracks).

One reading of the file everywhere: YAML 1.2, as DVC reads it (ruamel.yaml, the reader DVC
itself uses): `1e-3` is a float, `yes` a string; a duplicated key is refused, as DVC refuses
it; NaN and infinities are refused; an integer key takes integers only (32.0 is refused, not
coerced, so no engine can read it differently).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from vggrepro import paths
from vggrepro.runtime.errors import Error

PAPER_CROP = 224  # Sec. 2.1; geometry.crop / PAPER_CROP scales every S and Q
PAPER_HEAD_WIDTH = 4096  # Table 1: FC-4096, FC-4096
PAPER_DROPOUT = 0.5  # Sec. 3.1: the first two FC layers, dropout ratio 0.5
INIT_SCHEMES = ("normal", "glorot", "kaiming")  # random initialisations, vggrepro.model.init_weights
IMPORT = "import"  # init: a checkpoint from outside the grid (runs.<name>.weights), not trained
# What an evaluate stage saves per run (Sec. 3.2, 4): dense at the single test scale Q (Table 3);
# dense at three scales (Table 4); 150 crops at those scales; the two averaged (Table 5).
PROTOCOLS = {
    "dense-single": "dense, single scale",
    "dense": "dense, multi-scale",
    "multi-crop": "multi-crop, multi-scale",
    "multi-crop+dense": "multi-crop & dense, multi-scale",
}
MULTI_CROP_PROTOCOLS = ("multi-crop", "multi-crop+dense")


# Keys that change how fast (or how safely) a stage runs, never what it computes: no stage
# reruns for them, and no output records them.
SPEED_ONLY_KEYS = ("data.workers", "train.checkpoint_every")


class ParamsError(Error):
    """A params.yaml problem, phrased as one line that names the key and the value."""


def read_yaml(text: str):
    """YAML 1.2 (ruamel.yaml's safe loader), refusing duplicate keys. Raises MarkedYAMLError."""
    return YAML(typ="safe", pure=True).load(text)


MAX_DEPTH = 16  # params.yaml nests 4 levels; the schema's own walkers recurse


def _check_shape(text: str, path) -> None:
    """Refuses what a params file never needs and what would hang or overflow a reader: a YAML
    alias (nine levels of ten aliases expand to 10^9 values for every walker of the values)
    and nesting deeper than MAX_DEPTH. One pass over the parser's events, before any value is
    built."""
    from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent

    depth = 0
    for event in YAML(typ="safe", pure=True).parse(text):
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, AliasEvent):
            raise ParamsError(f"{path}: a YAML alias (*{event.anchor}) at line {line}; expected every value written out")
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ParamsError(f"{path}: nested more than {MAX_DEPTH} levels deep at line {line}; expected params.yaml's sections")
        elif isinstance(event, CollectionEndEvent):
            depth -= 1


@cache
def schema() -> dict:
    return read_yaml(files("vggrepro").joinpath("params.schema.yaml").read_text())


# JSON Schema's "integer" admits 32.0 and its "number" admits NaN; neither is what a params
# file means, so both types are narrowed here (booleans stay excluded, as the draft says).
def _is_integer(checker, value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(checker, value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@cache
def _validator():
    import jsonschema  # here: a tenth of a second that a no-op rerun need not pay

    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
            {"integer": _is_integer, "number": _is_number}
        ),
    )(schema())


@dataclass(frozen=True)
class Run:
    """One training run of the grid (a row of Table 3)."""

    name: str
    config: str
    scale: tuple[int, int]  # (S_min, S_max) in the paper's pixels; equal for a fixed S
    init: str  # "normal", "glorot", "kaiming", "import", or the name of another run
    lr: float
    max_epochs: int
    lr_steps: tuple[int, ...] = ()  # epochs after which the rate falls; () = Sec. 3.1's plateau rule
    weights: str | None = None  # init "import": the checkpoint (e.g. from `vggrepro import-weights`)
    seed: int | None = None  # its training seed in a sweep over `seeds`; None: params.yaml's seed

    @property
    def base(self) -> str:
        """The run's name as params.yaml writes it (a sweep's `E_jit_seed1` is `E_jit`)."""
        return self.name if self.seed is None else self.name.removesuffix(seed_suffix(self.seed))

    @property
    def jittered(self) -> bool:
        return self.scale[0] != self.scale[1]

    @property
    def scale_label(self) -> str:
        """Table 3's notation: 256, or [256;512] for scale jittering."""
        return f"[{self.scale[0]};{self.scale[1]}]" if self.jittered else str(self.scale[0])

    @property
    def single_scale_q(self) -> float:
        """Sec. 4.1: Q = S for a fixed S, Q = 0.5 (S_min + S_max) for a jittered S."""
        return (self.scale[0] + self.scale[1]) / 2

    @property
    def multi_scale_q(self) -> tuple[float, float, float]:
        """Sec. 4.2: {S-32, S, S+32} for a fixed S, {S_min, 0.5 (S_min + S_max), S_max} jittered."""
        if self.jittered:
            return (self.scale[0], self.single_scale_q, self.scale[1])
        s = self.scale[0]
        return (s - 32, s, s + 32)

    @property
    def init_run(self) -> str | None:
        return None if self.init in (*INIT_SCHEMES, IMPORT) else self.init

    @property
    def imported(self) -> bool:
        return self.init == IMPORT


@dataclass(frozen=True)
class Params:
    raw: dict[str, Any]  # every key, the schema's defaults filled in where the file leaves one out
    path: str
    given: dict[str, Any] | None = None  # the file as written (DVC's view); raw when None
    # A sweep over `seeds`: raw holds every run and fuse entry once per seed (expand_seeds);
    # each such name -> its name as written
    bases: dict[str, str] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int] | None:
        """The training seeds of a sweep, or None: one training seed, `seed`."""
        return self.raw.get("seeds")

    def base(self, name: str) -> str:
        """A run's or fuse entry's name as params.yaml writes it."""
        return self.bases.get(name, name)

    @property
    def data_root(self) -> Path:
        """data.root as a path, `~` expanded."""
        return expand_root(self.raw["data"]["root"])

    def given_key(self, key: str) -> bool:
        """Whether the params file itself holds the dotted key (rather than the schema's default)."""
        try:
            lookup(self.raw if self.given is None else self.given, key)
        except (KeyError, TypeError):
            return False
        return True

    @cached_property
    def runs(self) -> dict[str, Run]:
        train = self.raw["train"]
        return {
            name: Run(
                name=name,
                config=r["config"],
                scale=_scale_pair(r["scale"]),
                init=r["init"],
                lr=float(r.get("lr", train["lr"])),
                max_epochs=int(r.get("max_epochs", train["max_epochs"])),
                lr_steps=tuple(r.get("lr_steps", train["lr_steps"])),
                weights=r.get("weights"),
                seed=r.get("seed"),
            )
            for name, r in self.raw["runs"].items()
        }

    @property
    def multi_crop_runs(self) -> list[str]:
        """evaluate.multi_crop's runs that the grid holds (like fuse's members, the others are
        left out: the default names the paper's D and E runs, whatever a grid keeps of them)."""
        return [r for r in self.raw["evaluate"]["multi_crop"] if r in self.runs]

    @property
    def crop(self) -> int:
        return self.raw["geometry"]["crop"]

    def pixels(self, paper_pixels: float) -> int:
        """A side in the paper's pixels, at this geometry: scaled by crop / 224."""
        return round(paper_pixels * self.crop / PAPER_CROP)

    def init_chain(self, run: str) -> list[str]:
        """The runs `run` starts from, nearest first."""
        chain, runs = [], self.runs
        while (parent := runs[run].init_run) is not None:
            chain.append(parent)
            run = parent
        return chain

    def init_scheme(self, run: str) -> str:
        """The random scheme at the root of the run's initialisation chain: the layers a
        transfer does not copy are drawn as the root drew its own (normal, the paper's,
        below an imported run)."""
        chain = self.init_chain(run)
        root = self.runs[chain[-1]].init if chain else self.runs[run].init
        return "normal" if root == IMPORT else root


def seed_suffix(seed: int) -> str:
    return f"_seed{seed}"


def fusion_for_seed(name: str, seed: int) -> str:
    return f"{name} (seed {seed})"


def expand_seeds(raw: dict) -> tuple[dict, dict[str, str]]:
    """A sweep over `seeds` as a grid of its own: each run once per seed, named
    `<run>_seed<k>`, carrying its seed and starting from the same seed's run; evaluate.multi_crop
    and each fuse entry likewise (`<entry> (seed <k>)`, its members of the same seed). So every
    stage, output path and knob file holds the seed, and both engines see plain runs. Returns
    (the expanded raw, each new name -> its name as written)."""
    seeds, runs = raw["seeds"], raw["runs"]
    out, bases = copy.deepcopy(raw), {}

    def of(name: str, seed: int) -> str:
        return name + seed_suffix(seed) if name in runs else name  # a member the grid lacks stays as written

    out["runs"] = {}
    for name, run in runs.items():  # a run's seeds side by side: the tables read them together
        for seed in seeds:
            init = run["init"] if run["init"] in (*INIT_SCHEMES, IMPORT) else of(run["init"], seed)
            out["runs"][of(name, seed)] = {**run, "init": init, "seed": seed}
            bases[of(name, seed)] = name
    out["evaluate"]["multi_crop"] = list(dict.fromkeys(of(r, k) for r in raw["evaluate"]["multi_crop"] for k in seeds))
    out["fuse"] = {}
    for name, members in raw["fuse"].items():
        for seed in seeds:
            out["fuse"][fusion_for_seed(name, seed)] = [
                f"{of(run, seed)}/{protocol}" for run, protocol in (m.split("/", 1) for m in members)
            ]
            bases[fusion_for_seed(name, seed)] = name
    return out, bases


def _scale_pair(scale: int | list[int]) -> tuple[int, int]:
    return (scale, scale) if isinstance(scale, int) else (scale[0], scale[1])


def _non_finite(node, where: tuple = ()) -> tuple | None:
    """The key path of the first NaN or infinite number, or None."""
    if isinstance(node, float) and not math.isfinite(node):
        return where
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = _non_finite(value, (*where, key))
        if found is not None:
            return found
    return None


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _schema_message(err) -> str:
    """One line for a jsonschema.ValidationError."""
    where = _dotted(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties", {})
        extra = sorted(k for k in err.instance if k not in allowed)
        key = f"{where}.{extra[0]}" if err.absolute_path else extra[0]
        return f"{key}: unknown key (expected one of: {', '.join(allowed)})"
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "propertyNames" or (err.validator == "maxLength" and where in ("runs", "fuse")):
        name = err.instance if len(err.instance) <= 40 else err.instance[:40] + "..."
        if where == "fuse":
            return f"fuse: entry name {name!r} is {len(err.instance)} characters; expected at most 150"
        return f"{where}: run name {name!r} must be letters, digits and _, start with a letter, and be at most 100 characters"
    if err.validator == "type" and err.validator_value == "integer" and isinstance(err.instance, float):
        return f"{where}: {err.instance!r} is not an integer (write {int(err.instance)})" if err.instance.is_integer() else f"{where}: {err.instance!r} is not an integer"
    if where.endswith(".scale"):
        return f"{where}: {err.instance!r} is not a training scale (expected an integer S or [S_min, S_max])"
    return f"{where}: {err.instance!r} is invalid: {err.message}"


def _check_semantics(p: Params, files: bool = True) -> None:
    runs = p.runs
    for name, run in runs.items():
        key = f"runs.{name}"
        if name in (*INIT_SCHEMES, IMPORT):
            raise ParamsError(f"{key}: a run may not be named as an init scheme; expected another name, e.g. {name}_run")
        s_min, s_max = run.scale
        if s_min > s_max:
            raise ParamsError(f"{key}.scale: S_min ({s_min}) > S_max ({s_max}); expected [S_min, S_max]")
        if s_min < PAPER_CROP:  # unrounded: at crop 64, S=223 is 63.7 px, which rounds to 64
            raise ParamsError(
                f"{key}.scale: smallest S {s_min} is {s_min * p.crop / PAPER_CROP:.1f} px at geometry.crop {p.crop} "
                f"(x {p.crop}/{PAPER_CROP}), smaller than the crop; expected S >= {PAPER_CROP}"
            )
        steps = list(run.lr_steps)
        # an imported run never trains, so a train-level lr_steps does not concern it
        if steps and not run.imported and (steps != sorted(set(steps)) or steps[-1] >= run.max_epochs):
            where = f"{key}.lr_steps" if "lr_steps" in p.raw["runs"][name] else f"train.lr_steps (for {name})"
            example = f"e.g. {[max(1, run.max_epochs * 3 // 4)]}" if run.max_epochs > 1 else "[] (one epoch has no later rate)"
            raise ParamsError(
                f"{where}: {steps} is not increasing epochs below the run's max_epochs {run.max_epochs}; "
                f"expected {example}"
            )
        if run.init not in (*INIT_SCHEMES, IMPORT) and run.init not in runs:
            raise ParamsError(
                f"{key}.init: {run.init!r} is neither a run of the grid nor one of {', '.join((*INIT_SCHEMES, IMPORT))}"
            )
        if run.imported != (run.weights is not None):
            raise ParamsError(
                f"{key}.weights: given without init: import" if run.weights is not None
                else f"{key}: init: import needs weights: the checkpoint to evaluate (from `vggrepro import-weights`)"
            )
    _check_batch(p.raw["train"])
    _check_evaluation(p)
    for name in runs:  # follow each chain until it reaches a random scheme or comes back
        seen = [name]
        while (parent := runs[seen[-1]].init_run) is not None:
            if parent in seen:
                cycle = " -> ".join(seen[seen.index(parent):] + [parent])
                raise ParamsError(
                    f"runs.{name}.init: initialisation cycle {cycle}; "
                    f"expected a chain ending in one of {', '.join((*INIT_SCHEMES, IMPORT))}"
                )
            seen.append(parent)
    for name, run in runs.items():
        parent = runs.get(run.init)
        if parent is not None and parent.config not in (run.config, "A"):
            raise ParamsError(
                f"runs.{name}.init: {run.config} cannot start from {run.init!r} ({parent.config}); expected a run "
                f"of {run.config} (all layers) or of A (Sec. 3.1: its first four conv and three FC layers)"
            )
    _check_root(p.raw["data"], files)
    if files:
        _check_weights(p)
        _check_memory(p)
    emb = p.raw["data"]["embedded"]
    if p.raw["data"]["source"] == "embedded":
        if emb["min_side"] > emb["max_side"]:
            raise ParamsError(
                f"data.embedded.min_side ({emb['min_side']}) > data.embedded.max_side ({emb['max_side']})"
            )
        _check_embedded_split(p, emb)


def _check_embedded_split(p: Params, emb: dict) -> None:
    """The generated split is known before prepare: every class can hold one image out for the
    schedule and keep one, and one global batch fits in what is left (prepare and train would
    refuse both, after an engine deleted their outputs)."""
    from vggrepro.data.holdout import held_count

    per_class = emb["train_per_class"]
    if per_class < 2:
        raise ParamsError(
            f"data.embedded.train_per_class: {per_class} image a class leaves none to hold out for the schedule "
            "(train.holdout) and one to train on; expected at least 2"
        )
    left = emb["classes"] * (per_class - held_count(per_class, p.raw["train"]["holdout"]))
    batch = p.raw["train"]["batch_size"]
    if batch > left:
        raise ParamsError(
            f"train.batch_size: {batch} is more than the {left:,} generated training images left after the "
            f"held-out slice ({emb['classes']} classes x {per_class}, train.holdout {p.raw['train']['holdout']:g}); "
            "expected at most that"
        )


def _check_evaluation(p: Params) -> None:
    runs, multi_crop = p.runs, p.multi_crop_runs
    for name, run in runs.items():
        q = min(run.multi_scale_q)
        if q < PAPER_CROP:
            raise ParamsError(
                f"runs.{name}.scale: its smallest test scale Q={q:g} is below the crop {PAPER_CROP} (Sec. 4.2 tests "
                f"at {{S-32, S, S+32}}); expected S >= {PAPER_CROP + 32} for a fixed S"
            )
    files: dict[str, str] = {}
    for fusion in p.raw["fuse"]:
        file = paths.fused(fusion)
        if file.endswith("/.pt"):
            raise ParamsError(f"fuse: entry name {fusion!r} has no letter or digit; expected a name like 'D & E, dense'")
        if file in files:
            raise ParamsError(
                f"fuse: entry names {files[file]!r} and {fusion!r} would both write {file}; expected names that differ "
                "in their letters or digits"
            )
        files[file] = fusion
    for fusion, members in p.raw["fuse"].items():
        for member in members:
            run, protocol = member.split("/", 1)
            if protocol not in PROTOCOLS:
                raise ParamsError(
                    f"fuse.{fusion}: {member!r} names protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}"
                )
            if protocol in MULTI_CROP_PROTOCOLS and run in runs and run not in multi_crop:
                raise ParamsError(
                    f"fuse.{fusion}: {member!r} needs {run}'s multi-crop posteriors; add {run} to evaluate.multi_crop"
                )


def fused_members(p: Params, fusion: str) -> list[tuple[str, str]]:
    """(run, protocol) of a fuse entry whose runs the grid holds, in the order given."""
    return [tuple(m.split("/", 1)) for m in p.raw["fuse"][fusion] if m.split("/", 1)[0] in p.runs]


def left_out_members(p: Params, fusion: str) -> list[str]:
    """The members of a fuse entry whose run the grid does not hold (a typo shows here too)."""
    return [m for m in p.raw["fuse"][fusion] if m.split("/", 1)[0] not in p.runs]


def split_batch(train: dict, world: int) -> tuple[int, int]:
    """(images per micro-batch, micro-batches per step) on each of `world` processes:
    train.batch_size is the global batch (Sec. 3.1: 256), train.device_batch what one device
    holds at once (the schema gives it no default: the process's whole share)."""
    share = train["batch_size"] // world
    device_batch = min(train.get("device_batch", share), share)
    return device_batch, share // device_batch


def _check_batch(train: dict) -> None:
    batch, device_batch, nproc = train["batch_size"], train.get("device_batch"), train["nproc"]  # device_batch: no default
    if batch % nproc:
        raise ParamsError(
            f"train.nproc: {nproc} processes cannot share train.batch_size {batch} equally; expected a divisor"
        )
    if device_batch is not None and (batch // nproc) % device_batch:
        raise ParamsError(
            f"train.device_batch: {device_batch} does not divide each process's share of train.batch_size "
            f"({batch} / {nproc} = {batch // nproc}); expected a divisor (equal micro-batches)"
        )


def expand_root(root: str) -> Path:
    """data.root as a path, `~` and `~user` expanded; ParamsError where that user is unknown."""
    try:
        return Path(root).expanduser()
    except RuntimeError:
        user = root[1:].split("/", 1)[0]
        raise ParamsError(f"data.root: {root!r}: no user {user!r} on this machine for '~{user}'; expected a path") from None


def _check_root(data: dict, files: bool = True) -> None:
    """_check_root_path, with what the OS refuses about the path itself (too long a name or
    path, a loop of links) as one line."""
    root = expand_root(data["root"])
    if any(len(os.fsencode(part)) > 255 for part in root.parts):
        raise ParamsError(f"data.root: {data['root'][:80]!r}...: a folder name over 255 bytes; expected a shorter one")
    if len(os.fsencode(os.path.abspath(root))) >= 4096:  # PATH_MAX: the generator could not write there
        raise ParamsError(f"data.root: {data['root'][:80]!r}...: a path over 4,095 bytes; expected a shorter one")
    try:
        _check_root_path(data, files)
    except OSError as err:
        raise ParamsError(f"data.root: {data['root'][:80]!r}: {err.strerror or err}; expected a folder this machine can reach") from None


def _check_root_path(data: dict, files: bool = True) -> None:
    """data.root is no part of the project and holds none of it, whatever the source: the
    generator replaces its folder wholesale, and a dataset that held the project's outputs would
    change with every run (the paths are resolved from the project root, where both engines
    run). A source other than the generator's must name a readable folder."""
    embedded = data["source"] == "embedded"
    root = expand_root(data["root"]).resolve()
    project = Path.cwd().resolve()
    own = "the embedded generator needs a folder of its own, e.g. data/embedded" if embedded else "expected the dataset's own folder"
    taken = paths.project_part(root, project)
    if taken == "the whole project":
        raise ParamsError(f"data.root: {data['root']!r} holds the whole project; {own}")
    if taken is not None:
        raise ParamsError(f"data.root: {data['root']!r} overlaps the project's {taken!r}; {own}")
    if embedded or not files:
        return
    if not root.is_dir():
        raise ParamsError(f"data.root: {data['root']!r}: no such folder; expected the extracted {data['source']} dataset")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ParamsError(f"data.root: {data['root']!r}: not readable; expected a folder this user can list")


def _check_weights(p: Params) -> None:
    """An imported run's checkpoint must be a readable file before any stage plans it."""
    for name, r in p.runs.items():
        if r.weights is None:
            continue
        try:
            path = Path(r.weights).expanduser()
        except RuntimeError:
            raise ParamsError(f"runs.{name}.weights: {r.weights!r}: no such user for '~'; expected a path") from None
        if not path.is_file():
            raise ParamsError(f"runs.{name}.weights: {r.weights!r}: no such file; expected a checkpoint from "
                              "`vggrepro import-weights` or a model.pt")
        if not os.access(path, os.R_OK):
            raise ParamsError(f"runs.{name}.weights: {r.weights!r}: not readable")


def _check_memory(p: Params) -> None:
    """Each run's crop and micro-batch, and its largest test scale, fit the memory the stages
    will compute in (vggrepro.table1's lower bounds, so nothing that fits is refused): this
    machine's, for all train.nproc processes, where they run on its CPU; the smallest GPU's,
    per process, where they run on NVIDIA GPUs that nvidia-smi lists here. Not checked where
    neither is known here (a GPU job planned on a host without one)."""
    from vggrepro import table1
    from vggrepro.runtime import machine

    train, model = p.raw["train"], p.raw["model"]
    processes = train["nproc"]
    if machine.runs_on_this_cpu(train["device"]):
        have, sharing, memory = machine.machine_bytes(), processes, "this machine's"
    else:
        have, sharing, memory = machine.gpu_bytes(), 1, "the GPU's"  # one process a GPU
        if have is None:
            return
    data = p.raw["data"]
    classes = data["embedded"]["classes"] if data["source"] == "embedded" else 2  # unknown before prepare
    micro, _ = split_batch(train, processes)
    batch_key = "train.device_batch" if "device_batch" in train else "train.batch_size"
    shape = {"width": model["width"], "head_width": model["head_width"], "crop": p.crop, "classes": classes,
             "precision": train["precision"]}
    for name, run in p.runs.items():
        where = f"{run.config}, model.width {model['width']:g}, train.precision {train['precision']}"
        if not run.imported:
            need = sharing * table1.training_bytes(run.config, micro_batch=micro, **shape)
            if need > have:
                each = f" in each of train.nproc {processes} processes" if sharing > 1 else ""
                raise ParamsError(
                    f"{batch_key}: {micro} images a micro-batch{each} at geometry.crop {p.crop} ({name}: {where}) need at "
                    f"least {need / table1.GIB:,.1f} GiB to train, above {memory} {have / table1.GIB:,.1f} GiB; "
                    "expected a smaller train.device_batch (the micro-batches' gradients add up) or crop"
                )
        q = p.pixels(max(run.multi_scale_q))
        need = table1.dense_bytes(run.config, q=q, **shape)
        if need > have:
            raise ParamsError(
                f"runs.{name}.scale: dense evaluation at its largest Q ({q} px at geometry.crop {p.crop}; {where}) "
                f"needs at least {need / table1.GIB:,.1f} GiB for one image and its flip, above {memory} "
                f"{have / table1.GIB:,.1f} GiB; expected a smaller scale or crop"
            )


def _nul_byte(node, where: tuple = ()) -> tuple | None:
    """The key path of the first text holding a NUL byte (no path may hold one), or None."""
    if isinstance(node, str) and "\x00" in node:
        return where
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(key, str) and "\x00" in key:
            return (*where, key)
        found = _nul_byte(value, (*where, key))
        if found is not None:
            return found
    return None


def _non_string_key(node, where: tuple = ()) -> tuple | None:
    """The path to the first mapping key that is not a string (YAML reads `7:` as a number)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                return (*where, key)
            found = _non_string_key(value, (*where, key))
            if found is not None:
                return found
    return None


def parse_params(raw: Any, path: str = "params.yaml", *, files: bool = True) -> Params:
    """Validates an already-loaded params mapping; raises ParamsError with one line. files:
    also that the folders and files it names are there (data.root, imported weights); off only
    where a file is checked before the user points it at their data (`vggrepro use`)."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    key = _non_string_key(raw)
    if key is not None:
        raise ParamsError(f"{path}: {_dotted(key)}: the key {key[-1]!r} is not a name; expected text (quote it)")
    nul = _nul_byte(raw)
    if nul is not None:
        raise ParamsError(f"{path}: {_dotted(nul)}: holds a NUL byte; expected text without one")
    bad = _non_finite(raw)
    if bad is not None:
        raise ParamsError(f"{path}: {_dotted(bad)}: {lookup(raw, bad)!r} is not a finite number")
    from jsonschema.exceptions import best_match

    best = best_match(_validator().iter_errors(raw))
    if best is not None:
        raise ParamsError(f"{path}: {_schema_message(best)}")
    params = Params(raw=with_defaults(raw), path=path, given=raw)
    try:
        _check_semantics(params, files)  # on the runs as written, so a message names them so
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    if params.seeds is None:
        return params
    expanded, bases = expand_seeds(params.raw)
    return Params(raw=expanded, path=path, given=raw, bases=bases)


def with_defaults(raw: dict, schema_node: dict | None = None) -> dict:
    """A copy of raw with every key the schema gives a `default` for filled in where raw leaves it
    out, at every depth (a defaulted section gets its own keys' defaults too)."""
    node = schema() if schema_node is None else schema_node
    out = copy.deepcopy(raw)
    props = node.get("properties", {})
    for key, sub in props.items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if isinstance(out.get(key), dict) and sub.get("type") == "object":
            out[key] = with_defaults(out[key], sub)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("type") == "object":
        for key in [k for k in out if k not in props]:
            if isinstance(out[key], dict):
                out[key] = with_defaults(out[key], extra)
    return out


def load_params(path: str | Path = "params.yaml", *, files: bool = True) -> Params:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file; expected the project's params.yaml") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ParamsError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}); expected UTF-8") from None
    try:
        _check_shape(text, path)
        raw = read_yaml(text)
    except DuplicateKeyError as err:
        key = err.problem.split('"')[1] if '"' in err.problem else err.problem
        raise ParamsError(
            f"{path}: duplicate key {key!r} at line {err.problem_mark.line + 1}; expected each key once "
            "(YAML keeps only the last copy, DVC refuses the file)"
        ) from None
    except MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {err.problem or err}") from None
    return parse_params(raw, str(path), files=files)


def lookup(raw, keys) -> Any:
    """raw[k1][k2]..., keys a dotted string or a sequence of keys."""
    value = raw
    for part in keys.split(".") if isinstance(keys, str) else keys:
        value = value[part]
    return value

