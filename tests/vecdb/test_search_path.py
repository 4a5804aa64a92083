"""The search hot path: query validation, reused store views, hits gathered per part."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

import vecdb
from vecdb.errors import InvalidVector
from vecdb.rows import as_vectors


def _reference_as_vectors(arr: np.ndarray, metric: str, what: str = "vectors") -> np.ndarray:
    """What as_vectors promises, written plainly: the first non-finite row is reported before
    any all-zero row; cosine rows are x / |x| correctly rounded to float32."""
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InvalidVector(f"{what} row {bad} holds NaN or infinity (or overflows float32)")
    if metric == "cosine" and len(arr):
        norms = np.linalg.norm(arr.astype(np.float64), axis=1)
        if (norms == 0).any():
            raise InvalidVector(f"{what} row {int(np.flatnonzero(norms == 0)[0])} is all zeros: "
                                f"it has no direction for cosine")
        arr = (arr / norms[:, None]).astype(np.float32)
    return arr


def _outcome(f, *args):
    try:
        return f(*args)
    except InvalidVector as e:
        return str(e)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("rows", [1, 5])
def test_as_vectors_equals_the_reference(metric, rows):
    rng = np.random.default_rng(rows)
    cases = [rng.normal(size=(rows, 8)).astype(np.float32),
             rng.normal(size=(rows, 8)) * 1e30,           # squares overflow float32
             rng.normal(size=(rows, 8)) * 1e-30,          # squares underflow float32
             np.zeros((rows, 8), np.float32),
             np.arange(rows * 8, dtype=np.int64).reshape(rows, 8)[:, ::-1]]   # cast, copied
    for bad in (np.nan, np.inf, -np.inf, 1e39):
        x = rng.normal(size=(rows, 8))
        x[rows - 1, 3] = bad
        cases.append(x)
    if rows > 1:
        x = rng.normal(size=(rows, 8)).astype(np.float32)
        x[1] = 0                       # a zero row before a NaN row: NaN is reported first
        x[3, 0] = np.nan
        cases.append(x)
    for x in cases:
        before = np.array(x, copy=True)
        got = _outcome(as_vectors, x, 8, metric, "queries")
        want = _outcome(_reference_as_vectors, x, metric, "queries")
        np.testing.assert_array_equal(x, before)      # the caller's array is untouched
        if isinstance(want, str):
            assert got == want
        else:
            assert got.dtype == np.float32 and got.flags.c_contiguous
            np.testing.assert_allclose(got, want, rtol=2e-7, atol=0)


@pytest.mark.parametrize("dim", [8, 13, 384])
def test_a_query_normalises_alike_alone_and_in_any_batch(dim):
    X = np.random.default_rng(dim).normal(size=(50, dim)).astype(np.float32)
    batch = as_vectors(X, dim, "cosine")
    for i in (0, 7, 49):
        np.testing.assert_array_equal(as_vectors(X[i], dim, "cosine")[0], batch[i])
        np.testing.assert_array_equal(as_vectors(X[i:i + 3], dim, "cosine")[0], batch[i])


SCHEMA = {"year": "int64", "score": "float64", "ok": "bool", "tag": "string", "at": "timestamp",
          "tags": "list<string>", "nums": "list<int64>"}


def _payload(i: int) -> dict:
    p = {"year": 2000 + i, "score": i / 4, "ok": i % 2 == 0, "tag": f"t{i}",
         "at": dt.datetime(2020, 1, 1 + i % 28, tzinfo=dt.UTC), "tags": [f"x{i}"], "nums": [i, -i]}
    # every field is null on some rows (a different pattern per field)
    return {f: v for j, (f, v) in enumerate(p.items()) if (i + j) % 3}


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_hit_payloads_from_segments_and_memtable(tmp_path, metric):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    with vecdb.connect(tmp_path) as db:
        col = db.create_collection("c", dim=6, metric=metric, schema=SCHEMA)
        for lo, hi in ((0, 25), (25, 45)):     # two sealed segments ...
            col.upsert(ids=list(range(lo, hi)), vectors=X[lo:hi], payloads=[_payload(i) for i in range(lo, hi)])
            col.flush()
        col.upsert(ids=list(range(45, 60)), vectors=X[45:], payloads=[_payload(i) for i in range(45, 60)])
        col.delete(ids=[3, 30, 50])            # ... plus the memtable, with deletes everywhere
        alive = [i for i in range(60) if i not in (3, 30, 50)]
        stored = {r.id: r.payload for r in col.get(alive)}
        assert all(stored[i] == _payload(i) for i in alive)
        for queries in (X[7], X[:4], X[40:41]):
            for k, fields in ((5, None), (100, None), (10, []), (10, ["year", "tags", "score"])):
                hits = col.search(queries, k=k, output_fields=fields)
                if queries.ndim == 1:            # a single (dim,) query: one list of hits
                    hits = [hits]
                assert len(hits) == len(np.atleast_2d(queries))
                for row in hits:
                    assert len(row) == min(k, len(alive))
                    assert len({h.id for h in row}) == len(row) and {h.id for h in row} <= set(alive)
                    for h in row:
                        want = stored[h.id] if fields is None else {f: v for f, v in stored[h.id].items() if f in fields}
                        assert h.payload == want
                    assert len({id(h.payload) for h in row}) == len(row)   # each hit its own dict
        assert col.search(X[7], k=3, filter="year < 0") == []


def test_store_view_reused_until_a_write_and_still_a_snapshot(tmp_path):
    X = np.eye(4, dtype=np.float32) + 0.1
    with vecdb.connect(tmp_path) as db:
        col = db.create_collection("c", dim=4, metric="l2")
        store = col._store
        col.upsert(ids=["a", "b"], vectors=X[:2])
        v1 = store.view()
        assert store.view() is v1                       # nothing moved: the same snapshot
        assert v1.parts() == (v1.parts()[0],)           # immutable: shared by every reader
        assert {h.id for h in col.search(X[2], k=5)} == {"a", "b"}
        col.upsert(ids=["c"], vectors=X[2:3])
        v2 = store.view()
        assert v2 is not v1 and v2.seq > v1.seq
        assert [h.id for h in col.search(X[2], k=1)] == ["c"]
        col.delete(ids=["c"])
        assert store.view() is not v2
        assert {h.id for h in col.search(X[2], k=5)} == {"a", "b"}
        col.flush()
        v3 = store.view()
        assert v3 is not v1 and len(v3.segments) == 1 and v3.memtable.n == 0
        assert [len(p.vectors) for p in v1.parts()] == [2] and v1.parts()[0].alive is None
        col.delete(ids=["a"])                           # a delete in a sealed segment
        assert [h.id for h in col.search(X[0], k=5)] == ["b"]
        assert v3.parts()[0].alive is None              # the older view still sees "a"
        assert store.view().parts()[0].alive.tolist() == [False, True]
