"""Index lifecycle in the engine: background builds, exact until ready, reopen, compaction."""
from __future__ import annotations

import numpy as np
import pytest

import vecdb
from vecdb.index import planner


@pytest.fixture(autouse=True)
def small_segments_use_their_index(monkeypatch):
    """Test segments are small; below EXACT_MAX_FLOATS the planner would rightly scan them."""
    monkeypatch.setattr(planner, "EXACT_MAX_FLOATS", 50)


def _clustered(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(32, d)).astype(np.float32) * 4
    return (centers[rng.integers(0, 32, n)] + rng.normal(size=(n, d))).astype(np.float32)


def _recall(hits, exact, k=10):
    return np.mean([len({h.id for h in a[:k]} & {h.id for h in b[:k]}) / k for a, b in zip(hits, exact)])


@pytest.mark.parametrize("kind", ["hnsw", "hnsw_sq8", "ivf_flat", "ivf_pq", "sq_fp16"])
def test_index_built_in_background_used_and_reloaded(tmp_path, kind):
    X = _clustered(3000, 16)
    Q = X[:20] + 0.01
    with vecdb.connect(tmp_path) as db:
        col = db.create_collection("c", dim=16, metric="l2", index={"type": kind},
                                   schema={"g": "int64"})
        col.upsert(ids=list(range(3000)), vectors=X, payloads=[{"g": i % 10} for i in range(3000)])
        exact = col.search(Q, k=10)              # memtable: exact
        col.flush()
        assert col.wait_for_indexes(timeout=120)
        seg = col.stats()["segments"][0]
        assert seg["index"]["state"] == "ready" and seg["index"]["type"] == kind
        assert seg["index"]["rows_done"] == 3000 and seg["index"]["memory_bytes"] > 0
        hits, plan = col.search(Q, k=10, explain=True)
        assert plan[0]["strategy"] == "index_walk"
        assert _recall(hits, exact) >= 0.9
        version = col.version
    with vecdb.connect(tmp_path) as db:          # reopen: the index file is loaded, not rebuilt
        col = db.get_collection("c")
        assert col.version == version
        assert col.stats()["segments"][0]["index"]["state"] == "ready"
        again, plan = col.search(Q, k=10, explain=True)
        assert plan[0]["strategy"] == "index_walk"
        assert [[h.id for h in r] for r in again] == [[h.id for h in r] for r in hits]


def test_search_during_build_is_exact(tmp_path, monkeypatch):
    X = _clustered(2000, 8)
    with vecdb.connect(tmp_path) as db:
        col = db.create_collection("c", dim=8, metric="cosine", index={"type": "hnsw"})
        col.upsert(ids=list(range(2000)), vectors=X)
        exact = col.search(X[:5], k=10)
        store = col._store
        gate = __import__("threading").Event()
        real_install = store._install_index

        def slow_install(*a):
            gate.wait(30)
            return real_install(*a)
        monkeypatch.setattr(store._indexer, "_install", slow_install)
        col.flush()
        hits, plan = col.search(X[:5], k=10, explain=True)
        assert plan[0]["strategy"] == "mask_scan" and "built" in plan[0]["reason"]
        assert [[h.id for h in r] for r in hits] == [[h.id for h in r] for r in exact]
        gate.set()
        assert col.wait_for_indexes(timeout=60)
        assert col.search(X[:5], k=10, explain=True)[1][0]["strategy"] == "index_walk"


@pytest.mark.parametrize("selectivity", [0.001, 0.01, 0.1, 0.5, 0.99])
def test_filtered_search_returns_min_k_matches(tmp_path, selectivity):
    n = 4000
    X = _clustered(n, 12, seed=3)
    rng = np.random.default_rng(4)
    tag = (rng.random(n) < selectivity).astype(int)
    with vecdb.connect(tmp_path) as db:
        col = db.create_collection("c", dim=12, metric="l2", index={"type": "hnsw"}, schema={"t": "int64"})
        col.upsert(ids=list(range(n)), vectors=X, payloads=[{"t": int(t)} for t in tag])
        Q = X[rng.integers(0, n, 20)] + 0.05
        col.flush()
        col.wait_for_indexes()
        hits = col.search(Q, k=10, filter="t = 1")
        matches = int(tag.sum())
        Xm = X[tag == 1].astype(np.float64)
        ids = np.flatnonzero(tag == 1)
        total = 0.0
        for q, row in zip(Q, hits):
            assert len(row) == min(10, matches)
            assert all(tag[h.id] == 1 for h in row)
            d = ((Xm - q) ** 2).sum(1)
            truth = set(ids[np.argsort(d)[:10]].tolist())
            total += len({h.id for h in row} & truth) / max(1, min(10, matches))
        assert total / len(Q) >= 0.95


def test_compaction_rebuilds_and_bad_index_config(tmp_path):
    with vecdb.connect(tmp_path, auto_compact=False) as db:
        for bad in ({"type": "annoy"}, {"type": "hnsw", "mm": 3}, {"type": "hnsw", "m": 0}, "hnsw",
                    {"type": "auto", "m": 3}):
            with pytest.raises(vecdb.InvalidArgument):
                db.create_collection("bad", dim=4, index=bad)
        assert db.list_collections() == []
        col = db.create_collection("c", dim=4, metric="l2", index={"type": "hnsw", "m": 8})
        X = _clustered(600, 4)
        for s in range(0, 600, 200):
            col.upsert(ids=list(range(s, s + 200)), vectors=X[s:s + 200])
            col.flush()
        col.wait_for_indexes()
        col.delete(ids=list(range(0, 600, 2)))
        col.compact()
        assert col.wait_for_indexes(timeout=60)
        segs = col.stats()["segments"]
        assert len(segs) == 1 and segs[0]["index"]["state"] == "ready" and segs[0]["rows"] == 300
        assert col.count() == 300
