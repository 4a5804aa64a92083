"""verify_collection / verify_database / verify_path: read everything, change nothing."""
from __future__ import annotations

import numpy as np

import vecdb
from vecdb.storage.verify import verify_path

DIM = 4


def _db(path):
    with vecdb.connect(path, auto_compact=False) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", id_type="int64", index={"type": "flat"})
        col.upsert(list(range(20)), np.ones((20, DIM), np.float32))
        col.flush()
        col.delete([1, 2])
        col.flush()
        col.upsert([100, 101], np.zeros((2, DIM), np.float32))
    return path / "collections" / "c"


def test_clean_database_and_collection_verify_ok_with_counts(tmp_path):
    cdir = _db(tmp_path / "db")
    for target in (tmp_path / "db", cdir):
        r = verify_path(target)
        assert r.ok, r.problems
        assert r.counts["segments"] == 1 and r.counts["rows"] == 18 and r.counts["wal_records"] == 1
        assert r.counts["files_checked"] == 2        # the segment and its delete bitmap
        assert r.lines()[0].startswith(f"{target}: OK")
    assert verify_path(tmp_path / "db").as_dict()["collections"]["c"]["ok"]


def test_torn_wal_tail_is_a_warning_and_verify_changes_nothing(tmp_path):
    cdir = _db(tmp_path / "db")
    [wal] = sorted((cdir / "wal").glob("*.log"))
    with open(wal, "ab") as f:
        f.write(b"\x10\x00\x00\x00torn")
    before = {p: p.read_bytes() for p in cdir.rglob("*") if p.is_file()}
    r = verify_path(tmp_path / "db")
    assert r.ok and any("torn record" in w for w in r.warnings)
    assert {p: p.read_bytes() for p in cdir.rglob("*") if p.is_file()} == before


def test_not_a_database_is_a_problem(tmp_path):
    r = verify_path(tmp_path)
    assert not r.ok and "no vecdb database" in r.problems[0]
    assert "DAMAGED" in r.lines()[0]


def test_verify_database_holds_each_collection_while_checking_it(tmp_path):
    import contextlib
    _db(tmp_path / "db")
    held = []

    @contextlib.contextmanager
    def hold(name):
        held.append(name)
        yield
    assert verify_path(tmp_path / "db").ok
    from vecdb.storage.verify import verify_database
    assert verify_database(tmp_path / "db", hold).ok and held == ["c"]
