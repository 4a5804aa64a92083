"""One writer process per database directory (DESIGN §6): an OS lock, freed when the holder dies."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import vecdb

HOLDER = r"""
import sys, time
import vecdb
db = vecdb.connect(sys.argv[1])
col = db.get_collection("c") if "c" in db.list_collections() else db.create_collection("c", dim=2)
col.upsert(["held"], [[1.0, 0.0]])
print("locked", flush=True)
time.sleep(60)
"""

PROBE = r"""
import sys
import vecdb
try:
    db = vecdb.connect(sys.argv[1])
except vecdb.DatabaseLocked as e:
    print("DatabaseLocked", e.grpc_code, e, flush=True)
else:
    print("opened", db.list_collections(), flush=True)
    db.close()
"""


def _spawn_holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "locked":
        proc.kill()
        raise AssertionError(f"holder did not start: {line!r} {proc.stderr.read()}")
    return proc


def _probe(path) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_second_writer_process_is_locked_out_until_the_first_is_killed(tmp_path):
    path = tmp_path / "db"
    holder = _spawn_holder(path)
    try:
        with pytest.raises(vecdb.DatabaseLocked) as exc:      # this process is the second writer
            vecdb.connect(path)
        assert str(holder.pid) in str(exc.value)
        assert isinstance(exc.value, vecdb.Unavailable)
        assert _probe(path).startswith("DatabaseLocked UNAVAILABLE")   # and so is a third process
        with vecdb.connect(path, read_only=True) as ro:        # readers need no lock
            assert ro.list_collections() == ["c"]     # (they see flushed versions, not the WAL)
            with pytest.raises(vecdb.Unavailable):
                ro.create_collection("d", dim=2)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
        holder.stderr.close()
    assert holder.returncode == -signal.SIGKILL
    with vecdb.connect(path) as db:                            # the kernel dropped the lock
        col = db.get_collection("c")
        assert [r.id for r in col.get(["held"])] == ["held"]   # and the acknowledged write stayed
    assert _probe(path) == "opened ['c']"                    # closed: free for another process


def test_second_connect_in_the_same_process_is_locked(tmp_path):
    path = tmp_path / "db"
    db = vecdb.connect(path)
    try:
        with pytest.raises(vecdb.DatabaseLocked):
            vecdb.connect(path)
        with pytest.raises(vecdb.DatabaseLocked):
            vecdb.connect(str(path) + "/")                       # same directory, other spelling
        assert _probe(path).startswith("DatabaseLocked")
    finally:
        db.close()
    db2 = vecdb.connect(path)                                  # close released the lock
    db2.close()
    db2.close()                                                # idempotent


def test_closed_database_and_collections_raise_on_use(tmp_path):
    db = vecdb.connect(tmp_path / "db")
    col = db.create_collection("c", dim=2, metric="l2")
    col.upsert([1], np.ones((1, 2)))
    db.close()
    for call in (lambda: db.create_collection("d", dim=2), lambda: db.get_collection("c"),
                 db.list_collections, lambda: col.upsert([2], np.ones((1, 2))),
                 lambda: col.delete([1]), col.count, col.flush):
        with pytest.raises(vecdb.Unavailable):
            call()


def test_lock_released_when_holder_exits_without_close(tmp_path):
    path = tmp_path / "db"
    code = "import sys, os, vecdb; db = vecdb.connect(sys.argv[1]); os._exit(0)"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    t0 = time.monotonic()
    with vecdb.connect(path):
        pass
    assert time.monotonic() - t0 < 5
