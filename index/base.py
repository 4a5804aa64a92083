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
import importlib
import json
import math
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from vecdb.errors import Corruption, DimensionMismatch, InvalidArgument
from vecdb.index.exact import exact_search, rescore, squared_norms

__all__ = [
    "VectorIndex", "FaissIndex", "Param", "PARAMS", "DEFAULTS", "INDEX_TYPES", "METRICS",
    "make_index", "load_index", "check_index_config", "check_search_params", "read_footer", "FORMAT_VERSION",
]

METRICS = ("ip", "l2")
FORMAT = "vecdb-index"
FORMAT_VERSION = 1
MAGIC = b"vecdbidx"
_TAIL = struct.Struct("<I8s")     # footer length, magic
ADD_BATCH = 1 << 15               # rows per add() step: progress reports and cancellation


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class Param:
    """One index parameter: default, type (int or bool), inclusive bounds, search-time or not."""

    default: Any
    type: type = int
    low: int | None = None
    high: int | None = None
    search: bool = False          # may also be given per call in search(params=...)
    optional: bool = False        # None allowed (means "choose at build")


_COMMON_SEARCH = {
    "filter_widen": Param(True, bool, search=True),
    "exact_fallback": Param(True, bool, search=True),
}
_HNSW = {
    "m": Param(32, int, 2, 256),
    "ef_construction": Param(200, int, 1, 65536),
    "ef": Param(96, int, 1, 65536, search=True),
}
_IVF = {
    "nlist": Param(None, int, 1, 1 << 20, optional=True),    # None: 4*sqrt(n), <= n/39
    "nprobe": Param(128, int, 1, 1 << 20, search=True),
}
_RESCORE = Param(0, int, 0, 1024, search=True)               # 0: no rescoring

# Per type: every build and search parameter with its default (the acceptance surface).
PARAMS: dict[str, dict[str, Param]] = {
    "flat": {**_COMMON_SEARCH},
    "hnsw": {**_HNSW, **_COMMON_SEARCH},
    "hnsw_sq8": {**_HNSW, "rescore": Param(2, int, 0, 1024, search=True), **_COMMON_SEARCH},
    "ivf_flat": {**_IVF, **_COMMON_SEARCH},
    "ivf_pq": {**_IVF, "m": Param(None, int, 1, 65536, optional=True),   # None: dim/2 (see ivf.py)
               "nbits": Param(8, int, 1, 16),
               "rescore": Param(4, int, 0, 1024, search=True),
               **_COMMON_SEARCH},
    "sq_fp16": {"rescore": _RESCORE, **_COMMON_SEARCH},
}
DEFAULTS: dict[str, dict[str, Any]] = {t: {n: p.default for n, p in ps.items()} for t, ps in PARAMS.items()}
INDEX_TYPES = tuple(PARAMS)
SEARCH_PARAMS = frozenset(n for ps in PARAMS.values() for n, p in ps.items() if p.search)

_IMPLS = {   # type -> "module:Class", imported on first use (implementations import this module)
    "flat": "vecdb.index.flat:FlatIndex",
    "hnsw": "vecdb.index.hnsw:HNSWFlatIndex",
    "hnsw_sq8": "vecdb.index.hnsw:HNSWSQ8Index",
    "ivf_flat": "vecdb.index.ivf:IVFFlatIndex",
    "ivf_pq": "vecdb.index.ivf:IVFPQIndex",
    "sq_fp16": "vecdb.index.sq:SQFP16Index",
}


def _check_value(kind: str, name: str, p: Param, value: Any) -> Any:
    if value is None and p.optional:
        return None
    if p.type is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidArgument(f"index {kind!r}: parameter {name!r} must be true or false, got {value!r}")
        return bool(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"index {kind!r}: parameter {name!r} must be an integer, got {value!r}")
    value = int(value)
    if (p.low is not None and value < p.low) or (p.high is not None and value > p.high):
        raise InvalidArgument(f"index {kind!r}: parameter {name!r} must be in [{p.low}, {p.high}], got {value}")
    return value


def resolve_params(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """Defaults of ``kind`` overlaid with ``given`` (validated); unknown names raise InvalidArgument."""
    spec = PARAMS[kind]
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise InvalidArgument(f"index {kind!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(spec)) or 'none'}")
    out = dict(DEFAULTS[kind])
    for name, value in given.items():
        out[name] = _check_value(kind, name, spec[name], value)
    return out


class SearchParams(dict):
    """Per-call search params as ``check_search_params`` validated them, with the keys the
    index and the planner cache on (computed once per distinct params, not per search).
    Shared between searches: not to be mutated."""

    __slots__ = ("key", "plan_key")

    def _read_only(self, *args, **kwargs):
        raise TypeError("SearchParams are shared between searches and cannot be changed; copy with dict()")

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = setdefault = clear = _read_only


_CHECKED: dict[tuple, SearchParams] = {}   # typed params seen valid (searches repeat the same few)
_NO_PARAMS = SearchParams()
_NO_PARAMS.key = _NO_PARAMS.plan_key = ()


def _typed_key(params: dict) -> tuple | None:
    """A cache key for per-call params, with the types (16.0 == 16 == True); None if unhashable."""
    try:
        key = tuple((n, type(v), v) for n, v in params.items())
        hash(key)
        return key
    except TypeError:
        return None


def check_search_params(params: dict | None) -> SearchParams:
    """Validate per-call search params (names and values) against every index type's search
    parameters; returns them as a shared, read-only ``SearchParams``. A name a given index
    does not use is ignored there."""
    if params is None:
        return _NO_PARAMS
    if not isinstance(params, dict):
        raise InvalidArgument(f"search params must be a dict, got {type(params).__name__}")
    key = _typed_key(params)
    hit = None if key is None else _CHECKED.get(key)
    if hit is not None:
        return hit
    unknown = sorted(set(params) - SEARCH_PARAMS)
    if unknown:
        raise InvalidArgument(f"unknown search parameter(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(SEARCH_PARAMS))}")
    for name, value in params.items():
        spec = next(ps[name] for ps in PARAMS.values() if name in ps)
        _check_value("search", name, spec, value)
    out = SearchParams(params)             # dict's constructor, not the blocked update()
    out.key = key
    try:
        out.plan_key = tuple(sorted(params.items()))
    except TypeError:
        out.plan_key = None
    if key is not None and len(_CHECKED) < 1024:
        _CHECKED[key] = out
    return out


def _check_dim_metric(dim: Any, metric: Any) -> tuple[int, str]:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise InvalidArgument(f"index dim must be a positive integer, got {dim!r}")
    if metric not in METRICS:
        raise InvalidArgument(f"index metric must be one of {METRICS} (cosine is 'ip' over normalised "
                              f"vectors), got {metric!r}")
    return int(dim), metric


def _split_config(config: dict) -> tuple[str, dict[str, Any]]:
    if not isinstance(config, dict):
        raise InvalidArgument(f"index config must be a dict with a 'type', got {type(config).__name__}")
    params = dict(config)            # never mutate the caller's dict
    kind = params.pop("type", None)
    if kind not in PARAMS:
        raise InvalidArgument(f"unknown index type {kind!r}; known: {', '.join(INDEX_TYPES)}")
    return kind, params


def _impl(kind: str) -> type["VectorIndex"]:
    module, cls = _IMPLS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


def check_index_config(config: dict | None) -> dict:
    """A collection's index config, validated (a copy): None means ``{"type": "auto"}``.

    ``auto`` (no params: exact for small segments, HNSW for large ones) or one of
    ``INDEX_TYPES`` with its build and default search params; InvalidArgument names any
    unknown type, unknown parameter or bad value.
    """
    if config is None:
        return {"type": "auto"}
    if isinstance(config, dict) and config.get("type") == "auto":
        extra = sorted(set(config) - {"type"})
        if extra:
            raise InvalidArgument(f"index 'auto': unknown parameter(s) {', '.join(map(repr, extra))}; "
                                  f"give an explicit type to set parameters")
        return {"type": "auto"}
    kind, params = _split_config(config)
    resolve_params(kind, params)
    return {"type": kind, **params}


def make_index(config: dict, dim: int, metric: str) -> "VectorIndex":
    """A new, empty index from ``{"type": ..., **params}``; bad type or params -> InvalidArgument."""
    kind, params = _split_config(config)
    return _impl(kind)(dim, metric, **params)


def load_index(path: str | Path, config: dict, vectors: np.ndarray, dim: int, metric: str, *,
               mmap: bool = True) -> "VectorIndex":
    """Open the index file at ``path`` built with ``config`` over the segment's ``vectors``."""
    kind, params = _split_config(config)
    return _impl(kind).load(path, vectors, dim, metric, mmap=mmap, **params)


# --------------------------------------------------------------------------- file format


def write_index_file(path: str | Path, footer: dict, write_payload=None) -> None:
    """Durably write ``[payload][footer]`` to ``path``: temp file, fsync, rename, fsync dir.

    ``write_payload(tmp_path)`` creates the temp file with the payload (None: no payload).
    File operations go through ``vecdb.storage.fileio`` (one place, fault-injectable).
    """
    from vecdb.storage import fileio
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        if write_payload is not None:
            write_payload(str(tmp))
            fileio.created(tmp)
        payload_bytes = tmp.stat().st_size if tmp.exists() else 0
        blob = json.dumps({**footer, "format": FORMAT, "version": FORMAT_VERSION,
                           "payload_bytes": payload_bytes}, sort_keys=True).encode()
        with fileio.open_file(tmp, "ab", 0) as f:
            fileio.write(f, blob + _TAIL.pack(len(blob), MAGIC))
            fileio.fsync(f)
        fileio.replace(tmp, path)
    except BaseException as e:
        try:
            fileio.unlink(tmp, missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise fileio.io_error(e, f"writing index file {path}") from e
        raise
    try:
        fileio.fsync_dir(path.parent)
    except OSError as e:
        raise fileio.io_error(e, f"writing index file {path}") from e


def read_footer(path: str | Path) -> dict:
    """The footer of an index file; Corruption if it is missing, torn or of an unknown version."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _TAIL.size:
                raise Corruption(f"index file {path} is too short ({size} bytes)")
            f.seek(size - _TAIL.size)
            length, magic = _TAIL.unpack(f.read(_TAIL.size))
            if magic != MAGIC or length > size - _TAIL.size:
                raise Corruption(f"index file {path} has no vecdb index footer")
            f.seek(size - _TAIL.size - length)
            footer = json.loads(f.read(length))
    except FileNotFoundError:
        raise Corruption(f"index file {path} is missing") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise Corruption(f"index file {path} has an unreadable footer: {e}") from None
    if footer.get("format") != FORMAT or footer.get("version") != FORMAT_VERSION:
        raise Corruption(f"index file {path}: unsupported format {footer.get('format')!r} "
                         f"version {footer.get('version')!r}")
    if footer.get("payload_bytes", -1) + length + _TAIL.size != size:
        raise Corruption(f"index file {path}: size {size} does not match its footer")
    return footer


# --------------------------------------------------------------------------- interface


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
    worst = -np.inf if metric == "ip" else np.inf
    return np.full((nq, k), worst, np.float32), np.full((nq, k), -1, np.int64)


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
                       count: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``search`` on arguments its caller has checked: q (nq, dim) float32 C-contiguous,
        k >= 1, allowed None or a bool mask (ntotal,) with ``count`` True entries, p from
        ``search_params`` (the collection validates all of these once per search)."""
        n = self.ntotal
        if allowed is None:
            count = n
        elif count == n:
            allowed = None
        if count == 0 or len(q) == 0:
            return pad(len(q), k, self.metric)
        scores, rows = self._search(q, k, allowed, count, p)
        last = min(k, count) - 1                           # short rows are padded at the end
        if p["exact_fallback"] and (rows.item(0, last) < 0 if len(q) == 1 else rows[:, last].min() < 0):
            short = rows[:, last] < 0
            if short.any():
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
                p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Search ``count`` >= 1 allowed rows (allowed None: all rows); may come back short."""

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


# --------------------------------------------------------------------------- FAISS-backed


def _faiss():
    import faiss
    return faiss


class FaissIndex(VectorIndex):
    """Shared plumbing of the FAISS-backed indexes: selectors, label conversion, file I/O.

    Subclasses create the FAISS index (``_new``), say how to search it (``_search``), and may
    train. FAISS releases the GIL and uses its own OpenMP threads; global thread settings are
    left alone.
    """

    # FAISS's scalar-quantizer kernels use SIMD only when d is a multiple of 8 (a scalar loop
    # otherwise: 14x slower at d=50); SQ indexes pad with zero dimensions, which change
    # neither inner products nor L2 distances.
    pad_to: ClassVar[int] = 1

    def __init__(self, dim: int, metric: str, **params: Any):
        super().__init__(dim, metric, **params)
        self._fdim = -(-self.dim // self.pad_to) * self.pad_to   # FAISS's d (once loaded: its own)
        self._index = None          # the FAISS index; None until trained / first add
        self._ntotal = 0            # its ntotal, kept here: read on every search
        self._mapped = False        # loaded with IO_FLAG_MMAP_IFC (read-only memory map)
        self._path: Path | None = None
        self._build: dict[str, Any] = {}   # params resolved at build (nlist, m, nbits), saved

    @property
    def faiss_metric(self) -> int:
        f = _faiss()
        return f.METRIC_INNER_PRODUCT if self.metric == "ip" else f.METRIC_L2

    @property
    def ntotal(self) -> int:
        return self._ntotal

    @property
    def is_trained(self) -> bool:
        return self._index is not None and bool(self._index.is_trained)

    @property
    def mapped(self) -> bool:
        """True when the index structures are memory-mapped from its file (read-only)."""
        return self._mapped

    @abc.abstractmethod
    def _new(self, n: int):
        """A new, empty FAISS index for about ``n`` rows (records resolved params in _build)."""

    def train(self, vectors: np.ndarray) -> None:
        v = as_vectors(vectors, self.dim)
        if self._index is None:
            self._index = self._new(len(v))
        if not self._index.is_trained and len(v):
            self._train(self._fx(v))

    def _train(self, v: np.ndarray) -> None:
        self._index.train(v)

    def _add(self, vectors: np.ndarray) -> None:
        if self._mapped:            # a mapped index is read-only: copy it into memory first
            self._index = _faiss().read_index(str(self._path))
            self._mapped = False
        if self._index is None:
            self._index = self._new(len(vectors))
        if len(vectors):
            self._index.add(self._fx(vectors))
            self._ntotal = int(self._index.ntotal)

    def _fx(self, x: np.ndarray) -> np.ndarray:
        """Rows as FAISS sees them: zero-padded to its d (a copy) where it is wider."""
        if self._fdim == self.dim:
            return x
        out = np.zeros((len(x), self._fdim), np.float32)
        out[:, :self.dim] = x
        return out

    # ---- search helpers
    @staticmethod
    def _selector(allowed: np.ndarray | None):
        """(selector, bitmap) for an allow-list; the caller keeps both alive during the search."""
        if allowed is None:
            return None, None
        f = _faiss()
        bits = np.packbits(allowed, bitorder="little")
        return f.IDSelectorBitmap(len(allowed), f.swig_ptr(bits)), bits

    def _labels(self, D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FAISS (D, I) to vecdb's padding: rows -1 get the worst score."""
        rows = I.astype(np.int64, copy=False)
        scores = D.astype(np.float32, copy=False)
        scores[rows < 0] = -np.inf if self.metric == "ip" else np.inf
        return scores, rows

    def _finish(self, q: np.ndarray, k: int, D: np.ndarray, I: np.ndarray,
                rescore: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels to rows; with ``rescore`` re-rank the candidates exactly and keep k."""
        scores, rows = self._labels(D, I)
        if rescore:
            return self._rescore(q, rows, k)
        return scores[:, :k].copy(), rows[:, :k].copy()

    # ---- persistence
    def save(self, path: str | Path) -> None:
        footer = {**self._footer(), "build": self._build}
        if self._index is None or self.ntotal == 0:
            write_index_file(path, footer)           # empty: no FAISS payload
        else:
            write_index_file(path, footer, lambda tmp: _faiss().write_index(self._index, tmp))

    @classmethod
    def load(cls, path: str | Path, vectors: np.ndarray, dim: int, metric: str, *,
             mmap: bool = True, **params: Any) -> "FaissIndex":
        self, footer, v = cls._check_file(path, vectors, dim, metric, params)
        self._build = dict(footer.get("build") or {})
        self._path = Path(path)
        if footer["payload_bytes"]:
            self._index, self._mapped = read_faiss(path, mmap)
            self._ntotal = int(self._index.ntotal)
            if self._index.d not in (self.dim, self._fdim) or self._index.ntotal != len(v):
                raise Corruption(f"index file {path}: FAISS payload does not match its footer")
            self._fdim = int(self._index.d)
            self._after_load()
        self._vectors = v
        return self

    def _after_load(self) -> None:
        """Restore derived state FAISS does not store (subclasses)."""


def read_faiss(path: str | Path, mmap: bool = True):
    """(index, mapped): FAISS index read with a read-only memory map where FAISS allows it.

    FAISS 1.15 maps (IO_FLAG_MMAP_IFC) flat, SQ and PQ code arrays, HNSW neighbour lists and
    IVF inverted lists; what it cannot map it reads. Any failure falls back to a plain read.
    """
    f = _faiss()
    if mmap:
        try:
            return f.read_index(str(path), f.IO_FLAG_MMAP_IFC | f.IO_FLAG_READ_ONLY), True
        except RuntimeError:
            pass
    try:
        return f.read_index(str(path)), False
    except RuntimeError as e:
        raise Corruption(f"index file {path}: FAISS cannot read it: {e}") from None


def ceil_div(a: float, b: float) -> int:
    return int(math.ceil(a / b))
