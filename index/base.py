"""The vector index interface (DESIGN §5): one contract, one config surface, one file format.

Every index maps row numbers 0..ntotal-1 of one sealed segment (the order the rows were added
in) to vectors, and answers ``search(queries, k, allowed) -> (scores, rows)`` best first,
padded with row -1 and score -inf ("ip") / +inf ("l2") exactly like ``exact_search``. The
index layer sees two metrics only: "ip" (higher is better; cosine arrives as "ip" over
normalised vectors) and "l2" (squared euclidean distance, lower is better).

Contract of ``search`` with an allow-list (a bool mask over the rows): no disallowed row is
ever returned, and by default every query gets min(k, allowed rows) hits. By default an index
(1) widens its search for the allow-list (HNSW: post-filter the ef nearest, else a beam of
ef / selectivity; IVF: probe lists until they hold as many allowed rows as an unfiltered
probe scans rows), (2) scans the allowed rows exactly where that is about as cheap, and (3)
re-answers exactly any query that still came back short. Search params ``filter_widen=False``
and ``exact_fallback=False`` turn (1)+(2) and (3) off, for a planner that wants the raw index.

Index file (one per segment, beside it): ``[payload][footer json][u32 LE json length][magic]``.
The payload is FAISS's own format (empty for the flat index; HNSW-Flat stores its graph arrays
alone, see ``index/hnsw.py``); the footer (the "header" of this file kind, at the end so the
payload can be memory-mapped from offset 0) names the format version, kind, dim, metric,
ntotal and resolved build params, and is checked on load.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from vecdb.errors import Corruption, DimensionMismatch, InvalidArgument
from vecdb.index.exact import exact_search, rescore, squared_norms
from vecdb.index.metric import metric_of
from vecdb.index.planner import Strategy
from vecdb.index.indexfile import (FORMAT, FORMAT_VERSION, MAGIC, read_footer,  # noqa: F401
                                   write_index_file)  # (re-exported: one import point)
from vecdb.index.params import (DEFAULTS, INDEX_TYPES, METRICS, PARAMS, SEARCH_PARAMS,  # noqa: F401
                                Param,
                                SearchParams, check_index_config, check_search_params, load_index,
                                make_index, resolve_params, _check_dim_metric,
                                _check_value, _typed_key)

__all__ = [
    "VectorIndex", "Param", "PARAMS", "DEFAULTS", "INDEX_TYPES", "METRICS",
    "make_index", "load_index", "check_index_config", "check_search_params", "read_footer", "FORMAT_VERSION",
]

ADD_BATCH = 1 << 15               # rows per add() step: progress reports and cancellation


def as_vectors(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """(n, dim) float32 C-contiguous; no copy when it already is (a read-only map stays one)."""
    a = np.asarray(vectors)
    if a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == dim and a.flags.c_contiguous:
        return a                                        # the common case, checked cheaply
    if a.ndim == 1 and what == "queries":
        a = a[None, :]
    if a.ndim != 2:
        raise InvalidArgument(f"{what} must be a 2-D array (n, {dim}), got shape {a.shape}")
    if a.shape[1] != dim:
        raise DimensionMismatch(f"{what} have dimension {a.shape[1]}, index expects {dim}")
    if not np.issubdtype(a.dtype, np.floating):
        raise InvalidArgument(f"{what} must be float data, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)   # copies only if not float32 C-order


def pad(nq: int, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """All-padding results: scores -inf (ip) / +inf (l2), rows -1."""
    return metric_of(metric).pad(nq, k)


class VectorIndex(abc.ABC):
    """One ANN (or exact) index over the rows of one segment.

    Thread-safety: ``search`` may run concurrently from many threads (it releases the GIL);
    ``train``/``add``/``build`` and ``save`` must not overlap other calls on the same object.
    The index keeps a reference to the original vectors it was built or loaded with (for
    exact fallback and rescoring); it never writes to them.
    """

    kind: ClassVar[str]

    def __init__(self, dim: int, metric: str, **params: Any):
        self.dim, self.metric = _check_dim_metric(dim, metric)
        self.params = resolve_params(self.kind, params)
        self._resolved: dict[tuple, dict[str, Any]] = {}   # per-call params seen -> resolved
        self._vectors = np.empty((0, self.dim), np.float32)
        self._norms: np.ndarray | None = None

    # ---- building
    @property
    @abc.abstractmethod
    def ntotal(self) -> int:
        """Number of rows indexed (row numbers 0..ntotal-1)."""

    @property
    def is_trained(self) -> bool:
        return True

    def train(self, vectors: np.ndarray) -> None:
        """Learn what the index needs from ``vectors`` (centroids, codebooks); no-op by default."""

    def add(self, vectors: np.ndarray, *, progress: Callable[[int], None] | None = None) -> None:
        """Append rows ntotal..ntotal+n-1 (trains on them first if still untrained).

        The first add keeps a reference to ``vectors``; later adds concatenate (a copy).
        ``progress(rows_added)`` is called after each batch; an exception it raises stops
        the add and propagates (the index is then incomplete and must be discarded).
        """
        v = as_vectors(vectors, self.dim)
        if not self.is_trained:
            self.train(v)
        for lo in range(0, len(v), ADD_BATCH):
            self._add(v[lo:lo + ADD_BATCH])
            if progress is not None:
                progress(min(len(v), lo + ADD_BATCH))
        if len(v) == 0:
            self._add(v)
        self._vectors = v if len(self._vectors) == 0 else np.concatenate([self._vectors, v])
        self._norms = None

    def build(self, vectors: np.ndarray, *, progress: Callable[[int], None] | None = None) -> None:
        """Train (if needed) and add all rows of a segment; ``vectors`` may be a read-only map.

        ``progress(rows_added)`` as in ``add`` (0 once training is done).
        """
        if self.ntotal:
            raise InvalidArgument(f"{self.kind} index already holds {self.ntotal} rows; build needs an empty index")
        v = as_vectors(vectors, self.dim)
        if len(v):
            self.train(v)
        if progress is not None:
            progress(0)
        self.add(v, progress=progress)

    @abc.abstractmethod
    def _add(self, vectors: np.ndarray) -> None:
        """Add float32 C-contiguous rows to the underlying structure."""

    # ---- searching
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows per query, best first: scores (q, k) float32, rows (q, k) int64 (-1 pads).

        ``allowed``: optional bool mask (ntotal,) of the rows that may be returned.
        ``params``: per-call search params (ef, nprobe, rescore, filter_widen, exact_fallback);
        names that do not apply to this index type are ignored, unknown names raise.
        """
        q = as_vectors(queries, self.dim, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgument(f"k must be a positive integer, got {k!r}")
        count = None
        if allowed is not None:
            allowed = np.asarray(allowed)
            n = self.ntotal
            if allowed.dtype != np.bool_ or allowed.shape != (n,):
                raise InvalidArgument(f"allowed must be a bool mask of shape ({n},), "
                                      f"got {allowed.dtype} {allowed.shape}")
            count = int(np.count_nonzero(allowed))
        return self.search_checked(q, int(k), allowed, self.search_params(params), count)

    def search_checked(self, q: np.ndarray, k: int, allowed: np.ndarray | None, p: dict[str, Any],
                       count: int | None, ran: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``search`` on arguments its caller has checked: q (nq, dim) float32 C-contiguous,
        k >= 1, allowed None or a bool mask (ntotal,) with ``count`` True entries, p from
        ``search_params`` (the collection validates all of these once per search). The
        planner's steps that ran beyond the walk itself (``planner.Strategy``) are appended
        to ``ran``."""
        n = self.ntotal
        if allowed is None:
            count = n
        elif count == n:
            allowed = None
        if count == 0 or len(q) == 0:
            return pad(len(q), k, self.metric)
        scores, rows = self._search(q, k, allowed, count, p, [] if ran is None else ran)
        last = min(k, count) - 1                           # short rows are padded at the end
        if p["exact_fallback"] and (rows.item(0, last) < 0 if len(q) == 1 else rows[:, last].min() < 0):
            short = rows[:, last] < 0
            if short.any():
                if ran is not None:
                    ran.append(Strategy.EXACT_FALLBACK)
                scores[short], rows[short] = self._exact(q[short], k, allowed)
        return scores, rows

    def search_params(self, params: dict | None) -> dict[str, Any]:
        """This index's search params overlaid with the applicable entries of ``params``."""
        if not params:
            return self.params                  # shared: callers do not mutate it
        key = params.key if type(params) is SearchParams else _typed_key(params)
        hit = None if key is None else self._resolved.get(key)
        if hit is not None:
            return hit                          # validated before; shared like self.params
        out = dict(self.params)
        check_search_params(params)
        spec = PARAMS[self.kind]
        for name, value in params.items():
            if name in spec:
                out[name] = _check_value(self.kind, name, spec[name], value)
        if key is not None and len(self._resolved) < 256:
            self._resolved[key] = out
        return out

    @abc.abstractmethod
    def _search(self, q: np.ndarray, k: int, allowed: np.ndarray | None, count: int,
                p: dict[str, Any], ran: list) -> tuple[np.ndarray, np.ndarray]:
        """Search ``count`` >= 1 allowed rows (allowed None: all rows); may come back short.
        Appends to ``ran`` the planner's steps it chose beyond its plain walk."""

    def _exact(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the original vectors (the Numba kernel)."""
        norms = None
        if self.metric == "l2" and len(q) > 1:
            if self._norms is None:
                self._norms = squared_norms(self._vectors)
            norms = self._norms
        return exact_search(self._vectors, q, k, self.metric, allowed, norms)

    def _rescore(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of candidate rows (q, c) (-1 = none) on the original vectors; best k."""
        return rescore(self._vectors, q, cand, k, self.metric)

    # ---- persistence
    @abc.abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the index durably to ``path`` (temp file, fsync, rename, fsync directory)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | Path, vectors: np.ndarray, dim: int, metric: str, *,
             mmap: bool = True, **params: Any) -> "VectorIndex":
        """Open an index saved by ``save``; ``vectors`` are the segment's (mapped) vectors."""

    def _footer(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "metric": self.metric, "ntotal": self.ntotal}

    @classmethod
    def _check_file(cls, path: str | Path, vectors: Any, dim: int, metric: str,
                    params: dict) -> tuple["VectorIndex", dict, np.ndarray]:
        """A fresh instance, the file's footer, and the checked segment vectors."""
        self = cls(dim, metric, **params)
        footer = read_footer(path)
        for key, want in (("kind", self.kind), ("dim", self.dim), ("metric", self.metric)):
            if footer.get(key) != want:
                raise Corruption(f"index file {path}: {key} is {footer.get(key)!r}, expected {want!r}")
        v = as_vectors(vectors, self.dim)
        if footer.get("ntotal") != len(v):
            raise Corruption(f"index file {path} holds {footer.get('ntotal')} rows, "
                             f"the segment has {len(v)}")
        return self, footer, v

    # ---- accounting
    @abc.abstractmethod
    def memory_bytes(self) -> int:
        """Bytes the index's own structures occupy (resident or mapped), not the segment vectors."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} dim={self.dim} metric={self.metric} ntotal={self.ntotal}>"
