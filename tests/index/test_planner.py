"""The planner is a pure function: tested without a disk or an index."""
from __future__ import annotations

import pytest

import vecdb
from vecdb.index.base import check_search_params
from vecdb.index.planner import AUTO_HNSW_MIN_FLOATS, EXACT_MAX_FLOATS, index_config_for, plan_segment

N = 1_000_000


@pytest.mark.parametrize("allowed,kind,ready,strategy", [
    (0, "hnsw", True, "skip"),
    (N, None, False, "exact"),
    (N, "flat", True, "exact"),
    (N, "hnsw", False, "exact"),                      # during a build: exact, never worse
    (N, "hnsw", True, "index"),
    (N // 2, "hnsw", True, "index"),                   # 50 %
    (N // 10, "ivf_flat", True, "exact"),              # 10 %: compact scan (5M floats at d=50)
    (N // 4 + 1, "ivf_flat", True, "index"),           # 25 %+: the index
    (N // 100, "hnsw", True, "exact"),                 # 1 %: scan the allowed rows
    (N // 1000, "hnsw", True, "exact"),                # 0.1 %
    (EXACT_MAX_FLOATS // 50, "hnsw", True, "exact"),
])
def test_strategy_by_selectivity(allowed, kind, ready, strategy):
    plan = plan_segment(N, allowed, 10, kind, ready, {"ef": 64}, dim=50)
    assert plan.strategy == strategy
    assert plan.allowed == allowed and plan.rows == N and plan.reason
    d = plan.as_dict()
    assert d["strategy"] == strategy and d["selectivity"] == pytest.approx(allowed / N)
    if strategy == "index":
        assert plan.params == {"ef": 64}


@pytest.mark.parametrize("rows,allowed,dim,ef,strategy", [
    (390_000, 39_000, 50, 128, "exact"),       # GloVe-like 10 %: the compact scan is faster
    (116_659, 11_666, 384, 32, "index"),       # WordNet-like 10 %: the two-hop walk is faster
    (116_659, 11_666, 384, 96, "exact"),       # a wider beam costs more than the scan
    (390_000, 97_500, 50, 64, "index"),        # 25 %, ef 64: 4.9M floats > 64 slots
    (390_000, 195_000, 50, 16, "index"),       # 50 %: beyond compact scans
])
def test_hnsw_filtered_scan_or_walk_by_cost(rows, allowed, dim, ef, strategy):
    assert plan_segment(rows, allowed, 10, "hnsw", True, None, dim, ef).strategy == strategy
    assert plan_segment(rows, allowed, 10, "hnsw_sq8", True, {"ef": ef}, dim, ef).strategy == strategy


def test_k_above_allowed_rows_scans():
    assert plan_segment(1_000_000, 500_000, 600_000, "hnsw", True, dim=384).strategy == "exact"


def test_scan_threshold_scales_with_dimension():
    rows = 50_000                      # 5 %: above the selectivity floor
    assert plan_segment(N, rows, 10, "hnsw", True, dim=50).strategy == "exact"
    assert plan_segment(N, rows, 10, "hnsw", True, dim=768).strategy == "index"


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
    from vecdb.index.planner import graph_beam
    assert graph_beam(32, 1.0) == graph_beam(32, 0.1) == 32
    assert graph_beam(32, 0.05) == 64 and graph_beam(32, 0.02) == 160
    # the planner weighs the compact scan against the widened beam: 4 % of 1M rows at d=100
    # (4M floats) beat a walk with ef 32 widened to 80, though not one of ef 32
    assert plan_segment(1_000_000, 40_000, 10, "hnsw", True, {}, 100, 32).strategy == "exact"
    assert plan_segment(1_000_000, 200_000, 10, "hnsw", True, {}, 100, 32).strategy == "index"
