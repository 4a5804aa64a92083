"""Exact (brute-force) top-k search: fused Numba distance + selection kernels; pure, no I/O.

Design (DESIGN §5, §9; measured against faiss.IndexFlat in ``bench/exact_kernel.py``):
- The rows are cut into one chunk per thread; each Numba ``prange`` task scores its rows and
  offers them to a bounded binary heap per (chunk, query), so no (q, n) distance matrix is
  built. The per-chunk heaps are merged at the end. One parallel region per call, GIL
  released, Numba's threads only (no BLAS threads to contend with).
- Few queries (``_scan_few``): a streaming scan, its dot product vectorised over d (rows in
  pairs below 64 dimensions); with several queries each small block of rows is scanned by
  every query while it is in cache. Memory-bound, like faiss's sequential scan.
- Many queries (``_scan_many``): a register tile of 4 rows x 4 dimensions, vectorised across
  the (transposed, padded) queries; compute-bound, about BLAS speed, fused with the heaps.
- The per-chunk work is a plain jitted function that the prange body calls (LLVM optimises
  it 25-60 % better there than inlined in the parallel loop), and that small calls run
  directly on the calling thread: waking another costs more than it saves.

Scores are kept internally as a key where higher is better (ip: x.q; l2: -||x - q||^2 on the
scan, -||x - q||^2 / 2 expanded with the norms on the batch tile), and keys map to scores
exactly (negation, doubling), so one heap serves both metrics and sees the reported order.
Ties go to the lower row. Within one call every row goes through the same arithmetic (short
tails repeat a valid row instead of taking another code path), so equal vectors get bit-equal
scores and the tie rule holds exactly; results do not depend on the thread count.
"""
from __future__ import annotations

from contextlib import contextmanager
from enum import IntEnum

import numba
import numpy as np
from numba import njit, prange

from vecdb.index.metric import metric_of
from vecdb.index.topk import EMPTY, heap_offer, heap_sorted

__all__ = ["exact_search", "rescore", "squared_norms"]

# Reassociation and contraction let LLVM vectorise the dot products; no nnan/ninf, because
# -inf padding and NaN rows must compare correctly.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
# Multiply-adds below which one more thread does not pay for waking it (about 0.1-0.3 ms of
# work; on a loaded machine a wake-up can cost milliseconds).
_MIN_WORK_PER_THREAD = 1 << 21
# The scan applies a mask at least 0.15 + 0.05 * queries dense during an in-order pass over
# every row, and gathers the allowed rows of a sparser one (measured on GloVe-50: crossovers
# near 0.18 for one query, 0.35 for four). The batch tile is compute-bound: it always gathers.
_MASK_SCAN_DENSITY = (0.15, 0.05)
_QUERY_LANES = 16  # batch queries are padded to a multiple of one AVX-512 vector of float32



class ScanMode(IntEnum):
    """How a scan kernel scores a row: inner product, squared l2 computed directly, or l2 from
    precomputed squared norms (|x|^2 - 2 q.x, batch tile)."""

    IP = 0
    L2_DIRECT = 1
    L2_NORMS = 2


# plain ints for the kernels (a Numba global is a compile-time constant)
_IP, _L2_DIRECT, _L2_NORMS = int(ScanMode.IP), int(ScanMode.L2_DIRECT), int(ScanMode.L2_NORMS)


# --------------------------------------------------------------------------- kernels


@njit(nogil=True, inline="always")
def _row_at(ids, use_ids, p):
    return ids[p] if use_ids else p


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _few_chunk(vectors, ids, use_ids, mask, use_mask, lo, hi, queries, mode, keys, rows):
    """Scan rows lo..hi-1 (or ids[lo..hi-1]) for every query into heaps keys/rows (nq, k).

    A streaming scan, its dot product vectorised over d. Below 64 dimensions the loop
    overhead per row dominates, so rows go in pairs (two sums in one loop; measured 20-30 %
    faster at d=50, and 2-3x slower from d=192, where rows go one at a time). Several queries
    take turns on blocks of 64 rows, so each block is read from memory once. l2 is the direct
    sum of squares (no norms needed). An odd last row is paired with itself and offered once.
    """
    if hi <= lo:
        return
    d = vectors.shape[1]
    nq = queries.shape[0]
    pairs = d < 64
    block = hi - lo if nq == 1 else 64  # one query: a plain streaming scan
    for b0 in range(lo, hi, block):
        b1 = min(hi, b0 + block)
        for a in range(nq):
            ka = keys[a]
            ra = rows[a]
            thr = ka[0]
            query = queries[a]
            if pairs:
                for p in range(b0, b1, 2):
                    r0 = _row_at(ids, use_ids, p)
                    r1 = _row_at(ids, use_ids, min(p + 1, b1 - 1))
                    s0 = np.float32(0.0)
                    s1 = np.float32(0.0)
                    if mode == _IP:
                        for j in range(d):
                            qj = query[j]
                            s0 += vectors[r0, j] * qj
                            s1 += vectors[r1, j] * qj
                    else:
                        for j in range(d):
                            qj = query[j]
                            t0 = vectors[r0, j] - qj
                            t1 = vectors[r1, j] - qj
                            s0 -= t0 * t0
                            s1 -= t1 * t1
                    if s0 >= thr and (not use_mask or mask[r0]):
                        thr = heap_offer(ka, ra, s0, r0)
                    if s1 >= thr and p + 1 < b1 and (not use_mask or mask[r1]):
                        thr = heap_offer(ka, ra, s1, r1)
            elif mode == _IP:
                for p in range(b0, b1):
                    r = _row_at(ids, use_ids, p)
                    s = np.float32(0.0)
                    for j in range(d):
                        s += vectors[r, j] * query[j]
                    if s >= thr and (not use_mask or mask[r]):
                        thr = heap_offer(ka, ra, s, r)
            else:
                for p in range(b0, b1):
                    r = _row_at(ids, use_ids, p)
                    s = np.float32(0.0)
                    for j in range(d):
                        t = vectors[r, j] - query[j]
                        s -= t * t
                    if s >= thr and (not use_mask or mask[r]):
                        thr = heap_offer(ka, ra, s, r)


@njit(nogil=True, parallel=True, cache=True)
def _scan_few(vectors, ids, use_ids, mask, use_mask, m, queries, mode, chunk, hk, hr):
    """_few_chunk over rows 0..m-1 (or ids[0..m-1]), one chunk per task, heaps hk/hr[chunk]."""
    for c in prange(hk.shape[0]):
        _few_chunk(vectors, ids, use_ids, mask, use_mask, c * chunk, min(m, (c + 1) * chunk),
                   queries, mode, hk[c], hr[c])


@njit(nogil=True)
def _offer_rows(keys, rows, thr, nq, s0, s1, s2, s3, r0, r1, r2, r3, valid):
    """Offer a 4-row score tile to the heaps of the queries whose threshold it reaches."""
    for a in range(nq):
        t = thr[a]
        if (s0[a] >= t) | (s1[a] >= t) | (s2[a] >= t) | (s3[a] >= t):
            ka = keys[a]
            ra = rows[a]
            if s0[a] >= t:
                t = heap_offer(ka, ra, s0[a], r0)
            if valid > 1 and s1[a] >= t:
                t = heap_offer(ka, ra, s1[a], r1)
            if valid > 2 and s2[a] >= t:
                t = heap_offer(ka, ra, s2[a], r2)
            if valid > 3 and s3[a] >= t:
                t = heap_offer(ka, ra, s3[a], r3)
            thr[a] = t


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _many_chunk(vectors, ids, use_ids, lo, hi, qt, nq, norms, half_qsq, mode, keys, rows):
    """Queries (qt: transposed, (d, nq_padded)) against rows lo..hi-1 (or ids[lo..hi-1]).

    Register tile: 4 rows x 4 dimensions at a time, vectorised across the queries, so no score
    needs a horizontal sum; the 4 rows stay in L1 while all queries pass. l2 starts each score
    at -(||q||^2 + ||x||^2)/2 (half_qsq = -||q||^2/2) and clamps it at 0, so the key is
    -||x - q||^2 / 2 exactly as reported (score = -2 key): heaps and ties see the final
    distance. Fills the heaps keys/rows (nq, k).
    """
    d = vectors.shape[1]
    nqp = qt.shape[1]
    d4 = d - d % 4
    l2 = mode == _L2_NORMS
    thr = np.full(nqp, np.inf, dtype=np.float32)  # padded queries never admit anything
    thr[:nq] = -np.inf
    s0 = np.empty(nqp, dtype=np.float32)
    s1 = np.empty(nqp, dtype=np.float32)
    s2 = np.empty(nqp, dtype=np.float32)
    s3 = np.empty(nqp, dtype=np.float32)
    for p in range(lo, hi, 4):
        r0 = _row_at(ids, use_ids, p)
        r1 = _row_at(ids, use_ids, min(p + 1, hi - 1))
        r2 = _row_at(ids, use_ids, min(p + 2, hi - 1))
        r3 = _row_at(ids, use_ids, min(p + 3, hi - 1))
        if l2:
            h0 = np.float32(0.5) * norms[r0]
            h1 = np.float32(0.5) * norms[r1]
            h2 = np.float32(0.5) * norms[r2]
            h3 = np.float32(0.5) * norms[r3]
            for a in range(nqp):
                s0[a] = half_qsq[a] - h0
                s1[a] = half_qsq[a] - h1
                s2[a] = half_qsq[a] - h2
                s3[a] = half_qsq[a] - h3
        else:
            s0[:] = 0.0
            s1[:] = 0.0
            s2[:] = 0.0
            s3[:] = 0.0
        for j in range(0, d4, 4):
            a0 = vectors[r0, j]
            a1 = vectors[r0, j + 1]
            a2 = vectors[r0, j + 2]
            a3 = vectors[r0, j + 3]
            b0 = vectors[r1, j]
            b1 = vectors[r1, j + 1]
            b2 = vectors[r1, j + 2]
            b3 = vectors[r1, j + 3]
            c0 = vectors[r2, j]
            c1 = vectors[r2, j + 1]
            c2 = vectors[r2, j + 2]
            c3 = vectors[r2, j + 3]
            e0 = vectors[r3, j]
            e1 = vectors[r3, j + 1]
            e2 = vectors[r3, j + 2]
            e3 = vectors[r3, j + 3]
            for a in range(nqp):
                w0 = qt[j, a]
                w1 = qt[j + 1, a]
                w2 = qt[j + 2, a]
                w3 = qt[j + 3, a]
                s0[a] += a0 * w0 + a1 * w1 + a2 * w2 + a3 * w3
                s1[a] += b0 * w0 + b1 * w1 + b2 * w2 + b3 * w3
                s2[a] += c0 * w0 + c1 * w1 + c2 * w2 + c3 * w3
                s3[a] += e0 * w0 + e1 * w1 + e2 * w2 + e3 * w3
        for j in range(d4, d):
            a0 = vectors[r0, j]
            b0 = vectors[r1, j]
            c0 = vectors[r2, j]
            e0 = vectors[r3, j]
            for a in range(nqp):
                w0 = qt[j, a]
                s0[a] += a0 * w0
                s1[a] += b0 * w0
                s2[a] += c0 * w0
                s3[a] += e0 * w0
        if l2:  # rounding can leave a distance just below 0: report 0
            for a in range(nqp):
                s0[a] = min(s0[a], np.float32(0.0))
                s1[a] = min(s1[a], np.float32(0.0))
                s2[a] = min(s2[a], np.float32(0.0))
                s3[a] = min(s3[a], np.float32(0.0))
        hits = 0
        for a in range(nqp):  # compares, not max(): a NaN score must not hide its neighbours
            t = thr[a]
            hits += (s0[a] >= t) | (s1[a] >= t) | (s2[a] >= t) | (s3[a] >= t)
        if hits:
            _offer_rows(keys, rows, thr, nq, s0, s1, s2, s3, r0, r1, r2, r3, hi - p)


@njit(nogil=True, parallel=True, cache=True)
def _scan_many(vectors, ids, use_ids, m, qt, nq, norms, half_qsq, mode, chunk, hk, hr):
    """_many_chunk over rows 0..m-1 (or ids[0..m-1]), one chunk per task, heaps hk/hr[chunk]."""
    for c in prange(hk.shape[0]):
        _many_chunk(vectors, ids, use_ids, c * chunk, min(m, (c + 1) * chunk), qt, nq, norms,
                    half_qsq, mode, hk[c], hr[c])


@njit(nogil=True, cache=True)
def _finish(hk, hr, k, mode):
    """Merge per-chunk heaps (nchunks, nq, k) into best-first (nq, k) float32 scores and rows.

    Keys map to scores exactly (ip: key; l2: -key on the scan, -2 key on the batch tile), so
    the order the heaps saw is the order reported. Slots stay empty (row -1, the padding
    score) only if rows scored NaN.
    """
    nchunks, nq = hk.shape[0], hk.shape[1]
    scale = np.float32(1.0 if mode == _IP else (-1.0 if mode == _L2_DIRECT else -2.0))
    out_s = np.empty((nq, k), dtype=np.float32)
    out_r = np.empty((nq, k), dtype=np.int64)
    keys = np.empty(k, dtype=np.float32)
    rows = np.empty(k, dtype=np.int64)
    for qi in range(nq):
        if nchunks == 1:
            keys[:] = hk[0, qi]
            rows[:] = hr[0, qi]
        else:
            keys[:] = -np.inf
            rows[:] = EMPTY
            root = keys[0]
            for c in range(nchunks):
                for t in range(k):
                    if hk[c, qi, t] >= root and hr[c, qi, t] != EMPTY:
                        root = heap_offer(keys, rows, hk[c, qi, t], hr[c, qi, t])
        heap_sorted(keys, rows, out_s[qi], out_r[qi])
        for t in range(k):
            out_s[qi, t] = out_s[qi, t] * scale + np.float32(0.0)  # + 0: no -0.0 distances
            if out_r[qi, t] == EMPTY:  # only when rows scored NaN: they are never returned
                out_r[qi, t] = -1
    return out_s, out_r


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _rescore_rows(vectors, queries, cand, k, mode):
    """Each query's candidate rows (cand[i], -1: none) scored exactly through a k-heap."""
    d = vectors.shape[1]
    nq = cand.shape[0]
    keys = np.full((1, nq, k), -np.inf, dtype=np.float32)
    rows = np.full((1, nq, k), EMPTY, dtype=np.int64)
    for qi in range(nq):
        q = queries[qi]
        root = keys[0, qi, 0]
        for t in range(cand.shape[1]):
            r = cand[qi, t]
            if r < 0:
                continue
            if r >= vectors.shape[0]:     # no bounds checks below: refuse a row out of range
                raise ValueError("a candidate row is out of range")
            x = vectors[r]
            s = np.float32(0.0)
            if mode == _IP:
                for j in range(d):
                    s += x[j] * q[j]
            else:
                for j in range(d):
                    diff = x[j] - q[j]
                    s += diff * diff
                s = -s
            if s >= root:
                root = heap_offer(keys[0, qi], rows[0, qi], s, r)
    return _finish(keys, rows, k, mode)


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


_NO_IDS = _readonly(np.empty(0, dtype=np.int64))
_NO_MASK = _readonly(np.empty(0, dtype=np.bool_))
_NO_NORMS = _readonly(np.empty(0, dtype=np.float32))


def _check_vectors(vectors) -> np.ndarray:
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
        raise ValueError("vectors must be a 2-D float32 numpy array")
    if not vectors.flags.c_contiguous:
        raise ValueError("vectors must be C-contiguous (it is never copied)")
    return _readonly(vectors)


def squared_norms(vectors) -> np.ndarray:
    """||x||^2 of every row as float32 (n,), computed in parallel (Numba threads)."""
    return _squared_norms(_check_vectors(vectors))


def _plan(m: int, d: int, nq: int, threads: int) -> tuple[int, int]:
    """(threads to use, rows per chunk): one chunk per thread, fewer threads for small work."""
    use = int(max(1, min(threads, (m * d * nq) // _MIN_WORK_PER_THREAD, m // 64)))
    return use, -(-m // use)


def _many_min_queries(d: int) -> int:
    """Fewest queries for which the batch tile beats the scan (measured: GloVe-50, 384-d)."""
    return 8 if d <= 128 else 14


def check_queries(queries, d: int, k) -> tuple[np.ndarray, int]:
    """Queries as a 2-D array of width ``d`` (one vector becomes one row) and k as an int >= 0."""
    queries = np.asarray(queries)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2 or queries.shape[1] != d:
        raise ValueError(f"queries must have shape (q, {d}), got {queries.shape}")
    k = int(k)
    if k < 0:
        raise ValueError("k must be >= 0")
    return queries, k


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
    queries, k = check_queries(queries, d, k)
    nq = queries.shape[0]
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=np.bool_)  # a copy only if it was not bool
        if allowed.shape != (n,):
            raise ValueError(f"allowed must be a bool mask of shape ({n},)")
    if norms is not None and np.shape(norms) != (n,):
        raise ValueError(f"norms must have shape ({n},)")
    pad_score = np.float32(metric_of(metric).worst)
    out_s = np.full((nq, k), pad_score, dtype=np.float32)
    out_r = np.full((nq, k), -1, dtype=np.int64)
    count = n if allowed is None else int(np.count_nonzero(allowed))
    kk = min(k, count)  # heaps never hold more than the rows that can fill them
    if kk == 0 or nq == 0:
        return out_s, out_r
    few = nq < _many_min_queries(d)
    ids, mask, m = _NO_IDS, _NO_MASK, n
    if allowed is not None and count < n:
        if few and count >= (_MASK_SCAN_DENSITY[0] + _MASK_SCAN_DENSITY[1] * nq) * n:
            mask = _readonly(allowed)  # scan every row in order and skip the others
        else:
            ids = _readonly(np.flatnonzero(allowed))  # visit the allowed rows only
            m = count
    use, chunk = _plan(m, d, nq, numba.get_num_threads())
    if few:
        scores, rows = _search_few(vectors, queries, kk, metric, ids, mask, m, use, chunk)
    else:
        scores, rows = _search_many(vectors, queries, kk, metric, ids, m, norms, use, chunk)
    out_s[:, :kk] = scores
    out_r[:, :kk] = rows
    return out_s, out_r


def rescore(vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int,
            metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query among its own candidate rows: re-ranking an ANN index's
    approximate candidates (q, c) int64 (-1: none; each row at most once per query) on the
    original ``vectors``. Returns scores and rows as ``exact_search`` does, padded the same way.
    """
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
    vectors = _check_vectors(vectors)
    queries, k = check_queries(queries, vectors.shape[1], k)
    cand = np.ascontiguousarray(candidates, dtype=np.int64)
    if cand.shape[0] != queries.shape[0]:
        raise ValueError(f"candidates must have one row per query, got {cand.shape}")
    mode = _IP if metric == "ip" else _L2_DIRECT
    if k == 0:
        return np.empty((queries.shape[0], 0), np.float32), np.empty((queries.shape[0], 0), np.int64)
    return _rescore_rows(vectors, _readonly(np.ascontiguousarray(queries, dtype=np.float32)), cand,
                         k, mode)


def _heaps(use: int, nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty heaps, one per (chunk, query): keys (use, nq, k) and rows."""
    return (np.full((use, nq, k), -np.inf, dtype=np.float32),
            np.full((use, nq, k), EMPTY, dtype=np.int64))


@contextmanager
def _threads(use: int):
    """Run Numba's parallel regions on ``use`` threads here (Numba's setting is per thread)."""
    threads = numba.get_num_threads()
    if use >= threads:
        yield
        return
    numba.set_num_threads(use)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def _search_few(vectors, queries, k, metric, ids, mask, m, use, chunk):
    nq = queries.shape[0]
    mode = _IP if metric == "ip" else _L2_DIRECT
    q32 = _readonly(np.ascontiguousarray(queries, dtype=np.float32))
    hk, hr = _heaps(use, nq, k)
    use_ids, use_mask = ids.shape[0] > 0, mask.shape[0] > 0
    if use == 1:  # no parallel region: nothing to wake
        _few_chunk(vectors, ids, use_ids, mask, use_mask, 0, m, q32, mode, hk[0], hr[0])
    else:
        with _threads(use):
            _scan_few(vectors, ids, use_ids, mask, use_mask, m, q32, mode, chunk, hk, hr)
    return _finish(hk, hr, k, mode)


def _search_many(vectors, queries, k, metric, ids, m, norms, use, chunk):
    d = vectors.shape[1]
    nq = queries.shape[0]
    nq_padded = -(-nq // _QUERY_LANES) * _QUERY_LANES
    qt = np.zeros((d, nq_padded), dtype=np.float32)  # queries transposed: a small copy
    qt[:, :nq] = queries.T
    mode = _IP if metric == "ip" else _L2_NORMS
    half_qsq = np.zeros(nq_padded, dtype=np.float32)
    if mode == _L2_NORMS:
        if norms is None:  # a pass over all rows; callers that keep norms pass them
            norms = _squared_norms(vectors)
        norms = _readonly(np.ascontiguousarray(norms, dtype=np.float32))
        half_qsq[:nq] = np.float32(-0.5) * np.einsum("ji,ji->i", qt[:, :nq], qt[:, :nq])
    else:
        norms = _NO_NORMS
    qt, half_qsq = _readonly(qt), _readonly(half_qsq)
    hk, hr = _heaps(use, nq, k)
    if use == 1:
        _many_chunk(vectors, ids, ids.shape[0] > 0, 0, m, qt, nq, norms, half_qsq, mode, hk[0],
                    hr[0])
    else:
        with _threads(use):
            _scan_many(vectors, ids, ids.shape[0] > 0, m, qt, nq, norms, half_qsq, mode, chunk,
                       hk, hr)
    return _finish(hk, hr, k, mode)
