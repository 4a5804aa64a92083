"""Bounded top-k heaps (Numba) and the merge of per-segment top-k lists into one.

A heap is a pair of arrays, keys (k,) float and rows (k,) int64, holding the best k entries
offered so far with the worst at the root. Higher keys are better; between equal keys the
lower row is better, so every selection here breaks ties towards the lower row (or key). An
empty slot holds (-inf, ``EMPTY``), worse than any real entry.
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["merge_topk", "select_topk", "EMPTY", "heap_offer", "heap_sorted"]

EMPTY = np.int64(1) << np.int64(62)  # row of an empty slot: beyond any real row or key


@njit(nogil=True, inline="always")
def _worse(ka, ra, kb, rb):
    return ka < kb or (ka == kb and ra > rb)


@njit(nogil=True)
def _sift_down(keys, rows, key, row, size):
    """Put (key, row) at the root of keys[:size] and restore the heap order below it."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(keys[right], rows[right], keys[child], rows[child]):
            child = right
        if not _worse(keys[child], rows[child], key, row):
            break
        keys[pos] = keys[child]
        rows[pos] = rows[child]
        pos = child
    keys[pos] = key
    rows[pos] = row


@njit(nogil=True)
def heap_offer(keys, rows, key, row):
    """Offer one entry: it replaces the root if better. Returns the new root key, so callers
    can skip ``key < root`` without a call (``key == root`` may still win on the row)."""
    if key > keys[0] or (key == keys[0] and row < rows[0]):
        _sift_down(keys, rows, key, row, keys.shape[0])
    return keys[0]


@njit(nogil=True)
def heap_sorted(keys, rows, out_keys, out_rows):
    """Write the heap's entries best-first into out_keys/out_rows; destroys the heap."""
    for last in range(keys.shape[0] - 1, -1, -1):
        out_keys[last] = keys[0]
        out_rows[last] = rows[0]
        if last > 0:
            _sift_down(keys, rows, keys[last], rows[last], last)


@njit(nogil=True, cache=True)
def select_topk(keys_in, rows_in, k):
    """Best-first top-k of each row of (q, K) float64 keys (higher is better) and int64 rows.

    Negative rows are padding and skipped, as are NaN keys; missing entries come back as
    (-inf, -1). Ties go to the lower row.
    """
    nq, total = keys_in.shape
    out_keys = np.full((nq, k), -np.inf)
    out_rows = np.full((nq, k), -1, dtype=np.int64)
    keys = np.empty(k)
    rows = np.empty(k, dtype=np.int64)
    for qi in range(nq):
        keys[:] = -np.inf
        rows[:] = EMPTY
        root = -np.inf
        for t in range(total):
            row = rows_in[qi, t]
            key = keys_in[qi, t]
            if row >= 0 and key >= root:
                root = heap_offer(keys, rows, key, row)
        heap_sorted(keys, rows, out_keys[qi], out_rows[qi])
        for t in range(k):
            if out_rows[qi, t] == EMPTY:
                out_rows[qi, t] = -1
    return out_keys, out_rows


def merge_topk(
    parts: list[tuple[np.ndarray, np.ndarray]], k: int, higher_is_better: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One best-first top-k per query from per-part (scores (q, k_i), keys (q, k_i) int64).

    Parts need not be sorted. Key -1 (any negative key) marks padding, whatever its score;
    the result is padded the same way at the end (key -1, score -inf when higher is better,
    else +inf). Ties go to the lower key, so the result does not depend on the order of
    ``parts``. Keys are not de-duplicated; NaN scores are dropped. Scores come back float32,
    or float64 if any part is. The inputs are not modified. An empty ``parts`` raises
    ``ValueError`` (the query count would be unknown).
    """
    if not parts:
        raise ValueError("merge_topk needs at least one part")
    k = int(k)
    if k < 0:
        raise ValueError("k must be >= 0")
    nq = np.shape(parts[0][0])[0]
    scores, keys = [], []
    for s, r in parts:
        s = np.asarray(s)
        r = np.asarray(r)
        if s.ndim != 2 or s.shape != r.shape or s.shape[0] != nq:
            raise ValueError("every part must hold scores and keys of the same shape (q, k_i)")
        scores.append(s)
        keys.append(r)
    dtype = np.result_type(np.float32, *scores)
    if k == 0:
        return np.empty((nq, 0), dtype=dtype), np.empty((nq, 0), dtype=np.int64)
    # float64 holds every float32 exactly and negation is exact: the order is unchanged
    merged = np.concatenate(scores, axis=1).astype(np.float64, copy=False)
    if not higher_is_better:
        merged = -merged
    rows = np.concatenate(keys, axis=1).astype(np.int64, copy=False)
    out_keys, out_rows = select_topk(merged, rows, k)
    if not higher_is_better:
        out_keys = -out_keys
    return out_keys.astype(dtype, copy=False), out_rows
