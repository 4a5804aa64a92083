"""Compaction policy and merge (pure apart from the caller's file writes).

Small segments are merged into segments of up to ``target_rows``; a segment whose dead
fraction passes ``max_dead_fraction`` is rewritten even alone. Deleted rows are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class SegmentStats:
    num: int
    rows: int
    alive: int


def plan(stats: list[SegmentStats], target_rows: int, max_dead_fraction: float = 0.2,
         min_merge: int = 2) -> list[list[int]]:
    """Groups of segment numbers to merge, each group becoming one new segment.

    A group is worth writing when it merges at least ``min_merge`` segments or drops a
    large dead fraction. Segments already near ``target_rows`` and mostly alive stay.
    """
    candidates = [s for s in stats if s.alive < target_rows // 2 or
                  (s.rows and (s.rows - s.alive) / s.rows > max_dead_fraction)]
    candidates.sort(key=lambda s: s.alive)
    groups: list[list[SegmentStats]] = []
    current: list[SegmentStats] = []
    size = 0
    for s in candidates:
        if current and size + s.alive > target_rows:
            groups.append(current)
            current, size = [], 0
        current.append(s)
        size += s.alive
    if current:
        groups.append(current)
    out = []
    for g in groups:
        dead = sum(s.rows - s.alive for s in g)
        if len(g) >= min_merge or (g[0].rows and dead / g[0].rows > max_dead_fraction) or g[0].alive == 0:
            out.append([s.num for s in g])
    return out


def merge(tables: list[pa.Table], alive: list[np.ndarray | None]) -> pa.Table:
    """Concatenate the alive rows of ``tables`` (``None`` = all rows alive)."""
    parts = []
    for table, mask in zip(tables, alive):
        parts.append(table if mask is None else table.filter(pa.array(mask)))
    return pa.concat_tables(parts).combine_chunks()
