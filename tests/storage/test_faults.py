"""Fault-injection sweeps (issue 13, DESIGN §4): power loss, failing operations, SIGKILLs.

One deterministic mixed workload (upsert / delete / flush / compact, sealing inside upserts,
clean-up of old versions) is run again and again with a fault at a different point:

- a power loss at every file operation (``FaultEnv``: bytes not fsynced are dropped, renames
  and creations whose directory was not fsynced are undone): the reopened database holds a
  prefix of the workload that includes every acknowledged operation;
- the Nth file operation failing (EIO or ENOSPC, once or for good): each call returns or
  raises a typed error, nothing acknowledged is lost, nothing unacknowledged appears (apart
  from the one write whose WAL fsync failed: its fate is unknowable), and the reopened
  database passes ``verify``;
- a real SIGKILL of a forked child at each step of each commit (segment write, fsync, rename,
  directory fsync, manifest commit, WAL rotation) and of WAL replay on reopen: the old state
  or the new, never a mix, no duplicate rows, no zero-byte manifest.

The full sweeps are ``slow``; the fast suite samples every 15th (or 11th, 13th) point.
"""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import vecdb
from tests.storage.faultenv import FaultEnv, PowerLoss
from vecdb.storage import fileio, manifest as mf
from vecdb.storage.verify import verify_database

DIM = 4
ID_SPACE = 30
OPTS = dict(seal_rows=12, auto_compact=False, keep_versions=2)
FIGURES: dict = {}     # totals for the report (printed by the slow tests with -s)


def _vec(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal(DIM).astype(np.float32)


def workload(seed: int, n_ops: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    ops, n = [], 0
    for _ in range(n_ops):
        r = rng.random()
        if r < 0.55:
            ids = sorted(rng.choice(ID_SPACE, int(rng.integers(1, 7)), replace=False).tolist())
            ops.append(("upsert", ids, list(range(n, n + len(ids)))))
            n += len(ids)
        elif r < 0.75:
            ops.append(("delete", sorted(rng.choice(ID_SPACE, int(rng.integers(1, 5)), replace=False).tolist())))
        elif r < 0.9:
            ops.append(("flush",))
        else:
            ops.append(("compact",))
    return ops


def models(ops: list[tuple]) -> list[dict]:
    """State {id: n} after each prefix of ``ops`` (models[k] = after the first k ops)."""
    state: dict = {}
    out = [dict(state)]
    for op in ops:
        if op[0] == "upsert":
            state.update(zip(op[1], op[2]))
        elif op[0] == "delete":
            for i in op[1]:
                state.pop(i, None)
        out.append(dict(state))
    return out


def apply(col, op: tuple) -> None:
    if op[0] == "upsert":
        col.upsert(op[1], np.stack([_vec(n) for n in op[2]]), [{"n": n} for n in op[2]])
    elif op[0] == "delete":
        col.delete(op[1])
    elif op[0] == "flush":
        col.flush()
    else:
        col.compact()


def new_db(path: Path):
    db = vecdb.connect(path, **OPTS)
    db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64",
                         index={"type": "flat"})
    return db


def abandon(db) -> None:
    """Drop a database as a dead process would: no close, no background work, lock released."""
    for col in list(db._collections.values()):
        store = col._store
        store._failures.close()
        store._closed = True
    db._dirlock.release()


def read_state(path: Path) -> dict:
    """{id: n} of the reopened database, checking vectors, count and duplicates on the way."""
    with vecdb.connect(path, **OPTS) as db:
        col = db.get_collection("c")
        recs = col.get(list(range(ID_SPACE)))
        state = {r.id: r.payload["n"] for r in recs}
        assert len(state) == len(recs) == col.count(), "duplicate or lost rows"
        for r in recs:
            np.testing.assert_array_equal(r.vector, _vec(r.payload["n"]))
    return state


def check_disk(path: Path) -> None:
    mdir = path / "collections" / "c" / "manifest"
    for v in mf.list_versions(mdir):
        assert mf.manifest_path(mdir, v).stat().st_size > 0, f"zero-byte manifest v{v}"
    report = verify_database(path)
    assert report.ok, report.problems


def count_ops(tmp: Path, ops: list[tuple]) -> int:
    path = tmp / f"count-{len(list(tmp.glob('count-*')))}"
    db = new_db(path)
    env = FaultEnv(path, path.with_name(path.name + "-bk"))
    with fileio.use_env(env):
        col = db.get_collection("c")
        for op in ops:
            apply(col, op)
        db.close()
    return env.ops


# ---- power loss -------------------------------------------------------------------------------

def power_loss_sweep(tmp: Path, seed: int, n_ops: int, step: int) -> tuple[int, int]:
    """Cut the power at every ``step``-th file operation; returns (points, bytes dropped)."""
    ops = workload(seed, n_ops)
    want = models(ops)
    total = count_ops(tmp, ops)
    points = dropped = 0
    for at in range(1, total + 1, step):
        path = tmp / f"p{seed}-{at}"
        db = new_db(path)
        env = FaultEnv(path, tmp / f"p{seed}-{at}-bk")
        env.crash_at = at
        acked = 0
        with fileio.use_env(env):
            try:
                col = db.get_collection("c")
                for op in ops:
                    apply(col, op)
                    acked += 1
                db.close()
            except PowerLoss:
                pass
        abandon(db)
        dropped += env.power_loss()["bytes_dropped"]
        state = read_state(path)
        assert state in (want[acked], want[min(acked + 1, len(ops))]), (
            f"power loss at op {at} ({env.log[-1] if env.log else None}) after {acked} acked operations")
        check_disk(path)
        points += 1
    return points, dropped


def test_power_loss_at_every_15th_point(tmp_path):
    points, _ = power_loss_sweep(tmp_path, seed=1, n_ops=30, step=15)
    assert points >= 15


@pytest.mark.slow
def test_power_loss_at_every_point_of_a_workload(tmp_path):
    points, dropped = power_loss_sweep(tmp_path, seed=2, n_ops=40, step=1)
    FIGURES["power_loss_points"] = points
    print(f"\npower-loss points survived: {points} ({dropped} unsynced bytes dropped)")
    assert points >= 500


# ---- the Nth operation fails -------------------------------------------------------------------

def failure_sweep(tmp: Path, seed: int, n_ops: int, step: int, persistent: bool) -> int:
    """Fail the Nth file operation for every ``step``-th N; returns the faults injected."""
    ops = workload(seed, n_ops)
    total = count_ops(tmp, ops)
    faults = 0
    for at in range(1, total + 1, step):
        err = errno.ENOSPC if at % 2 else errno.EIO
        path = tmp / f"f{seed}-{at}-{int(persistent)}"
        db = new_db(path)
        env = FaultEnv(path, tmp / f"f{seed}-{at}-bk")
        env.fail_at, env.fail_errno, env.persistent = at, err, persistent
        acked, failed = [], []
        with fileio.use_env(env):
            col = db.get_collection("c")
            for k, op in enumerate(ops):
                if persistent and env.faults and k == len(ops) - 3:
                    env.clear_faults()          # space freed: writes must work again, no reopen
                try:
                    apply(col, op)
                    acked.append(k)
                except vecdb.VecdbError as e:
                    assert isinstance(e, vecdb.Unavailable), f"op {k} {op[0]}: {type(e).__name__}: {e}"
                    failed.append(k)
                # any other exception type fails the test: every I/O error must be typed
            try:
                db.close()
            except vecdb.VecdbError:
                pass
        abandon(db)
        faults += env.faults
        fault_kind = next((kind for n, kind, _ in env.log if n == at), None)
        poisoned = fault_kind == "fsync" or persistent
        if not persistent and fault_kind not in ("fsync", "truncate"):
            # a single failure: every later write works again without a reopen
            assert all(k in acked for k in range(failed[-1] + 1, len(ops))) if failed else True, (at, failed)
        state = read_state(path)
        # nothing acknowledged lost, nothing failed applied (except an fsync'd-or-not WAL record)
        expect = models([ops[k] for k in acked])[-1]
        if state != expect and poisoned and failed:
            alt = models([ops[k] for k in sorted(acked + failed[:1])])[-1]
            assert state == alt, (at, fault_kind)
        else:
            assert state == expect, (at, fault_kind, [ops[k][0] for k in failed])
        check_disk(path)
    return faults


def test_nth_operation_failing_every_15th_n(tmp_path):
    assert failure_sweep(tmp_path, seed=4, n_ops=30, step=15, persistent=False) >= 10


@pytest.mark.slow
def test_nth_operation_failing_for_every_n_once_and_persistently(tmp_path):
    faults = failure_sweep(tmp_path, seed=5, n_ops=30, step=1, persistent=False)
    faults += failure_sweep(tmp_path, seed=6, n_ops=30, step=3, persistent=True)
    FIGURES["faults_injected"] = faults
    print(f"\nfaults injected: {faults}")
    assert faults >= 300


# ---- SIGKILL at each commit step and during replay ---------------------------------------------

class _KillEnv(fileio.FileEnv):
    """Counts file operations and named crash points; SIGKILLs the process at the Kth."""

    def __init__(self, kill_at: int):
        self.n = 0
        self.kill_at = kill_at

    def step(self, what) -> None:
        self.n += 1
        if self.n == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def write(self, f, data):
        self.step("write")
        super().write(f, data)

    def fsync(self, f):
        self.step("fsync")
        super().fsync(f)

    def fsync_dir(self, path):
        self.step("fsync_dir")
        super().fsync_dir(path)

    def replace(self, src, dst):
        self.step("replace")
        super().replace(src, dst)

    def unlink(self, path):
        self.step("unlink")
        super().unlink(path)

    def truncate(self, f, size):
        self.step("truncate")
        super().truncate(f, size)


def _child(kill_at: int, fn, out_fd: int) -> None:
    """In a forked child: run ``fn(report)`` with the kill armed; never returns."""
    try:
        env = _KillEnv(kill_at)
        fileio.env = env
        fileio.set_crash_hook(env.step)
        fn(lambda msg: os.write(out_fd, f"{msg}\n".encode()))
        os.write(out_fd, b"done\n")
        os._exit(0)
    except BaseException as e:
        os.write(out_fd, f"error {type(e).__name__}: {e}\n".encode())
        os._exit(3)


def _run_killed(kill_at: int, fn) -> tuple[list[str], int]:
    """Fork, run ``fn`` in the child until it is SIGKILLed at step ``kill_at``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(kill_at, fn, w)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks).decode().split("\n")[:-1], status


def kill_sweep(tmp: Path, seed: int, n_ops: int, step: int) -> int:
    """SIGKILL a child at every ``step``-th step of the workload; returns kills survived."""
    ops = workload(seed, n_ops)
    want = models(ops)
    kills = 0
    at = 1
    while True:
        path = tmp / f"k{seed}-{at}"
        new_db(path).close()

        def run(report):
            with vecdb.connect(path, **OPTS) as db:
                col = db.get_collection("c")
                for k, op in enumerate(ops):
                    apply(col, op)
                    report(f"ack {k}")
        lines, status = _run_killed(at, run)
        assert not any(x.startswith("error") for x in lines), lines
        if lines and lines[-1] == "done":
            break
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (status, lines)
        kills += 1
        acked = sum(1 for x in lines if x.startswith("ack"))
        state = read_state(path)
        assert state in (want[acked], want[min(acked + 1, len(ops))]), (at, acked)
        check_disk(path)
        at += step
    return kills


def replay_kill_sweep(tmp: Path, step: int) -> int:
    """SIGKILL a child at every ``step``-th step of opening a database with a long WAL tail
    (replay, torn-tail truncation, new WAL file, clean-up), then again at every step of the
    next open: the same rows every time."""
    base = tmp / "replay-base"
    ops = [("upsert", [i % ID_SPACE], [i]) for i in range(60)]
    with vecdb.connect(base, seal_rows=1000, auto_compact=False) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64",
                                   index={"type": "flat"})
        for op in ops:
            apply(col, op)
    [wal] = sorted((base / "collections" / "c" / "wal").glob("*.log"))
    with open(wal, "ab") as f:
        f.write(b"\x40\x00\x00\x00torn")            # a torn tail for the open to truncate
    want = models(ops)[-1]
    kills = 0
    at = 1
    import shutil
    while True:
        path = tmp / f"r{at}"
        shutil.copytree(base, path)

        def run(report):
            vecdb.connect(path, **OPTS).get_collection("c").count()
        lines, status = _run_killed(at, run)
        assert not any(x.startswith("error") for x in lines), lines
        if lines and lines[-1] == "done":
            break
        kills += 1
        assert read_state(path) == want, at
        check_disk(path)
        at += step
    return kills


def test_sigkill_at_commit_steps_and_replay_sampled(tmp_path):
    kills = kill_sweep(tmp_path, seed=7, n_ops=20, step=11)
    kills += replay_kill_sweep(tmp_path, step=13)
    assert kills >= 8


@pytest.mark.slow
def test_sigkill_at_every_commit_step_and_every_replay_step(tmp_path):
    kills = kill_sweep(tmp_path, seed=8, n_ops=24, step=1)
    replay_kills = replay_kill_sweep(tmp_path, step=1)
    FIGURES["kills"] = kills + replay_kills
    print(f"\nSIGKILLs survived: {kills} in commits, {replay_kills} during replay")
    assert kills >= 50 and replay_kills >= 50
