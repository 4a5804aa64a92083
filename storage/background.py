"""Failures of background work (sealing, index builds, clean-up): reported, retried, never raised.

A write whose WAL record is durable has succeeded (DESIGN §4); work after that which fails is
recorded here (counted, the newest kept for ``stats()``, logged) and retried on a timer with
exponential backoff, so the writer never sees it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

log = logging.getLogger("vecdb.storage")

RETRY_FIRST_S = 0.5       # first delay before retrying a failed step (doubles each time)
RETRY_MAX_S = 30.0
INDEX_RETRIES = 5         # a failing index build is tried this often per open
KEEP = 32                 # failures kept for stats()


class BackgroundFailures:
    """One collection's failed background steps and their pending retries. Thread-safe."""

    def __init__(self, name: str):
        self.name = name
        self.count = 0
        self.recent: deque = deque(maxlen=KEEP)
        self._lock = threading.Lock()
        self._flush_retry: threading.Timer | None = None
        self._delay = RETRY_FIRST_S
        self._index_tries: dict[int, int] = {}
        self._closed = False

    @property
    def retry_pending(self) -> bool:
        return self._flush_retry is not None

    def failed(self, what: str, e: BaseException, retry: Callable[[], None] | None = None) -> None:
        """Record that ``what`` failed with ``e``; with ``retry``, call it later (one pending)."""
        with self._lock:
            self.count += 1
            self.recent.append({"time": time.time(), "what": what, "error": f"{type(e).__name__}: {e}"})
            schedule = retry is not None and self._flush_retry is None and not self._closed
            delay = self._delay
            if schedule:
                self._flush_retry = _timer(delay, retry)   # it calls retry_done, and failed() again
                self._delay = min(self._delay * 2, RETRY_MAX_S)
        log.warning("%s: %s failed: %s%s", self.name, what, e, f" (retrying in {delay:.1f}s)" if schedule else "")

    def retry_done(self, ok: bool) -> None:
        """The pending retry ran (the caller holds its own lock): clear it; on success reset
        the backoff."""
        with self._lock:
            self._flush_retry = None
            if ok:
                self._delay = RETRY_FIRST_S

    def index_failed(self, num: int, what: str, e: BaseException, retry: Callable[[], None]) -> None:
        """An index build of segment ``num`` failed: record it and retry a few times."""
        self.failed(what, e)
        with self._lock:
            tries = self._index_tries[num] = self._index_tries.get(num, 0) + 1
            if tries < INDEX_RETRIES and not self._closed:
                _timer(min(RETRY_FIRST_S * 2 ** tries, RETRY_MAX_S), retry)

    def report(self) -> dict:
        return {"failures": self.count, "retry_pending": self.retry_pending, "recent": list(self.recent)}

    def close(self) -> None:
        """No more retries; cancel the pending one."""
        with self._lock:
            self._closed = True
            pending, self._flush_retry = self._flush_retry, None
        if pending is not None:
            pending.cancel()


def _timer(delay: float, fn, *args) -> threading.Timer:
    t = threading.Timer(delay, fn, args)
    t.daemon = True
    t.start()
    return t
