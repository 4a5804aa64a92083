"""HNSW graphs built by FAISS over float32 vectors (``hnsw``) and 8-bit scalar codes
(``hnsw_sq8``), searched by the Numba beam search of ``index/graph.py``."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vecdb.errors import Corruption
from vecdb.index.base import pad, read_footer, write_index_file
from vecdb.index.faiss_base import FaissIndex, _faiss
from vecdb.index.graph import Graph, GraphSearcher, compact_arrays, compact_graph, graph_of, level0_ids, padded_arrays
from vecdb.index.planner import Strategy, filtered_walk

__all__ = ["HNSWFlatIndex", "HNSWSQ8Index"]

# A graph-only file holds arrays raw, each 64-byte aligned; the footer's "graph" entry places
# them ([start, count, dtype]; the first dtype listed here where a file names none). hnsw: the
# graph in the compact layout of ``graph.compact_arrays`` (files written before it hold FAISS's
# padded arrays, offsets as int64, and still load). hnsw_sq8: its 8-bit codes and their ranges
# too.
_COMPACT_ARRAYS = (("adj_off", (np.uint32, np.int64)), ("adj_lo", (np.uint16,)),
                   ("adj_hi", (np.uint8, np.uint16)), ("up_nodes", (np.int32,)), ("up_levels", (np.int32,)),
                   ("up_off", (np.int64,)), ("up_nb", (np.int32,)), ("cum", (np.int32,)),
                   ("assign_probas", (np.float64,)))
_PADDED_ARRAYS = (("neighbors", (np.int32,)), ("offsets", (np.int64,)), ("levels", (np.int32,)),
                  ("cum", (np.int32,)), ("assign_probas", (np.float64,)))
_SQ8_ARRAYS = (("codes", (np.uint8,)), ("trained", (np.float32,))) + _COMPACT_ARRAYS


class HNSWFlatIndex(FaissIndex):
    """``faiss.IndexHNSWFlat``: build params m, ef_construction; search param ef.

    With an allow-list the beam collects ``ef`` allowed rows (hnswlib's filtered search).
    With ``filter_widen`` (the default), per query:
    1. post-filter: when the ef nearest rows should hold k allowed ones (selectivity * ef >= k),
       search the ef / sqrt(selectivity) nearest without the filter; if k of them are allowed
       they are the answer;
    2. otherwise, with s the smaller of the global selectivity and the one seen among those ef
       nearest (a filter correlated with the query region shows up here):
       the planner's ``filtered_walk`` chooses (its thresholds, not this index's): a two-hop
       walk of the allowed rows only (ACORN-1, distances computed for allowed rows alone,
       beam widened below 10 %), a walk of every row keeping only allowed ones (about
       ef * m / s distances), or an exact scan of the allowed rows where that scores fewer.
    Each step taken is recorded in ``ran`` (``planner.Strategy``).
    """

    kind = "hnsw"
    # the file holds the graph alone: the float rows it is searched over are the segment's
    # (FAISS's own format would store a second copy of them)
    file_arrays: ClassVar[tuple] = _COMPACT_ARRAYS
    legacy_arrays: ClassVar[tuple | None] = _PADDED_ARRAYS    # the layout written before (loads)

    def __init__(self, dim: int, metric: str, **params):
        super().__init__(dim, metric, **params)
        self._searcher: GraphSearcher | None = None    # over the graph as last built / loaded
        self._stored: Graph | None = None   # loaded from a graph-only file (no FAISS index); its
                                            # owner is the file's arrays by name

    @property
    def is_trained(self) -> bool:
        return self._stored is not None or super().is_trained

    def _add(self, vectors: np.ndarray) -> None:
        self._searcher = None          # FAISS may move its arrays; views are taken again
        if self._stored is not None:   # grow a loaded graph: back into FAISS, with its rows
            if len(vectors) == 0:
                return
            self._index, self._stored = self._faiss_from_stored(), None
            self._mapped = False
        super()._add(vectors)

    def _graph_searcher(self) -> GraphSearcher:
        s = self._searcher
        if s is None:
            s = self._searcher = self._make_searcher()
        return s

    def _graph_arrays(self) -> Graph:
        return self._stored if self._stored is not None else graph_of(self._index)

    def _make_searcher(self) -> GraphSearcher:
        """Float rows straight from the segment (the same values FAISS stores)."""
        return GraphSearcher(self._graph_arrays(), self._vectors, self.metric)

    # ---- graph-only files
    def save(self, path: str | Path) -> None:
        if self.ntotal == 0:
            return super().save(path)
        g = self._graph_arrays()
        self._write_arrays(path, self._file_payload(), self.file_arrays, g.entry, g.max_level)

    def _write_arrays(self, path, arrays: dict[str, np.ndarray], spec: tuple, entry: int, max_level: int) -> None:
        layout, end = {}, 0
        for name, dtypes in spec:
            a = arrays[name]
            dtype = np.dtype(a.dtype if a.dtype in dtypes else dtypes[0])
            start = -(-end // 64) * 64
            layout[name] = [start, a.size, dtype.name]
            end = start + a.size * dtype.itemsize

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                for name, _ in spec:
                    f.seek(layout[name][0])
                    f.write(memoryview(np.ascontiguousarray(arrays[name].ravel(), layout[name][2])))
                f.truncate(end)

        footer = {**self._footer(), "build": self._build,
                  "graph": {"entry": int(entry), "max_level": int(max_level), "arrays": layout}}
        write_index_file(path, footer, write)

    def _file_payload(self) -> dict[str, np.ndarray]:
        """The arrays a graph-only file holds, by name (``file_arrays``)."""
        if self._stored is not None and self._stored.compact:
            return self._stored.owner
        if self._stored is not None:                      # padded, from an older file
            a = self._stored.owner
            return {**compact_arrays(a["neighbors"], a["offsets"], a["levels"], a["cum"]),
                    "cum": a["cum"], "assign_probas": a["assign_probas"]}
        f, h = _faiss(), self._index.hnsw
        g = graph_of(self._index)
        return {**compact_arrays(g.neighbors, g.offsets, f.vector_to_array(h.levels), g.cum),
                "cum": g.cum, "assign_probas": f.vector_to_array(h.assign_probas)}

    @classmethod
    def load(cls, path: str | Path, vectors: np.ndarray, dim: int, metric: str, *,
             mmap: bool = True, **params: Any) -> "HNSWFlatIndex":
        footer = read_footer(path)
        if "graph" not in footer:          # FAISS's format (and files written before graph-only)
            return super().load(path, vectors, dim, metric, mmap=mmap, **params)
        if not isinstance(footer["graph"], dict):
            raise Corruption(f"index file {path}: its graph entry is not a table")
        self, footer, v = cls._check_file(path, vectors, dim, metric, params)
        self._build = dict(footer.get("build") or {})
        self._path = Path(path)
        layout = footer["graph"].get("arrays")
        padded = cls.legacy_arrays is not None and isinstance(layout, dict) and "neighbors" in layout
        arrays = _read_arrays(path, footer, cls.legacy_arrays if padded else cls.file_arrays, mmap)
        entry, max_level = footer["graph"].get("entry"), footer["graph"].get("max_level")
        self._stored = self._graph_from(path, arrays, len(v), entry, max_level)
        self._ntotal = len(v)
        self._mapped = mmap
        self._vectors = v
        return self

    def _graph_from(self, path, arrays: dict[str, np.ndarray], n: int, entry, max_level) -> Graph:
        """The loaded graph, checked so that a damaged file is Corruption rather than a walk
        out of bounds (the kernel does no bounds checks)."""
        if "neighbors" not in arrays:
            _check_compact(path, arrays, n, entry, max_level)
            return compact_graph(arrays, arrays["cum"], entry, max_level)
        _check_padded(path, arrays["neighbors"], arrays["offsets"], arrays["levels"], arrays["cum"],
                      n, entry, max_level)
        return Graph(arrays["neighbors"], arrays["offsets"], arrays["cum"], entry, max_level, arrays)

    def _faiss_from_stored(self):
        """A FAISS index holding the loaded graph and the segment's rows (to add to it)."""
        index = self._faiss_index(self._build.get("m", self.params["m"]))   # the graph's m, as built
        index.storage.add(self._fx(self._vectors[:self.ntotal]))
        return self._graph_into(index)

    def _graph_into(self, index):
        """``index`` (its storage filled) given the loaded graph."""
        f = _faiss()
        g, a = self._stored, self._stored.owner
        index.hnsw.efConstruction = self._build.get("ef_construction", self.params["ef_construction"])
        neighbors, offsets, levels = ((a["neighbors"], a["offsets"], a["levels"]) if not g.compact
                                      else padded_arrays(a, g.cum))
        h = index.hnsw
        for arr, vec in ((neighbors, h.neighbors), (np.asarray(offsets).view(np.uint64), h.offsets),
                         (levels, h.levels), (g.cum, h.cum_nneighbor_per_level),
                         (a["assign_probas"], h.assign_probas)):
            f.copy_array_to_vector(np.ascontiguousarray(arr), vec)
        h.entry_point, h.max_level = g.entry, g.max_level
        index.ntotal = self.ntotal
        return index

    def _faiss_index(self, m: int):
        """An empty FAISS index of this kind with ``m`` links per node (2m on level 0)."""
        return _faiss().IndexHNSWFlat(self._fdim, m, self.faiss_metric)

    def _new(self, n: int):
        index = self._faiss_index(self.params["m"])
        index.hnsw.efConstruction = self.params["ef_construction"]
        self._build.update(m=self.params["m"], ef_construction=self.params["ef_construction"])
        return index

    def _graph(self, q: np.ndarray, kk: int, ef: int, allowed: np.ndarray | None,
               two_hop: bool = False):
        """Graph search, (D, I) of width kk in FAISS's convention, beam ef, optional allow-list."""
        return (self._searcher or self._graph_searcher()).search(q, kk, ef, allowed, two_hop)

    def _search(self, q, k, allowed, count, p, ran):
        rescore = p.get("rescore", 0)
        kk = k * rescore if rescore else k
        ef = max(p["ef"], kk)
        if allowed is None or not p["filter_widen"]:
            D, I = self._graph(q, kk, ef, allowed)
            return self._rescore(q, I, k) if rescore else (D, I)   # already padded like vecdb
        s = count / self.ntotal
        if s * ef < kk:               # no post-filter: every query walks the same way
            return self._walk(q, k, kk, allowed, self._walk_kind(s, ef, count), rescore, ran)
        nq = len(q)
        scores, rows = pad(nq, k, self.metric)
        # 1. post-filter the nearest ef / sqrt(s): the k allowed rows sit about k / s deep, and
        # a beam of ef alone lost recall there (WordNet, ef 32, 40-50 % allowed: 0.94-0.95
        # against 0.96 unfiltered; ef / sqrt(s): 0.96-0.97 at 0.55-0.7x the unfiltered speed)
        post = int(math.ceil(ef / math.sqrt(s)))
        ran.append(Strategy.POST_FILTER_WALK)
        D, I = self._graph(q, post, post, None)
        ok = (I >= 0) & allowed[np.maximum(I, 0)]
        found = ok.sum(axis=1)
        done = found >= kk
        if done.any():
            first = np.argsort(~ok[done], axis=1, kind="stable")[:, :kk]   # allowed, in order
            scores[done], rows[done] = self._finish(
                q[done], k, np.take_along_axis(D[done], first, 1),
                np.take_along_axis(I[done], first, 1), rescore)
        rest = np.flatnonzero(~done)
        local = np.minimum(s, np.maximum(found[rest], 1) / post)
        how = [self._walk_kind(ls, ef, count) for ls in local.tolist()]
        for walk in set(how):                               # 2. filtered walks
            group = rest[[h == walk for h in how]]
            scores[group], rows[group] = self._walk(q[group], k, kk, allowed, walk, rescore, ran)
        return scores, rows

    def _walk_kind(self, s: float, ef: int, count: int) -> tuple[Strategy, int]:
        """The planner's walk and beam when ``s`` is the allowed share near the query."""
        return filtered_walk(s, ef, count, self._build.get("m", self.params["m"]))  # m as built

    def _walk(self, q, k, kk, allowed, walk: tuple[Strategy, int], rescore, ran: list):
        """Filtered search of queries by one ``_walk_kind``; scores and rows (nq, k)."""
        kind, beam = walk
        ran.append(kind)
        if kind is Strategy.INDEX_SCAN:
            return self._exact(q, k, allowed)
        D, I = self._graph(q, kk, beam, allowed, kind is Strategy.TWO_HOP_WALK)
        if rescore:
            return self._rescore(q, I, k)
        return D, I                                          # already padded like vecdb

    def memory_bytes(self) -> int:
        if self.ntotal == 0:
            return 0
        if self._stored is not None:       # everything searched, as mapped from the file
            return int(sum(a.nbytes for a in self._stored.owner.values()))
        g = graph_of(self._index)
        levels = self._index.hnsw.levels.size() * 4
        return int(g.neighbors.nbytes + g.offsets.nbytes + g.cum.nbytes + levels + self._storage_bytes())

    def _storage_bytes(self) -> int:
        """FAISS's copy of the rows while the index is FAISS's (built, not yet saved and
        reloaded); a graph-only index searches the segment's rows and holds none."""
        return int(_faiss().downcast_index(self._index.storage).codes.size())


def _read_arrays(path: str | Path, footer: dict, spec: tuple, mmap: bool) -> dict[str, np.ndarray]:
    """The arrays of a graph-only file by name (memory-mapped), each where the footer says."""
    layout = footer["graph"].get("arrays", {})
    arrays = {}
    for name, dtypes in spec:
        try:
            start, count = (int(x) for x in layout[name][:2])
            dtype = np.dtype(layout[name][2] if len(layout[name]) > 2 else dtypes[0])
        except (KeyError, IndexError, TypeError, ValueError):
            raise Corruption(f"index file {path}: graph array {name!r} is not described") from None
        if dtype not in dtypes:
            raise Corruption(f"index file {path}: graph array {name!r} has type {dtype}")
        if start < 0 or count < 0 or start + count * dtype.itemsize > footer["payload_bytes"]:
            raise Corruption(f"index file {path}: graph array {name!r} lies outside the payload")
        if mmap and count:
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=start, shape=(count,))
        else:
            arrays[name] = np.fromfile(path, dtype=dtype, count=count, offset=start)
    return arrays


def _check_padded(path, nb, off, levels, cum, n: int, entry, max_level) -> None:
    """FAISS's padded graph arrays are consistent: sizes, offsets, ids in range, entry point,
    and upper-level neighbours living on that level."""
    ok = (len(off) == n + 1 and len(levels) == n and _check_cum(cum) and n > 0
          and type(entry) is int and 0 <= entry < n and type(max_level) is int
          and 0 <= max_level < len(cum) - 1)
    ok = ok and off[0] == 0 and off[-1] == len(nb) and bool((levels >= 1).all()) and bool((levels < len(cum)).all())
    ok = ok and bool((np.diff(off) == cum[levels]).all()) and levels[entry] == max_level + 1
    ok = ok and (len(nb) == 0 or (int(nb.min()) >= -1 and int(nb.max()) < n))
    for level in range(1, len(cum) - 1):       # a neighbour on level l lives on level l too
        if not ok:
            break
        nodes = np.flatnonzero(levels > level)
        if len(nodes) == 0:
            break
        ids = nb[(off[nodes, None] + cum[level] + np.arange(cum[level + 1] - cum[level])).ravel()]
        ok = bool((levels[ids[ids >= 0]] > level).all())
    if not ok:
        raise Corruption(f"index file {path}: the HNSW graph is damaged (sizes or neighbour ids out of range)")


def _check_cum(cum) -> bool:
    """Neighbours per level as FAISS lays them out: level 0 the longest list (2m, m above)."""
    if len(cum) < 2 or cum[0] != 0:
        return False
    width = np.diff(cum.astype(np.int64))
    return bool((width >= 0).all()) and bool((width <= width[0]).all())


def _check_compact(path, a: dict[str, np.ndarray], n: int, entry, max_level) -> None:
    """The compact graph is consistent (``graph.compact_arrays``), checked on its own arrays
    (level 0 in blocks), so a load does not expand it."""
    cum, up, up_levels, up_off, up_nb = a["cum"], a["up_nodes"], a["up_levels"], a["up_off"], a["up_nb"]
    off = a["adj_off"].astype(np.int64)
    deg = np.diff(off)
    ok = (_check_cum(cum) and len(off) == n + 1 and n > 0 and off[0] == 0
          and off[-1] == len(a["adj_lo"]) == len(a["adj_hi"]) and bool((deg >= 0).all())
          and int(deg.max()) <= int(cum[1]) - int(cum[0])
          and type(entry) is int and 0 <= entry < n and type(max_level) is int and 0 <= max_level < len(cum) - 1
          and len(up_levels) == len(up) and len(up_off) == len(up) + 1
          and bool((np.diff(up.astype(np.int64)) > 0).all()) and (len(up) == 0 or (up[0] >= 0 and up[-1] < n))
          and bool((up_levels >= 2).all()) and bool((up_levels < len(cum)).all())
          and up_off[0] == 0 and up_off[-1] == len(up_nb)
          and bool((np.diff(up_off) == cum[up_levels].astype(np.int64) - cum[1]).all()))
    for lo in range(0, int(off[-1]) if ok else 0, 1 << 20):    # level-0 ids: real rows, no padding
        ids = level0_ids(a, lo, lo + (1 << 20))
        ok = ok and int(ids.min()) >= 0 and int(ids.max()) < n
    if ok:                                     # the entry point tops the graph
        p = int(np.searchsorted(up, entry))
        top = int(up_levels[p]) if p < len(up) and up[p] == entry else 1
        ok = top == max_level + 1
    if ok and len(up_nb):                      # upper lists: upper nodes of that level, or -1 after
        slot = np.arange(len(up_nb))
        within = slot - up_off[np.searchsorted(up_off, slot, side="right") - 1]
        slot_level = np.searchsorted(cum[1:].astype(np.int64) - cum[1], within, side="right")
        ok = int(up_nb.min()) >= -1 and int(up_nb.max()) < n
        real = up_nb >= 0
        ids, need = up_nb[real], slot_level[real]
        pos = np.minimum(np.searchsorted(up, ids), len(up) - 1)
        ok = ok and bool((up[pos] == ids).all()) and bool((up_levels[pos] > need).all())
    if not ok:
        raise Corruption(f"index file {path}: the HNSW graph is damaged (sizes or neighbour ids out of range)")


class HNSWSQ8Index(HNSWFlatIndex):
    """``faiss.IndexHNSWSQ`` with 8-bit per-dimension codes (4x smaller than float32).

    The graph is walked on the codes; ``rescore`` r >= 1 re-ranks the best r*k candidates by
    exact scores on the original (segment) vectors, so returned scores are then exact. The
    file holds the codes (without FAISS's padding to a multiple of 8 dimensions, which decode
    to 0) and the graph in its compact layout (``graph.compact_arrays``), as ``hnsw``'s does.
    """

    kind = "hnsw_sq8"
    pad_to = 8
    file_arrays = _SQ8_ARRAYS
    legacy_arrays = None

    def _faiss_index(self, m: int):
        f = _faiss()
        return f.IndexHNSWSQ(self._fdim, f.ScalarQuantizer.QT_8bit, m, self.faiss_metric)

    def _storage_bytes(self) -> int:
        sq = _faiss().downcast_index(self._index.storage)
        return int(sq.codes.size() + sq.sq.trained.size() * 4)

    def _faiss_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's codes (ntotal, its d), a view, and the trained ranges (vmin then vdiff)."""
        f = _faiss()
        sq = f.downcast_index(self._index.storage)
        codes = f.rev_swig_ptr(sq.codes.data(), sq.codes.size()).reshape(self.ntotal, sq.code_size)
        return codes, f.vector_to_array(sq.sq.trained)

    def _file_payload(self) -> dict[str, np.ndarray]:
        if self._stored is not None:
            return self._stored.owner
        codes, trained = self._faiss_codes()
        return {"codes": np.ascontiguousarray(codes[:, :self.dim]).ravel(),   # FAISS's padding dropped
                "trained": trained, **super()._file_payload()}

    def _graph_from(self, path, arrays: dict[str, np.ndarray], n: int, entry, max_level) -> Graph:
        if len(arrays["codes"]) != n * self.dim or len(arrays["trained"]) != 2 * self._fdim:
            raise Corruption(f"index file {path}: {len(arrays['codes'])} code bytes and "
                             f"{len(arrays['trained'])} ranges for {n} rows of {self.dim}")
        return super()._graph_from(path, arrays, n, entry, max_level)

    def _faiss_from_stored(self):
        f = _faiss()
        a = self._stored.owner
        index = self._faiss_index(self._build.get("m", self.params["m"]))   # the graph's m, as built
        sq = f.downcast_index(index.storage)
        f.copy_array_to_vector(np.ascontiguousarray(a["trained"]), sq.sq.trained)
        codes = np.zeros((self.ntotal, self._fdim), np.uint8)    # FAISS's padding dimensions
        codes[:, :self.dim] = a["codes"].reshape(self.ntotal, self.dim)  # decode to 0 (vdiff 0)
        f.copy_array_to_vector(codes.ravel(), sq.codes)
        sq.ntotal = self.ntotal
        sq.is_trained = index.is_trained = True
        return self._graph_into(index)

    def _make_searcher(self) -> GraphSearcher:
        """The graph over the 8-bit codes (QT_8bit: per-dimension vmin, vdiff)."""
        d = self._fdim
        if self._stored is not None:      # codes without FAISS's padding dimensions
            a, dim = self._stored.owner, self.dim
            return GraphSearcher(self._stored, a["codes"].reshape(self.ntotal, dim), self.metric,
                                 a["trained"][:dim], a["trained"][d:d + dim])
        codes, trained = self._faiss_codes()
        return GraphSearcher(graph_of(self._index), codes, self.metric, trained[:d], trained[d:2 * d])
