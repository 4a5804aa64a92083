"""The filter-aware search planner: pure functions of segment stats, selectivity and params.

Per part (sealed segment or memtable), from the filter bitmap's popcount (the exact number
of rows that may be returned) ``plan_segment`` names one ``Strategy`` (skip, mask scan,
compact-subset scan, GPU scan, index walk, allow-list walk) and the steps that may run under
it (``Plan.steps``): an allow-list walk on HNSW chooses per query between post-filter, two-hop
and filtered walks or an exact scan (``filtered_walk``, called by the index with what it saw
near the query), and any index search ends with the exact fallback that guarantees
min(k, allowed) hits. Execution (``vecdb/search.py``) runs one dispatch over the plan and
records the steps that ran; a step the plan did not name is an error.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from functools import lru_cache

# An exact scan of the allowed rows beats an index up to about this many floats (allowed rows
# x dim): it touches only those rows' vectors. From bench.ann: on GloVe (d=50) exact over 50k
# rows ran at ~5k QPS on one thread while a filtered HNSW search at 10 % (39k rows) managed
# ~300 QPS; on WordNet/MiniLM (d=384) exact over 11.7k rows (4.5M floats) ran at 0.48x HNSW.
EXACT_MAX_FLOATS = 2_500_000
# A filter this selective is scanned from a cached compact copy of its rows (see
# index/state.py's filter_subset): ~10x faster than gathering through a mask. For IVF indexes, whose
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
# Two-hop filtered walks (bench.ann / tests: 0.5 M rows d=50 and 117k rows d=384): at 10-25 %
# selectivity they ran 2-3x faster than walking every row at recall 0.96-0.98; from 2 % to
# 10 % their beam widens (graph_beam) and they run 3-15x faster than walking every row at
# recall 0.95-0.97 (at 1 % recall stalls near 0.93: plan_segment scans below 2 %); above ~50 %
# walking every row costs at most 2x an unfiltered search and is faster.
TWO_HOP_MIN = 0.02
TWO_HOP_MAX = 0.5
# Batches of at least this many queries scan sealed segments on the GPU where one is present
# (transfers amortised; index/gpu.py).
GPU_MIN_QUERIES = 16


class Strategy(enum.Enum):
    """Every way a part, or the queries of a part, can be searched."""

    SKIP = "skip"                        # no row passes the filter
    MASK_SCAN = "mask_scan"              # exact scan of the rows through the allowed mask
    COMPACT_SCAN = "compact_scan"        # exact scan of a cached compact copy of matching rows
    GPU_SCAN = "gpu_scan"                # exact scan on the GPU copy of the segment
    INDEX_WALK = "index_walk"            # index search, every row allowed
    ALLOW_LIST_WALK = "allow_list_walk"  # index search with an allow-list
    POST_FILTER_WALK = "post_filter_walk"  # HNSW: the nearest ef / sqrt(s), then filtered
    TWO_HOP_WALK = "two_hop_walk"        # HNSW: walk allowed rows through two hops (ACORN-1)
    FILTERED_WALK = "filtered_walk"      # HNSW: walk every row, keep allowed ones
    INDEX_SCAN = "index_scan"            # an index scans its allowed rows exactly (cheaper)
    EXACT_FALLBACK = "exact_fallback"    # re-answer exactly the queries that came back short


WALKS = frozenset({Strategy.INDEX_WALK, Strategy.ALLOW_LIST_WALK})
# what may run under an allow-list walk of each index family (chosen per query by the index
# through filtered_walk / its own probe widening), before the exact fallback
_GRAPH_STEPS = (Strategy.POST_FILTER_WALK, Strategy.TWO_HOP_WALK, Strategy.FILTERED_WALK,
                Strategy.INDEX_SCAN)


@dataclass(frozen=True)
class Plan:
    """How one part is searched: the ``strategy``, why, and every step that may run under it
    (``steps``, the strategy first); ``cost`` estimates the floats scored (rows x dim)."""

    strategy: Strategy
    reason: str
    rows: int
    allowed: int
    k: int
    params: dict = field(default_factory=dict)
    steps: tuple = ()
    cost: int = 0

    @property
    def selectivity(self) -> float:
        return self.allowed / self.rows if self.rows else 0.0

    def as_dict(self) -> dict:
        return {"strategy": self.strategy.value, "reason": self.reason, "rows": self.rows,
                "allowed": self.allowed, "selectivity": round(self.selectivity, 6),
                "k": self.k, "params": dict(self.params),
                "steps": [s.value for s in self.steps], "est_cost": self.cost}


def plan_segment(rows: int, allowed: int, k: int, index_kind: str | None, index_ready: bool,
                 params: dict | None = None, dim: int = 1, ef: int | None = None, *,
                 filtered: bool = False, sealed: bool = False, gpu: bool = False,
                 queries: int = 1) -> Plan:
    """Choose how to search one part.

    ``rows`` counts the part's rows, ``allowed`` those visible and passing the filter;
    ``index_kind`` is None for parts without an index; ``dim`` sizes the scan's cost and
    ``ef`` (the beam an HNSW index would search with) the filtered walk's. ``filtered``: a
    filter applies; ``sealed``: the part is a sealed segment (it keeps compact copies of
    filtered rows); ``gpu``: a GPU copy of it can be scanned; ``queries``: the batch size.
    Plans come from a small cache (searches repeat the same inputs), so one may be shared
    between calls: a Plan and its ``params`` are not to be mutated.
    """
    try:
        frozen = getattr(params, "plan_key", None) or (tuple(sorted(params.items())) if params else ())
        return _cached_plan(rows, allowed, k, index_kind, index_ready, frozen, dim, ef,
                            filtered, sealed, gpu and queries >= GPU_MIN_QUERIES)
    except TypeError:          # unhashable param values (rejected elsewhere): plan uncached
        return _plan(rows, allowed, k, index_kind, index_ready, dict(params), dim, ef,
                     filtered, sealed, gpu and queries >= GPU_MIN_QUERIES)


@lru_cache(maxsize=512)
def _cached_plan(rows: int, allowed: int, k: int, index_kind: str | None, index_ready: bool,
                 params: tuple, dim: int, ef: int | None, filtered: bool, sealed: bool,
                 gpu: bool) -> Plan:
    return _plan(rows, allowed, k, index_kind, index_ready, dict(params), dim, ef, filtered,
                 sealed, gpu)


def _plan(rows: int, allowed: int, k: int, index_kind: str | None, index_ready: bool,
          params: dict, dim: int, ef: int | None, filtered: bool, sealed: bool,
          gpu: bool) -> Plan:
    def scan(reason: str) -> Plan:
        if sealed and filtered and allowed <= COMPACT_SCAN_SELECTIVITY * rows:
            return Plan(Strategy.COMPACT_SCAN, f"{reason}; a compact copy of the matching rows",
                        rows, allowed, k, steps=(Strategy.COMPACT_SCAN,), cost=allowed * dim)
        if sealed and gpu:
            return Plan(Strategy.GPU_SCAN, f"{reason}; on the GPU", rows, allowed, k,
                        steps=(Strategy.GPU_SCAN, Strategy.MASK_SCAN), cost=rows * dim)
        return Plan(Strategy.MASK_SCAN, reason, rows, allowed, k, steps=(Strategy.MASK_SCAN,),
                    cost=(rows if allowed * 4 > rows else allowed) * dim)

    if allowed <= 0:
        return Plan(Strategy.SKIP, "no row passes the filter", rows, 0, k, steps=(Strategy.SKIP,))
    if index_kind is None or index_kind == "flat":
        return scan("no ANN index on this segment" if sealed else "unsealed rows (memtable)")
    if not index_ready:
        return scan("index is being built")
    if allowed * dim <= EXACT_MAX_FLOATS or allowed <= k:
        return scan(f"only {allowed} rows pass: a scan is cheaper")
    selectivity = allowed / rows
    if selectivity < EXACT_MAX_SELECTIVITY:
        return scan(f"selectivity {selectivity:.2%} is too low for the index")
    if selectivity <= COMPACT_SCAN_SELECTIVITY:
        if index_kind in GRAPH_KINDS and ef:
            beam = graph_beam(ef, selectivity)
            if allowed * dim <= beam * SCAN_FLOATS_PER_BEAM_SLOT:
                return scan(f"selectivity {selectivity:.2%}: a compact scan of {allowed * dim} "
                            f"floats beats a filtered walk with a beam of {beam}")
        elif allowed * dim <= COMPACT_SCAN_MAX_FLOATS:
            return scan(f"selectivity {selectivity:.2%}: a compact scan beats a filtered index")
    fallback = (Strategy.EXACT_FALLBACK,) if params.get("exact_fallback", True) else ()
    graph = index_kind in GRAPH_KINDS
    if allowed < rows:
        widen = params.get("filter_widen", True)
        inner = (_GRAPH_STEPS if graph else (Strategy.INDEX_SCAN,)) if widen else ()
        return Plan(Strategy.ALLOW_LIST_WALK, f"index search with an allow-list of {allowed} rows",
                    rows, allowed, k, params, (Strategy.ALLOW_LIST_WALK, *inner, *fallback),
                    _walk_cost(graph, ef or params.get("ef"), selectivity, allowed, dim))
    return Plan(Strategy.INDEX_WALK, "index search", rows, allowed, k, params,
                (Strategy.INDEX_WALK, *fallback), _walk_cost(graph, ef or params.get("ef"), 1.0, rows, dim))


# Rough cost model for explain's est_cost (floats scored): a graph walk scores about 2m = 32
# neighbours per beam slot; a cluster index (IVF) about 5 % of the rows at common nprobe/nlist.
_LINKS_SCORED = 32
_IVF_SHARE = 0.05


def _walk_cost(graph: bool, ef: int | None, selectivity: float, allowed: int, dim: int) -> int:
    if graph:
        return graph_beam(ef or 64, selectivity) * _LINKS_SCORED * dim
    return int(allowed * dim * _IVF_SHARE)


def filtered_walk(s: float, ef: int, count: int, m: int) -> tuple[Strategy, int]:
    """How an HNSW index (links m) walks queries for which ``s`` is the allowed share near the
    query (``count`` rows allowed), and the beam: a two-hop walk, a filtered walk of every
    row, or an exact scan of the allowed rows where that scores fewer."""
    if TWO_HOP_MIN <= s < TWO_HOP_MAX:
        beam = graph_beam(ef, s)
        # each expansion scores up to 2m allowed rows: past count, scan them instead
        return (Strategy.INDEX_SCAN, ef) if beam * 2 * m >= count else (Strategy.TWO_HOP_WALK, beam)
    if ef / s * m >= count:
        return Strategy.INDEX_SCAN, ef
    return Strategy.FILTERED_WALK, ef


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
