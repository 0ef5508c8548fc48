"""Resume points: everything a killed stage needs to go on as if never stopped.

A train stage's point holds the model, the optimizer, the schedule, every random generator, the
position in the data order (epoch and global batch) with the epoch's running sums, and the
history; an evaluate stage's, the posteriors of the images done (vggrepro.stages.evaluate).
It lives outside the stage's outputs (vggrepro.paths.resume_point: .vggrepro/resume/<stage>.pt),
so neither DVC nor Snakemake deletes it before rerunning the stage, and it is written
atomically (a kill while writing leaves the previous one). It is removed when the stage finishes.

Each point carries the key of the stage's inputs (every file the stage depends on, its knob
file included) and what else the stage names (a train stage: its processes' count and the
precision it computes in): a point left by a run of other inputs (other params, data or code)
is discarded, never resumed, so a resumed run computes exactly what a fresh one would.
"""

from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vggrepro.runtime import io


def inputs_key(files: list[str]) -> str:
    """BLAKE2b over the names and bytes of the stage's input files."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(files):
        h.update(name.encode() + b"\0")
        with open(name, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass(frozen=True)
class Point:
    """A stage's resume point: its file, and the key of the inputs it is valid for."""

    path: Path
    key: str

    def save(self, state: dict) -> None:
        io.write_torch(self.path, {"key": self.key, **state})

    def load(self) -> dict | None:
        """The saved state for these inputs, or None (a point of other inputs is removed)."""
        p = self.path
        if not p.exists():
            return None
        try:
            state = torch.load(p, map_location="cpu", weights_only=False)  # our own file: RNG states are not tensors
        except Exception as err:  # noqa: BLE001 - any unreadable point is discarded, not trusted
            print(f"{p}: unreadable resume point discarded ({type(err).__name__}); starting over", file=sys.stderr)
            p.unlink()
            return None
        if state.get("key") != self.key:
            print(f"{p}: resume point of other inputs (params, data, code, processes or precision changed) discarded; "
                  "starting over", file=sys.stderr)
            p.unlink()
            return None
        return state

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
