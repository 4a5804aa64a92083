"""Merging best-first top-k lists (one per segment / memtable) into one top-k; pure numpy."""
from __future__ import annotations

import numpy as np

__all__ = ["merge_topk"]


def merge_topk(
    parts: list[tuple[np.ndarray, np.ndarray]], k: int, higher_is_better: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One best-first top-k per query from per-part (scores (q, k_i), keys (q, k_i) int64).

    Key -1 marks padding, whatever its score; the result is padded the same way at the end
    (key -1, score -inf when higher is better, else +inf). Ties go to the lower key, so the
    result does not depend on the order of ``parts``. Keys are not de-duplicated. The inputs
    are not modified. An empty ``parts`` raises ``ValueError`` (the query count is unknown).
    """
    if not parts:
        raise ValueError("merge_topk needs at least one part")
    k = int(k)
    if k < 0:
        raise ValueError("k must be >= 0")
    nq = np.shape(parts[0][0])[0]
    worst = -np.inf if higher_is_better else np.inf
    score_list, key_list = [], []
    for s, r in parts:
        s = np.asarray(s)
        r = np.asarray(r, dtype=np.int64)
        if s.ndim != 2 or s.shape != r.shape or s.shape[0] != nq:
            raise ValueError("every part must hold scores and keys of the same shape (q, k_i)")
        score_list.append(s)
        key_list.append(r)
    dtype = np.result_type(np.float32, *score_list)
    if len(parts) == 1:
        scores, keys = score_list[0].astype(dtype, copy=True), key_list[0].copy()
    else:
        scores = np.concatenate(score_list, axis=1).astype(dtype, copy=False)
        keys = np.concatenate(key_list, axis=1)
    pad = keys < 0
    scores[pad] = worst  # scores may be a fresh concatenation or a copy: never the caller's
    keys[pad] = -1
    total = scores.shape[1]
    if total == 0:
        return np.full((nq, k), worst, dtype=dtype), np.full((nq, k), -1, dtype=np.int64)
    # sort by: padding last, then score (best first), then lower key; NaN scores sort last
    primary = -scores if higher_is_better else scores
    order = np.lexsort((keys, primary, pad), axis=1)[:, :k]
    out_s = np.take_along_axis(scores, order, axis=1)
    out_k = np.take_along_axis(keys, order, axis=1)
    if out_s.shape[1] < k:
        extra = k - out_s.shape[1]
        out_s = np.concatenate([out_s, np.full((nq, extra), worst, dtype=dtype)], axis=1)
        out_k = np.concatenate([out_k, np.full((nq, extra), -1, dtype=np.int64)], axis=1)
    return out_s, out_k
