"""Compaction policy (pure) and its effect on a collection."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

import vecdb
from vecdb.storage.compaction import SegmentStats, merge, plan


def test_plan_merges_small_segments_up_to_target():
    stats = [SegmentStats(i, 100, 100) for i in range(1, 6)]
    groups = plan(stats, target_rows=250)
    assert sorted(n for g in groups for n in g) == [1, 2, 3, 4, 5] or all(len(g) >= 2 for g in groups)
    assert all(sum(100 for _ in g) <= 250 for g in groups)


def test_plan_leaves_big_healthy_segments_and_rewrites_dead_ones():
    assert plan([SegmentStats(1, 1000, 1000), SegmentStats(2, 1000, 990)], target_rows=1000) == []
    assert plan([SegmentStats(1, 1000, 500)], target_rows=1000) == [[1]]
    assert plan([SegmentStats(1, 10, 0)], target_rows=1000) == [[1]]
    assert plan([SegmentStats(1, 10, 10)], target_rows=1000) == []   # a lone small segment stays


def test_merge_drops_dead_rows():
    a = pa.table({"id": [1, 2, 3]})
    b = pa.table({"id": [4, 5]})
    out = merge([a, b], [np.array([True, False, True]), None])
    assert out.column("id").to_pylist() == [1, 3, 4, 5]


def test_compaction_keeps_content_and_reduces_segments(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    with vecdb.connect(tmp_path, auto_compact=False) as db:
        col = db.create_collection("c", dim=6, metric="l2", schema={"n": "int64"})
        for s in range(0, 60, 10):
            col.upsert(ids=list(range(s, s + 10)), vectors=X[s:s + 10], payloads=[{"n": i} for i in range(s, s + 10)])
            col.flush()
        col.delete(ids=list(range(0, 60, 3)))
        before = col.search(X[:5], k=7)
        assert len(col.stats()["segments"]) == 6
        col.compact()
        stats = col.stats()
        assert len(stats["segments"]) == 1 and stats["segments"][0]["deleted"] == 0
        assert col.count() == 40
        assert col.search(X[:5], k=7) == before
        files = sorted(p.name for p in (tmp_path / "collections" / "c" / "segments").iterdir())
    with vecdb.connect(tmp_path) as db:
        col = db.get_collection("c")
        assert col.count() == 40 and col.search(X[:5], k=7) == before
    assert len([f for f in files if f.endswith(".arrow")]) <= 1 + 6   # old versions may still be kept


def test_auto_compaction_runs_in_background(tmp_path):
    X = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    with vecdb.connect(tmp_path, seal_rows=5) as db:
        col = db.create_collection("c", dim=4)
        for s in range(0, 50, 5):
            col.upsert(ids=[f"r{i}" for i in range(s, s + 5)], vectors=X[s:s + 5])
    with vecdb.connect(tmp_path) as db:
        col = db.get_collection("c")
        assert col.count() == 50
        assert len(col.stats()["segments"]) < 10
