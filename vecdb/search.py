"""Search execution: one dispatch over the planner's strategies (``index/planner.py``).

Per part of a store view (sealed segment or memtable): filter bitmap -> ``plan_segment`` ->
the strategy's runner -> best-first merge of the parts. Each runner records the steps that
ran (an index records the walks it chose per query and the exact fallback); a step the plan
did not name raises ``Internal``, so ``explain`` shows exactly the path taken.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from vecdb import filter as filters
from vecdb.errors import Internal
from vecdb.index.exact import exact_search
from vecdb.index.gpu import device_backend
from vecdb.index.metric import Metric, metric_of
from vecdb.index.planner import Plan, Strategy, plan_segment
from vecdb.index.state import state_of
from vecdb.index.topk import merge_topk
from vecdb.storage.view import Part

__all__ = ["PART_BITS", "ROW_MASK", "allowed_rows", "matching_rows", "search_parts", "check_path"]

PART_BITS = 40   # merged keys: part index << PART_BITS | row
ROW_MASK = (1 << PART_BITS) - 1

Result = tuple  # (scores (q, k) float32, rows (q, k) int64, -1 pads)


def allowed_rows(expr, part: Part) -> tuple[np.ndarray | None, int]:
    """Rows of ``part`` alive and matching ``expr`` (None means every row), and how many."""
    if expr is None:
        return part.alive, part.n_alive
    mask, count = matching_rows(expr, part)
    if part.alive is not None:
        mask = mask & part.alive
        count = None
    return mask, int(np.count_nonzero(mask)) if count is None else count


def matching_rows(expr, part: Part) -> tuple[np.ndarray, int | None]:
    """Rows of ``part`` matching ``expr``, deletes aside, and how many where known (both
    cached per sealed segment)."""
    if part.segment is not None:
        return state_of(part.segment).filter_mask(expr, lambda: filters.evaluate(expr, part.table()))
    return filters.evaluate(expr, part.table()), None


def check_path(plan: Plan, ran: list[Strategy]) -> None:
    """Every step that ran was named by the plan (else the planner and execution disagree)."""
    unnamed = [s.value for s in ran if s not in plan.steps]
    if unnamed:
        raise Internal(f"search ran {unnamed} which its plan ({plan.strategy.value}, steps "
                       f"{[s.value for s in plan.steps]}) did not name")


# A runner: (q, k, part, allowed, count, metric, expr, params, plan, ran) -> scores, rows;
# it appends each step it runs to ``ran``.


def _mask_scan(q, k, part, allowed, count, metric, expr, params, plan, ran) -> Result:
    ran.append(Strategy.MASK_SCAN)
    kernel = metric.kernel
    norms = state_of(part.segment).norms() if (kernel == "l2" and part.segment is not None and len(q) > 1) else None
    return exact_search(part.vectors, q, k, kernel, allowed, norms)


def _compact_scan(q, k, part, allowed, count, metric, expr, params, plan, ran) -> Result:
    ran.append(Strategy.COMPACT_SCAN)
    sub_rows, sub_vectors = state_of(part.segment).filter_subset(expr, matching_rows(expr, part)[0])
    sub_alive = None if part.alive is None else part.alive[sub_rows]
    s, r = exact_search(sub_vectors, q, k, metric.kernel, sub_alive)
    return s, np.where(r >= 0, sub_rows[np.maximum(r, 0)], -1)


def _gpu_scan(q, k, part, allowed, count, metric, expr, params, plan, ran) -> Result:
    gpu = state_of(part.segment).device_exact(metric.kernel)
    if gpu is None:                 # no room on the device after all: the plan's CPU scan
        return _mask_scan(q, k, part, allowed, count, metric, expr, params, plan, ran)
    ran.append(Strategy.GPU_SCAN)
    return gpu.search(q, k, allowed)


def _index_walk(q, k, part, allowed, count, metric, expr, params, plan, ran) -> Result:
    ran.append(plan.strategy)
    index = part.segment.index
    return index.search_checked(q, k, allowed, index.search_params(params), count, ran)


_RUN: dict[Strategy, Callable[..., Result]] = {
    Strategy.MASK_SCAN: _mask_scan,
    Strategy.COMPACT_SCAN: _compact_scan,
    Strategy.GPU_SCAN: _gpu_scan,
    Strategy.INDEX_WALK: _index_walk,
    Strategy.ALLOW_LIST_WALK: _index_walk,
}


def plan_part(part: Part, n_allowed: int, k: int, expr, params: dict, dim: int,
              queries: int) -> Plan:
    """The planner's inputs read off one part, and its plan."""
    seg = part.segment
    if seg is None:
        return plan_segment(len(part.vectors), n_allowed, k, None, False, params, dim, None,
                            filtered=expr is not None)
    index = seg.index
    return plan_segment(len(part.vectors), n_allowed, k, seg.index_kind, index is not None, params, dim,
                        None if index is None else params.get("ef", index.params.get("ef")),
                        filtered=expr is not None, sealed=True,
                        gpu=queries > 1 and device_backend()[0] is not None, queries=queries)


def search_parts(parts: Sequence[Part], q: np.ndarray, k: int, expr, params: dict,
                 explain: list | None, metric: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Plan and search each part, then merge best-first; appends each part's plan, the steps
    that ran and the time taken to ``explain``.

    Returns scores and keys (part << PART_BITS | row), each (q, k), a negative key being a
    pad. ``metric`` is the collection's; ``q`` is validated against it.
    """
    m: Metric = metric_of(metric)
    results = []
    for i, part in enumerate(parts):
        t0 = time.perf_counter() if explain is not None else 0.0
        allowed, n_allowed = allowed_rows(expr, part)
        plan = plan_part(part, n_allowed, k, expr, params, dim, len(q))
        strategy = plan.strategy
        ran: list[Strategy] = []
        if strategy is Strategy.SKIP:
            ran.append(strategy)
        else:
            s, rows = _RUN[strategy](q, k, part, allowed, n_allowed, m, expr, params, plan, ran)
            results.append((i, s, rows))
        if len(ran) != 1 or ran[0] is not strategy:      # the common path needs no check
            check_path(plan, ran)
        if explain is not None:
            seg = part.segment
            explain.append({"part": f"segment {seg.num}" if seg is not None else "memtable",
                            **plan.as_dict(), "ran": [s.value for s in dict.fromkeys(ran)],
                            "ms": round((time.perf_counter() - t0) * 1000, 3)})
    if not results:
        return m.pad(len(q), k)
    if len(results) == 1 and results[0][0] == 0:   # already best-first; keys = rows
        _, s, rows = results[0]
        return s, rows.astype(np.int64, copy=False)
    keyed = [(s, np.where(rows >= 0, (np.int64(i) << PART_BITS) | rows, -1)) for i, s, rows in results]
    if len(keyed) == 1:      # already best-first and padded
        return keyed[0]
    return merge_topk(keyed, k, higher_is_better=m.higher_is_better)
