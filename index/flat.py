"""The exact index: the Numba kernel over the segment's own vectors, nothing stored beside them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vecdb.index.base import VectorIndex, write_index_file

__all__ = ["FlatIndex"]


class FlatIndex(VectorIndex):
    """Brute force over the original vectors (``exact_search``); always exact, always complete.

    Its file is a footer only (kind, dim, metric, ntotal): loading reuses the segment's mapped
    vectors, so load is instant and the index owns no memory.
    """

    kind = "flat"

    @property
    def ntotal(self) -> int:
        return len(self._vectors)

    def _add(self, vectors: np.ndarray) -> None:
        pass        # VectorIndex.add keeps the reference (or concatenates)

    def _search(self, q, k, allowed, count, p, ran):
        return self._exact(q, k, allowed)

    def save(self, path: str | Path) -> None:
        write_index_file(path, self._footer())

    @classmethod
    def load(cls, path: str | Path, vectors: np.ndarray, dim: int, metric: str, *,
             mmap: bool = True, **params: Any) -> "FlatIndex":
        self, _, v = cls._check_file(path, vectors, dim, metric, params)
        self._vectors = v
        return self

    def memory_bytes(self) -> int:
        return 0 if self._norms is None else self._norms.nbytes
