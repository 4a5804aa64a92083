"""Exact (brute-force) top-k search: fused Numba distance + selection kernels, no I/O.

Design (DESIGN §5, §9; measured in ``bench/exact_kernel.py``): the rows are split into chunks,
one Numba ``prange`` task per chunk. Each task computes scores for a small register tile
(rows x queries) and offers them to a bounded binary heap per (chunk, query), so no (q, n)
distance matrix is ever built; the per-chunk heaps are then merged. Everything runs in one
parallel region per call with the GIL released, so the only threads are Numba's (no BLAS
threads to fight with; ``numba.set_num_threads`` is the one knob).

Scores are kept internally as a key where higher is better (ip: the dot product; l2: minus
the squared distance, or ``x.q - ||x||^2 / 2`` on the batch path), so one heap serves both
metrics. Ties are broken by the lower row number. Every row of one call goes through the same
arithmetic (tails are padded by repeating a valid row, never by a second code path), so equal
vectors get bit-equal scores and the tie rule holds exactly.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = ["exact_search", "squared_norms"]

# Reassociation and contraction let LLVM vectorise the dot products; no nnan/ninf, because
# -inf padding and NaN rows must compare correctly.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_SENTINEL = np.int64(1) << np.int64(62)  # row of an empty heap slot; worse than any real row
_MIN_CHUNK_ROWS = 4096  # below this a chunk is not worth a task of its own
_CHUNKS_PER_THREAD = 4  # a few chunks per thread evens out uneven progress

_IP, _L2_DIRECT, _L2_NORMS = 0, 1, 2


# --------------------------------------------------------------------------- heaps
# A heap is a pair of arrays (keys float32 (k,), rows int64 (k,)) holding the best k seen so
# far, worst at the root: "a is worse than b" when a.key < b.key, or keys equal and a.row > b.row.


@njit(nogil=True, inline="always")
def _worse(ka, ra, kb, rb):
    return ka < kb or (ka == kb and ra > rb)


@njit(nogil=True)
def _replace_root(keys, rows, key, row):
    """Replace the root (the worst entry) by (key, row) and sift it down."""
    k = keys.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        right = child + 1
        if right < k and _worse(keys[right], rows[right], keys[child], rows[child]):
            child = right
        if _worse(keys[child], rows[child], key, row):
            keys[pos] = keys[child]
            rows[pos] = rows[child]
            pos = child
        else:
            break
    keys[pos] = key
    rows[pos] = row


@njit(nogil=True)
def _offer(keys, rows, key, row):
    """Offer one candidate; returns the new admission threshold (the root key)."""
    if key > keys[0] or (key == keys[0] and row < rows[0]):
        _replace_root(keys, rows, key, row)
    return keys[0]


@njit(nogil=True)
def _sorted_from_heap(keys, rows, out_keys, out_rows):
    """Write the heap's entries best-first into out_keys/out_rows (destroys the heap)."""
    k = keys.shape[0]
    for last in range(k - 1, -1, -1):
        out_keys[last] = keys[0]
        out_rows[last] = rows[0]
        # move the last leaf to the root and sift it down within keys[:last]
        key = keys[last]
        row = rows[last]
        pos = 0
        while True:
            child = 2 * pos + 1
            if child >= last:
                break
            right = child + 1
            if right < last and _worse(keys[right], rows[right], keys[child], rows[child]):
                child = right
            if _worse(keys[child], rows[child], key, row):
                keys[pos] = keys[child]
                rows[pos] = rows[child]
                pos = child
            else:
                break
        if last > 0:
            keys[pos] = key
            rows[pos] = row


# --------------------------------------------------------------------------- kernels


@njit(nogil=True, inline="always")
def _row_at(ids, use_ids, p):
    return ids[p] if use_ids else p


@njit(nogil=True, parallel=True, cache=True, fastmath=_FASTMATH)
def _scan_one(vectors, ids, use_ids, m, query, mode, k, chunk):
    """One query against rows 0..m-1 (or ids[0..m-1]): per-chunk heaps (nchunks, k).

    One row at a time: the scan is memory-bound, and a single stream per thread is what the
    hardware prefetcher handles best (4-row tiles measured 10-50 % slower here).
    """
    d = vectors.shape[1]
    nchunks = (m + chunk - 1) // chunk
    hk = np.full((nchunks, k), -np.inf, dtype=np.float32)
    hr = np.full((nchunks, k), _SENTINEL, dtype=np.int64)
    for c in prange(nchunks):
        lo = c * chunk
        hi = min(m, lo + chunk)
        keys = hk[c]
        rows = hr[c]
        thr = keys[0]
        for p in range(lo, hi):
            r = _row_at(ids, use_ids, p)
            s = np.float32(0.0)
            if mode == _IP:
                for j in range(d):
                    s += vectors[r, j] * query[j]
            else:
                for j in range(d):
                    t = vectors[r, j] - query[j]
                    s += t * t
                s = -s
            if s >= thr:
                thr = _offer(keys, rows, s, r)
    return hk, hr


@njit(nogil=True, parallel=True, cache=True, fastmath=_FASTMATH)
def _scan_many(vectors, ids, use_ids, m, queries, norms, mode, k, chunk):
    """Queries (rows padded to an even count) against rows 0..m-1 (or ids[0..m-1]).

    Register tile: 4 rows x 2 queries; the 4 rows stay in L1 while every query passes over
    them. l2 uses key = x.q - ||x||^2/2 (norms given), which ranks like -||x - q||^2.
    Returns per-chunk heaps (nchunks, nq, k).
    """
    d = vectors.shape[1]
    nq = queries.shape[0]
    nchunks = (m + chunk - 1) // chunk
    hk = np.full((nchunks, nq, k), -np.inf, dtype=np.float32)
    hr = np.full((nchunks, nq, k), _SENTINEL, dtype=np.int64)
    l2 = mode == _L2_NORMS
    for c in prange(nchunks):
        lo = c * chunk
        hi = min(m, lo + chunk)
        keys = hk[c]
        rows = hr[c]
        for p in range(lo, hi, 4):
            r0 = _row_at(ids, use_ids, p)
            r1 = _row_at(ids, use_ids, min(p + 1, hi - 1))
            r2 = _row_at(ids, use_ids, min(p + 2, hi - 1))
            r3 = _row_at(ids, use_ids, min(p + 3, hi - 1))
            valid = hi - p
            n0 = np.float32(0.0)
            n1 = np.float32(0.0)
            n2 = np.float32(0.0)
            n3 = np.float32(0.0)
            if l2:
                n0 = np.float32(0.5) * norms[r0]
                n1 = np.float32(0.5) * norms[r1]
                n2 = np.float32(0.5) * norms[r2]
                n3 = np.float32(0.5) * norms[r3]
            for a in range(0, nq, 2):
                b = a + 1
                s0 = np.float32(0.0)
                s1 = np.float32(0.0)
                s2 = np.float32(0.0)
                s3 = np.float32(0.0)
                t0 = np.float32(0.0)
                t1 = np.float32(0.0)
                t2 = np.float32(0.0)
                t3 = np.float32(0.0)
                for j in range(d):
                    qa = queries[a, j]
                    qb = queries[b, j]
                    x0 = vectors[r0, j]
                    x1 = vectors[r1, j]
                    x2 = vectors[r2, j]
                    x3 = vectors[r3, j]
                    s0 += x0 * qa
                    s1 += x1 * qa
                    s2 += x2 * qa
                    s3 += x3 * qa
                    t0 += x0 * qb
                    t1 += x1 * qb
                    t2 += x2 * qb
                    t3 += x3 * qb
                s0 -= n0
                s1 -= n1
                s2 -= n2
                s3 -= n3
                t0 -= n0
                t1 -= n1
                t2 -= n2
                t3 -= n3
                ka = keys[a]
                ra = rows[a]
                thr = ka[0]
                if s0 >= thr:
                    thr = _offer(ka, ra, s0, r0)
                if valid > 1 and s1 >= thr:
                    thr = _offer(ka, ra, s1, r1)
                if valid > 2 and s2 >= thr:
                    thr = _offer(ka, ra, s2, r2)
                if valid > 3 and s3 >= thr:
                    thr = _offer(ka, ra, s3, r3)
                kb = keys[b]
                rb = rows[b]
                thr = kb[0]
                if t0 >= thr:
                    thr = _offer(kb, rb, t0, r0)
                if valid > 1 and t1 >= thr:
                    thr = _offer(kb, rb, t1, r1)
                if valid > 2 and t2 >= thr:
                    thr = _offer(kb, rb, t2, r2)
                if valid > 3 and t3 >= thr:
                    thr = _offer(kb, rb, t3, r3)
    return hk, hr


@njit(nogil=True, cache=True)
def _finish(hk, hr, nq, k, mode, query_sq):
    """Merge per-chunk heaps (nchunks, nq_padded, k) into best-first (nq, k) scores and rows.

    Keys become scores here (l2 with norms: ||q||^2 - 2 key, clamped at 0); the final order
    is by score with ties to the lower row, padding (row -1, -inf / +inf) last.
    """
    nchunks = hk.shape[0]
    out_s = np.empty((nq, k), dtype=np.float32)
    out_r = np.empty((nq, k), dtype=np.int64)
    keys = np.empty(k, dtype=np.float32)
    rows = np.empty(k, dtype=np.int64)
    sk = np.empty(k, dtype=np.float32)
    sr = np.empty(k, dtype=np.int64)
    for qi in range(nq):
        keys[:] = -np.inf
        rows[:] = _SENTINEL
        thr = keys[0]
        for c in range(nchunks):
            for t in range(k):
                r = hr[c, qi, t]
                if r == _SENTINEL:
                    continue
                key = hk[c, qi, t]
                if mode == _L2_NORMS:  # final key = -(clamped squared distance)
                    dist = query_sq[qi] - np.float32(2.0) * key
                    key = -max(dist, np.float32(0.0))
                if key >= thr:
                    thr = _offer(keys, rows, key, r)
        _sorted_from_heap(keys, rows, sk, sr)
        for t in range(k):
            key = sk[t]
            r = sr[t]
            if r == _SENTINEL:
                out_r[qi, t] = -1
            else:
                out_r[qi, t] = r
            out_s[qi, t] = key if mode == _IP else -key
    return out_s, out_r


@njit(nogil=True, parallel=True, cache=True, fastmath=_FASTMATH)
def _squared_norms(vectors):
    n, d = vectors.shape
    out = np.empty(n, dtype=np.float32)
    for i in prange(n):
        s = np.float32(0.0)
        for j in range(d):
            v = vectors[i, j]
            s += v * v
        out[i] = s
    return out


# --------------------------------------------------------------------------- public API


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only base-class view (no copy): one Numba specialisation for every caller."""
    v = np.asarray(a).view(np.ndarray)
    v.flags.writeable = False
    return v


def _check_vectors(vectors) -> np.ndarray:
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
        raise ValueError("vectors must be a 2-D float32 numpy array")
    if not vectors.flags.c_contiguous:
        raise ValueError("vectors must be C-contiguous (it is never copied)")
    return _readonly(vectors)


def squared_norms(vectors) -> np.ndarray:
    """||x||^2 of every row as float32 (n,), computed in parallel (Numba threads)."""
    return _squared_norms(_check_vectors(vectors))


def _chunk_rows(m: int, nq: int) -> int:
    threads = numba.get_num_threads()
    want = max(1, threads * _CHUNKS_PER_THREAD)
    # many queries make each row expensive: smaller chunks are still worth a task
    min_rows = _MIN_CHUNK_ROWS if nq == 1 else max(64, _MIN_CHUNK_ROWS // nq)
    chunk = max(min_rows, -(-m // want))
    return (chunk + 3) // 4 * 4


def exact_search(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    allowed: np.ndarray | None = None,
    norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query over the rows of ``vectors``.

    vectors (n, d) float32 C-contiguous; may be a read-only memory map: it is never written
    nor copied. queries (q, d) (converted to float32 if needed; a small copy). metric "ip"
    (higher is better) or "l2" (squared euclidean, lower is better); cosine is "ip" over
    normalised vectors (the caller normalises). allowed: optional bool mask (n,) of the rows
    that may be returned (None = all). norms: optional ||x||^2 (n,) float32 for "l2" batches
    (computed here when missing; single queries do not need them).
    Returns scores (q, k) float32 and rows (q, k) int64, best first, ties to the lower row,
    padded with row -1 and score -inf (ip) / +inf (l2) when fewer than k rows are allowed.
    Releases the GIL; uses ``numba.get_num_threads()`` threads.
    """
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
    vectors = _check_vectors(vectors)
    n, d = vectors.shape
    queries = np.asarray(queries)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2 or queries.shape[1] != d:
        raise ValueError(f"queries must have shape (q, {d}), got {queries.shape}")
    k = int(k)
    if k < 0:
        raise ValueError("k must be >= 0")
    nq = queries.shape[0]
    pad_score = np.float32(-np.inf if metric == "ip" else np.inf)
    if allowed is not None:
        allowed = np.asarray(allowed)
        if allowed.shape != (n,):
            raise ValueError(f"allowed must be a bool mask of shape ({n},)")
        ids = np.flatnonzero(allowed).astype(np.int64, copy=False)
        m = ids.shape[0]
        use_ids = True
    else:
        ids = np.empty(0, dtype=np.int64)
        m = n
        use_ids = False
    if k == 0 or nq == 0 or m == 0:
        return (np.full((nq, k), pad_score, dtype=np.float32),
                np.full((nq, k), -1, dtype=np.int64))
    ids = _readonly(ids)
    chunk = _chunk_rows(m, nq)
    if nq == 1:
        query = _readonly(np.ascontiguousarray(queries[0], dtype=np.float32))
        mode = _IP if metric == "ip" else _L2_DIRECT
        hk, hr = _scan_one(vectors, ids, use_ids, m, query, mode, k, chunk)
        return _finish(hk.reshape(hk.shape[0], 1, k), hr.reshape(hr.shape[0], 1, k), 1, k,
                       mode, np.zeros(1, dtype=np.float32))
    padded = np.zeros((nq + (nq & 1), d), dtype=np.float32)  # even count for the 2-query tile
    padded[:nq] = queries
    mode = _IP if metric == "ip" else _L2_NORMS
    if mode == _L2_NORMS:
        if norms is None:
            norms = _squared_norms(vectors)
        elif np.shape(norms) != (n,):
            raise ValueError(f"norms must have shape ({n},)")
        norms = _readonly(np.ascontiguousarray(norms, dtype=np.float32))
        query_sq = np.einsum("ij,ij->i", padded, padded)[:nq].astype(np.float32)
    else:
        norms = _readonly(np.empty(0, dtype=np.float32))
        query_sq = np.zeros(nq, dtype=np.float32)
    hk, hr = _scan_many(vectors, ids, use_ids, m, _readonly(padded), norms, mode, k, chunk)
    return _finish(hk, hr, nq, k, mode, query_sq)
