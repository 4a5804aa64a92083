"""Index types and their parameters: one config surface (build and search params, their
defaults and bounds), its checks, and the registry that makes or loads an index of a type."""
from __future__ import annotations

import importlib

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vecdb.errors import InvalidArgument


if TYPE_CHECKING:
    from vecdb.index.base import VectorIndex

METRICS = ("ip", "l2")

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
