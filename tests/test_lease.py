"""GPU leases (vggrepro.runtime.lease) with fake device ids: distinct ids for concurrent holders, a
waiter served when a holder exits, a SIGKILLed holder's id freed, one line naming the holders
on timeout, CUDA_VISIBLE_DEVICES as the ids to choose from. CPU only, no torch.

Holders are child processes that print their leased id and hold it until the test closes
their stdin, so every step waits on a pipe, never on a sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vggrepro.runtime import lease

# Generous: a holder starts a fresh interpreter on a busy 2-core machine.
PIPE_TIMEOUT_S = 120

HOLDER = """
import sys
from pathlib import Path
from vggrepro.runtime.lease import lease_device
folder, ids, name, timeout = sys.argv[1:5]
held = lease_device(ids.split(","), folder=Path(folder), holder=name, timeout_s=float(timeout), poll_s=0.05)
print(held.id, flush=True)
sys.stdin.read()  # hold the lease until the test closes stdin
"""


class Holder:
    """A child process that leases one of ids and holds it until close()."""

    def __init__(self, folder: Path, ids: list[str], name: str, timeout_s: float = PIPE_TIMEOUT_S):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder), ",".join(ids), name, str(timeout_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def leased_id(self) -> str:
        line = _readline(self.proc.stdout, f"{self.name}'s leased id")
        assert line.strip(), f"{self.name} printed no id; stderr: {self.proc.stderr.read()}"
        return line.strip()

    def stderr_line(self) -> str:
        return _readline(self.proc.stderr, f"{self.name}'s stderr")

    def close(self) -> None:
        """Lets the holder exit normally and waits for it."""
        self.proc.stdin.close()
        assert self.proc.wait(timeout=PIPE_TIMEOUT_S) == 0, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=PIPE_TIMEOUT_S)


def _readline(stream, what: str) -> str:
    """One line from a child's pipe, failing (not hanging) after PIPE_TIMEOUT_S."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(PIPE_TIMEOUT_S)
    assert box, f"no line on {what} within {PIPE_TIMEOUT_S} s"
    return box[0]


@pytest.fixture
def holders():
    """Starts holders; kills any still running at the end of the test."""
    started: list[Holder] = []

    def start(*args, **kwargs) -> Holder:
        started.append(Holder(*args, **kwargs))
        return started[-1]

    yield start
    for h in started:
        h.kill()


def test_concurrent_holders_get_different_ids(tmp_path, holders):
    a, b = holders(tmp_path, ["0", "1"], "train_A"), holders(tmp_path, ["0", "1"], "train_B")
    ids = sorted([a.leased_id(), b.leased_id()])
    assert ids == ["0", "1"], f"two holders leased {ids}"


def test_waiter_gets_the_id_of_the_holder_that_exits(tmp_path, holders):
    a, b = holders(tmp_path, ["0", "1"], "train_A"), holders(tmp_path, ["0", "1"], "train_B")
    id_a, id_b = a.leased_id(), b.leased_id()
    c = holders(tmp_path, ["0", "1"], "train_C")
    waiting = c.stderr_line()  # printed once c has found both ids held
    assert "waiting" in waiting and f"pid {a.proc.pid} train_A" in waiting, waiting
    assert c.proc.poll() is None, "the waiter exited instead of waiting"
    a.close()
    id_c = c.leased_id()
    assert id_c == id_a, f"the waiter leased {id_c} while {id_b} stayed held by train_B"


def test_a_sigkilled_holder_frees_its_id(tmp_path, holders):
    a = holders(tmp_path, ["0"], "train_A")
    assert a.leased_id() == "0"
    with pytest.raises(lease.LeaseTimeout):
        lease.lease_device(["0"], folder=tmp_path, holder="probe", timeout_s=0)
    os.kill(a.proc.pid, signal.SIGKILL)
    assert a.proc.wait(timeout=PIPE_TIMEOUT_S) == -signal.SIGKILL
    # The lock file is still there: flock, not the file, marks the id held.
    assert (tmp_path / "gpu-0.lock").exists()
    with lease.lease_device(["0"], folder=tmp_path, holder="probe", timeout_s=0) as held:
        assert held.id == "0"


def test_all_held_times_out_with_one_line_naming_ids_and_holders(tmp_path, holders):
    a, b = holders(tmp_path, ["0", "1"], "train_A"), holders(tmp_path, ["0", "1"], "train_B")
    by_id = {a.leased_id(): a, b.leased_id(): b}
    logged: list[str] = []
    with pytest.raises(lease.LeaseTimeout) as err:
        lease.lease_device(["0", "1"], folder=tmp_path, holder="train_C", timeout_s=0.3, poll_s=0.05, log=logged.append)
    message = str(err.value)
    assert "\n" not in message, message
    for i in ("0", "1"):
        assert f"{i} (pid {by_id[i].proc.pid} {by_id[i].name})" in message, message
    assert "train_C" in message and "--resources gpu=2" in message, message
    assert len(logged) == 1 and "waiting up to 0.3 s" in logged[0], logged


def test_visible_devices_restrict_the_choice(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert lease.visible_ids(env, count=8) == ["2", "3"]
    first = lease.acquire("train_A", folder=tmp_path, env=env, count=8, timeout_s=0)
    second_env = {"CUDA_VISIBLE_DEVICES": "2,3"}
    second = lease.acquire("train_B", folder=tmp_path, env=second_env, count=8, timeout_s=0)
    try:
        assert sorted([first.id, second.id]) == ["2", "3"], (first.id, second.id)
        assert (env["CUDA_VISIBLE_DEVICES"], second_env["CUDA_VISIBLE_DEVICES"]) == (first.id, second.id)
        locks = sorted(p.name for p in lease.folder_for(tmp_path).iterdir())
        assert locks == ["gpu-2.lock", "gpu-3.lock"], locks
        with pytest.raises(lease.LeaseTimeout):
            lease.acquire("train_C", folder=tmp_path, env={"CUDA_VISIBLE_DEVICES": "2,3"}, count=8, timeout_s=0)
    finally:
        first.release()
        second.release()


def test_release_frees_the_id_in_process(tmp_path):
    held = lease.lease_device(["0"], folder=tmp_path, holder="train_A", timeout_s=0)
    with pytest.raises(lease.LeaseTimeout):
        lease.lease_device(["0"], folder=tmp_path, holder="train_B", timeout_s=0)
    held.release()
    with lease.lease_device(["0"], folder=tmp_path, holder="train_B", timeout_s=0) as again:
        assert again.id == "0"


@pytest.mark.parametrize(
    ("raw", "count", "expected"),
    [
        (None, 0, []),
        (None, 3, ["0", "1", "2"]),
        ("", 4, []),
        ("-1", 4, []),
        ("1, 0", 4, ["1", "0"]),
        ("0,-1,2", 4, ["0"]),  # CUDA ignores every entry from the first invalid one on
        ("GPU-5a1c", 4, ["GPU-5a1c"]),
    ],
)
def test_visible_ids(raw, count, expected):
    env = {} if raw is None else {"CUDA_VISIBLE_DEVICES": raw}
    assert lease.visible_ids(env, count) == expected


@pytest.mark.parametrize(
    ("env", "count", "expected_id"),
    [
        ({}, 0, None),  # no GPU: a no-op
        ({"CUDA_VISIBLE_DEVICES": ""}, 8, None),
        ({}, 1, "0"),  # one device: nothing to choose, nothing locked
        ({"CUDA_VISIBLE_DEVICES": "3"}, 8, "3"),  # SLURM's one allocated device
        ({"LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "1"}, 8, None),  # torchrun: ranks use LOCAL_RANK
    ],
)
def test_no_lock_without_a_choice(tmp_path, env, count, expected_id):
    before = dict(env)
    held = lease.acquire("train_A", folder=tmp_path, env=env, count=count, timeout_s=0)
    assert (held.id, held.fd) == (expected_id, None)
    assert env == before, "CUDA_VISIBLE_DEVICES changed without a lease"
    assert not any(tmp_path.iterdir())


def test_a_torchrun_launch_leases_n_ids_all_or_none(tmp_path):
    """train.nproc 2 on a host of 4 fake GPUs: two launches take disjoint pairs; a launch that
    finds too few free waits, then stops with one line, holding none of them meanwhile."""
    folder = lease.folder_for(tmp_path)
    env_a, env_b = {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    a = lease.acquire_many("train_A", 2, folder=tmp_path, env=env_a)
    b = lease.acquire_many("train_B", 2, folder=tmp_path, env=env_b)
    try:
        assert len(set(a.ids)) == 2 and len(set(b.ids)) == 2 and not set(a.ids) & set(b.ids)
        assert env_a["CUDA_VISIBLE_DEVICES"] == ",".join(a.ids) and env_b["CUDA_VISIBLE_DEVICES"] == ",".join(b.ids)
    finally:
        a.release()
        b.release()
    single = Holder(folder, ["0", "1", "2", "3"], "evaluate_X")
    try:
        taken = single.leased_id()
        two = lease.acquire_many("train_C", 2, folder=tmp_path, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, timeout_s=5)
        assert taken not in two.ids
        # One id is free, three are needed: it waits, then one line; it holds nothing meanwhile.
        with pytest.raises(lease.LeaseTimeout, match="no 3 free GPUs for train_D after 0.3 s"):
            lease.acquire_many("train_D", 3, folder=tmp_path, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, timeout_s=0.3, poll_s=0.05)
        last = lease.acquire("evaluate_Y", folder=tmp_path, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, timeout_s=5)
        assert last.id not in (taken, *two.ids)  # the free id was not left locked by train_D
        last.release()
        two.release()
    finally:
        single.close()


def test_a_launch_needing_every_visible_gpu_locks_nothing_and_too_few_is_one_line(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "4,5"}  # a SLURM job given 2 GPUs for train.nproc 2
    leases = lease.acquire_many("train_A", 2, folder=tmp_path, env=env)
    assert leases.ids == ["4", "5"] and all(h.fd is None for h in leases.held) and env["CUDA_VISIBLE_DEVICES"] == "4,5"
    with pytest.raises(lease.LeaseError, match=r"^train.nproc 3 needs 3 GPUs; 2 visible \(4, 5\)$"):
        lease.acquire_many("train_A", 3, folder=tmp_path, env=env)
    assert lease.acquire_many("train_A", 2, folder=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""}).ids == []
