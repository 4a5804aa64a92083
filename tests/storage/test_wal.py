"""WAL fault injection: torn tails, corrupt frames, failed writes and fsyncs, group commit.

DESIGN §4: a WAL frame is ``[u32 length][u32 crc32][payload]``; on open a torn tail (a bad
frame with no valid frame after it) is truncated, damage (a bad frame followed by valid ones, a
gap in sequence numbers after the checkpoint) is ``Corruption`` unless ``wal_recovery="salvage"``;
under ``always`` a write is acknowledged after an fsync that concurrent writers share.
"""
from __future__ import annotations

import errno
import functools
import os
import shutil
import stat
import threading
import time
import types
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import vecdb
from tests.invariants import assert_state
from tests.storage.faultenv import FaultEnv
from vecdb.errors import StorageFull
from vecdb.storage import fileio
from vecdb.storage import wal as wal_mod
from vecdb.storage.wal import (FRAME_HEADER, OP_DELETE, OP_UPSERT, WalWriter, encode_record,
                               read_records, replay, wal_files)

DIM = 4
SCHEMA = {"n": "int64"}


# ---- helpers ---------------------------------------------------------------------------------

def _batch(i: int, rows: int = 3) -> pa.RecordBatch:
    ids = pa.array([i * 100 + r for r in range(rows)], type=pa.int64())
    vec = pa.FixedSizeListArray.from_arrays(
        pa.array(np.arange(rows * DIM, dtype=np.float32) + i, type=pa.float32()), DIM)
    return pa.RecordBatch.from_arrays([ids, vec, pa.array([f"p{i}"] * rows)], names=["id", "vector", "s"])


def _records(count: int) -> list[tuple[int, int, pa.RecordBatch]]:
    return [(seq, OP_DELETE if seq % 4 == 0 else OP_UPSERT, _batch(seq, 1 + seq % 3))
            for seq in range(1, count + 1)]


def _write_log(wal_dir: Path, records, first_seq: int = 1) -> Path:
    wal_dir.mkdir(parents=True, exist_ok=True)
    w = WalWriter(wal_dir, first_seq)
    for seq, op, batch in records:
        w.append(seq, op, batch)
    w.sync()
    w.close()
    return wal_mod.wal_path(wal_dir, first_seq)


def _frame_ends(records) -> list[int]:
    """Byte offset where each frame ends, for records written in order into one file."""
    ends, pos = [], 0
    for seq, op, batch in records:
        pos += len(encode_record(seq, op, batch))
        ends.append(pos)
    return ends


def _same(got, want) -> None:
    assert [(r.seq, r.op) for r in got] == [(s, o) for s, o, _ in want]
    for r, (_, _, batch) in zip(got, want):
        assert r.batch.equals(batch)


def _vec(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal(DIM).astype(np.float32)


def _upsert(col, ids, ns) -> None:
    col.upsert(list(ids), np.stack([_vec(n) for n in ns]), [{"n": n} for n in ns])


def _model_add(model: dict, ids, ns) -> None:
    for i, n in zip(ids, ns):
        model[i] = (_vec(n), {"n": n})


def _collection_wal(db_path: Path, name: str = "c") -> list[Path]:
    return wal_files(db_path / "collections" / name / "wal")


# ---- round trip ------------------------------------------------------------------------------

def test_round_trip_single_file(tmp_path):
    records = _records(9)
    path = _write_log(tmp_path / "wal", records)
    got, good = read_records(path)
    _same(got, records)
    assert good == path.stat().st_size == _frame_ends(records)[-1]
    _same(list(replay(tmp_path / "wal")), records)
    assert path.stat().st_size == good          # nothing to truncate


def test_round_trip_across_rotations(tmp_path):
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    records = _records(10)
    w = WalWriter(wal_dir, 1)
    for seq, op, batch in records:
        w.append(seq, op, batch)
        if seq in (3, 7):
            w.rotate(seq + 1)
    w.close()
    assert [p.name for p in wal_files(wal_dir)] == [
        "wal-00000000000000000001.log", "wal-00000000000000000004.log", "wal-00000000000000000008.log"]
    _same(list(replay(wal_dir)), records)


def test_replay_rejects_sequence_going_backwards(tmp_path):
    wal_dir = tmp_path / "wal"
    _write_log(wal_dir, [(5, OP_UPSERT, _batch(5))], first_seq=5)
    _write_log(wal_dir, [(3, OP_UPSERT, _batch(3))], first_seq=9)   # later file, older seq
    with pytest.raises(vecdb.Corruption):
        list(replay(wal_dir))


def test_empty_and_header_only_files_replay_as_empty(tmp_path):
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    (wal_dir / "wal-00000000000000000001.log").write_bytes(b"")
    assert list(replay(wal_dir)) == []
    (wal_dir / "wal-00000000000000000001.log").write_bytes(b"\x00" * 7)
    assert list(replay(wal_dir)) == []
    assert (wal_dir / "wal-00000000000000000001.log").stat().st_size == 0


# ---- torn tails and corruption ---------------------------------------------------------------

@pytest.fixture
def fast_dir(tmp_path, monkeypatch):
    """A scratch dir for thousands of tiny rewrites: tmpfs where there is one, and no fsync."""
    monkeypatch.setattr(fileio, "os", _CountingOs(real_sync=False))
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        import tempfile
        d = Path(tempfile.mkdtemp(prefix="vecdb-wal-", dir=shm))
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def test_truncated_at_every_offset_replays_the_good_prefix(fast_dir):
    records = _records(4)
    wal_dir = fast_dir / "wal"
    path = _write_log(wal_dir, records)
    data = path.read_bytes()
    ends = _frame_ends(records)
    assert ends[-1] == len(data)
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        got = list(replay(wal_dir))
        keep = sum(1 for e in ends if e <= cut)
        assert len(got) == keep, cut
        _same(got, records[:keep])
        assert path.stat().st_size == (ends[keep - 1] if keep else 0), cut
    # and the truncated file is a clean log to append to
    path.write_bytes(data[:ends[1] + 5])
    list(replay(wal_dir))
    w = WalWriter(wal_dir, 1)     # same file name: appends after the good prefix
    w.append(3, OP_UPSERT, _batch(33))
    w.close()
    got = list(replay(wal_dir))
    assert [r.seq for r in got] == [1, 2, 3] and got[2].batch.equals(_batch(33))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupt_bytes_are_a_torn_tail_only_when_no_intact_frame_follows(tmp_path_factory, data):
    records = _records(6)
    wal_dir = tmp_path_factory.mktemp("wal")
    path = _write_log(wal_dir, records)
    blob = bytearray(path.read_bytes())
    ends = _frame_ends(records)
    starts = [0] + ends[:-1]
    first = data.draw(st.integers(0, len(blob) - 1), label="first corrupted byte")
    positions = {first} | set(data.draw(st.lists(st.integers(first, len(blob) - 1), max_size=4)))
    for p in positions:
        blob[p] ^= data.draw(st.integers(1, 255), label=f"xor at {p}")
    path.write_bytes(bytes(blob))
    bad = next(i for i, e in enumerate(ends) if first < e)
    damaged = {i for i, (a, b) in enumerate(zip(starts, ends)) if any(a <= p < b for p in positions)}
    intact_after = [i for i in range(bad + 1, len(records)) if i not in damaged]
    if not intact_after:                 # nothing intact after the damage: a torn tail
        got = list(replay(wal_dir))
        _same(got, records[:bad])
        assert path.stat().st_size == starts[bad]
        return
    with pytest.raises(vecdb.Corruption, match=rf"{path.name}.*{len(intact_after)} intact record"):
        list(replay(wal_dir))
    assert path.stat().st_size == len(blob)          # nothing truncated
    report = wal_mod.ReplayReport()
    got = list(replay(wal_dir, mode="salvage", report=report))
    keep = [i for i in range(len(records)) if i not in damaged]
    _same(got, [records[i] for i in keep])
    assert report.skipped and report.gaps


def test_flipped_byte_mid_log_is_corruption_naming_the_intact_records(tmp_path):
    """Issue 13: record 3 of 10 damaged used to truncate the 7 intact records after it."""
    records = _records(10)
    wal_dir = tmp_path / "wal"
    path = _write_log(wal_dir, records)
    blob = bytearray(path.read_bytes())
    ends = _frame_ends(records)
    blob[ends[1] + 20] ^= 0xFF          # inside record 3's payload
    path.write_bytes(bytes(blob))
    with pytest.raises(vecdb.Corruption, match="7 intact record"):
        list(replay(wal_dir))
    assert path.stat().st_size == len(blob)
    got = list(replay(wal_dir, mode="salvage"))
    assert [r.seq for r in got] == [1, 2] + list(range(4, 11))


def test_damaged_length_in_the_first_frame_does_not_drop_the_file(tmp_path):
    records = _records(5)
    wal_dir = tmp_path / "wal"
    path = _write_log(wal_dir, records)
    blob = bytearray(path.read_bytes())
    blob[1] ^= 0x40                      # the first frame's length
    path.write_bytes(bytes(blob))
    with pytest.raises(vecdb.Corruption, match="4 intact record"):
        list(replay(wal_dir))
    assert [r.seq for r in replay(wal_dir, mode="salvage")] == [2, 3, 4, 5]


def test_absolute_mode_refuses_even_a_torn_tail(tmp_path):
    records = _records(3)
    wal_dir = tmp_path / "wal"
    path = _write_log(wal_dir, records)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(vecdb.Corruption):
        list(replay(wal_dir, mode="absolute"))
    assert len(list(replay(wal_dir))) == 2


def test_missing_wal_file_is_a_gap_after_the_checkpoint(tmp_path):
    """Issue 13: a deleted WAL file silently dropped its rows."""
    wal_dir = tmp_path / "wal"
    records = _records(9)
    _write_log(wal_dir, records[:3], first_seq=1)
    _write_log(wal_dir, records[3:6], first_seq=4)
    _write_log(wal_dir, records[6:], first_seq=7)
    wal_mod.wal_path(wal_dir, 4).unlink()
    with pytest.raises(vecdb.Corruption, match="records 4..6 are missing"):
        list(replay(wal_dir))
    # the checkpoint covers the first file: then the log must start right after it
    wal_mod.wal_path(wal_dir, 1).unlink()
    with pytest.raises(vecdb.Corruption, match="records 4..6 are missing"):
        list(replay(wal_dir, checkpoint=3))
    assert [r.seq for r in replay(wal_dir, checkpoint=6)] == [7, 8, 9]
    report = wal_mod.ReplayReport()
    assert [r.seq for r in replay(wal_dir, checkpoint=3, mode="salvage", report=report)] == [7, 8, 9]
    assert report.gaps == [(3, 7)]


def test_corrupt_frame_with_valid_crc_but_bad_body_at_the_end_is_treated_as_torn(tmp_path):
    records = _records(3)
    wal_dir = tmp_path / "wal"
    path = _write_log(wal_dir, records)
    payload = b"\x04\x00\x00\x00\x00\x00\x00\x00\x01not-arrow"
    path.write_bytes(path.read_bytes() + FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
    _same(list(replay(wal_dir)), records)
    assert path.stat().st_size == _frame_ends(records)[-1]


# ---- database level: truncate a collection's WAL, reopen -------------------------------------

def test_database_opens_with_a_prefix_after_wal_truncation(tmp_path):
    src = tmp_path / "db"
    rng = np.random.default_rng(7)
    states = []         # model after each WAL record of the last (unflushed) stretch
    model: dict = {}
    n = 0
    with vecdb.connect(src) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")
        for step in range(14):
            if step == 5:
                col.flush()           # rows before this live in a segment, not the WAL
                base = dict(model)
            if step % 5 == 3:
                doomed = [i for i in rng.choice(40, 6, replace=False).tolist() if i in model]
                if not doomed:
                    continue
                col.delete(doomed)
                for i in doomed:
                    del model[i]
            else:
                ids = rng.choice(40, int(rng.integers(1, 8)), replace=False).tolist()
                ns = list(range(n, n + len(ids)))
                n += len(ids)
                _upsert(col, ids, ns)
                _model_add(model, ids, ns)
            if step >= 5:             # one WAL record per op since the flush
                states.append(dict(model))
    [wal] = _collection_wal(src)
    data = wal.read_bytes()
    recs, good = read_records(wal)
    assert good == len(data) and len(recs) == len(states)
    ends = [0]
    for r in recs:
        ends.append(ends[-1] + len(encode_record(r.seq, r.op, r.batch)))
    cuts = sorted({0, len(data), *ends, *(e + 1 for e in ends[:-1]), *(e - 1 for e in ends[1:]),
                   *rng.integers(0, len(data), 12).tolist()})
    expected_states = [base] + states
    for trial, cut in enumerate(cuts):
        dst = tmp_path / f"trial{trial}"
        shutil.copytree(src, dst)
        with open(_collection_wal(dst)[0], "r+b") as f:
            f.truncate(cut)
        keep = sum(1 for e in ends[1:] if e <= cut)
        with vecdb.connect(dst) as db:
            col = db.get_collection("c")
            assert_state(col, expected_states[keep], DIM)
            _upsert(col, [999], [10_000])   # the reopened log accepts writes
        with vecdb.connect(dst) as db:
            m = dict(expected_states[keep])
            _model_add(m, [999], [10_000])
            assert_state(db.get_collection("c"), m, DIM)
        shutil.rmtree(dst)


# ---- group commit ----------------------------------------------------------------------------

class _CountingOs(types.SimpleNamespace):
    """Stands in for the ``os`` module inside vecdb.storage.wal: counts fsyncs of data files."""

    def __init__(self, delay: float = 0.0, real_sync: bool = True):
        super().__init__()
        self.file_syncs = 0
        self.delay = delay
        self.real_sync = real_sync
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(os, name)

    def fsync(self, fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            with self._lock:
                self.file_syncs += 1
            time.sleep(self.delay)    # a slow disk, so writers queue behind one sync
        if self.real_sync:
            os.fsync(fd)


def test_wal_writer_group_commit_shares_fsyncs(tmp_path, monkeypatch):
    """The WalWriter contract: append under the owner's lock, sync_to without it."""
    fake = _CountingOs(delay=0.003)
    monkeypatch.setattr(fileio, "os", fake)
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    w = WalWriter(wal_dir, 1)
    owner_lock = threading.Lock()
    seq = [0]
    durable_at_ack = []

    def writer(t):
        for j in range(25):
            with owner_lock:
                seq[0] += 1
                s = seq[0]
                w.append(s, OP_UPSERT, _batch(s, 1))
            w.sync_to(s)
            durable_at_ack.append(w.synced_seq >= s)

    ts = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    w.close()
    monkeypatch.undo()
    assert all(durable_at_ack) and len(durable_at_ack) == 200
    assert fake.file_syncs < 200 // 2, fake.file_syncs
    assert [r.seq for r in replay(wal_dir)] == list(range(1, 201))


def test_group_commit_shares_fsyncs_between_concurrent_writers(tmp_path, monkeypatch):
    fake = _CountingOs(delay=0.003)
    threads_n, per_thread, rows = 8, 25, 2
    with vecdb.connect(tmp_path / "db", durability="always") as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")
        monkeypatch.setattr(fileio, "os", fake)
        barrier = threading.Barrier(threads_n)
        acked = [[] for _ in range(threads_n)]
        errors = []

        def writer(t):
            try:
                barrier.wait()
                for j in range(per_thread):
                    base = (t * per_thread + j) * rows
                    ids = list(range(base, base + rows))
                    _upsert(col, ids, ids)
                    acked[t].append(ids)
                    # acknowledged means durable: visible at once (read-your-writes)
                    assert {r.id for r in col.get(ids)} == set(ids)
            except BaseException as e:  # surfaced below
                errors.append(e)

        ts = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        monkeypatch.undo()
        assert not errors, errors
        writes = threads_n * per_thread
        assert sum(len(a) for a in acked) == writes
        assert 1 <= fake.file_syncs < writes, fake.file_syncs
        assert col.count() == writes * rows
    with vecdb.connect(tmp_path / "db") as db:
        model: dict = {}
        for a in acked:
            for ids in a:
                _model_add(model, ids, ids)
        assert_state(db.get_collection("c"), model, DIM)


def test_batch_durability_does_not_fsync_per_write(tmp_path, monkeypatch):
    fake = _CountingOs()
    with vecdb.connect(tmp_path / "db", durability="batch", sync_interval_ms=50) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")
        monkeypatch.setattr(fileio, "os", fake)
        for i in range(40):
            _upsert(col, [i], [i])
        during = fake.file_syncs
        time.sleep(0.3)
        assert during < 40
        assert fake.file_syncs >= 1         # the background ticker synced the window
        monkeypatch.undo()


# ---- injected write and fsync failures (storage/fileio.py + tests/storage/faultenv.py) --------

@pytest.fixture
def faults(tmp_path):
    """A FaultEnv installed for the test; ``faults.fail_next(kinds, errno)`` arms a fault."""
    env = FaultEnv(tmp_path, tmp_path.parent / (tmp_path.name + "-bk"))
    with fileio.use_env(env):
        yield env


def test_writer_unit_failed_write_surfaces_and_leaves_no_visible_half_record(tmp_path, faults):
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    w = WalWriter(wal_dir, 1)
    w.append(1, OP_UPSERT, _batch(1))
    faults.fail_next({"write"}, errno.ENOSPC)
    with pytest.raises(StorageFull, match=r"wal-0+1\.log.*ENOSPC"):
        w.append(2, OP_UPSERT, _batch(2))
    w.append(2, OP_UPSERT, _batch(22))   # space freed: the log takes writes again
    w.close()
    got = list(replay(wal_dir))
    _same(got, [(1, OP_UPSERT, _batch(1)), (2, OP_UPSERT, _batch(22))])


def test_enospc_on_upsert_is_storage_full_changes_nothing_and_recovers_without_reopen(tmp_path, faults):
    path = tmp_path / "db"
    with vecdb.connect(path) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")
        _upsert(col, [1, 2], [1, 2])
        faults.fail_next({"write"}, errno.ENOSPC, persistent=True)
        for _ in range(3):
            with pytest.raises(StorageFull) as e:
                _upsert(col, [3, 4], [3, 4])
            assert e.value.http_status == 507 and "wal-" in str(e.value)
        assert col.count() == 2 and col.get([3, 4]) == []      # the failed call changed nothing
        faults.clear_faults()                                    # space freed
        _upsert(col, [5, 6], [5, 6])
    with vecdb.connect(path) as db:
        model: dict = {}
        _model_add(model, [1, 2, 5, 6], [1, 2, 5, 6])
        assert_state(db.get_collection("c"), model, DIM)


def test_enospc_on_flush_is_storage_full_and_changes_nothing(tmp_path, faults):
    path = tmp_path / "db"
    with vecdb.connect(path) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")
        _upsert(col, [1, 2], [1, 2])
        version = col.version
        faults.fail_next({"write"}, errno.ENOSPC, persistent=True)
        with pytest.raises(StorageFull, match="seg-"):
            col.flush()
        assert col.version == version and col.count() == 2
        faults.clear_faults()
        col.flush()
        assert col.version == version + 1
        _upsert(col, [3], [3])
    with vecdb.connect(path) as db:
        model: dict = {}
        _model_add(model, [1, 2, 3], [1, 2, 3])
        assert_state(db.get_collection("c"), model, DIM)


def test_upsert_whose_seal_fails_after_the_wal_commit_returns_and_retries(tmp_path, faults, caplog):
    """Issue 13: upsert raised a raw OSError although its rows were durable and visible."""
    path = tmp_path / "db"
    with vecdb.connect(path, seal_rows=4) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")
        _upsert(col, [1, 2], [1, 2])
        faults.fail_next({"open"}, errno.ENOSPC, persistent=True)   # the WAL is open; sealing needs new files
        _upsert(col, [3, 4], [3, 4])                                  # reaches seal_rows: seal fails
        assert col.count() == 4
        bg = col._store.background_errors()
        assert bg["failures"] >= 1 and bg["retry_pending"] and "StorageFull" in bg["recent"][-1]["error"]
        faults.clear_faults()
        deadline = time.monotonic() + 10
        while col._store.background_errors()["retry_pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not col._store.background_errors()["retry_pending"]
        assert col._store.manifest.segments                       # the retry sealed the rows
    with vecdb.connect(path) as db:
        model: dict = {}
        _model_add(model, [1, 2, 3, 4], [1, 2, 3, 4])
        assert_state(db.get_collection("c"), model, DIM)


def test_failed_fsync_surfaces_and_the_write_is_whole_or_absent_after_reopen(tmp_path, faults):
    path = tmp_path / "db"
    with vecdb.connect(path) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")
        _upsert(col, [1, 2], [1, 2])
        faults.fail_next({"fsync"})
        with pytest.raises(vecdb.Unavailable, match="EIO"):
            _upsert(col, [3, 4, 5], [3, 4, 5])
        assert col.get([3, 4, 5]) == []          # not acknowledged, not visible
        with pytest.raises(vecdb.Unavailable):   # the log is poisoned until reopen
            _upsert(col, [6], [6])
    with vecdb.connect(path) as db:
        col = db.get_collection("c")
        got = {r.id for r in col.get([3, 4, 5])}
        assert got in (set(), {3, 4, 5})          # all of the failed batch or none
        _upsert(col, [6], [6])                   # reopened: writes work again
        model: dict = {}
        _model_add(model, [1, 2, 6], [1, 2, 6])
        if got:
            _model_add(model, [3, 4, 5], [3, 4, 5])
        assert_state(col, model, DIM)


def test_failed_wal_rotation_after_a_flush_commit_loses_nothing(tmp_path, faults):
    path = tmp_path / "db"
    with vecdb.connect(path) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")
        _upsert(col, [1, 2], [1, 2])
        # the flush's segment and manifest are written; the next WAL file cannot be created
        real_open = faults.open

        def open_(path_, mode, buffering=-1):
            if Path(path_).name.startswith("wal-") and "a" in mode:
                raise OSError(errno.EMFILE, "Too many open files (injected)", str(path_))
            return real_open(path_, mode, buffering)
        faults.open = open_
        col.flush()                               # committed: the rotation failure is reported
        assert col._store.background_errors()["failures"] == 1
        faults.open = real_open
        _upsert(col, [3], [3])
        col.delete([1])
        assert col.count() == 2
    with vecdb.connect(path) as db:
        col = db.get_collection("c")
        model: dict = {}
        _model_add(model, [2, 3], [2, 3])
        assert_state(col, model, DIM)
        col.flush()
        _upsert(col, [4], [4])
    with vecdb.connect(path) as db:
        _model_add(model, [4], [4])
        assert_state(db.get_collection("c"), model, DIM)
