"""The planner is a pure function: tested without a disk or an index."""
from __future__ import annotations

import pytest

import vecdb
from vecdb.index.base import check_search_params
from vecdb.index.planner import (AUTO_HNSW_MIN_FLOATS, EXACT_MAX_FLOATS, GPU_MIN_QUERIES, WALKS, Strategy,
                                 filtered_walk, graph_beam, index_config_for, plan_segment)

N = 1_000_000


S = Strategy
SEALED = {"sealed": True}


@pytest.mark.parametrize("allowed,kind,ready,strategy", [
    (0, "hnsw", True, S.SKIP),
    (N, None, False, S.MASK_SCAN),
    (N, "flat", True, S.MASK_SCAN),
    (N, "hnsw", False, S.MASK_SCAN),                  # during a build: exact, never worse
    (N, "hnsw", True, S.INDEX_WALK),
    (N // 2, "hnsw", True, S.ALLOW_LIST_WALK),        # 50 %
    (N // 10, "ivf_flat", True, S.COMPACT_SCAN),      # 10 %: compact scan (5M floats at d=50)
    (N // 4 + 1, "ivf_flat", True, S.ALLOW_LIST_WALK),  # 25 %+: the index
    (N // 100, "hnsw", True, S.COMPACT_SCAN),         # 1 %: scan the allowed rows
    (N // 1000, "hnsw", True, S.COMPACT_SCAN),        # 0.1 %
    (EXACT_MAX_FLOATS // 50, "hnsw", True, S.COMPACT_SCAN),
])
def test_strategy_by_selectivity(allowed, kind, ready, strategy):
    plan = plan_segment(N, allowed, 10, kind, ready, {"ef": 64}, dim=50, filtered=allowed < N, sealed=True)
    assert plan.strategy is strategy and plan.steps[0] is strategy
    assert plan.allowed == allowed and plan.rows == N and plan.reason
    d = plan.as_dict()
    assert d["strategy"] == strategy.value and d["selectivity"] == pytest.approx(allowed / N)
    assert d["steps"][0] == strategy.value and d["est_cost"] >= 0
    if strategy in WALKS:
        assert plan.params == {"ef": 64} and plan.steps[-1] is S.EXACT_FALLBACK and plan.cost > 0


def test_every_strategy_is_planned():
    """Each segment-level strategy comes out of the pure planner for some input, and each
    per-query step is named by a plan and chosen by filtered_walk."""
    seen = {plan_segment(N, a, 10, kind, True, {"ef": 64}, 50, 64, filtered=a < N, sealed=sealed,
                         gpu=gpu, queries=q).strategy
            for a in (0, 1000, N // 10, N // 2, N) for kind in (None, "hnsw", "ivf_flat")
            for sealed in (False, True) for gpu in (False, True) for q in (1, GPU_MIN_QUERIES)}
    assert seen == {S.SKIP, S.MASK_SCAN, S.COMPACT_SCAN, S.GPU_SCAN, S.INDEX_WALK, S.ALLOW_LIST_WALK}
    walk = plan_segment(N, N // 2, 10, "hnsw", True, {}, 50, 64)
    assert set(walk.steps) == {S.ALLOW_LIST_WALK, S.POST_FILTER_WALK, S.TWO_HOP_WALK,
                               S.FILTERED_WALK, S.INDEX_SCAN, S.EXACT_FALLBACK}
    assert filtered_walk(0.1, 32, 100_000, 16) == (S.TWO_HOP_WALK, 32)
    assert filtered_walk(0.05, 32, 50_000, 16) == (S.TWO_HOP_WALK, graph_beam(32, 0.05))
    assert filtered_walk(0.1, 32, 1_000, 16)[0] is S.INDEX_SCAN      # beam x 2m >= allowed rows
    assert filtered_walk(0.6, 32, 600_000, 16) == (S.FILTERED_WALK, 32)
    assert filtered_walk(0.6, 32, 800, 16)[0] is S.INDEX_SCAN
    assert filtered_walk(0.01, 32, 100_000, 16) == (S.FILTERED_WALK, 32)   # below two-hop range
    assert filtered_walk(0.01, 32, 10_000, 16)[0] is S.INDEX_SCAN


def test_raw_index_params_name_no_widening_and_no_fallback():
    plan = plan_segment(N, N // 2, 10, "hnsw", True, {"filter_widen": False, "exact_fallback": False}, 50, 64)
    assert plan.steps == (S.ALLOW_LIST_WALK,)
    assert plan_segment(N, N // 2, 10, "ivf_flat", True, {}, 50).steps == (
        S.ALLOW_LIST_WALK, S.INDEX_SCAN, S.EXACT_FALLBACK)


def test_scans_by_part_and_batch():
    """Compact copies exist for sealed segments under a selective filter; the GPU serves
    sealed segments for batches of GPU_MIN_QUERIES, with the CPU scan as its named fallback."""
    a = N // 10
    assert plan_segment(N, a, 10, None, False, dim=50, filtered=True, sealed=True).strategy is S.COMPACT_SCAN
    assert plan_segment(N, a, 10, None, False, dim=50, filtered=True).strategy is S.MASK_SCAN     # memtable
    assert plan_segment(N, a, 10, None, False, dim=50, sealed=True).strategy is S.MASK_SCAN       # deletes only
    gpu = plan_segment(N, N, 10, None, False, dim=50, sealed=True, gpu=True, queries=GPU_MIN_QUERIES)
    assert gpu.strategy is S.GPU_SCAN and gpu.steps == (S.GPU_SCAN, S.MASK_SCAN) and "GPU" in gpu.reason
    for q, sealed in ((GPU_MIN_QUERIES - 1, True), (GPU_MIN_QUERIES, False)):
        assert plan_segment(N, N, 10, None, False, dim=50, sealed=sealed, gpu=True,
                            queries=q).strategy is S.MASK_SCAN


@pytest.mark.parametrize("rows,allowed,dim,ef,strategy", [
    (390_000, 39_000, 50, 128, S.COMPACT_SCAN),    # GloVe-like 10 %: the compact scan is faster
    (116_659, 11_666, 384, 32, S.ALLOW_LIST_WALK),  # WordNet-like 10 %: the two-hop walk is faster
    (116_659, 11_666, 384, 96, S.COMPACT_SCAN),    # a wider beam costs more than the scan
    (390_000, 97_500, 50, 64, S.ALLOW_LIST_WALK),  # 25 %, ef 64: 4.9M floats > 64 slots
    (390_000, 195_000, 50, 16, S.ALLOW_LIST_WALK),  # 50 %: beyond compact scans
])
def test_hnsw_filtered_scan_or_walk_by_cost(rows, allowed, dim, ef, strategy):
    kw = {"filtered": True, "sealed": True}
    assert plan_segment(rows, allowed, 10, "hnsw", True, None, dim, ef, **kw).strategy is strategy
    assert plan_segment(rows, allowed, 10, "hnsw_sq8", True, {"ef": ef}, dim, ef, **kw).strategy is strategy


def test_k_above_allowed_rows_scans():
    assert plan_segment(1_000_000, 500_000, 600_000, "hnsw", True, dim=384).strategy is S.MASK_SCAN


def test_scan_threshold_scales_with_dimension():
    rows = 50_000                      # 5 %: above the selectivity floor
    assert plan_segment(N, rows, 10, "hnsw", True, dim=50).strategy is S.MASK_SCAN
    assert plan_segment(N, rows, 10, "hnsw", True, dim=768).strategy is S.ALLOW_LIST_WALK


def test_auto_config_by_segment_size():
    assert index_config_for({"type": "auto"}, AUTO_HNSW_MIN_FLOATS // 50 - 1, 50) is None
    assert index_config_for({"type": "auto"}, AUTO_HNSW_MIN_FLOATS // 50, 50) == {"type": "hnsw"}
    assert index_config_for({"type": "auto"}, 3_000, 384) == {"type": "hnsw"}
    assert index_config_for({"type": "flat"}, 10**9, 384) is None
    assert index_config_for({"type": "ivf_pq", "nbits": 8}, 10, 4) == {"type": "ivf_pq", "nbits": 8}


@pytest.mark.parametrize("params", [{"eff": 3}, {"ef": 0}, {"ef": "big"}, {"nprobe": -1}, ["ef"], {"rescore": 1.5}])
def test_bad_search_params(params):
    with pytest.raises(vecdb.InvalidArgument):
        check_search_params(params)


def test_good_search_params():
    assert check_search_params(None) == {}
    assert check_search_params({"ef": 64, "nprobe": 16, "rescore": 4}) == {"ef": 64, "nprobe": 16, "rescore": 4}


def test_checked_search_params_are_shared_and_read_only():
    given = {"ef": 64}
    a = check_search_params(given)
    given["ef"] = 8                                  # the caller's dict stays the caller's
    assert a == {"ef": 64} and check_search_params({"ef": 64}) is a
    for change in (lambda p: p.__setitem__("ef", 1), lambda p: p.update(ef=1), lambda p: p.pop("ef"),
                   lambda p: p.clear(), lambda p: p.setdefault("nprobe", 1), lambda p: p.__delitem__("ef")):
        with pytest.raises(TypeError):
            change(a)
        with pytest.raises(TypeError):
            change(check_search_params(None))
    assert a == {"ef": 64} and check_search_params(None) == {} and dict(a) == {"ef": 64}
    assert check_search_params({"ef": 65}) == {"ef": 65}


def test_graph_beam_widens_below_ten_percent():
    assert graph_beam(32, 1.0) == graph_beam(32, 0.1) == 32
    assert graph_beam(32, 0.05) == 64 and graph_beam(32, 0.02) == 160
    # the planner weighs the compact scan against the widened beam: 4 % of 1M rows at d=100
    # (4M floats) beat a walk with ef 32 widened to 80, though not one of ef 32
    assert plan_segment(1_000_000, 40_000, 10, "hnsw", True, {}, 100, 32).strategy is S.MASK_SCAN
    assert plan_segment(1_000_000, 200_000, 10, "hnsw", True, {}, 100, 32).strategy is S.ALLOW_LIST_WALK
