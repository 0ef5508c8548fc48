"""Fault injection: the whole pipeline killed with SIGKILL at random moments, rerun after each
kill, must end with the bytes an uninterrupted run gives.

    python tests/faults.py --engine snakemake --kills 20            # a new seed, printed
    python tests/faults.py --engine dvc --kills 20 --seed 1234      # the same kill moments again

Each kill lands a random time after the engine's start (uniform over a span of a restart's
cost plus twice the pipeline's time over the kill count, half as long again after each kill in
the same stage as the one before, so that the kills walk through the whole pipeline), on the engine's whole process group, as an
out-of-memory kill or a lost node would: the engine, the stage command, its decoding workers.
Then the plain command runs to the end, and every file under runs/, fusion/, reports/ and
data/ (weights, posteriors, metrics, tables, figures, the prepared dataset) must be
byte-identical to an uninterrupted run's, with no file more or fewer and no resume point left
behind, and the engine must then see nothing left to do. (dvc.lock is not compared byte for
byte: it records the dataset folder's stamp, whose inodes and times differ between any two
workspaces.) The default suite runs a few kills per engine (tests/test_faults.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import make_project, tiny_params, tool  # noqa: E402

COMMANDS = {"dvc": ["dvc", "repro"], "snakemake": ["snakemake", "--cores", "2"]}
COMPARED = ("runs", "fusion", "reports", "data")
# DVC writes dvc.lock and its table of running stages' locks, .dvc/tmp/rwlock, in place: a kill
# during either write leaves the file unreadable, and the next `dvc repro` stops with its line
# here. The README's handling: remove the file and rerun.
TORN_BY_KILL = {"dvc.lock' validation failed": "dvc.lock", "Unable to read RWLock-file": ".dvc/tmp/rwlock"}
# What an engine prints as it starts a stage: the last one before a kill is the stage killed.
STAGE_LINE = re.compile(r"^(?:Running stage '(\w+)'|(?:local)?rule (\w+):)", re.M)


def setup(workspace: Path, engine: str, params: dict) -> Path:
    make_project(workspace, params)
    if engine == "dvc":
        for cmd in (["init", "--no-scm", "-q"], ["config", "core.analytics", "false"]):
            subprocess.run([tool("dvc"), *cmd], cwd=workspace, check=True)
    return workspace


def command(engine: str) -> list[str]:
    name, *args = COMMANDS[engine]
    return [tool(name), *args]


def torn_by_kill(engine: str, text: str) -> str | None:
    """The file a kill left half-written, if the engine's failure text says so (DVC only)."""
    if engine != "dvc":
        return None
    return next((path for line, path in TORN_BY_KILL.items() if line in text), None)


def run_to_end(workspace: Path, engine: str, timeout: float = 1800, *, after_kill: bool = False) -> float:
    """Runs the plain command to the end; its seconds. after_kill: a failure that names a file
    torn by the kill before gets the README's handling (remove it, run again), once a file."""
    start, removed = time.monotonic(), set()
    while True:
        done = subprocess.run(command(engine), cwd=workspace, capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0:
            return time.monotonic() - start
        torn = torn_by_kill(engine, done.stdout + done.stderr) if after_kill else None
        if torn is None or torn in removed:
            raise AssertionError(f"{engine} failed in {workspace}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        (workspace / torn).unlink()
        removed.add(torn)


def outputs(workspace: Path) -> dict[str, str]:
    """BLAKE2b of every output file, by path (hidden temporary files included: none may be left)."""
    found = {}
    files = [p for top in COMPARED for p in (workspace / top).rglob("*") if p.is_file()]
    for path in sorted(files):
        found[str(path.relative_to(workspace))] = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return found


def kill_at(workspace: Path, engine: str, delay: float) -> str:
    """Starts the plain command, SIGKILLs its process group after delay seconds; what was running
    then: the stage's name, 'start' before the first stage, or 'finished' if it had ended."""
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(command(engine), cwd=workspace, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=delay)
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.seek(0)
    text = log.read()
    if finished:
        if proc.returncode != 0:
            torn = torn_by_kill(engine, text)
            if torn is None:
                raise AssertionError(f"{engine} failed before its kill:\n{text[-3000:]}")
            (workspace / torn).unlink()  # the README's handling; DVC's run cache restores the rest
            return f"finished: {torn} unreadable after the kill before, removed"
        return "finished"
    stages = [a or b for a, b in STAGE_LINE.findall(text)]
    return stages[-1] if stages else "start"


def inject(workspace: Path, engine: str, *, kills: int, seed: int, span: float, say=print) -> list[tuple[float, str]]:
    """kills SIGKILLs at random moments, each after a fresh start of the plain command; then the
    plain command to the end. Returns (delay, what was killed) per kill.

    A stage killed again before it could finish would pin every later kill to it: after a kill
    in the same stage as the one before, the span grows by half (and is back to span after a
    kill elsewhere), so the kills walk on through the pipeline."""
    rng = random.Random(seed)
    points, now = [], span
    for i in range(kills):
        delay = round(rng.uniform(0.2, now), 2)
        killed = kill_at(workspace, engine, delay)
        now = now * 1.5 if points and killed == points[-1][1] and not killed.startswith("finished") else span
        points.append((delay, killed))
        say(f"{engine} kill {i + 1}/{kills}: {delay:.2f} s after start, during {killed}")
    run_to_end(workspace, engine, after_kill=True)
    return points


def differences(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    return sorted(
        [f"missing {p}" for p in expected.keys() - found.keys()]
        + [f"extra {p}" for p in found.keys() - expected.keys()]
        + [f"differs {p}" for p in expected.keys() & found.keys() if expected[p] != found[p]]
    )


def leftovers(workspace: Path, engine: str) -> list[str]:
    """Resume points that outlived their finished stage, and what the engine still would run."""
    left = sorted(str(p.relative_to(workspace)) for p in (workspace / ".vggrepro" / "resume").glob("*"))
    if engine == "dvc":
        status = subprocess.run([tool("dvc"), "status", "--json"], cwd=workspace, capture_output=True, text=True)
        stale = set(json.loads(status.stdout or "{}")) - {"validate"}  # validate: always changed
        left += [f"dvc status: {name} changed" for name in sorted(stale)]
    else:
        plan = subprocess.run(command(engine) + ["-n"], cwd=workspace, capture_output=True, text=True).stdout
        would_run = {a or b for a, b in STAGE_LINE.findall(plan)} - {"all"}
        left += [f"snakemake -n: {name} would run" for name in sorted(would_run)]
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=sorted(COMMANDS), required=True)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="the kill moments' seed (default: a new one, printed)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"seed {seed}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        reference = setup(base / "reference", args.engine, tiny_params())
        seconds = run_to_end(reference, args.engine)
        startup = run_to_end(reference, args.engine)  # a rerun with nothing to do: the restart's cost
        print(f"{args.engine}: uninterrupted run {seconds:.1f} s, a rerun with nothing to do {startup:.1f} s", flush=True)
        killed = setup(base / "killed", args.engine, tiny_params())
        # Each rerun starts over on what the one before it left and pays the restart again:
        # kills a restart plus twice the pipeline's share of one kill apart on average walk
        # through the whole pipeline.
        span = startup + 2 * seconds / args.kills
        points = inject(killed, args.engine, kills=args.kills, seed=seed, span=span)
        expected = outputs(reference)
        diff, left = differences(expected, outputs(killed)), leftovers(killed, args.engine)
        during = Counter(what for _, what in points)
        print(f"{args.engine}: {len(points)} kills (during {', '.join(f'{k} x{n}' for k, n in sorted(during.items()))}); "
              f"{len(expected)} output files compared: {len(diff)} differ; left to do or resume: {len(left)}")
        for line in diff + left:
            print(f"  {line}")
        return 1 if diff or left else 0


if __name__ == "__main__":
    sys.exit(main())
