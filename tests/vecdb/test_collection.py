"""The embedded API: the acceptance surface, bad input, read-your-writes."""
from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pyarrow as pa
import pytest

import vecdb


@pytest.fixture
def db(tmp_path):
    with vecdb.connect(tmp_path / "db") as d:
        yield d


@pytest.fixture
def col(db):
    c = db.create_collection("docs", dim=4, metric="cosine",
                             schema={"year": "int64", "tag": "string", "score": "float64",
                                     "ok": "bool", "at": "timestamp", "tags": "list<string>"})
    X = np.eye(4, dtype=np.float32) + 0.1
    c.upsert(ids=["a", "b", "c", "d"], vectors=X,
             payloads=[{"year": 2019, "tag": "x", "tags": ["p", "q"]}, {"year": 2020, "tag": "y"},
                       {"year": 2021, "tag": "x", "ok": True}, None])
    return c


def test_acceptance_surface(db, col):
    assert col.count() == 4
    assert col.count(filter="year >= 2020") == 2
    (a,) = col.get(["a"])
    assert a.id == "a" and a.payload["tags"] == ["p", "q"]
    hits = col.search(np.eye(4, dtype=np.float32)[:2], k=10, filter="year >= 2020 AND tag IN ('x', 'y')",
                      output_fields=["tag"])
    assert [h.id for h in hits[0]][:2] == ["c", "b"] or {h.id for h in hits[0]} == {"b", "c"}
    assert all(set(h.payload) <= {"tag"} for h in hits[0])
    assert col.delete(ids=["a"]) == 1 and col.count() == 3
    assert col.delete(filter="tag = 'x'") == 1 and col.count() == 2
    col.flush(); col.compact()
    assert db.list_collections() == ["docs"]
    assert db.get_collection("docs") is col
    db.drop_collection("docs")
    assert db.list_collections() == []
    with pytest.raises(vecdb.CollectionNotFound):
        db.get_collection("docs")
    with pytest.raises(KeyError):   # CollectionNotFound is also a KeyError
        db.get_collection("docs")


def test_hits_best_first_for_each_metric(db):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 7)).astype(np.float32)
    for metric in ("cosine", "dot", "l2"):
        c = db.create_collection(metric, dim=7, metric=metric)
        c.upsert(ids=list(range(50)), vectors=X)
        hits = c.search(X[:3], k=5)
        for qi, row in enumerate(hits):
            scores = [h.score for h in row]
            assert scores == sorted(scores, reverse=metric != "l2")
            if metric != "dot":      # under dot, a longer vector can beat the query itself
                assert row[0].id == qi


def _unchanged(col, before):
    assert col.count() == before[0] and col.version == before[1]


BAD_UPSERTS = [
    (dict(ids=["x"], vectors=np.ones((1, 5), np.float32)), vecdb.DimensionMismatch),
    (dict(ids=["x"], vectors=np.array([[np.nan, 0, 0, 1]], np.float32)), vecdb.InvalidVector),
    (dict(ids=["x"], vectors=np.array([[np.inf, 0, 0, 1]], np.float32)), vecdb.InvalidVector),
    (dict(ids=["x"], vectors=np.array([[1e39, 0, 0, 1]])), vecdb.InvalidVector),
    (dict(ids=["x"], vectors=np.zeros((1, 4), np.float32)), vecdb.InvalidVector),   # cosine: no direction
    (dict(ids=["x"], vectors=[["a", "b", "c", "d"]]), vecdb.InvalidVector),
    (dict(ids=[1], vectors=np.ones((1, 4), np.float32)), vecdb.InvalidId),          # collection has string ids
    (dict(ids=["x", "x"], vectors=np.ones((2, 4), np.float32)), vecdb.InvalidId),
    (dict(ids=[""], vectors=np.ones((1, 4), np.float32)), vecdb.InvalidId),
    (dict(ids=["x", "y"], vectors=np.ones((1, 4), np.float32)), vecdb.InvalidArgument),
    (dict(ids=["x"], vectors=np.ones((1, 4), np.float32), payloads=[{"nope": 1}]), vecdb.SchemaError),
    (dict(ids=["x"], vectors=np.ones((1, 4), np.float32), payloads=[{"year": "2020"}]), vecdb.SchemaError),
    (dict(ids=["x"], vectors=np.ones((1, 4), np.float32), payloads=[{"year": 1.5}]), vecdb.SchemaError),
    (dict(ids=["x"], vectors=np.ones((1, 4), np.float32), payloads=[{"year": True}]), vecdb.SchemaError),
    (dict(ids=["x"], vectors=np.ones((1, 4), np.float32), payloads=[{"ok": 1}]), vecdb.SchemaError),
    (dict(ids=["x"], vectors=np.ones((1, 4), np.float32), payloads=[{"tags": "p"}]), vecdb.SchemaError),
    (dict(ids=["x"], vectors=np.ones((1, 4), np.float32), payloads=[{"at": "yesterday"}]), vecdb.SchemaError),
    (dict(ids=["x"], vectors=np.ones((1, 4), np.float32), payloads=[{"year": 1}, {"year": 2}]), vecdb.SchemaError),
    (dict(ids=[], vectors=np.ones((0, 4), np.float32)), vecdb.InvalidArgument),
    (dict(ids="x", vectors=np.ones((1, 4), np.float32)), vecdb.InvalidId),
]


@pytest.mark.parametrize("kwargs,error", BAD_UPSERTS)
def test_bad_upsert_raises_typed_error_and_changes_nothing(col, kwargs, error):
    before = (col.count(), col.version)
    with pytest.raises(error) as info:
        col.upsert(**kwargs)
    assert isinstance(info.value, vecdb.InvalidArgument) and isinstance(info.value, ValueError)
    assert str(info.value)
    _unchanged(col, before)


@pytest.mark.parametrize("call,error", [
    (lambda c: c.search(np.ones((1, 3), np.float32)), vecdb.DimensionMismatch),
    (lambda c: c.search(np.ones((1, 4), np.float32), k=0), vecdb.InvalidArgument),
    (lambda c: c.search(np.ones((1, 4), np.float32), k=-3), vecdb.InvalidArgument),
    (lambda c: c.search(np.ones((1, 4), np.float32), k=1.5), vecdb.InvalidArgument),
    (lambda c: c.search(np.ones((1, 4), np.float32), filter="year >>= 1"), vecdb.FilterError),
    (lambda c: c.search(np.ones((1, 4), np.float32), filter="yeer = 1"), vecdb.FilterError),
    (lambda c: c.search(np.ones((1, 4), np.float32), filter="year = 'x'"), vecdb.FilterError),
    (lambda c: c.search(np.ones((1, 4), np.float32), output_fields=["nope"]), vecdb.SchemaError),
    (lambda c: c.search(np.full((1, 4), np.nan, np.float32)), vecdb.InvalidVector),
    (lambda c: c.count(filter="tag LIKE '%x'"), vecdb.FilterError),
    (lambda c: c.delete(filter="(year = 1"), vecdb.FilterError),
    (lambda c: c.delete(), vecdb.InvalidArgument),
    (lambda c: c.delete(ids=["a"], filter="year = 1"), vecdb.InvalidArgument),
    (lambda c: c.delete(ids=[1]), vecdb.InvalidId),
    (lambda c: c.get([1]), vecdb.InvalidId),
])
def test_bad_reads_and_deletes(col, call, error):
    before = (col.count(), col.version)
    with pytest.raises(error):
        call(col)
    _unchanged(col, before)


def test_filter_error_carries_position(col):
    with pytest.raises(vecdb.FilterError) as info:
        col.count(filter="year >= ")
    assert info.value.position == 8 and "position 8" in str(info.value)


@pytest.mark.parametrize("kwargs", [
    dict(dim=0), dict(dim=-1), dict(dim=10**9), dict(dim=2.5), dict(dim=True),
    dict(dim=4, metric="hamming"), dict(dim=4, id_type="uuid"),
    dict(dim=4, schema={"id": "string"}), dict(dim=4, schema={"x": "decimal"}),
    dict(dim=4, schema={"bad name": "string"}),
])
def test_bad_create_collection(db, kwargs):
    with pytest.raises(vecdb.InvalidArgument):
        db.create_collection("c", **kwargs)
    assert db.list_collections() == []


def test_names_and_existence(db):
    db.create_collection("c", dim=2)
    with pytest.raises(vecdb.AlreadyExists):
        db.create_collection("c", dim=2)
    for bad in ("", "../x", "a/b", ".hidden", "x" * 200, None):
        with pytest.raises(vecdb.InvalidArgument):
            db.create_collection(bad, dim=2)
    with pytest.raises(vecdb.CollectionNotFound):
        db.drop_collection("nope")


def test_int_ids_and_id_type_fixed_by_first_write(db):
    c = db.create_collection("ints", dim=2, metric="l2")
    assert c.id_type is None
    c.upsert(ids=[2**62, -5], vectors=[[0, 0], [1, 1]])
    assert c.id_type == "int64"
    with pytest.raises(vecdb.InvalidId):
        c.upsert(ids=["a"], vectors=[[0, 0]])
    with pytest.raises(vecdb.InvalidId):
        c.upsert(ids=[2**63], vectors=[[0, 0]])
    hits = c.search([[0.1, 0.1]], k=5)[0]
    assert [h.id for h in hits] == [2**62, -5] and hits[0].score == pytest.approx(0.02, rel=1e-5)
    assert c.count(filter="id = -5") == 1
    d = db.create_collection("strs", dim=2, id_type="string")
    with pytest.raises(vecdb.InvalidId):
        d.upsert(ids=[1], vectors=[[0, 1]])


def test_upsert_arrow_table_and_types(db):
    c = db.create_collection("t", dim=3, metric="dot", schema={"n": "int64", "at": "timestamp",
                                                               "tags": "list<int64>"})
    table = pa.table({"id": ["a", "b"], "vector": [[1.0, 0, 0], [0, 1.0, 0]], "n": [1, None],
                      "tags": [[1, 2], []]})
    assert c.upsert(table) == 2
    c.upsert(ids=["c"], vectors=[[0, 0, 1]], payloads=[{"at": dt.datetime(2024, 5, 1, 12)}])
    (a, cc) = c.get(["a", "c"])
    assert a.payload == {"n": 1, "tags": [1, 2]}
    assert cc.payload["at"] == dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    assert c.count(filter="at >= TIMESTAMP '2024-01-01T00:00:00Z'") == 1
    assert c.count(filter="tags CONTAINS 2") == 1
    with pytest.raises(vecdb.SchemaError):
        c.upsert(pa.table({"id": ["z"], "vector": [[1.0, 0, 0]], "zzz": [1]}))
    with pytest.raises(vecdb.DimensionMismatch):
        c.upsert(pa.table({"id": ["z"], "vector": [[1.0, 0]]}))


def test_caller_arrays_not_mutated(db):
    c = db.create_collection("m", dim=3, metric="cosine")
    X = np.array([[3.0, 4.0, 0.0]], dtype=np.float32)
    before = X.copy()
    c.upsert(ids=["a"], vectors=X)
    c.search(X, k=1)
    np.testing.assert_array_equal(X, before)


def test_empty_and_all_filtered(col, db):
    e = db.create_collection("empty", dim=4)
    assert e.search(np.ones((2, 4), np.float32), k=3) == [[], []]
    assert e.count() == 0 and e.get(["a"]) == []
    assert col.search(np.ones((1, 4), np.float32), k=3, filter="year > 3000") == [[]]
    assert len(col.search(np.ones((1, 4), np.float32), k=100)[0]) == 4


def test_read_your_writes_across_threads(db):
    c = db.create_collection("ryw", dim=2, metric="l2")
    errors = []

    def writer(t):
        for i in range(30):
            key = f"{t}-{i}"
            c.upsert(ids=[key], vectors=[[t, i]])
            if not c.get([key]) or c.search([[t, i]], k=1)[0][0].id != key:
                errors.append(key)
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and c.count() == 120


def test_closed_database_raises(tmp_path):
    db = vecdb.connect(tmp_path / "db")
    c = db.create_collection("c", dim=2)
    db.close()
    db.close()
    with pytest.raises(vecdb.Unavailable):
        c.upsert(ids=["a"], vectors=[[1, 0]])
    with pytest.raises(vecdb.Unavailable):
        c.search([[1, 0]])
    with pytest.raises(vecdb.Unavailable):
        db.get_collection("c")


def test_bad_connect_options(tmp_path):
    with pytest.raises(vecdb.InvalidArgument):
        vecdb.connect(tmp_path, durability="sometimes")
    with pytest.raises(vecdb.InvalidArgument):
        vecdb.connect(tmp_path, seal_rows=0)


@pytest.mark.parametrize("dim", [3, 97])
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_exact_search_matches_numpy_across_segments_and_memtable(tmp_path, dim, metric):
    from tests.invariants import model_scores
    rng = np.random.default_rng(dim)
    X = rng.normal(size=(300, dim)).astype(np.float32)
    Q = rng.normal(size=(4, dim)).astype(np.float32)
    with vecdb.connect(tmp_path) as db:
        col = db.create_collection("c", dim=dim, metric=metric, schema={"even": "bool"})
        col.upsert(ids=list(range(200)), vectors=X[:200], payloads=[{"even": i % 2 == 0} for i in range(200)])
        col.flush()                                       # a sealed segment ...
        col.upsert(ids=list(range(200, 300)), vectors=X[200:], payloads=[{"even": i % 2 == 0} for i in range(200, 300)])
        truth = model_scores(X, Q, metric)                # ... plus the memtable
        sign = -1.0 if metric == "l2" else 1.0
        for k, flt, rows in ((10, None, np.arange(300)), (500, None, np.arange(300)),
                             (7, "even = TRUE", np.arange(0, 300, 2))):
            hits = col.search(Q, k=k, filter=flt)
            for qi, row in enumerate(hits):
                order = rows[np.argsort(-truth[qi][rows], kind="stable")][:k]
                assert len(row) == min(k, len(rows))
                np.testing.assert_allclose([h.score for h in row], sign * truth[qi][order], rtol=1e-4, atol=1e-4)


def test_selective_filter_on_a_segment_with_deletes_is_exact(tmp_path):
    from tests.invariants import model_scores
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1000, 6)).astype(np.float32)
    with vecdb.connect(tmp_path) as db:
        col = db.create_collection("c", dim=6, metric="l2", schema={"b": "int64"})
        col.upsert(ids=list(range(1000)), vectors=X, payloads=[{"b": i % 10} for i in range(1000)])
        col.flush()
        for _ in range(2):                      # second round hits the cached compact copy
            col.delete(ids=list(range(0, 1000, 20)))
            rows = np.array([i for i in range(1000) if i % 10 == 3 and i % 20 != 0])
            q = rng.normal(size=(3, 6)).astype(np.float32)
            hits = col.search(q, k=15, filter="b = 3")
            truth = model_scores(X, q, "l2")
            for qi, row in enumerate(hits):
                order = rows[np.argsort(-truth[qi][rows], kind="stable")][:15]
                assert [h.id for h in row] == order.tolist()
        col.delete(ids=list(range(3, 1000, 10)))    # every match deleted
        assert col.search(q, k=5, filter="b = 3") == [[], [], []]


# ---- get_or_create_collection --------------------------------------------------------------

def test_get_or_create_collection(db):
    schema = {"a": "int64", "b": "string"}
    c = db.get_or_create_collection("g", 4, "dot", schema=schema, id_type="int64",
                                    index={"type": "flat"})
    assert db.list_collections() == ["g"] and c.schema == schema
    assert db.get_or_create_collection("g", 4, "dot") is c
    assert db.get_or_create_collection("g", 4, "dot", schema={"b": "string", "a": "int64"},
                                       id_type="int64", index={"type": "flat"}) is c
    for kwargs, named in [(dict(dim=5), "dim"), (dict(metric="l2"), "metric"),
                          (dict(schema={"a": "int64"}), "schema"), (dict(id_type="string"), "id_type"),
                          (dict(index={"type": "hnsw"}), "index")]:
        args = {"dim": 4, "metric": "dot", **kwargs}
        with pytest.raises(vecdb.InvalidArgument) as info:
            db.get_or_create_collection("g", args.pop("dim"), args.pop("metric"), **args)
        assert named in str(info.value) and "'g'" in str(info.value)
    with pytest.raises(vecdb.InvalidArgument):
        db.get_or_create_collection("h", 0)
    with pytest.raises(vecdb.InvalidArgument):
        db.get_or_create_collection("../h", 4)
    assert db.list_collections() == ["g"]


def test_get_or_create_is_race_safe(db):
    got, errors = [], []

    def call():
        try:
            got.append(db.get_or_create_collection("race", 3, schema={"x": "int64"}))
        except Exception as e:    # reported below
            errors.append(e)
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 8 and all(c is got[0] for c in got)


def test_get_or_create_on_a_read_only_database(tmp_path):
    with vecdb.connect(tmp_path / "ro") as d:
        d.create_collection("x", dim=2)
    with vecdb.connect(tmp_path / "ro", read_only=True) as d:
        assert d.get_or_create_collection("x", 2).dim == 2
        with pytest.raises(vecdb.Unavailable):
            d.get_or_create_collection("y", 2)


# ---- reads as of a version -----------------------------------------------------------------

def test_reads_as_of_a_version_match_at_version(db, col):
    col.flush()
    v = col.version
    q = np.eye(4, dtype=np.float32)[:2]
    col.upsert(ids=["e"], vectors=[[1, 1, 0, 0]], payloads=[{"year": 2030}])
    col.delete(ids=["a"])
    col.flush()
    with col.at_version(v) as past:
        assert col.count(version=v) == past.count() == 4
        assert col.count("year >= 2020", version=v) == past.count("year >= 2020") == 2
        assert col.get(["a", "e"], version=v) and [r.id for r in col.get(["a", "e"], version=v)] == ["a"]
        assert repr(col.get(["a"], version=v)) == repr(past.get(["a"]))
        assert col.search(q, k=3, version=v) == past.search(q, k=3)
        hits, plan = col.search(q, k=2, filter="tag = 'x'", explain=True, version=v)
        assert hits == past.search(q, k=2, filter="tag = 'x'") and plan
        assert [r.id for r in col.scroll(version=v)[0]] == ["a", "b", "c", "d"]
    assert col.count() == 4 and [r.id for r in col.get(["a", "e"])] == ["e"]
    from vecdb.storage.cleanup import _pins
    assert not any(n for (d, _), n in _pins.items() if d == str(col._store.dir))   # views closed


@pytest.mark.parametrize("version,error", [(0, vecdb.InvalidArgument), (-2, vecdb.InvalidArgument),
                                           ("1", vecdb.InvalidArgument), (True, vecdb.InvalidArgument),
                                           (1.0, vecdb.InvalidArgument), (10_000, vecdb.VersionNotFound)])
def test_bad_version(col, version, error):
    for call in (lambda: col.count(version=version), lambda: col.get(["a"], version=version),
                 lambda: col.search(np.ones(4, np.float32), version=version),
                 lambda: col.scroll(version=version), lambda: col.at_version(version)):
        with pytest.raises(error):
            call()
