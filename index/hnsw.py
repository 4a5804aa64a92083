"""HNSW graphs (FAISS): over float32 vectors (``hnsw``) and over 8-bit scalar codes (``hnsw_sq8``)."""
from __future__ import annotations

import numpy as np

from vecdb.index.base import FaissIndex, _faiss, pad

__all__ = ["HNSWFlatIndex", "HNSWSQ8Index"]


class HNSWFlatIndex(FaissIndex):
    """``faiss.IndexHNSWFlat``: build params m, ef_construction; search param ef.

    With an allow-list (and ``filter_widen``), FAISS walks the whole graph but keeps only
    allowed rows, so its beam must hold enough of them. Per query:
    1. post-filter: when the ef nearest rows should hold k allowed ones (selectivity * ef >= k),
       search without the filter; if k of the ef nearest are allowed they are the answer;
    2. otherwise widen the beam to ef / s, s the smaller of the global selectivity and the one
       seen among those ef nearest (a filter correlated with the query region shows up here);
    3. when that beam would compute about as many distances (ef' * m) as an exact scan of the
       allowed rows, scan them exactly instead.
    """

    kind = "hnsw"

    def _new(self, n: int):
        index = _faiss().IndexHNSWFlat(self._fdim, self.params["m"], self.faiss_metric)
        return self._configure(index)

    def _configure(self, index):
        index.hnsw.efConstruction = self.params["ef_construction"]
        self._build.update(m=self.params["m"], ef_construction=self.params["ef_construction"])
        return index

    def _graph(self, q: np.ndarray, kk: int, ef: int, allowed: np.ndarray | None):
        """FAISS search, (D, I) of width kk, with beam ef and an optional allow-list."""
        sel, bits = self._selector(allowed)
        sp = _faiss().SearchParametersHNSW()
        sp.efSearch = int(ef)
        if sel is not None:
            sp.sel = sel
        D, I = self._index.search(self._fx(q), kk, params=sp)
        del sel, bits       # kept alive until FAISS returned
        return D, I

    def _search(self, q, k, allowed, count, p):
        rescore = p.get("rescore", 0)
        kk = k * rescore if rescore else k
        ef = max(p["ef"], kk)
        if allowed is None or not p["filter_widen"]:
            D, I = self._graph(q, kk, ef, allowed)
            return self._finish(q, k, D, I, rescore)
        nq = len(q)
        s = count / self.ntotal
        scores, rows = pad(nq, k, self.metric)
        rest = np.arange(nq)
        local = np.full(nq, s)
        if s * ef >= kk:                                    # 1. post-filter
            D, I = self._graph(q, ef, ef, None)
            ok = (I >= 0) & allowed[np.maximum(I, 0)]
            found = ok.sum(axis=1)
            done = found >= kk
            if done.any():
                first = np.argsort(~ok[done], axis=1, kind="stable")[:, :kk]   # allowed, in order
                scores[done], rows[done] = self._finish(
                    q[done], k, np.take_along_axis(D[done], first, 1),
                    np.take_along_axis(I[done], first, 1), rescore)
            rest = np.flatnonzero(~done)
            local = np.minimum(s, np.maximum(found, 1) / ef)
        if len(rest):
            wide = np.ceil(ef / local[rest])                # 2. widen
            m = self._build.get("m", self.params["m"])     # as built (the file's, once loaded)
            exact = wide * m >= count                       # 3. exact is as cheap
            g, e = rest[~exact], rest[exact]
            if len(g):
                D, I = self._graph(q[g], kk, min(wide[~exact].max(), self.ntotal), allowed)
                scores[g], rows[g] = self._finish(q[g], k, D, I, rescore)
            if len(e):
                scores[e], rows[e] = self._exact(q[e], k, allowed)
        return scores, rows

    def memory_bytes(self) -> int:
        if self._index is None:
            return 0
        h = self._index.hnsw
        graph = (h.neighbors.size() * 4 + h.levels.size() * 4 + h.offsets.size() * 8
                 + h.assign_probas.size() * 8 + h.cum_nneighbor_per_level.size() * 4)
        return int(graph + self._storage_bytes())

    def _storage_bytes(self) -> int:
        return int(_faiss().downcast_index(self._index.storage).codes.size())


class HNSWSQ8Index(HNSWFlatIndex):
    """``faiss.IndexHNSWSQ`` with 8-bit per-dimension codes (4x smaller than float32).

    The graph is walked on the codes; ``rescore`` r >= 1 re-ranks the best r*k candidates by
    exact scores on the original (segment) vectors, so returned scores are then exact.
    """

    kind = "hnsw_sq8"
    pad_to = 8

    def _new(self, n: int):
        f = _faiss()
        index = f.IndexHNSWSQ(self._fdim, f.ScalarQuantizer.QT_8bit, self.params["m"], self.faiss_metric)
        return self._configure(index)

    def _storage_bytes(self) -> int:
        sq = _faiss().downcast_index(self._index.storage)
        return int(sq.codes.size() + sq.sq.trained.size() * 4)
