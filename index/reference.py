"""The brute-force reference: exact top-k in float64 with ties to the lower row, and recall@k.

The one ground truth that tests (kernels, indexes) and benchmarks (recall of every
contender) are checked against, after FAISS's ``contrib/evaluation.py``. Slow by design:
no kernel, no float32 shortcuts; queries are taken in blocks so memory stays bounded.
"""
from __future__ import annotations

import numpy as np

__all__ = ["true_keys", "knn", "recall_at"]

_BLOCK_FLOATS = 1 << 25      # float64 scores held per block of queries (256 MiB)


def true_keys(vectors: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """(q, n) float64 scores, higher is better (l2 negated); ``metric`` "ip" or "l2"."""
    v = np.asarray(vectors, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    if metric == "ip":
        return q @ v.T
    return -((q * q).sum(1)[:, None] - 2 * q @ v.T + (v * v).sum(1)[None, :])


def knn(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str,
        allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact best-first (scores, rows) over the ``allowed`` rows (bool mask; None: all), ties
    to the lower row, padded like the kernel (row -1, score -inf for ip / +inf for l2).
    Scores are float64: ip, or squared l2 distance."""
    queries = np.atleast_2d(queries)
    n, nq = len(vectors), len(queries)
    rows_ok = np.arange(n) if allowed is None else np.flatnonzero(np.asarray(allowed, bool))
    sub = vectors if allowed is None else np.asarray(vectors)[rows_ok]
    kk = min(k, len(rows_ok))
    sign = 1.0 if metric == "ip" else -1.0
    scores = np.full((nq, k), -sign * np.inf)
    rows = np.full((nq, k), -1, np.int64)
    step = max(1, _BLOCK_FLOATS // max(1, len(rows_ok)))
    for lo in range(0, nq if kk else 0, step):
        keys = true_keys(sub, queries[lo:lo + step], metric)
        order = np.argsort(-keys, axis=1, kind="stable")[:, :kk]
        scores[lo:lo + step, :kk] = sign * np.take_along_axis(keys, order, 1)
        rows[lo:lo + step, :kk] = rows_ok[order]
    return scores, rows


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean |found[:, :k] ∩ truth[:, :k]| / k over queries (ann-benchmarks recall@k)."""
    hits = sum(len(set(f[:k].tolist()) & set(g[:k].tolist())) for f, g in zip(found, truth))
    return hits / (k * len(truth))
