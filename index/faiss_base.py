"""Shared plumbing of the FAISS-backed indexes (HNSW, IVF, SQ): selectors, label
conversion, FAISS file I/O."""
from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vecdb.errors import Corruption
from vecdb.index.base import VectorIndex, as_vectors
from vecdb.index.indexfile import write_index_file
from vecdb.index.metric import metric_of

__all__ = ["FaissIndex", "read_faiss", "ceil_div"]


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
        scores[rows < 0] = metric_of(self.metric).worst
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
