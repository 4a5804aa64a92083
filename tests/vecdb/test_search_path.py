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


# ---- the plan names the path ----------------------------------------------------------------

def test_a_step_the_plan_did_not_name_is_an_error():
    from vecdb.errors import Internal
    from vecdb.index.planner import Strategy, plan_segment
    from vecdb.search import check_path
    plan = plan_segment(1000, 1000, 10, None, False)
    check_path(plan, [Strategy.MASK_SCAN])
    with pytest.raises(Internal, match="gpu_scan"):
        check_path(plan, [Strategy.GPU_SCAN])


@pytest.fixture
def hnsw_collection(tmp_path, monkeypatch):
    """A sealed HNSW segment the planner walks (small test data would otherwise be scanned)."""
    from vecdb.index import planner
    monkeypatch.setattr(planner, "EXACT_MAX_FLOATS", 50)
    planner._cached_plan.cache_clear()
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 8)).astype(np.float32)
    db = vecdb.connect(tmp_path / "db")
    col = db.create_collection("c", dim=8, metric="l2", schema={"b": "int64"},
                               index={"type": "hnsw", "m": 8, "ef_construction": 40})
    col.upsert(ids=list(range(4000)), vectors=X, payloads=[{"b": i % 100} for i in range(4000)])
    col.flush()
    assert col.wait_for_indexes(timeout=120)
    col.upsert(ids=[10_000], vectors=X[:1], payloads=[{"b": 0}])     # and a memtable part
    yield col, X
    db.close()
    planner._cached_plan.cache_clear()


@pytest.mark.parametrize("filter,params", [
    (None, {}), ("b < 50", {}), ("b < 20", {}), ("b < 5", {}), ("b < 1", {}), ("b >= 100", {}),
    ("b < 50", {"ef": 8}), ("b < 20", {"filter_widen": False}),
    ("b < 3", {"filter_widen": False, "exact_fallback": False}),
])
def test_explain_shows_the_path_taken(hnsw_collection, filter, params):
    """Every step that ran is one the plan named, the strategy ran first, the planner's
    cost estimate and the time taken are reported, and min(k, matches) hits come back."""
    col, X = hnsw_collection
    q = np.random.default_rng(4).normal(size=(6, 8)).astype(np.float32)
    hits, plan = col.search(q, k=10, filter=filter, params=params, explain=True)
    assert plan[0]["part"].startswith("segment") and plan[1]["part"] == "memtable"
    for p in plan:
        assert set(p["ran"]) <= set(p["steps"]) and p["ran"][0] == p["strategy"]
        assert p["est_cost"] >= 0 and p["ms"] >= 0
    bound = {None: 100, "b < 50": 50, "b < 20": 20, "b < 5": 5, "b < 3": 3, "b < 1": 1, "b >= 100": 0}[filter]
    matches = 40 * bound + (bound > 0)             # segment rows with b < bound, the memtable row (b 0)
    if bound == 0:
        assert [p["ran"] for p in plan] == [["skip"], ["skip"]]
    if params.get("exact_fallback", True):
        assert all(len(row) == min(10, matches) for row in hits)


def test_filtered_walks_record_their_per_query_steps(hnsw_collection):
    """Under an allow-list walk the index records which walks it chose (post-filter, two-hop,
    filtered walk, scan) and the exact fallback when it fires."""
    col, X = hnsw_collection
    q = X[:20] + 0.01
    seen = set()
    for f in ("b < 50", "b < 20", "b < 8", "b < 3"):
        _, plan = col.search(q, k=10, filter=f, explain=True)
        if plan[0]["strategy"] == "allow_list_walk":
            seen |= set(plan[0]["ran"][1:])
    assert seen & {"post_filter_walk", "two_hop_walk", "filtered_walk", "index_scan"}


def test_an_index_running_an_unnamed_step_fails_the_search(hnsw_collection, monkeypatch):
    """The check is live: an index that takes a path its plan did not name fails the search."""
    from vecdb.errors import Internal
    from vecdb.index.hnsw import HNSWFlatIndex
    from vecdb.index.planner import Strategy
    col, X = hnsw_collection
    real = HNSWFlatIndex._search

    def rogue(self, q, k, allowed, count, p, ran):
        ran.append(Strategy.GPU_SCAN)
        return real(self, q, k, allowed, count, p, ran)
    monkeypatch.setattr(HNSWFlatIndex, "_search", rogue)
    with pytest.raises(Internal, match="did not name"):
        col.search(X[:2], k=5)


def test_search_state_lives_outside_storage_and_goes_with_the_segment(tmp_path):
    """Filter masks, compact copies and norms are search-side state keyed by segment: a
    segment keeps none of it, and it is dropped once compaction retires the segment."""
    import gc
    from vecdb.index import state
    X = np.random.default_rng(8).normal(size=(300, 4)).astype(np.float32)
    with vecdb.connect(tmp_path) as db:
        col = db.create_collection("c", dim=4, metric="l2", schema={"b": "int64"}, index={"type": "flat"})
        for lo in (0, 150):
            col.upsert(ids=list(range(lo, lo + 150)), vectors=X[lo:lo + 150],
                       payloads=[{"b": i % 10} for i in range(lo, lo + 150)])
            col.flush()
        before = col.search(X[:3], k=5, filter="b < 2")
        col.search(X[:3], k=5)
        segs = list(col._store.view().segments)
        assert len(segs) == 2 and all(state.peek(s) is not None for s in segs)
        assert not any(hasattr(s, name) for s in segs for name in ("_filter_masks", "_subsets", "_norms", "_device"))
        gone = [__import__("weakref").ref(s) for s in segs]
        del segs
        col.compact()
        gc.collect()
        assert all(r() is None for r in gone)           # the retired segments and their state
        after = col.search(X[:3], k=5, filter="b < 2")
        assert [[h.id for h in r] for r in after] == [[h.id for h in r] for r in before]
