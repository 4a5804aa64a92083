"""The filter-aware search planner: a pure function of segment stats, selectivity and params.

Per segment, from the filter bitmap's popcount (the exact number of rows that may be
returned) it chooses to skip the segment, scan the allowed rows exactly, or search the index
with an allow-list. The index search itself widens its beam when the allow-list thins it out
and falls back to an exact scan when it still comes back short (``VectorIndex.search``,
params ``filter_widen`` / ``exact_fallback``), so a search never returns fewer than
min(k, allowed) hits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

# An exact scan of the allowed rows beats an index up to about this many floats (allowed rows
# x dim): it touches only those rows' vectors. From bench.ann: on GloVe (d=50) exact over 50k
# rows ran at ~5k QPS on one thread while a filtered HNSW search at 10 % (39k rows) managed
# ~300 QPS; on WordNet/MiniLM (d=384) exact over 11.7k rows (4.5M floats) ran at 0.48x HNSW.
EXACT_MAX_FLOATS = 2_500_000
# A filter this selective is scanned from a cached compact copy of its rows (see
# Segment.filter_subset): ~10x faster than gathering through a mask. For IVF indexes, whose
# filtered probes grow by 1/selectivity, up to COMPACT_SCAN_MAX_FLOATS.
COMPACT_SCAN_SELECTIVITY = 0.25
COMPACT_SCAN_MAX_FLOATS = 20_000_000
# For HNSW the filtered walk (two-hop, index/hnsw.py) costs about ef slots of ~5-7 us each,
# nearly independent of dim (it is bound by memory latency), while the compact scan costs
# ~0.083 ns per float (one thread). Measured on one thread, k=10: GloVe d=50 at 10 % (1.95M
# floats): scan 6.1k QPS vs two-hop walk 1.4k at ef=128; WordNet d=384 at 10 % (4.5M floats):
# scan 2.7k QPS vs walk 4.6k at ef=32. So: scan up to ef x this many floats.
SCAN_FLOATS_PER_BEAM_SLOT = 64_000
# Below this selectivity a two-hop walk keeps its recall only with a wider beam, ef x
# TWO_HOP_FULL / selectivity (WordNet-MiniLM, 117k rows, k=10, ef 32 -> recall 0.95-0.97 from
# 2 % to 10 %, at 3-15x the speed of walking every row; the two-hop lists alone thin out:
# 0.87 at 3 % and ef 32).
TWO_HOP_FULL = 0.1
GRAPH_KINDS = frozenset({"hnsw", "hnsw_sq8"})
# Below this fraction of rows allowed, graph/cluster indexes lose recall fast: scan instead.
EXACT_MAX_SELECTIVITY = 0.02


@dataclass(frozen=True)
class Plan:
    """How one segment is searched. ``strategy`` is "skip", "exact" or "index"."""

    strategy: str
    reason: str
    rows: int
    allowed: int
    k: int
    params: dict = field(default_factory=dict)

    @property
    def selectivity(self) -> float:
        return self.allowed / self.rows if self.rows else 0.0

    def as_dict(self) -> dict:
        return {"strategy": self.strategy, "reason": self.reason, "rows": self.rows,
                "allowed": self.allowed, "selectivity": round(self.selectivity, 6),
                "k": self.k, "params": dict(self.params)}


def plan_segment(rows: int, allowed: int, k: int, index_kind: str | None, index_ready: bool,
                 params: dict | None = None, dim: int = 1, ef: int | None = None) -> Plan:
    """Choose how to search one segment.

    ``rows`` counts the segment's rows, ``allowed`` those visible and passing the filter;
    ``index_kind`` is None for segments without an index; ``dim`` sizes the scan's cost and
    ``ef`` (the beam an HNSW index would search with) the filtered walk's.
    Plans come from a small cache (searches repeat the same inputs), so one may be shared
    between calls: a Plan and its ``params`` are not to be mutated.
    """
    try:
        frozen = getattr(params, "plan_key", None) or (tuple(sorted(params.items())) if params else ())
        return _cached_plan(rows, allowed, k, index_kind, index_ready, frozen, dim, ef)
    except TypeError:          # unhashable param values (rejected elsewhere): plan uncached
        return _plan(rows, allowed, k, index_kind, index_ready, dict(params), dim, ef)


@lru_cache(maxsize=512)
def _cached_plan(rows: int, allowed: int, k: int, index_kind: str | None, index_ready: bool,
                 params: tuple, dim: int, ef: int | None) -> Plan:
    return _plan(rows, allowed, k, index_kind, index_ready, dict(params), dim, ef)


def _plan(rows: int, allowed: int, k: int, index_kind: str | None, index_ready: bool,
          params: dict, dim: int, ef: int | None) -> Plan:
    if allowed <= 0:
        return Plan("skip", "no row passes the filter", rows, 0, k)
    if index_kind is None or index_kind == "flat":
        return Plan("exact", "no ANN index on this segment", rows, allowed, k)
    if not index_ready:
        return Plan("exact", "index is being built", rows, allowed, k)
    if allowed * dim <= EXACT_MAX_FLOATS or allowed <= k:
        return Plan("exact", f"only {allowed} rows pass: a scan is cheaper", rows, allowed, k)
    selectivity = allowed / rows
    if selectivity < EXACT_MAX_SELECTIVITY:
        return Plan("exact", f"selectivity {selectivity:.2%} is too low for the index", rows, allowed, k)
    if selectivity <= COMPACT_SCAN_SELECTIVITY:
        if index_kind in GRAPH_KINDS and ef:
            beam = graph_beam(ef, selectivity)
            if allowed * dim <= beam * SCAN_FLOATS_PER_BEAM_SLOT:
                return Plan("exact", f"selectivity {selectivity:.2%}: a compact scan of {allowed * dim} "
                            f"floats beats a filtered walk with a beam of {beam}", rows, allowed, k)
        elif allowed * dim <= COMPACT_SCAN_MAX_FLOATS:
            return Plan("exact", f"selectivity {selectivity:.2%}: a compact scan beats a filtered index",
                        rows, allowed, k)
    if allowed < rows:
        return Plan("index", f"index search with an allow-list of {allowed} rows", rows, allowed, k, params)
    return Plan("index", "index search", rows, allowed, k, params)


# ``auto`` builds HNSW on segments of at least this many floats (rows x dim); smaller ones
# are scanned exactly. bench.ann's crossover: one thread, k=10, exact vs HNSW at ef for
# recall 0.95 break even near 10k-20k rows at d=50 and below 2k rows at d=384.
AUTO_HNSW_MIN_FLOATS = 1_000_000


def index_config_for(config: dict, rows: int, dim: int) -> dict | None:
    """The index to build for a sealed segment of ``rows`` x ``dim`` under a collection's
    index config, or None when the segment is best scanned exactly."""
    kind = config.get("type", "auto")
    if kind == "flat":
        return None
    if kind == "auto":
        return {"type": "hnsw"} if rows * dim >= AUTO_HNSW_MIN_FLOATS else None
    return dict(config)


def graph_beam(ef: int, selectivity: float) -> int:
    """The beam of a filtered graph walk at ``selectivity``: ``ef``, widened below TWO_HOP_FULL."""
    if selectivity >= TWO_HOP_FULL:
        return ef
    return int(math.ceil(ef * TWO_HOP_FULL / max(selectivity, 1e-9)))
