"""HNSW graphs built by FAISS over float32 vectors (``hnsw``) and 8-bit scalar codes
(``hnsw_sq8``), searched by the Numba beam search of ``index/graph.py``."""
from __future__ import annotations

import numpy as np

from vecdb.index.base import FaissIndex, _faiss, pad
from vecdb.index.graph import GraphSearcher, graph_of

__all__ = ["HNSWFlatIndex", "HNSWSQ8Index"]

# Two-hop filtered walks (bench.ann / tests: 0.5 M rows d=50 and 117k rows d=384): at 10-25 %
# selectivity they ran 2-3x faster than walking every row at recall 0.96-0.98; under ~5 % the
# two-hop lists thin out (recall 0.92 at 5 %, 0.83 at 2 %); above ~50 % walking every row
# costs at most 2x an unfiltered search and is faster.
TWO_HOP_MIN = 0.08
TWO_HOP_MAX = 0.5
WALK, TWO_HOP, EXACT = 0, 1, 2          # filtered search kinds (_walk_kind)


class HNSWFlatIndex(FaissIndex):
    """``faiss.IndexHNSWFlat``: build params m, ef_construction; search param ef.

    With an allow-list the beam collects ``ef`` allowed rows (hnswlib's filtered search).
    With ``filter_widen`` (the default), per query:
    1. post-filter: when the ef nearest rows should hold k allowed ones (selectivity * ef >= k),
       search without the filter; if k of the ef nearest are allowed they are the answer;
    2. otherwise, with s the smaller of the global selectivity and the one seen among those ef
       nearest (a filter correlated with the query region shows up here):
       - TWO_HOP_MIN <= s < TWO_HOP_MAX: walk the allowed rows only, reaching them through
         two hops of the graph (ACORN-1), so distances are computed for allowed rows alone;
       - otherwise walk every row keeping only allowed ones, which computes about ef * m / s
         distances, unless an exact scan of the allowed rows is as cheap.
    """

    kind = "hnsw"

    def __init__(self, dim: int, metric: str, **params):
        super().__init__(dim, metric, **params)
        self._searcher: GraphSearcher | None = None    # over the graph as last built / loaded

    def _add(self, vectors: np.ndarray) -> None:
        self._searcher = None          # FAISS may move its arrays; views are taken again
        super()._add(vectors)

    def _graph_searcher(self) -> GraphSearcher:
        s = self._searcher
        if s is None:
            s = self._searcher = self._make_searcher()
        return s

    def _make_searcher(self) -> GraphSearcher:
        """Float rows straight from the segment (the same values FAISS stores)."""
        return GraphSearcher(graph_of(self._index), self._vectors, self.metric)

    def _new(self, n: int):
        index = _faiss().IndexHNSWFlat(self._fdim, self.params["m"], self.faiss_metric)
        return self._configure(index)

    def _configure(self, index):
        index.hnsw.efConstruction = self.params["ef_construction"]
        self._build.update(m=self.params["m"], ef_construction=self.params["ef_construction"])
        return index

    def _graph(self, q: np.ndarray, kk: int, ef: int, allowed: np.ndarray | None,
               two_hop: bool = False):
        """Graph search, (D, I) of width kk in FAISS's convention, beam ef, optional allow-list."""
        return (self._searcher or self._graph_searcher()).search(q, kk, ef, allowed, two_hop)

    def _search(self, q, k, allowed, count, p):
        rescore = p.get("rescore", 0)
        kk = k * rescore if rescore else k
        ef = max(p["ef"], kk)
        if allowed is None or not p["filter_widen"]:
            D, I = self._graph(q, kk, ef, allowed)
            return self._rescore(q, I, k) if rescore else (D, I)   # already padded like vecdb
        s = count / self.ntotal
        if s * ef < kk:               # no post-filter: every query walks the same way
            return self._walk(q, k, kk, ef, allowed, self._walk_kind(s, ef, count), rescore)
        nq = len(q)
        scores, rows = pad(nq, k, self.metric)
        D, I = self._graph(q, ef, ef, None)                 # 1. post-filter
        ok = (I >= 0) & allowed[np.maximum(I, 0)]
        found = ok.sum(axis=1)
        done = found >= kk
        if done.any():
            first = np.argsort(~ok[done], axis=1, kind="stable")[:, :kk]   # allowed, in order
            scores[done], rows[done] = self._finish(
                q[done], k, np.take_along_axis(D[done], first, 1),
                np.take_along_axis(I[done], first, 1), rescore)
        rest = np.flatnonzero(~done)
        local = np.minimum(s, np.maximum(found[rest], 1) / ef)
        how = np.array([self._walk_kind(ls, ef, count) for ls in local.tolist()], dtype=np.int8)
        for kind in np.unique(how).tolist():                # 2. filtered walks
            group = rest[how == kind]
            scores[group], rows[group] = self._walk(q[group], k, kk, ef, allowed, kind, rescore)
        return scores, rows

    def _walk_kind(self, s: float, ef: int, count: int) -> int:
        """How to search when ``s`` is the allowed share near the query: TWO_HOP, WALK or EXACT."""
        if TWO_HOP_MIN <= s < TWO_HOP_MAX:
            return TWO_HOP
        if ef / s * self._build.get("m", self.params["m"]) >= count:     # m as built
            return EXACT
        return WALK

    def _walk(self, q, k, kk, ef, allowed, kind, rescore):
        """Filtered search of queries by one ``_walk_kind``; scores and rows (nq, k)."""
        if kind == EXACT:
            return self._exact(q, k, allowed)
        D, I = self._graph(q, kk, ef, allowed, kind == TWO_HOP)
        if rescore:
            return self._rescore(q, I, k)
        return D, I                                          # already padded like vecdb

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

    def _make_searcher(self) -> GraphSearcher:
        """The graph over FAISS's 8-bit codes (QT_8bit: per-dimension vmin, vdiff)."""
        f = _faiss()
        sq = f.downcast_index(self._index.storage)
        codes = f.rev_swig_ptr(sq.codes.data(), sq.codes.size()).reshape(self.ntotal, sq.code_size)
        trained = f.vector_to_array(sq.sq.trained)
        d = self._fdim
        return GraphSearcher(graph_of(self._index), codes, self.metric, trained[:d], trained[d:2 * d])
