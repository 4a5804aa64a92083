"""Checksums, typed errors and races from issue 13's "Why" list (each failed on the old code).

Damage is reported (``Corruption`` naming the file and what is lost), never served; old
files without checksums still open; a read-only reader sees every acknowledged write.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vecdb
from tests.invariants import assert_state
from vecdb.storage import manifest as mf
from vecdb.storage.fileio import crc32c
from vecdb.storage.verify import verify_collection, verify_database

DIM = 8


def _vec(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal(DIM).astype(np.float32)


def _fill(col, ids) -> dict:
    ids = list(ids)
    col.upsert(ids, np.stack([_vec(i) for i in ids]), [{"n": i} for i in ids])
    return {i: (_vec(i), {"n": i}) for i in ids}


def _db_with_segment(path: Path, **kw):
    """A database with one flushed segment of 60 rows; returns (model, collection dir)."""
    with vecdb.connect(path, auto_compact=False, **kw) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64",
                                   index={"type": "flat"})
        model = _fill(col, range(60))
        col.flush()
    return model, path / "collections" / "c"


def _only(directory: Path, pattern: str) -> Path:
    [p] = sorted(directory.glob(pattern))
    return p


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _current_manifest(cdir: Path) -> Path:
    return mf.manifest_path(cdir / "manifest", mf.list_versions(cdir / "manifest")[-1])


def _rewrite_manifest(path: Path, edit, sign: bool = True) -> None:
    """Edit a manifest's JSON body; ``sign`` recomputes its checksum (a wrong but intact file)."""
    data = path.read_bytes()
    body = json.loads(data[:data.rfind(b"\ncrc32c=")])
    edit(body)
    out = json.dumps(body, indent=1).encode()
    path.write_bytes(out + (b"\ncrc32c=%08x\n" % crc32c(out) if sign else b""))


# ---- 1. silent wrong data ---------------------------------------------------------------------

@pytest.mark.parametrize("where", ["vectors", "ids"])
def test_flipped_byte_in_a_segment_is_corruption_naming_the_file(tmp_path, where):
    model, cdir = _db_with_segment(tmp_path / "db")
    seg = _only(cdir / "segments", "seg-*.arrow")
    data = seg.read_bytes()
    if where == "vectors":   # a byte inside row 7's vector
        offset = data.find(_vec(7).tobytes()) + 5
    else:                    # a byte of id 33 (little-endian int64)
        offset = data.find(np.int64(33).tobytes() + np.int64(34).tobytes())
    assert offset > 0
    _flip(seg, offset)
    with vecdb.connect(tmp_path / "db") as db:
        with pytest.raises(vecdb.Corruption, match=rf"{seg.name}.*checksum.*60 live row"):
            db.get_collection("c")
    report = verify_database(tmp_path / "db")
    assert not report.ok and any(seg.name in p for p in report.problems)


def test_salvage_drops_a_damaged_segment_and_keeps_the_rest(tmp_path):
    from vecdb.database import Database
    from vecdb.storage.store import StoreOptions
    with vecdb.connect(tmp_path / "db", auto_compact=False) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64",
                                   index={"type": "flat"})
        _fill(col, range(20))
        col.flush()
        model = _fill(col, range(20, 50))
        col.flush()
        model |= _fill(col, range(50, 55))       # only in the WAL
    seg = sorted((tmp_path / "db" / "collections" / "c" / "segments").glob("seg-*.arrow"))[0]
    _flip(seg, seg.stat().st_size // 2)
    with Database(tmp_path / "db", StoreOptions(wal_recovery="salvage")) as db:
        col = db.get_collection("c")
        assert_state(col, model, DIM)            # rows 0..19 are lost, reported; the rest served
        assert any(seg.name in e["what"] for e in col._store.background_errors()["recent"])
    with vecdb.connect(tmp_path / "db") as db:
        assert_state(db.get_collection("c"), model, DIM)


def test_edited_checkpoint_in_a_manifest_is_corruption(tmp_path):
    """A manifest edited into other valid JSON used to drop acknowledged rows silently."""
    with vecdb.connect(tmp_path / "db") as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64")
        _fill(col, range(40))
        col.flush()
        _fill(col, range(40, 100))                 # 60 rows only in the WAL
    path = _current_manifest(tmp_path / "db" / "collections" / "c")
    text = path.read_bytes()
    assert b'"checkpoint": 1,' in text
    path.write_bytes(text.replace(b'"checkpoint": 1,', b'"checkpoint": 7,'))
    with vecdb.connect(tmp_path / "db") as db:
        with pytest.raises(vecdb.Corruption, match="checksum"):
            db.get_collection("c")
    assert not verify_database(tmp_path / "db").ok


def test_truncated_or_zero_byte_manifest_is_corruption(tmp_path):
    _, cdir = _db_with_segment(tmp_path / "db")
    path = _current_manifest(cdir)
    data = path.read_bytes()
    for cut in (0, len(data) // 2, len(data) - 3):
        path.write_bytes(data[:cut])
        with pytest.raises(vecdb.Corruption):
            mf.load(cdir / "manifest")
    path.write_bytes(data)
    mf.load(cdir / "manifest")


def test_files_and_manifests_written_before_checksums_still_open(tmp_path):
    model, cdir = _db_with_segment(tmp_path / "db")
    path = _current_manifest(cdir)

    def to_v1(body):
        body["format_version"] = 1
        for s in body["segments"]:
            for k in ("file_sum", "deletes_sum", "index_sum"):
                s.pop(k, None)
    _rewrite_manifest(path, to_v1, sign=False)
    with vecdb.connect(tmp_path / "db") as db:
        col = db.get_collection("c")
        assert_state(col, model, DIM)
        bg = col._store.background_errors()
        assert bg["unverified_files"] == [_only(cdir / "segments", "seg-*.arrow").name]
    report = verify_collection(cdir)
    assert report.ok and report.counts["unverified_files"] == 1
    assert any("not verified" in w for w in report.warnings)


def test_damaged_old_manifest_version_is_skipped_with_a_warning(tmp_path, caplog):
    with vecdb.connect(tmp_path / "db", keep_versions=3, auto_compact=False) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64")
        model = {}
        for i in range(5):
            model |= _fill(col, range(i * 10, i * 10 + 10))
            col.flush()
    mdir = tmp_path / "db" / "collections" / "c" / "manifest"
    versions = mf.list_versions(mdir)
    old = mf.manifest_path(mdir, versions[-2])
    _flip(old, 40)
    with vecdb.connect(tmp_path / "db", keep_versions=3) as db:
        col = db.get_collection("c")
        assert_state(col, model, DIM)
        model |= _fill(col, [100])
        col.flush()                                 # clean-up walks the damaged version
    assert "damaged old manifest" in caplog.text
    report = verify_collection(mdir.parent)
    assert report.ok, report.problems


def test_manifest_dim_disagreeing_with_its_segments_is_corruption(tmp_path):
    _, cdir = _db_with_segment(tmp_path / "db")

    def wrong_dim(body):
        body["dim"] = DIM * 2
    _rewrite_manifest(_current_manifest(cdir), wrong_dim)
    with vecdb.connect(tmp_path / "db") as db:
        with pytest.raises(vecdb.Corruption, match="8-d vectors.*dim=16"):
            db.get_collection("c")


def test_missing_segment_is_corruption_naming_what_is_lost(tmp_path):
    _, cdir = _db_with_segment(tmp_path / "db")
    seg = _only(cdir / "segments", "seg-*.arrow")
    seg.unlink()
    with vecdb.connect(tmp_path / "db") as db:
        with pytest.raises(vecdb.Corruption, match=rf"{seg.name} is missing.*60 live row"):
            db.get_collection("c")
    assert any("missing" in p for p in verify_collection(cdir).problems)


def test_damaged_delete_bitmap_is_corruption(tmp_path):
    with vecdb.connect(tmp_path / "db", auto_compact=False) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64")
        _fill(col, range(30))
        col.flush()
        col.delete([3, 4])
        col.flush()
    cdir = tmp_path / "db" / "collections" / "c"
    bitmap = _only(cdir / "segments", "seg-*.del-*")
    _flip(bitmap, bitmap.stat().st_size - 1)
    with vecdb.connect(tmp_path / "db") as db:
        with pytest.raises(vecdb.Corruption, match=bitmap.name):
            db.get_collection("c")


def test_damaged_index_file_is_dropped_searched_exactly_and_rebuilt(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((400, DIM)).astype(np.float32)
    with vecdb.connect(tmp_path / "db", auto_compact=False) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", id_type="int64", index={"type": "hnsw"})
        col.upsert(list(range(400)), vecs)
        col.flush()
        assert col.wait_for_indexes(120)
    cdir = tmp_path / "db" / "collections" / "c"
    idx = _only(cdir / "segments", "seg-*.idx")
    _flip(idx, idx.stat().st_size // 3)
    with vecdb.connect(tmp_path / "db") as db:
        col = db.get_collection("c")
        bg = col._store.background_errors()
        assert any(idx.name in e["what"] for e in bg["recent"])
        hits = col.search(vecs[:5], k=1)
        assert [h[0].id for h in hits] == [0, 1, 2, 3, 4]
        assert col.wait_for_indexes(120)
        assert col._store.manifest.segments[0].index_sum is not None
    assert verify_collection(cdir).ok


def test_restore_rejects_a_snapshot_whose_segment_fails_its_checksum(tmp_path):
    model, _ = _db_with_segment(tmp_path / "db")
    with vecdb.connect(tmp_path / "db") as db:
        col = db.get_collection("c")
        col.snapshot(tmp_path / "snap")
        seg = _only(tmp_path / "snap" / "segments", "seg-*.arrow")
        seg.unlink()                     # a hard link: replace it by a damaged copy
        data = bytearray((tmp_path / "db" / "collections" / "c" / "segments" / seg.name).read_bytes())
        data[len(data) // 2] ^= 1
        seg.write_bytes(bytes(data))
        with pytest.raises(vecdb.InvalidArgument, match=rf"{seg.name} fails its checksum"):
            db.restore(tmp_path / "snap", "r")
        assert "r" not in db.list_collections()
        assert_state(col, model, DIM)


def test_failed_index_build_is_reported_and_retried(tmp_path):
    """A build that fails (here: the disk full while saving) leaves the segment searched
    exactly, shows in background_errors, and is built again in the background."""
    import errno
    from vecdb.storage import fileio

    class IndexSaveFails(fileio.FileEnv):
        failures = 0

        def open(self, path, mode, buffering=-1):
            if ".idx.tmp" in str(path) and not self.failures:
                self.failures += 1
                raise OSError(errno.ENOSPC, "No space left on device (injected)", str(path))
            return super().open(path, mode, buffering)
    rng = np.random.default_rng(2)
    vecs = rng.standard_normal((300, DIM)).astype(np.float32)
    env = IndexSaveFails()
    with fileio.use_env(env), vecdb.connect(tmp_path / "db", auto_compact=False) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", id_type="int64", index={"type": "hnsw"})
        col.upsert(list(range(300)), vecs)
        col.flush()
        deadline = time.monotonic() + 60
        while col._store.manifest.segments[0].index is None and time.monotonic() < deadline:
            col.wait_for_indexes(5)
            time.sleep(0.1)
        assert env.failures == 1
        assert col._store.manifest.segments[0].index is not None
        errors = col._store.background_errors()["recent"]
        assert any("index of segment 1" in e["what"] and "StorageFull" in e["error"] for e in errors)
        assert [h[0].id for h in col.search(vecs[:3], k=1)] == [0, 1, 2]


def test_mid_log_damage_refuses_to_open_and_salvage_keeps_the_intact_records(tmp_path):
    from vecdb.database import Database
    from vecdb.storage.store import StoreOptions
    from vecdb.storage.wal import _frame_at
    with vecdb.connect(tmp_path / "db") as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64")
        model = {}
        for i in range(10):                       # ten WAL records of 5 rows each
            model |= _fill(col, range(i * 5, i * 5 + 5))
    [wal] = sorted((tmp_path / "db" / "collections" / "c" / "wal").glob("*.log"))
    data = wal.read_bytes()
    starts, pos = [], 0
    while (hit := _frame_at(data, pos)) is not None:
        starts.append(pos)
        pos = hit[1]
    _flip(wal, starts[2] + 30)                    # record 3 of 10
    with vecdb.connect(tmp_path / "db") as db:
        with pytest.raises(vecdb.Corruption, match=rf"{wal.name} is damaged at byte {starts[2]}.*7 intact"):
            db.get_collection("c")
    assert wal.read_bytes() != data and wal.stat().st_size == len(data)   # nothing truncated
    assert not verify_database(tmp_path / "db").ok
    with Database(tmp_path / "db", StoreOptions(wal_recovery="salvage")) as db:
        col = db.get_collection("c")
        for i in range(10, 15):
            del model[i]
        assert_state(col, model, DIM)
        report = col._store.background_errors()["wal_recovery"]
        assert report["skipped"] and report["skipped"][0][0] == wal.name
    with vecdb.connect(tmp_path / "db") as db:    # salvage checkpointed past the damage
        assert_state(db.get_collection("c"), model, DIM)
    assert verify_database(tmp_path / "db").ok


# ---- 5. typed errors ----------------------------------------------------------------------

def test_lock_path_that_is_a_directory_is_a_typed_error(tmp_path):
    (tmp_path / "db" / "LOCK").mkdir(parents=True)
    with pytest.raises(vecdb.DatabaseLocked, match="is a directory"):
        vecdb.connect(tmp_path / "db")


def test_second_connect_in_this_process_says_so(tmp_path):
    with vecdb.connect(tmp_path / "db"):
        with pytest.raises(vecdb.DatabaseLocked, match="already open in this process"):
            vecdb.connect(tmp_path / "db")
    vecdb.connect(tmp_path / "db").close()


def test_lone_surrogates_in_ids_and_payload_strings_are_typed_errors(tmp_path):
    with vecdb.connect(tmp_path / "db") as db:
        col = db.create_collection("c", dim=2, schema={"s": "string", "t": "list<string>"})
        with pytest.raises(vecdb.InvalidId, match="surrogate"):
            col.upsert(["ok", "bad\ud800"], [[1, 0], [0, 1]])
        with pytest.raises(vecdb.SchemaError, match=r"payloads\[0\]\.s.*surrogate"):
            col.upsert(["a"], [[1, 0]], [{"s": "x\udfff"}])
        with pytest.raises(vecdb.SchemaError, match=r"payloads\[0\]\.t.*surrogate"):
            col.upsert(["a"], [[1, 0]], [{"t": ["fine", "\ud83d"]}])
        col.upsert(["a", "é"], [[1, 0], [0, 1]], [{"s": "ünïcode 🙂"}, None])
        assert col.count() == 2


# ---- 4. races and read-only readers ---------------------------------------------------------

def test_read_only_connection_sees_rows_not_yet_sealed(tmp_path):
    """`vecdb info` used to show "rows": 0 for a collection holding 3 acknowledged rows."""
    with vecdb.connect(tmp_path / "db") as db:
        col = db.create_collection("c", dim=DIM, metric="l2", schema={"n": "int64"}, id_type="int64")
        model = _fill(col, [1, 2, 3])
        with vecdb.connect(tmp_path / "db", read_only=True) as ro:   # while the writer is open
            assert_state(ro.get_collection("c"), model, DIM)
    wal = sorted((tmp_path / "db" / "collections" / "c" / "wal").glob("*.log"))
    sizes = [p.stat().st_size for p in wal]
    with vecdb.connect(tmp_path / "db", read_only=True) as ro:      # after it closed
        assert_state(ro.get_collection("c"), model, DIM)
    assert [p.stat().st_size for p in wal] == sizes                 # the reader wrote nothing


def test_clean_up_spares_an_index_build_temp_file(tmp_path):
    _, cdir = _db_with_segment(tmp_path / "db")
    with vecdb.connect(tmp_path / "db") as db:
        store = db.get_collection("c")._store
        tmp = cdir / "segments" / f".seg-00000001.idx.tmp-{os.getpid()}-{threading.get_ident()}"
        tmp.write_bytes(b"half-written index")
        store._pending.add("seg-00000001.idx")
        store._gc()
        assert tmp.exists()                          # the build is in flight: kept
        store._pending.discard("seg-00000001.idx")
        store._gc()
        assert not tmp.exists()                      # a leftover: removed


WRITER = r"""
import sys, numpy as np, vecdb
db = vecdb.connect(sys.argv[1], keep_versions=1, auto_compact=True, seal_rows=40)
col = db.create_collection("c", dim=4, metric="l2", id_type="int64", index={"type": "flat"})
rng = np.random.default_rng(0)
n = 0
print("ready", flush=True)
while True:
    col.upsert(list(range(n, n + 10)), rng.standard_normal((10, 4)).astype(np.float32))
    n += 10
    col.delete([n - 3])
    print(n, flush=True)
    if n % 50 == 0:
        col.compact()
"""


@pytest.mark.slow
def test_read_only_opens_in_another_process_never_see_false_corruption(tmp_path):
    """Issue 13: 10 of 1,078 read-only opens failed with Corruption or FileNotFoundError."""
    path = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    acked = [0]

    def reader():
        for line in proc.stdout:
            if line.strip().isdigit():
                acked[0] = int(line)
    try:
        assert proc.stdout.readline().strip() == "ready"
        threading.Thread(target=reader, daemon=True).start()
        opens, deadline = 0, time.monotonic() + 20
        while (opens < 300 or acked[0] < 1500) and time.monotonic() < deadline:
            before = acked[0]
            with vecdb.connect(path, read_only=True) as ro:
                col = ro.get_collection("c")
                count = col.count()
            # every acknowledged write before the open is visible: n rows minus n/10 deletes
            assert count >= before - before // 10, (count, before)
            opens += 1
        print("read-only opens", opens, "acked", acked[0])
        assert opens >= 100 and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
    finally:
        proc.kill()
        proc.wait()
    report = verify_database(path)
    assert report.ok, report.problems
