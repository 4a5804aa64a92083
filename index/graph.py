"""Beam search over an HNSW graph that FAISS built, compiled with Numba (``nogil``).

FAISS builds and stores the graph; searching it here rather than through
``faiss.IndexHNSW.search`` drops FAISS's per-call costs (a visited table of ntotal bytes
allocated and cleared for every query, an OpenMP region, linear-time heap pops) and reads the
float vectors straight from the segment's memory map. The algorithm is FAISS's and hnswlib's:
greedy descent on the upper levels, then a beam of width ``ef`` on level 0. With an allow-list
either every row may be expanded but only allowed rows enter the results, and the beam does not
stop before it holds ``ef`` of them (hnswlib's filtered search), or (``two_hop``) only allowed
rows are scored, reached through up to two hops (ACORN-1, Patel et al. 2024): the allowed
neighbours, then the allowed neighbours of disallowed neighbours, cut at 2m per expansion.

Distances are affine in the stored values, so one kernel serves float32 rows and 8-bit scalar
codes (``x = vmin + (code + 0.5) * vdiff / 255`` per dimension):
inner product ``c + sum(a * x)``, squared L2 ``sum((a - b * x) ** 2)``.
"""
from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from vecdb.index.metric import metric_of

__all__ = ["Graph", "GraphSearcher", "compact_arrays", "compact_graph", "graph_of", "level0_ids", "padded_arrays", "WalkMode"]



class WalkMode(IntEnum):
    """Which rows a beam search walks: all, all but keeping allowed ones only, or allowed ones
    only reached through two hops of the graph (ACORN-1)."""

    ALL = 0
    ALLOWED = 1
    TWO_HOP = 2


# plain ints for the kernels (a Numba global is a compile-time constant)
_ALL, _ALLOWED, _TWO_HOP = int(WalkMode.ALL), int(WalkMode.ALLOWED), int(WalkMode.TWO_HOP)
_EMPTY_ALLOWED = np.zeros(1, np.bool_)
_ZEROS1 = np.zeros(1, np.float32)
PREFETCH_LINES = 8          # cache lines of a row prefetched before its distance is taken
# reassociation for SIMD sums; not nnan/ninf: the beam compares against +inf
_FAST = {"reassoc", "contract", "nsz", "arcp"}


class Graph(NamedTuple):
    """An HNSW graph's arrays, in FAISS's padded layout or the compact one (``compact_arrays``).

    Padded (FAISS's, zero-copy views): node i's level-l list at offsets[i] + cum[l], padded
    with -1. Compact: level-0 lists back to back, node i's at offsets[i]:offsets[i + 1], ids
    split into 16 low bits (``neighbors``) and the high bits (``hi``); upper-level lists stay
    padded in ``up_nb``, for the nodes above level 0 only (``up_nodes``, sorted, and
    ``up_off``: node up_nodes[p]'s level-l list at up_off[p] + cum[l] - cum[1]).
    """

    neighbors: np.ndarray     # padded: int32 ids; compact: uint16 low bits
    offsets: np.ndarray       # padded: int64 (n + 1) (FAISS's uint64, reinterpreted); compact: uint32 or int64
    cum: np.ndarray           # int32, cumulative neighbours per level
    entry: int
    max_level: int
    owner: object             # what the views point into: the FAISS index, or a loaded file's arrays
    hi: np.ndarray = np.zeros(0, np.uint8)           # compact: high bits of the ids
    up_nodes: np.ndarray = np.zeros(0, np.int32)
    up_off: np.ndarray = np.zeros(0, np.int64)
    up_nb: np.ndarray = np.zeros(0, np.int32)
    compact: bool = False


_BLOCK = 1 << 18      # nodes per block when converting layouts


def compact_arrays(neighbors: np.ndarray, offsets: np.ndarray, levels: np.ndarray,
                   cum: np.ndarray) -> dict[str, np.ndarray]:
    """FAISS's padded graph arrays in the compact layout (``Graph``): at m=16 about 3 bytes
    per level-0 link plus 4 per node, against 8 per slot (used or not) plus 12 per node."""
    offsets = np.asarray(offsets).view(np.int64) if offsets.dtype == np.uint64 else np.asarray(offsets, np.int64)
    cum = np.asarray(cum, np.int64)
    n = len(levels)
    ids, deg = [], np.zeros(n, np.int64)
    for lo in range(0, n, _BLOCK):          # in blocks: the (rows, 2m) gather stays small
        lists = neighbors[offsets[lo:min(n, lo + _BLOCK), None] + cum[0] + np.arange(cum[1] - cum[0])]
        valid = lists >= 0                  # FAISS's lists are a prefix of ids, then -1s
        ids.append(lists[valid])
        deg[lo:lo + len(lists)] = valid.sum(axis=1)
    ids = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    adj_off = np.zeros(n + 1, np.int64)
    np.cumsum(deg, out=adj_off[1:])
    up_nodes = np.flatnonzero(levels > 1).astype(np.int32)
    up_levels = np.asarray(levels[up_nodes], np.int32)
    sizes = cum[up_levels] - cum[1]
    up_off = np.zeros(len(up_nodes) + 1, np.int64)
    np.cumsum(sizes, out=up_off[1:])
    src = np.repeat(offsets[up_nodes] + cum[1] - up_off[:-1], sizes) + np.arange(up_off[-1])
    return {"adj_off": adj_off.astype(np.uint32) if adj_off[-1] < 2**32 else adj_off,
            "adj_lo": (ids & 0xFFFF).astype(np.uint16),
            "adj_hi": (ids >> 16).astype(np.uint8 if n <= 1 << 24 else np.uint16),
            "up_nodes": up_nodes, "up_levels": up_levels, "up_off": up_off,
            "up_nb": np.asarray(neighbors[src], np.int32)}


def level0_ids(a: dict[str, np.ndarray], lo: int, hi: int) -> np.ndarray:
    """Entries lo:hi of the compact level-0 lists as int64 ids."""
    return np.asarray(a["adj_lo"][lo:hi], np.int64) | (np.asarray(a["adj_hi"][lo:hi], np.int64) << 16)


def padded_arrays(a: dict[str, np.ndarray], cum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of ``compact_arrays``: FAISS's (neighbors int32, offsets int64, levels int32)."""
    cum = np.asarray(cum, np.int64)
    adj_off = np.asarray(a["adj_off"], np.int64)
    n = len(adj_off) - 1
    levels = np.ones(n, np.int32)
    levels[a["up_nodes"]] = a["up_levels"]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(cum[levels], out=offsets[1:])
    neighbors = np.full(offsets[-1], -1, np.int32)
    deg = np.diff(adj_off)
    node = np.repeat(np.arange(n), deg)
    neighbors[offsets[node] + cum[0] + np.arange(len(node)) - adj_off[node]] = level0_ids(a, 0, len(node))
    up_off = np.asarray(a["up_off"], np.int64)
    sizes = np.diff(up_off)
    dst = np.repeat(offsets[np.asarray(a["up_nodes"], np.int64)] + cum[1] - up_off[:-1], sizes)
    neighbors[dst + np.arange(up_off[-1])] = a["up_nb"]
    return neighbors, offsets, levels


def compact_graph(a: dict[str, np.ndarray], cum: np.ndarray, entry: int, max_level: int) -> Graph:
    """The ``Graph`` over compact arrays (``a`` becomes its owner)."""
    return Graph(a["adj_lo"], a["adj_off"], cum, entry, max_level, a, a["adj_hi"], a["up_nodes"],
                 a["up_off"], a["up_nb"], True)


def _view(vec, dtype) -> np.ndarray:
    import faiss
    n = vec.size()
    if n == 0:
        return np.zeros(0, dtype)
    a = faiss.rev_swig_ptr(vec.data(), n)
    if a.dtype != dtype:
        raise TypeError(f"unexpected FAISS array type {a.dtype}, expected {dtype}")
    return a


def graph_of(faiss_index) -> Graph:
    """The graph of a ``faiss.IndexHNSW*`` (no copy)."""
    h = faiss_index.hnsw
    return Graph(_view(h.neighbors, np.int32), _view(h.offsets, np.uint64).view(np.int64),
                 _view(h.cum_nneighbor_per_level, np.int32), int(h.entry_point), int(h.max_level),
                 faiss_index)


# --------------------------------------------------------------------------- kernels


def _prefetch_codegen(context, builder, sig, args):
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    idx = [context.cast(builder, a, t, types.intp) for a, t in zip(args[1:], sig.args[1:])]
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx)
    i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32]), "llvm.prefetch.p0i8")
    builder.call(fn, [i8p, i32(0), i32(3), i32(1)])     # read, keep in all cache levels, data
    return context.get_dummy_value()


@intrinsic
def _prefetch1(typingctx, arr, i):
    """Prefetch the cache line of ``arr[i]`` (a hint: the graph walk is latency bound)."""
    return types.void(arr, i), _prefetch_codegen


@intrinsic
def _prefetch2(typingctx, arr, i, j):
    """Prefetch the cache line of ``arr[i, j]``."""
    return types.void(arr, i, j), _prefetch_codegen


@njit(inline="always")
def _prefetch_row(data, v):
    """The first lines of row ``v`` (the rest follow through the hardware prefetcher)."""
    step = max(1, 64 // data.itemsize)
    for j in range(0, min(data.shape[1], PREFETCH_LINES * step), step):
        _prefetch2(data, v, j)


@njit(inline="always", fastmath=_FAST)
def _dist(data, v, a, b, c, ip):
    """Distance (lower is better) of stored row ``v`` to the prepared query (a, b, c)."""
    s = np.float32(0.0)
    x = data[v]
    if ip:
        for j in range(a.shape[0]):
            s += a[j] * np.float32(x[j])
        return -(s + c)
    for j in range(a.shape[0]):
        t = a[j] - b[j] * np.float32(x[j])
        s += t * t
    return s


@njit(inline="always", fastmath=_FAST)
def _dist4(data, buf, t, a, b, c, ip, out):
    """Distances of rows buf[t:t + 4] into out[t:t + 4], four loads in flight per step."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    x0 = data[buf[t]]
    x1 = data[buf[t + 1]]
    x2 = data[buf[t + 2]]
    x3 = data[buf[t + 3]]
    if ip:
        for j in range(a.shape[0]):
            aj = a[j]
            s0 += aj * np.float32(x0[j])
            s1 += aj * np.float32(x1[j])
            s2 += aj * np.float32(x2[j])
            s3 += aj * np.float32(x3[j])
        out[t] = -(s0 + c)
        out[t + 1] = -(s1 + c)
        out[t + 2] = -(s2 + c)
        out[t + 3] = -(s3 + c)
        return
    for j in range(a.shape[0]):
        aj = a[j]
        bj = b[j]
        t0 = aj - bj * np.float32(x0[j])
        t1 = aj - bj * np.float32(x1[j])
        t2 = aj - bj * np.float32(x2[j])
        t3 = aj - bj * np.float32(x3[j])
        s0 += t0 * t0
        s1 += t1 * t1
        s2 += t2 * t2
        s3 += t3 * t3
    out[t] = s0
    out[t + 1] = s1
    out[t + 2] = s2
    out[t + 3] = s3


@njit(inline="always", fastmath=_FAST)
def _ip8(data, buf, t, a, c, out):
    """Inner-product distances of rows buf[t:t + 8] into out[t:t + 8] (see ``_dists``)."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    s4 = np.float32(0.0)
    s5 = np.float32(0.0)
    s6 = np.float32(0.0)
    s7 = np.float32(0.0)
    x0 = data[buf[t]]
    x1 = data[buf[t + 1]]
    x2 = data[buf[t + 2]]
    x3 = data[buf[t + 3]]
    x4 = data[buf[t + 4]]
    x5 = data[buf[t + 5]]
    x6 = data[buf[t + 6]]
    x7 = data[buf[t + 7]]
    for j in range(a.shape[0]):
        aj = a[j]
        s0 += aj * np.float32(x0[j])
        s1 += aj * np.float32(x1[j])
        s2 += aj * np.float32(x2[j])
        s3 += aj * np.float32(x3[j])
        s4 += aj * np.float32(x4[j])
        s5 += aj * np.float32(x5[j])
        s6 += aj * np.float32(x6[j])
        s7 += aj * np.float32(x7[j])
    out[t] = -(s0 + c)
    out[t + 1] = -(s1 + c)
    out[t + 2] = -(s2 + c)
    out[t + 3] = -(s3 + c)
    out[t + 4] = -(s4 + c)
    out[t + 5] = -(s5 + c)
    out[t + 6] = -(s6 + c)
    out[t + 7] = -(s7 + c)


@njit(inline="always", fastmath=_FAST)
def _l28(data, buf, t, a, b, out):
    """Squared L2 distances of rows buf[t:t + 8] into out[t:t + 8] (see ``_dists``)."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    s4 = np.float32(0.0)
    s5 = np.float32(0.0)
    s6 = np.float32(0.0)
    s7 = np.float32(0.0)
    x0 = data[buf[t]]
    x1 = data[buf[t + 1]]
    x2 = data[buf[t + 2]]
    x3 = data[buf[t + 3]]
    x4 = data[buf[t + 4]]
    x5 = data[buf[t + 5]]
    x6 = data[buf[t + 6]]
    x7 = data[buf[t + 7]]
    for j in range(a.shape[0]):
        aj = a[j]
        bj = b[j]
        t0 = aj - bj * np.float32(x0[j])
        t1 = aj - bj * np.float32(x1[j])
        t2 = aj - bj * np.float32(x2[j])
        t3 = aj - bj * np.float32(x3[j])
        t4 = aj - bj * np.float32(x4[j])
        t5 = aj - bj * np.float32(x5[j])
        t6 = aj - bj * np.float32(x6[j])
        t7 = aj - bj * np.float32(x7[j])
        s0 += t0 * t0
        s1 += t1 * t1
        s2 += t2 * t2
        s3 += t3 * t3
        s4 += t4 * t4
        s5 += t5 * t5
        s6 += t6 * t6
        s7 += t7 * t7
    out[t] = s0
    out[t + 1] = s1
    out[t + 2] = s2
    out[t + 3] = s3
    out[t + 4] = s4
    out[t + 5] = s5
    out[t + 6] = s6
    out[t + 7] = s7


@njit(inline="always")
def _dists(data, buf, m, a, b, c, ip, out):
    """Distances of rows buf[:m] into out[:m]: eight rows a step (a loop per metric, so each
    vectorises cleanly), then one step of four, then single rows. Eight rows rather than four:
    each load of the query serves eight rows, and more row loads are in flight (the walk waits
    on memory); about 1.1x on 384-d rows, less on short ones."""
    t = 0
    if ip:
        while t + 8 <= m:
            _ip8(data, buf, t, a, c, out)
            t += 8
    else:
        while t + 8 <= m:
            _l28(data, buf, t, a, b, out)
            t += 8
    if t + 4 <= m:
        _dist4(data, buf, t, a, b, c, ip, out)
        t += 4
    while t < m:
        out[t] = _dist(data, buf[t], a, b, c, ip)
        t += 1


@njit(inline="always")
def _push_min(hd, hi, size, d, v):
    """Add (d, v) to a min-heap of ``size`` entries (the results heap holds -distance)."""
    i = size
    while i > 0:
        p = (i - 1) >> 1
        if hd[p] <= d:
            break
        hd[i] = hd[p]
        hi[i] = hi[p]
        i = p
    hd[i] = d
    hi[i] = v


@njit(inline="always")
def _pop_min(hd, hi, size):
    """Remove the root of a min-heap of ``size`` entries (size - 1 remain)."""
    size -= 1
    d = hd[size]
    v = hi[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and hd[c + 1] < hd[c]:
            c += 1
        if hd[c] >= d:
            break
        hd[i] = hd[c]
        hi[i] = hi[c]
        i = c
    hd[i] = d
    hi[i] = v


@njit(inline="always")
def _level0(offsets, cum, compact, node):
    """[start, end) of ``node``'s level-0 list (a padded list may end early at -1)."""
    if compact:
        return np.int64(offsets[node]), np.int64(offsets[node + 1])
    start = np.int64(offsets[node]) + cum[0]
    return start, start + (cum[1] - cum[0])


@njit(inline="always")
def _id(neighbors, hi, compact, j):
    """Neighbour id at ``j``: int32, or 16 low bits plus the high bits when compact."""
    if compact:
        return np.int32(np.int64(neighbors[j]) | (np.int64(hi[j]) << 16))
    return np.int32(neighbors[j])


@njit(inline="always")
def _prefetch_list(neighbors, hi, offsets, cum, compact, node):
    """The start of ``node``'s level-0 list (both halves of its ids when compact)."""
    start = _level0(offsets, cum, compact, node)[0]
    _prefetch1(neighbors, start)
    if compact:
        _prefetch1(hi, start)


@njit(nogil=True)
def _scratch(cum, ef):
    """One worker's buffers, reused query after query: neighbour ids and distances (as long
    as the longest list, level 0's), the result heap and the candidate heap (it may grow)."""
    nmax = cum[1] - cum[0]
    cap = max(64, 2 * ef)
    return (np.empty(nmax, np.int32), np.empty(nmax, np.float32), np.empty(ef + 1, np.float32),
            np.empty(ef + 1, np.int32), np.empty(cap, np.float32), np.empty(cap, np.int32))


@njit(nogil=True, fastmath=_FAST, cache=True)
def _search_one(data, neighbors, offsets, cum, entry, max_level, hi, up_nodes, up_off, up_nb,
                compact, a, b, c, ip, ef, kk, allowed, mode, visited, tag, scratch, out_d, out_i):
    """One query: fills out_d/out_i (kk) best first with FAISS-convention scores."""
    cur = entry
    dcur = _dist(data, cur, a, b, c, ip)
    buf, dbuf, rd, ri, cd, ci = scratch
    cap = cd.shape[0]
    for level in range(max_level, 0, -1):          # greedy descent
        lo = cum[level]
        hi_ = cum[level + 1]
        changed = True
        while changed:
            changed = False
            if compact:                              # upper lists: padded, upper nodes only
                base = up_off[np.searchsorted(up_nodes, cur)] - cum[1]
            else:
                base = np.int64(offsets[cur])
            m = 0
            for j in range(base + lo, base + hi_):
                v = np.int32(up_nb[j]) if compact else np.int32(neighbors[j])
                if v < 0:
                    break
                buf[m] = v
                m += 1
                _prefetch_row(data, v)
            _dists(data, buf, m, a, b, c, ip, dbuf)
            for t in range(m):
                if dbuf[t] < dcur:
                    dcur = dbuf[t]
                    cur = buf[t]
                    changed = True
    # level 0: beam of width ef
    rs = 0
    cs = 0
    inf = np.float32(np.inf)
    lower = inf
    visited[cur] = tag
    if mode == _ALL or allowed[cur]:
        _push_min(rd, ri, rs, -dcur, cur)      # results: a min-heap of -distance
        rs = 1
        lower = dcur
    _push_min(cd, ci, cs, dcur, cur)
    cs = 1
    n0 = cum[1] - cum[0]
    n2 = n0                                        # two-hop lists are cut at this length (<= nmax)
    while cs > 0:
        d0 = cd[0]
        node = ci[0]
        if d0 > lower and (rs == ef or mode != _ALLOWED):
            break
        _pop_min(cd, ci, cs)
        cs -= 1
        base, end = _level0(offsets, cum, compact, node)
        if cs > 0:                                   # the next node to expand, most likely
            _prefetch_list(neighbors, hi, offsets, cum, compact, ci[0])
        m = 0
        if mode == _TWO_HOP:                         # two hops through the graph (ACORN-1)
            for j in range(base, end):
                v = _id(neighbors, hi, compact, j)
                if v < 0:
                    end = j
                    break
                _prefetch_list(neighbors, hi, offsets, cum, compact, v)
                if allowed[v] and visited[v] != tag:
                    visited[v] = tag
                    buf[m] = v
                    m += 1
                    _prefetch_row(data, v)
            for j in range(base, end):
                if m >= n2:
                    break
                v = _id(neighbors, hi, compact, j)
                if allowed[v]:                           # expanded in its own turn
                    continue
                b2, e2 = _level0(offsets, cum, compact, v)
                for j2 in range(b2, e2):
                    w = _id(neighbors, hi, compact, j2)
                    if w < 0 or m >= n2:
                        break
                    if allowed[w] and visited[w] != tag:
                        visited[w] = tag
                        buf[m] = w
                        m += 1
                        _prefetch_row(data, w)
        else:
            for j in range(base, end):               # unvisited neighbours: mark, fetch rows
                v = _id(neighbors, hi, compact, j)
                if v < 0:
                    break
                if visited[v] != tag:
                    visited[v] = tag
                    buf[m] = v
                    m += 1
                    _prefetch_row(data, v)
        _dists(data, buf, m, a, b, c, ip, dbuf)
        for t in range(m):                           # beam update
            v = buf[t]
            d = dbuf[t]
            if rs < ef or d < lower:
                if cs == cap:
                    cap *= 2
                    nd = np.empty(cap, np.float32)
                    ni = np.empty(cap, np.int32)
                    nd[:cs] = cd[:cs]
                    ni[:cs] = ci[:cs]
                    cd = nd
                    ci = ni
                _push_min(cd, ci, cs, d, v)
                cs += 1
                if mode != _ALLOWED or allowed[v]:
                    _push_min(rd, ri, rs, -d, v)
                    rs += 1
                    if rs > ef:
                        _pop_min(rd, ri, rs)
                        rs -= 1
                    lower = -rd[0]
    # results: drain the max-heap from the back
    for t in range(rs - 1, -1, -1):
        d = -rd[0]
        v = ri[0]
        _pop_min(rd, ri, t + 1)
        if t < kk:
            out_d[t] = -d if ip else d
            out_i[t] = v
    for t in range(rs, kk):
        out_d[t] = -inf if ip else inf
        out_i[t] = -1


@njit(nogil=True, cache=True)
def _next_tag(visited, tags, w):
    """A fresh tag for worker ``w``'s visited table (clearing it when the tags run out)."""
    t = tags[w] + 1
    if t >= 255:
        visited[w, :] = 0
        t = 1
    tags[w] = t
    return t


@njit(nogil=True, fastmath=_FAST, cache=True)
def _search_serial(data, neighbors, offsets, cum, entry, max_level, hi, up_nodes, up_off, up_nb,
                   compact, A, b, C, ip, ef, kk, allowed, mode, visited, tags):
    out_d = np.empty((A.shape[0], kk), np.float32)
    out_i = np.empty((A.shape[0], kk), np.int64)
    scratch = _scratch(cum, ef)
    for i in range(A.shape[0]):
        tag = _next_tag(visited, tags, 0)
        _search_one(data, neighbors, offsets, cum, entry, max_level, hi, up_nodes, up_off, up_nb,
                    compact, A[i], b, C[i], ip, ef, kk, allowed, mode, visited[0], tag, scratch,
                    out_d[i], out_i[i])
    return out_d, out_i


@njit(nogil=True, fastmath=_FAST, cache=True, parallel=True)
def _search_parallel(data, neighbors, offsets, cum, entry, max_level, hi, up_nodes, up_off, up_nb,
                     compact, A, b, C, ip, ef, kk, allowed, mode, visited, tags):
    workers = visited.shape[0]
    nq = A.shape[0]
    out_d = np.empty((nq, kk), np.float32)
    out_i = np.empty((nq, kk), np.int64)
    for w in prange(workers):
        scratch = _scratch(cum, ef)
        for i in range(w, nq, workers):
            tag = _next_tag(visited, tags, w)
            _search_one(data, neighbors, offsets, cum, entry, max_level, hi, up_nodes, up_off,
                        up_nb, compact, A[i], b, C[i], ip, ef, kk, allowed, mode, visited[w], tag,
                        scratch, out_d[i], out_i[i])
    return out_d, out_i


# --------------------------------------------------------------------------- searcher


class GraphSearcher:
    """Searches one HNSW graph over float32 rows or SQ8 codes; thread-safe.

    ``data`` is (n, d) float32 rows or uint8 codes; for codes, ``vmin``/``vdiff`` (d,) decode
    them. Visited tables (uint8 tags, n bytes, cleared once every 254 queries) are pooled per
    worker count, so a query allocates nothing of size n.
    """

    def __init__(self, graph: Graph, data: np.ndarray, metric: str,
                 vmin: np.ndarray | None = None, vdiff: np.ndarray | None = None):
        self.graph = graph       # keeps graph.owner (the FAISS index the views point into) alive
        # the kernel's leading arguments, as base-class arrays: Numba types a numpy.memmap (a
        # loaded file's arrays) through a slow path, about 0.5 us per array on every call
        self._args = (np.asarray(data), np.asarray(graph.neighbors), np.asarray(graph.offsets),
                      np.asarray(graph.cum), graph.entry, graph.max_level, np.asarray(graph.hi),
                      np.asarray(graph.up_nodes), np.asarray(graph.up_off), np.asarray(graph.up_nb),
                      graph.compact)
        self.ip = metric == "ip"
        self.n = len(data)
        self.dim = data.shape[1]
        if vmin is None:
            self._scale = None
            self._b = np.ones(self.dim, np.float32)
        else:
            scale = np.ascontiguousarray(vdiff, np.float32) / np.float32(255.0)
            self._scale = scale
            self._vmin = np.ascontiguousarray(vmin, np.float32) + np.float32(0.5) * scale
            self._b = scale
        self._pool: dict[int, list] = {}

    def _prepare(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, C): per-query coefficients of the affine distance."""
        nq = len(q)
        if q.shape[1] != self.dim:           # SQ codes are zero-padded to a multiple of 8
            qq = np.zeros((nq, self.dim), np.float32)
            qq[:, :q.shape[1]] = q
            q = qq
        if self._scale is None:
            return q, (_ZEROS1 if nq == 1 else np.zeros(nq, np.float32))
        if self.ip:
            return np.ascontiguousarray(q * self._scale), (q @ self._vmin).astype(np.float32)
        return np.ascontiguousarray(q - self._vmin), np.zeros(nq, np.float32)

    def _take(self, workers: int):
        free = self._pool.get(workers)
        if free:
            try:
                return free.pop()               # atomic under the GIL: no lock needed
            except IndexError:                  # another thread took the last one
                pass
        return np.zeros((workers, self.n), np.uint8), np.zeros(workers, np.int64)

    def _give(self, workers: int, tables) -> None:
        self._pool.setdefault(workers, []).append(tables)

    def search(self, q: np.ndarray, kk: int, ef: int, allowed: np.ndarray | None = None,
               two_hop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(D, I) (nq, kk) in FAISS's convention: D similarity (ip) or squared distance (l2),
        best first; I int64 row numbers, -1 where fewer than kk (allowed) rows were reached."""
        nq = len(q)
        if nq == 0 or self.n == 0:
            return metric_of("ip" if self.ip else "l2").pad(nq, kk)
        A, C = self._prepare(q)
        mode = int(WalkMode.ALL if allowed is None else (WalkMode.TWO_HOP if two_hop else WalkMode.ALLOWED))
        allow = _EMPTY_ALLOWED if allowed is None else allowed
        ef = max(int(ef), int(kk))
        workers = 1 if nq == 1 else min(nq, numba.get_num_threads())
        tables = self._take(workers)
        try:
            kernel = _search_serial if workers == 1 else _search_parallel
            return kernel(*self._args, A, self._b, C, self.ip, ef, kk, allow, mode, tables[0], tables[1])
        finally:
            self._give(workers, tables)
