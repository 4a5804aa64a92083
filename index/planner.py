"""The filter-aware search planner: a pure function of segment stats, selectivity and params.

Per segment, from the filter bitmap's popcount (the exact number of rows that may be
returned) it chooses to skip the segment, scan the allowed rows exactly, or search the index
with an allow-list. The index search itself widens its beam when the allow-list thins it out
and falls back to an exact scan when it still comes back short (``VectorIndex.search``,
params ``filter_widen`` / ``exact_fallback``), so a search never returns fewer than
min(k, allowed) hits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Up to this many allowed rows an exact scan beats an index (it touches only those rows'
# vectors). From bench.ann on GloVe-390k: exact over 50k rows ran at ~4.9k QPS on one thread,
# while a filtered HNSW search at 10 % selectivity (39k rows) managed ~300 QPS.
EXACT_MAX_ALLOWED = 50_000
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
                 params: dict | None = None) -> Plan:
    """Choose the first attempt for one segment.

    ``rows`` counts the segment's live rows, ``allowed`` those passing the filter (equal when
    there is no filter); ``index_kind`` is None for segments without an index.
    """
    params = dict(params or {})
    if allowed <= 0:
        return Plan("skip", "no row passes the filter", rows, 0, k)
    if index_kind is None or index_kind == "flat":
        return Plan("exact", "no ANN index on this segment", rows, allowed, k)
    if not index_ready:
        return Plan("exact", "index is being built", rows, allowed, k)
    if allowed <= max(EXACT_MAX_ALLOWED, k):
        return Plan("exact", f"only {allowed} rows pass: a scan is cheaper", rows, allowed, k)
    selectivity = allowed / rows
    if selectivity < EXACT_MAX_SELECTIVITY:
        return Plan("exact", f"selectivity {selectivity:.2%} is too low for the index", rows, allowed, k)
    if allowed < rows:
        return Plan("index", f"index search with an allow-list of {allowed} rows", rows, allowed, k, params)
    return Plan("index", "index search", rows, allowed, k, params)


# ``auto`` builds HNSW on segments of at least this many rows; smaller ones are scanned
# exactly (below it a scan is about as fast, see bench.ann's crossover table).
AUTO_HNSW_MIN_ROWS = 20_000


def index_config_for(config: dict, rows: int) -> dict | None:
    """The index to build for a sealed segment of ``rows`` rows under a collection's
    index config, or None when the segment is best scanned exactly."""
    kind = config.get("type", "auto")
    if kind == "flat":
        return None
    if kind == "auto":
        return {"type": "hnsw"} if rows >= AUTO_HNSW_MIN_ROWS else None
    return dict(config)
