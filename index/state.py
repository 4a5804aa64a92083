"""Search-side state of sealed segments: filter masks, compact copies of filtered rows,
squared norms and the GPU copy, all derived from a segment's rows.

Storage keeps files, ids, columns and deletes (``storage/segment.py``); what search derives
from them lives here, keyed weakly by segment, so it goes when the segment leaves every view
(the segment object is then collected). A segment's rows never change, so nothing here needs
invalidating; deletes are applied separately through the view's alive mask.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

__all__ = ["SegmentState", "state_of", "FILTER_CACHE_ENTRIES", "SUBSET_CACHE_BYTES"]

FILTER_CACHE_ENTRIES = 32     # filter masks kept per segment (n bytes each)
SUBSET_CACHE_BYTES = 128 << 20  # compact copies of selective filters' rows, per segment


class SegmentState:
    """What search keeps about one sealed segment's rows (``vectors``, read-only)."""

    def __init__(self, vectors: np.ndarray):
        self._vectors = vectors
        self._filter_masks: dict = {}
        self._subsets: dict = {}
        self._norms: np.ndarray | None = None
        self._device = None          # GPU exact searcher (index/gpu.py); False: none usable

    def filter_mask(self, key, evaluate) -> tuple[np.ndarray, int]:
        """The row mask of filter ``key`` and its number of matches, computed by ``evaluate()``
        once and kept (LRU): rows never change in a sealed segment."""
        cache = self._filter_masks
        hit = cache.pop(key, None)
        if hit is None:
            mask = evaluate()
            mask.setflags(write=False)
            hit = (mask, int(np.count_nonzero(mask)))
            while len(cache) >= FILTER_CACHE_ENTRIES:
                cache.pop(next(iter(cache)))
        cache[key] = hit            # most recently used last
        return hit

    def filter_subset(self, key, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row numbers, contiguous copy of their vectors) of a selective filter, kept (LRU,
        ``SUBSET_CACHE_BYTES`` per segment): scanning a compact copy is ~10x faster than
        gathering scattered rows through a mask."""
        cache = self._subsets
        hit = cache.pop(key, None)
        if hit is None:
            rows = np.flatnonzero(mask)
            hit = (rows, np.ascontiguousarray(self._vectors[rows]))
            while cache and sum(v.nbytes for _, v in cache.values()) + hit[1].nbytes > SUBSET_CACHE_BYTES:
                cache.pop(next(iter(cache)))
        if hit[1].nbytes <= SUBSET_CACHE_BYTES:
            cache[key] = hit
        return hit

    def norms(self) -> np.ndarray:
        """Squared L2 norms of the rows, computed once on first use."""
        if self._norms is None:
            from vecdb.index.exact import squared_norms
            self._norms = squared_norms(self._vectors)
        return self._norms

    def device_exact(self, metric: str):
        """The rows copied to the GPU for batch exact scans, on first use; None without one."""
        if self._device is None:
            from vecdb.index.gpu import device_exact
            self._device = device_exact(self._vectors, metric) or False
        return self._device or None

    @property
    def device_bytes(self) -> int:
        """GPU memory held for this segment (0 when it was never scanned there)."""
        return self._device.nbytes if self._device else 0


_STATES: "weakref.WeakKeyDictionary[object, SegmentState]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def state_of(segment) -> SegmentState:
    """The search state of ``segment`` (anything with ``vectors``), made on first use and
    dropped when the segment is."""
    state = _STATES.get(segment)
    if state is None:
        with _LOCK:
            state = _STATES.get(segment)
            if state is None:
                state = _STATES[segment] = SegmentState(segment.vectors)
    return state


def peek(segment) -> SegmentState | None:
    """The search state of ``segment`` if it has one (stats read it without making one)."""
    return _STATES.get(segment)
