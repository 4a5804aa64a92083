"""Inverted-file indexes (FAISS): float32 lists (``ivf_flat``) and PQ codes with rescoring (``ivf_pq``)."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from vecdb.errors import InvalidArgument
from vecdb.index.base import pad
from vecdb.index.faiss_base import FaissIndex, _faiss, ceil_div
from vecdb.index.planner import Strategy

__all__ = ["IVFFlatIndex", "IVFPQIndex", "auto_nlist", "auto_pq_m"]

MIN_POINTS_PER_LIST = 39     # FAISS warns below this many training points per centroid


def auto_nlist(n: int) -> int:
    """About 4*sqrt(n) lists, but never fewer than 39 training points per list (>= 1)."""
    return max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_LIST))


def auto_pq_m(dim: int) -> int:
    """PQ sub-quantizers: sub-vectors of 2 dimensions up to dim 256, of 4 beyond (8x / 16x
    smaller than float32 at 8 bits); a dim that does not split evenly is zero-padded."""
    return -(-dim // (2 if dim <= 256 else 4))


@njit(nogil=True, cache=True)
def _allowed_per_list(lists: np.ndarray, allowed: np.ndarray, nlist: int) -> np.ndarray:
    """How many allowed rows each inverted list holds (one pass, no temporaries)."""
    out = np.zeros(nlist, np.int64)
    for i in range(lists.shape[0]):
        out[lists[i]] += allowed[i]      # branch-free: a random mask defeats prediction
    return out


def _tiled(v: np.ndarray, need: int) -> np.ndarray:
    """At least ``need`` training rows: k-means cannot fit more centroids than points, so a
    tiny segment repeats its rows (duplicate centroids and empty lists are harmless)."""
    return v if len(v) >= need else np.tile(v, (-(-need // len(v)), 1))


class IVFFlatIndex(FaissIndex):
    """``faiss.IndexIVFFlat``: build param nlist (None: auto at build), search param nprobe.

    With an allow-list and ``filter_widen`` each query probes its nearest lists until they
    hold as many allowed rows as an unfiltered search scans rows (counted per list, so a
    filter correlated with the query region gets more lists), via FAISS's preassigned search;
    an exact scan of the allowed rows replaces it where that is about as cheap.
    """

    kind = "ivf_flat"

    def __init__(self, dim: int, metric: str, **params):
        super().__init__(dim, metric, **params)
        self._lists: tuple[np.ndarray, np.ndarray] | None = None   # see _list_of_row

    def _quantizer(self):
        f = _faiss()
        return f.IndexFlatIP(self._fdim) if self.metric == "ip" else f.IndexFlatL2(self._fdim)

    def _nlist(self, n: int) -> int:
        nlist = self.params["nlist"] or auto_nlist(n)
        self._build["nlist"] = nlist
        return nlist

    def _new(self, n: int):
        quantizer = self._quantizer()
        index = _faiss().IndexIVFFlat(quantizer, self._fdim, self._nlist(n), self.faiss_metric)
        self._configure(index)
        return index

    def _configure(self, index) -> None:
        """Clustering settings (FAISS's constructor keeps the quantizer alive)."""
        index.cp.min_points_per_centroid = 1         # tiny segments are tiled, not warned about
        index.cp.spherical = self.metric == "ip"

    def _train(self, v: np.ndarray) -> None:
        self._index.train(_tiled(v, self._index.nlist))

    @property
    def nlist(self) -> int:
        return 0 if self._index is None else int(self._index.nlist)

    def _search(self, q, k, allowed, count, p, ran):
        rescore = p.get("rescore", 0)
        kk = k * rescore if rescore else k
        nprobe = min(p["nprobe"], self.nlist)
        if allowed is None or not p["filter_widen"]:
            sel, bits = self._selector(allowed)
            sp = _faiss().SearchParametersIVF()
            sp.nprobe = nprobe
            if sel is not None:
                sp.sel = sel
            D, I = self._index.search(self._fx(q), kk, params=sp)
            del sel, bits       # kept alive until FAISS returned
            return self._finish(q, k, D, I, rescore)
        # Scan, per query, the nearest lists until they hold as many allowed rows as an
        # unfiltered search scans rows (a filter correlated with the query region needs more
        # lists, a random one about nprobe / selectivity). Exact instead when that is as
        # costly: every allowed row would be needed, or the lists hold so many other rows
        # (a membership test costs about a quarter of a distance) that a scan is cheaper.
        target = ceil_div(self.ntotal * nprobe, self.nlist)
        if target >= count:
            ran.append(Strategy.INDEX_SCAN)
            return self._exact(q, k, allowed)
        lists, sizes = self._list_of_row()
        per_list = _allowed_per_list(lists, allowed, self.nlist)
        fq = self._fx(q)
        # rank the nearest lists: 4x the lists a random filter needs, all if that falls short
        Dq, Iq = self._index.quantizer.search(fq, min(self.nlist, 4 * ceil_div(nprobe * self.ntotal, count)))
        seen = np.cumsum(per_list[np.maximum(Iq, 0)], axis=1)
        if Iq.shape[1] < self.nlist and (seen[:, -1] < target).any():
            Dq, Iq = self._index.quantizer.search(fq, self.nlist)
            seen = np.cumsum(per_list[np.maximum(Iq, 0)], axis=1)
        need = (seen < target).sum(axis=1) + 1
        rows_in_lists = np.take_along_axis(np.cumsum(sizes[np.maximum(Iq, 0)], axis=1), need[:, None] - 1, 1)[:, 0]
        exact = rows_in_lists / 4 + target >= count
        scores, rows = pad(len(q), k, self.metric)
        g, e = np.flatnonzero(~exact), np.flatnonzero(exact)
        if len(g):
            width = int(need[g].max())
            assign = np.where(np.arange(width) < need[g, None], Iq[g, :width], -1)
            D, I = self._preassigned(fq[g], kk, assign, Dq[g, :width], allowed)
            scores[g], rows[g] = self._finish(q[g], k, D, I, rescore)
        if len(e):
            ran.append(Strategy.INDEX_SCAN)
            scores[e], rows[e] = self._exact(q[e], k, allowed)
        return scores, rows

    def _preassigned(self, q: np.ndarray, kk: int, assign: np.ndarray, coarse: np.ndarray,
                     allowed: np.ndarray):
        """Scan the given lists per query (-1: none) for the allowed rows; (D, I) of width kk."""
        f = _faiss()
        q = np.ascontiguousarray(q)
        assign = np.ascontiguousarray(assign, dtype=np.int64)
        coarse = np.ascontiguousarray(coarse, dtype=np.float32)
        D = np.empty((len(q), kk), np.float32)
        I = np.empty((len(q), kk), np.int64)
        sel, bits = self._selector(allowed)
        sp = f.SearchParametersIVF()
        sp.nprobe = assign.shape[1]
        sp.sel = sel
        self._index.search_preassigned_c(len(q), f.swig_ptr(q), kk, f.swig_ptr(assign),
                                         f.swig_ptr(coarse), f.swig_ptr(D), f.swig_ptr(I), False, sp)
        del sel, bits       # kept alive until FAISS returned
        return D, I

    def _list_of_row(self) -> tuple[np.ndarray, np.ndarray]:
        """(list of every row int32 (ntotal,), rows per list (nlist,)), read from FAISS once."""
        cached = self._lists
        if cached is None or len(cached[0]) != self.ntotal:
            f = _faiss()
            invlists = self._index.invlists
            lists = np.empty(self.ntotal, np.int32)
            sizes = np.zeros(self.nlist, np.int64)
            for lst in range(self.nlist):
                sizes[lst] = invlists.list_size(lst)
                if sizes[lst]:
                    lists[f.rev_swig_ptr(invlists.get_ids(lst), int(sizes[lst]))] = lst
            self._lists = cached = (lists, sizes)
        return cached

    def memory_bytes(self) -> int:
        if self._index is None:
            return 0
        index = self._index
        lists = index.ntotal * (index.code_size + 8)            # codes + int64 ids
        lor = 0 if self._lists is None else self._lists[0].nbytes + self._lists[1].nbytes
        return int(lists + index.nlist * self._fdim * 4 + lor + self._extra_bytes())

    def _extra_bytes(self) -> int:
        return 0


class IVFPQIndex(IVFFlatIndex):
    """``faiss.IndexIVFPQ`` (residual PQ, m sub-quantizers of nbits) re-ranked on the originals.

    ``rescore`` r >= 1 takes r*k PQ candidates and returns the best k by exact scores on the
    segment's vectors (so scores are exact); r = 0 returns PQ-estimated scores.
    """

    kind = "ivf_pq"

    def __init__(self, dim: int, metric: str, **params):
        super().__init__(dim, metric, **params)
        m = self.params["m"]
        if m is not None and m > self.dim:
            raise InvalidArgument(f"index 'ivf_pq': parameter 'm' ({m}) must be at most dim ({self.dim})")
        self._m = m or auto_pq_m(self.dim)
        self._fdim = -(-self.dim // self._m) * self._m     # zero-padded to whole sub-vectors

    def _new(self, n: int):
        nbits = self.params["nbits"]
        self._build.update(m=self._m, nbits=nbits)
        quantizer = self._quantizer()
        index = _faiss().IndexIVFPQ(quantizer, self._fdim, self._nlist(n), self._m, nbits, self.faiss_metric)
        self._configure(index)
        index.pq.cp.min_points_per_centroid = 1
        return index

    def _train(self, v: np.ndarray) -> None:
        self._index.train(_tiled(v, max(self._index.nlist, 1 << self._index.pq.nbits)))

    def _extra_bytes(self) -> int:
        index = self._index
        return int(index.pq.centroids.size() * 4 + index.precomputed_table.size() * 4)
