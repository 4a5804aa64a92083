"""Snapshots, restore of hostile archives, time travel and version garbage collection (DESIGN §6)."""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vecdb
from tests.invariants import assert_state
from vecdb.storage.fileio import crc32c

DIM = 4
SCHEMA = {"n": "int64"}


def _vec(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal(DIM).astype(np.float32)


def _upsert(col, ids, ns=None) -> None:
    ns = list(ids) if ns is None else ns
    col.upsert(list(ids), np.stack([_vec(n) for n in ns]), [{"n": n} for n in ns])


def _model(ids, ns=None) -> dict:
    ns = list(ids) if ns is None else ns
    return {i: (_vec(n), {"n": n}) for i, n in zip(ids, ns)}


def _rows(col, pool) -> dict:
    return {r.id: (r.payload["n"], r.vector.tobytes()) for r in col.get(list(pool))}


def _new(db, name="c"):
    return db.create_collection(name, dim=DIM, metric="l2", schema=SCHEMA, id_type="int64")


# ---- consistent snapshot while writes go on ----------------------------------------------------

@pytest.mark.parametrize("form", ["dir", "tar"])
def test_snapshot_under_concurrent_writes_is_a_consistent_version(tmp_path, form):
    with vecdb.connect(tmp_path / "db") as db:
        col = _new(db)
        _upsert(col, range(0, 50))
        col.flush()
        col.delete(list(range(0, 50, 7)))      # a delete bitmap in the snapshot too
        stop = threading.Event()
        acked = []
        errors = []

        def writer():
            i = 1000
            try:
                while not stop.is_set():
                    _upsert(col, [i, i + 1])
                    acked.append(i + 1)
                    if i % 40 == 0:
                        col.delete([i - 20])
                    i += 2
            except BaseException as e:  # surfaced below
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        try:
            while len(acked) < 20:
                time.sleep(0.005)
            before = max(acked)
            snap = col.snapshot(tmp_path / ("snap.tar" if form == "tar" else "snap"))
            after = len(acked)
            while len(acked) < after + 10:             # writes go on after the snapshot
                time.sleep(0.005)
        finally:
            stop.set()
            t.join()
        assert not errors, errors
        # the snapshot holds one manifest version: the state at that version, exactly
        if form == "tar":
            with tarfile.open(snap) as tar:
                names = tar.getnames()
            [mname] = [n for n in names if n.startswith("manifest/v")]
        else:
            [mname] = [p.relative_to(snap).as_posix() for p in (snap / "manifest").iterdir()]
        version = int(Path(mname).stem[1:])
        pool = list(range(0, 50)) + list(range(1000, max(acked) + 2))
        with col.at_version(version) as old:
            expected = _rows(old, pool)
            assert old.count() == len(expected)
        restored = db.restore(snap, "r")
        got = _rows(restored, pool)
        assert got == expected
        assert restored.count() == len(got)
        # consistent: a prefix of the writer's acknowledged pairs, never half a pair
        odd = sorted(i for i in got if i >= 1000 and i % 2)
        assert odd == list(range(1001, odd[-1] + 1, 2))
        assert odd[-1] >= before                     # every write acknowledged before it began
        assert odd[-1] < max(acked)                  # and none of those made after it
        for j in odd:
            if j - 1 not in got:                     # only a delete issued after pair j+19 explains it
                assert (j + 19) % 40 == 0 and j + 20 in got, j
        assert all(e + 1 in got for e in got if e >= 1000 and e % 2 == 0)
        # the restored collection is independent and writable
        _upsert(restored, [5_000_000])
        assert restored.count() == len(got) + 1
        assert col.get([5_000_000]) == []


def test_directory_snapshot_hard_links_segments(tmp_path):
    with vecdb.connect(tmp_path / "db") as db:
        col = _new(db)
        _upsert(col, range(20))
        col.snapshot(tmp_path / "snap")
        seg_files = sorted((tmp_path / "snap" / "segments").iterdir())
        assert seg_files
        for p in seg_files:
            orig = tmp_path / "db" / "collections" / "c" / "segments" / p.name
            assert os.stat(p).st_ino == os.stat(orig).st_ino
        with pytest.raises(vecdb.InvalidArgument):
            col.snapshot(tmp_path / "snap")                    # never overwrites
        assert_state(db.restore(tmp_path / "snap", "copy"), _model(range(20)), DIM)
        with pytest.raises(vecdb.AlreadyExists):
            db.restore(tmp_path / "snap", "copy")


def test_snapshot_of_empty_and_of_a_read_only_view(tmp_path):
    with vecdb.connect(tmp_path / "db") as db:
        col = _new(db)
        col.snapshot(tmp_path / "empty.tar")
        assert db.restore(tmp_path / "empty.tar", "e").count() == 0
        _upsert(col, range(10))
        v = col.flush()
        _upsert(col, range(10, 20))
        col.flush()
        with col.at_version(v) as old:
            old.snapshot(tmp_path / "old.tar")
        assert_state(db.restore(tmp_path / "old.tar", "o"), _model(range(10)), DIM)


# ---- restore rejects hostile or broken archives ----------------------------------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A genuine directory snapshot: one segment with a delete bitmap, one manifest."""
    root = tmp_path_factory.mktemp("good")
    with vecdb.connect(root / "src") as db:
        col = _new(db)
        _upsert(col, range(10))
        col.flush()
        col.delete([3])
        col.snapshot(root / "snap")
    return root / "snap"


GOOD_MODEL = {i: v for i, v in _model(range(10)).items() if i != 3}


def _tar_of(directory: Path, out: Path, extra=(), skip=()) -> Path:
    with tarfile.open(out, "w") as tar:
        for p in sorted(directory.rglob("*")):
            name = p.relative_to(directory).as_posix()
            if name not in skip:
                tar.add(p, arcname=name, recursive=False)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def _member(name, data=b"x", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def _seg(good: Path) -> str:
    return "segments/" + next(p.name for p in (good / "segments").iterdir() if p.suffix == ".arrow")


def _man(good: Path) -> str:
    return "manifest/" + next((good / "manifest").iterdir()).name


def _with_members(*members):
    return lambda tmp, good: _tar_of(good, tmp / "x.tar", extra=members)


def _replacing(name_fn, data_fn, kind=tarfile.REGTYPE):
    def build(tmp, good):
        name = name_fn(good)
        return _tar_of(good, tmp / "x.tar", skip={name}, extra=[_member(name, data_fn(good), kind)])
    return build


def _manifest_body(data: bytes) -> dict:
    """The JSON body of a manifest file (without its crc32c trailer line)."""
    return json.loads(data[:data.rfind(b"\ncrc32c=")] if b"\ncrc32c=" in data else data)


def _signed(body: dict) -> bytes:
    """A manifest file for ``body`` with a valid checksum: only the content is hostile."""
    data = json.dumps(body).encode()
    return data + b"\ncrc32c=%08x\n" % crc32c(data)


def _manifest_edit(**changes):
    def data(good):
        body = _manifest_body((good / _man(good)).read_bytes())
        body["segments"][0].update(changes)
        return _signed(body)
    return _replacing(_man, data)


def _truncated(tmp, good):
    whole = _tar_of(good, tmp / "whole.tar")
    with tarfile.open(whole) as tar:
        m = tar.getmember(_seg(good))
    out = tmp / "x.tar"
    out.write_bytes(whole.read_bytes()[: m.offset_data + m.size // 2])    # inside a segment
    whole.unlink()
    return out


def _raw(data: bytes):
    def build(tmp, good):
        (tmp / "x.tar").write_bytes(data)
        return tmp / "x.tar"
    return build


def _dir_with(mutate):
    def build(tmp, good):
        d = tmp / "snapdir"
        shutil.copytree(good, d)
        mutate(d, tmp)
        return d
    return build


def _replace_wal_with_link(d, tmp):
    shutil.rmtree(d / "wal")
    os.symlink(tmp, d / "wal")


HOSTILE = {
    "absolute": _with_members(_member("/tmp/vecdb-evil-absolute")),
    "absolute-manifest": _with_members(_member("/manifest/v00000099.json", b"{}")),
    "dotdot": _with_members(_member("../evil-dotdot")),
    "dotdot-inside": _with_members(_member("segments/../../evil-inside")),
    "symlink": _with_members(_member("segments/seg-00000099.arrow", kind=tarfile.SYMTYPE, linkname="/etc/passwd")),
    "hardlink": lambda tmp, good: _tar_of(good, tmp / "x.tar", extra=[
        _member("segments/seg-00000099.arrow", kind=tarfile.LNKTYPE, linkname=_seg(good))]),
    "hardlink-out": _with_members(_member("segments/seg-00000098.arrow", kind=tarfile.LNKTYPE, linkname="/etc/passwd")),
    "fifo": _with_members(_member("segments/seg-00000097.arrow", kind=tarfile.FIFOTYPE)),
    "device": _with_members(_member("segments/seg-00000096.arrow", kind=tarfile.CHRTYPE)),
    "unknown-file": _with_members(_member("segments/notes.txt")),
    "unknown-top": _with_members(_member("README")),
    "unknown-dir": _with_members(_member("extra", kind=tarfile.DIRTYPE)),
    "garbage": _raw(bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8))),
    "empty-file": _raw(b""),
    "truncated": _truncated,
    "no-manifest": lambda tmp, good: _tar_of(good, tmp / "x.tar", skip={_man(good)}),
    "missing-segment": lambda tmp, good: _tar_of(good, tmp / "x.tar", skip={_seg(good)}),
    "two-manifests": lambda tmp, good: _tar_of(good, tmp / "x.tar", extra=[
        _member("manifest/v00000077.json", (good / _man(good)).read_bytes())]),
    "bad-manifest-json": _replacing(_man, lambda good: b"{not json"),
    "manifest-is-dir": _replacing(_man, lambda good: None, kind=tarfile.DIRTYPE),
    "garbage-segment": _replacing(_seg, lambda good: bytes(4096)),
    "manifest-names-absolute-file": _manifest_edit(file="/etc/passwd", deletes=None, deleted=0),
    "manifest-names-sibling-file": _manifest_edit(file="../../keep/segments/seg-00000001.arrow",
                                                  rows=1, deletes=None, deleted=0),
    "dir-symlink": _dir_with(lambda d, tmp: os.symlink("/etc/passwd", d / "segments" / "seg-00000099.arrow")),
    "dir-unknown-file": _dir_with(lambda d, tmp: (d / "segments" / "notes.txt").write_text("x")),
    "dir-symlinked-dir": _dir_with(_replace_wal_with_link),
    "dir-fifo": _dir_with(lambda d, tmp: os.mkfifo(d / "segments" / "seg-00000097.arrow")),
    "does-not-exist": lambda tmp, good: tmp / "does-not-exist.tar",
}

_UNTYPED = "BUG: restore lets a non-InvalidArgument error escape for a broken archive: "
_LEFT = "BUG: restore renames the staging dir into place before the segments are opened; a bad segment "
KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[c])) if c in KNOWN_BUGS else c
    for c in HOSTILE])
def test_restore_rejects_hostile_snapshot_and_leaves_nothing(tmp_path, good, case):
    work = tmp_path / "work"
    work.mkdir()
    src = HOSTILE[case](work, good)
    made = sorted(p.name for p in work.iterdir())
    root = tmp_path / "db"
    with vecdb.connect(root) as db:
        keep = _new(db, "keep")
        _upsert(keep, [1])
        keep.flush()
        with pytest.raises(vecdb.InvalidArgument):
            db.restore(src, "r")
        assert sorted(p.name for p in (root / "collections").iterdir()) == ["keep"]
        assert db.list_collections() == ["keep"]
        assert_state(db.get_collection("keep"), _model([1]), DIM)
    assert sorted(p.name for p in work.iterdir()) == made        # nothing written beside the source
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "work"]
    assert not os.path.exists("/tmp/vecdb-evil-absolute")
    assert not (tmp_path / "evil-dotdot").exists() and not (root / "evil-inside").exists()


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_restore_accepts_the_genuine_snapshot(tmp_path, good, form):
    src = good if form == "dir" else _tar_of(good, tmp_path / "ok.tar")
    with vecdb.connect(tmp_path / "db") as db:
        assert_state(db.restore(src, "ok"), GOOD_MODEL, DIM)
        assert_state(db.restore(src, "ok2"), GOOD_MODEL, DIM)       # a source restores many times
        with pytest.raises(vecdb.AlreadyExists):
            db.restore(src, "ok")
        with pytest.raises(vecdb.InvalidArgument):
            db.restore(src, "../escape")
    with vecdb.connect(tmp_path / "db") as db:
        assert db.list_collections() == ["ok", "ok2"]
        assert_state(db.get_collection("ok"), GOOD_MODEL, DIM)


# ---- time travel and version garbage collection --------------------------------------------------

def test_time_travel_shows_old_states_read_only(tmp_path):
    with vecdb.connect(tmp_path / "db", keep_versions=50) as db:
        col = _new(db)
        _upsert(col, range(10))
        v1 = col.flush()
        _upsert(col, range(5, 15), range(105, 115))       # replaces 5..9
        v2 = col.flush()
        col.delete(list(range(0, 4)))
        v3 = col.flush()
        assert v1 < v2 < v3
        listed = {d["version"]: d for d in col.list_versions()}
        assert {v1, v2, v3} <= set(listed)
        assert (listed[v1]["rows"], listed[v2]["rows"], listed[v3]["rows"]) == (10, 15, 11)
        assert all({"version", "created_at", "rows", "segments"} <= set(d) for d in listed.values())
        m1 = _model(range(10))
        m2 = {**m1, **_model(range(5, 15), range(105, 115))}
        m3 = {i: v for i, v in m2.items() if i >= 4}
        for v, m in ((v1, m1), (v2, m2), (v3, m3)):
            with col.at_version(v) as view:
                assert view.read_only and view.version == v
                assert_state(view, m, DIM)
                for write in (lambda: _upsert(view, [99]), lambda: view.delete([5]),
                              lambda: view.delete(filter="n > 0"), view.flush, view.compact):
                    with pytest.raises(vecdb.Unavailable):
                        write()
                assert_state(view, m, DIM)                  # the refused writes changed nothing
        assert_state(col, m3, DIM)
        with pytest.raises(vecdb.VersionNotFound):
            col.at_version(10_000)


def _segment_files(db_path: Path, name="c") -> set[str]:
    return {p.name for p in (db_path / "collections" / name / "segments").iterdir()}


def _manifest_files(db_path: Path, version: int, name="c") -> set[str]:
    body = _manifest_body((db_path / "collections" / name / "manifest" / f"v{version:08d}.json").read_bytes())
    return {s["file"] for s in body["segments"]} | {s["deletes"] for s in body["segments"] if s["deletes"]}


def test_old_versions_are_garbage_collected_beyond_keep_versions(tmp_path):
    path = tmp_path / "db"
    with vecdb.connect(path, keep_versions=3, auto_compact=False) as db:
        col = _new(db)
        versions = []
        for i in range(8):
            _upsert(col, [i])
            if i % 3 == 2:
                col.delete([i - 1])
            versions.append(col.flush())
        col.compact()
        live = [d["version"] for d in col.list_versions()]
        assert len(live) == 3 and live == sorted(live) and live[-1] == col.version
        for v in versions[:4]:
            with pytest.raises(vecdb.VersionNotFound):
                col.at_version(v)
        # nothing on disk but the files the kept versions name
        assert _segment_files(path) == set().union(*(_manifest_files(path, v) for v in live))
    with vecdb.connect(path, keep_versions=1) as db:     # reopening applies the tighter policy
        col = db.get_collection("c")
        assert [d["version"] for d in col.list_versions()] == [col.version]
        assert _segment_files(path) == _manifest_files(path, col.version)


def test_pinned_view_keeps_its_version_and_files(tmp_path):
    path = tmp_path / "db"
    with vecdb.connect(path, keep_versions=2) as db:
        col = _new(db)
        _upsert(col, range(10))
        v = col.flush()
        view = col.at_version(v)
        files = _manifest_files(path, v)
        for i in range(6):                               # push v far past keep_versions ...
            _upsert(col, range(10), range(100 * (i + 1), 100 * (i + 1) + 10))
            col.delete([i])
            col.flush()
        col.compact()                                    # ... and rewrite every segment
        assert v not in [d["version"] for d in col.list_versions()][-2:]
        assert v in [d["version"] for d in col.list_versions()]
        assert files <= _segment_files(path)             # still on disk
        assert_state(view, _model(range(10)), DIM)
        with col.at_version(v) as again:                 # and still openable
            assert_state(again, _model(range(10)), DIM)
        view.close()
        _upsert(col, [50])
        col.flush()                                      # the next GC may reclaim it now
        assert v not in [d["version"] for d in col.list_versions()]
        assert not files & _segment_files(path)
        with pytest.raises(vecdb.VersionNotFound):
            col.at_version(v)
