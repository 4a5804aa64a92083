"""Reciprocal rank fusion (Cormack et al. 2009): merge ranked lists by ``sum w / (k + rank)``.

Pure: ids in, fused (id, score) out. Rank 1 is the best; an id absent from a list gets nothing
from it. Ties in the fused score go to the id whose best rank is better, then to the earlier list.
"""
from __future__ import annotations

from typing import Hashable, Sequence

from vecdb.errors import InvalidArgument

RRF_K = 60


def rrf(rankings: Sequence[Sequence[Hashable]], k: int = RRF_K, weights: Sequence[float] | None = None,
        limit: int | None = None) -> list[tuple[Hashable, float]]:
    """Fused (id, score) best first over ``rankings`` (each best first), at most ``limit``."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 0:
        raise InvalidArgument(f"the RRF constant k must be a non-negative number, got {k!r}")
    if weights is None:
        weights = [1.0] * len(rankings)
    weights = list(weights)
    if len(weights) != len(rankings):
        raise InvalidArgument(f"got {len(weights)} weights for {len(rankings)} ranked lists")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise InvalidArgument(f"fusion weights must be non-negative numbers, got {w!r}")
    score: dict = {}
    best: dict = {}
    for li, (ranking, w) in enumerate(zip(rankings, weights)):
        seen = set()
        for rank, doc in enumerate(ranking, start=1):
            if doc in seen:           # a list names an id once; a repeat would count it twice
                continue
            seen.add(doc)
            score[doc] = score.get(doc, 0.0) + w / (k + rank)
            if doc not in best or (rank, li) < best[doc]:
                best[doc] = (rank, li)
    fused = sorted(score.items(), key=lambda kv: (-kv[1], best[kv[0]]))
    return fused if limit is None else fused[:limit]
