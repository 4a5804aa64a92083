"""One suite, two backends: the embedded Collection and a remote collection through a live
server answer the same calls with the same ids, scores (1e-5), payloads and error classes."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

import vecdb
from tests.server.conftest import unique

SCHEMA = {"year": "int64", "tag": "string", "score": "float64", "ok": "bool", "at": "timestamp",
          "tags": "list<string>", "nums": "list<int64>"}
BIG = (1 << 62) + 12345          # an int64 a float64 would round
WHEN = dt.datetime(2021, 3, 4, 5, 6, 7, 891011, tzinfo=dt.timezone.utc)


def _fill(db, metric="cosine", n=40, seed=0, id_type="string"):
    rng = np.random.default_rng(seed)
    col = db.create_collection(unique(), dim=8, metric=metric, schema=SCHEMA)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    ids = [f"r{i}" for i in range(n)] if id_type == "string" else list(range(n))
    payloads = [{"year": 2000 + i % 25, "tag": "xyz"[i % 3], "score": i / 7, "ok": i % 2 == 0,
                 "tags": ["p", str(i)], "nums": [i, BIG]} for i in range(n)]
    payloads[0] = {"year": BIG, "at": WHEN}
    payloads[1] = None
    assert col.upsert(ids, X, payloads) == n
    return col, X, ids


def _snapshot(col, X):
    """Everything a reader can see, for comparing two backends."""
    out = {"count": col.count(), "count_f": col.count(filter="year >= 2010 AND tag != 'x'")}
    out["get"] = [(r.id, r.vector.tolist(), r.payload) for r in col.get(["r0", "r1", "r5", "nope"])]
    hits = col.search(X[:5], k=7, filter="ok = true OR year > 2100", output_fields=["year", "at", "tags"])
    out["search"] = [[(h.id, h.score, h.payload) for h in row] for row in hits]
    return out


def test_acceptance_surface(backend):
    col, X, ids = _fill(backend)
    assert col.count() == 40
    assert col.count(filter="year >= 2020") == sum(1 for i in range(2, 40) if 2000 + i % 25 >= 2020) + 1
    (r0,) = col.get(["r0"])
    assert r0.payload == {"year": BIG, "at": WHEN}                    # int64 exact, timestamp exact
    assert isinstance(r0.payload["year"], int) and r0.payload["at"] == WHEN
    assert col.get(["r1"])[0].payload == {}
    np.testing.assert_allclose(r0.vector, X[0] / np.linalg.norm(X[0]), rtol=1e-6)
    hits = col.search(X[:3], k=5, filter="tag IN ('x', 'y')", output_fields=["tag"])
    assert len(hits) == 3 and all(len(row) == 5 for row in hits)
    assert all(set(h.payload) <= {"tag"} and h.payload.get("tag") in ("x", "y") for row in hits for h in row)
    assert isinstance(hits[0][0], vecdb.Hit)
    assert col.delete(ids=["r2", "r3", "gone"]) == 2 and col.count() == 38
    n_z = col.count(filter="tag = 'z'")
    assert col.delete(filter="tag = 'z'") == n_z and col.count(filter="tag = 'z'") == 0
    assert col.name in backend.list_collections()
    assert backend.get_collection(col.name).dim == 8
    backend.drop_collection(col.name)
    assert col.name not in backend.list_collections()
    with pytest.raises(vecdb.CollectionNotFound):
        backend.get_collection(col.name)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_search_best_first_and_explain(backend, metric):
    col, X, _ = _fill(backend, metric=metric, id_type="int64")
    hits, plan = col.search(X[:4], k=6, explain=True)
    for qi, row in enumerate(hits):
        scores = [h.score for h in row]
        assert scores == sorted(scores, reverse=metric != "l2")
        if metric != "dot":
            assert row[0].id == qi
    assert plan and plan[0]["strategy"] in ("exact", "index", "skip")
    col.flush()
    assert [[h.id for h in row] for row in col.search(X[:4], k=6)] == [[h.id for h in row] for row in hits]


def test_arrow_upsert_and_versions(backend):
    col = backend.create_collection(unique(), dim=3, metric="l2", schema={"n": "int64"})
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                      "vector": pa.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], pa.list_(pa.float32())),
                      "n": pa.array([10, None, BIG], pa.int64())})
    assert col.upsert(table) == 3
    v1 = col.flush()
    col.upsert([4], np.ones((1, 3), np.float32), [{"n": 4}])
    col.flush()
    assert col.count() == 4
    assert v1 in [v["version"] for v in col.list_versions()]
    with col.at_version(v1) as old:
        assert old.count() == 3
        assert [h.id for h in old.search(np.ones((1, 3), np.float32), k=10)[0]] == [1, 2, 3] or \
            {h.id for h in old.search(np.ones((1, 3), np.float32), k=10)[0]} == {1, 2, 3}
        with pytest.raises(vecdb.Unavailable):
            old.upsert([9], np.ones((1, 3)))
    assert col.get([3])[0].payload == {"n": BIG}
    assert col.stats()["rows"] == 4


BAD_CALLS = [
    # (name, call, error class, a word the message must hold)
    ("wrong dim", lambda c: c.upsert(["x"], np.ones((1, 5), np.float32)), vecdb.DimensionMismatch, "dim"),
    ("NaN", lambda c: c.upsert(["x"], np.array([[np.nan] + [0] * 7], np.float32)), vecdb.InvalidVector, "NaN"),
    ("zero vector", lambda c: c.upsert(["x"], np.zeros((1, 8), np.float32)), vecdb.InvalidVector, "zero"),
    ("text vector", lambda c: c.upsert(["x"], [["a"] * 8]), vecdb.InvalidVector, "numeric"),
    ("int id", lambda c: c.upsert([1], np.ones((1, 8), np.float32)), vecdb.InvalidId, "string"),
    ("repeated id", lambda c: c.upsert(["x", "x"], np.ones((2, 8), np.float32)), vecdb.InvalidId, "repeat"),
    ("unknown field", lambda c: c.upsert(["x"], np.ones((1, 8)), [{"nope": 1}]), vecdb.SchemaError, "nope"),
    ("wrong type", lambda c: c.upsert(["x"], np.ones((1, 8)), [{"year": "old"}]), vecdb.SchemaError, "year"),
    ("payload count", lambda c: c.upsert(["x"], np.ones((1, 8)), [{}, {}]), vecdb.SchemaError, "payloads"),
    ("empty batch", lambda c: c.upsert([], np.ones((0, 8), np.float32)), vecdb.InvalidArgument, "empty"),
    ("bad filter", lambda c: c.count(filter="year >"), vecdb.FilterError, "position 6"),
    ("unknown filter field", lambda c: c.search(np.ones((1, 8)), k=3, filter="nope = 1"), vecdb.FilterError, "nope"),
    ("k=0", lambda c: c.search(np.ones((1, 8)), k=0), vecdb.InvalidArgument, "k"),
    ("query dim", lambda c: c.search(np.ones((1, 3)), k=3), vecdb.DimensionMismatch, "dim"),
    ("NaN query", lambda c: c.search(np.full((1, 8), np.nan), k=3), vecdb.InvalidVector, "NaN"),
    ("unknown output field", lambda c: c.search(np.ones((1, 8)), k=3, output_fields=["nope"]), vecdb.SchemaError, "nope"),
    ("bad search param", lambda c: c.search(np.ones((1, 8)), k=3, params={"bogus": 1}), vecdb.InvalidArgument, "bogus"),
    ("delete neither", lambda c: c.delete(), vecdb.InvalidArgument, "exactly one"),
    ("filter not str", lambda c: c.count(filter=3), vecdb.InvalidArgument, "filter"),
    ("unknown version", lambda c: c.at_version(999_999).count(), vecdb.VersionNotFound, "999999"),
]


@pytest.mark.parametrize("name,call,error,word", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_input_changes_nothing(backend, name, call, error, word):
    col, X, _ = _fill(backend, n=10)
    before = (col.count(), col.version)
    with pytest.raises(error) as info:
        call(col)
    assert type(info.value) is error or (error is vecdb.InvalidArgument and isinstance(info.value, error))
    assert word.lower() in str(info.value).lower(), str(info.value)
    assert (col.count(), col.version) == before
    assert col.search(X[:1], k=1)[0][0].id == "r0"       # still serving


def test_collection_errors(backend):
    name = unique()
    backend.create_collection(name, dim=4)
    with pytest.raises(vecdb.AlreadyExists):
        backend.create_collection(name, dim=4)
    with pytest.raises(vecdb.CollectionNotFound):
        backend.drop_collection(unique("missing"))
    with pytest.raises(vecdb.InvalidArgument, match="metric"):
        backend.create_collection(unique(), dim=4, metric="hamming")
    with pytest.raises(vecdb.InvalidArgument, match="name"):
        backend.create_collection("bad/name", dim=4)
    with pytest.raises(vecdb.SchemaError):
        backend.create_collection(unique(), dim=4, schema={"f": "complex"})


def test_same_answers_on_both_backends(tmp_path, server):
    """Run one scenario on each backend and compare: ids identical, scores within 1e-5."""
    from vecdb_client import Client
    results = []
    with vecdb.connect(tmp_path / "emb") as db:
        col, X, _ = _fill(db, n=60, seed=3)
        results.append(_snapshot(col, X))
    with Client(server.address) as c:
        col, X, _ = _fill(c, n=60, seed=3)
        results.append(_snapshot(col, X))
    emb, rem = results
    assert emb["count"] == rem["count"] and emb["count_f"] == rem["count_f"]
    assert emb["get"] == rem["get"]
    assert len(emb["search"]) == len(rem["search"]) == 5
    for e_row, r_row in zip(emb["search"], rem["search"]):
        assert [h[0] for h in e_row] == [h[0] for h in r_row]
        np.testing.assert_allclose([h[1] for h in e_row], [h[1] for h in r_row], atol=1e-5)
        assert [h[2] for h in e_row] == [h[2] for h in r_row]
