"""Background index builds for sealed segments (DESIGN §5).

One worker thread per collection builds queued segments' indexes in order: build in memory
(FAISS releases the GIL, so searches go on), save the file durably beside the segment, then
hand it to the store, which commits a manifest naming it and only then lets searches use it.
Until then the segment is searched exactly, so results never get worse during a build.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from vecdb.index.base import load_index, make_index

log = logging.getLogger("vecdb.storage")


def index_name(num: int) -> str:
    return f"seg-{num:08d}.idx"


@dataclass
class BuildState:
    """What ``stats()`` shows per segment: state, rows done, memory, timings."""

    state: str                      # queued | building | ready | failed
    kind: str
    rows: int
    rows_done: int = 0
    memory_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    started: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict:
        out = {"state": self.state, "type": self.kind, "rows": self.rows, "rows_done": self.rows_done,
               "memory_bytes": self.memory_bytes, "seconds": round(self.seconds, 3)}
        if self.state == "building":
            out["seconds"] = round(time.perf_counter() - self.started, 3)
        if self.error:
            out["error"] = self.error
        return out


class IndexBuilder:
    """Queue + worker thread. ``install(seg, config, index, file_name)`` is the store's hook."""

    def __init__(self, name: str, dim: int, metric: str, directory, install, pending: set,
                 on_failure=None):
        self._name = name
        self._dim = dim
        self._metric = metric
        self._dir = directory
        self._install = install
        self._pending = pending
        self._on_failure = on_failure     # (seg, config, exc): the store reports and retries
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._busy = False
        self._stop = False
        self.states: dict[int, BuildState] = {}
        self._thread: threading.Thread | None = None

    def schedule(self, seg, config: dict) -> None:
        with self._cond:
            if self._stop:
                return
            self.states[seg.num] = BuildState("queued", config["type"], seg.n)
            self._queue.append((seg, config))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"vecdb-index-{self._name}", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def ready(self, seg, index) -> None:
        """Record an index loaded from disk at open."""
        self.states[seg.num] = BuildState("ready", index.kind, seg.n, seg.n, index.memory_bytes())

    def forget(self, nums) -> None:
        with self._cond:
            for n in nums:
                self.states.pop(n, None)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and no build runs; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        """Stop after the current build (its result is dropped; it is rebuilt on next open)."""
        with self._cond:
            self._stop = True
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    self._busy = False
                    self._cond.notify_all()
                    return
                seg, config = self._queue.popleft()
                self._busy = True
            try:
                self._build(seg, config)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _build(self, seg, config: dict) -> None:
        st = self.states.get(seg.num)
        if st is None:   # the segment was compacted away while queued
            return
        st.state, st.started = "building", time.perf_counter()
        name = index_name(seg.num)
        self._pending.add(name)
        try:
            log.info("%s: building %s index on segment %d (%d rows)", self._name, config["type"], seg.num, seg.n)
            index = make_index(config, self._dim, self._metric)

            step = max(1, seg.n // 4)
            logged = [0]

            def progress(done: int) -> None:
                st.rows_done = done
                if done - logged[0] >= step and done < seg.n:
                    logged[0] = done
                    log.info("%s: segment %d index %d/%d rows (%.0fs)", self._name, seg.num, done, seg.n,
                             time.perf_counter() - st.started)
                if self._stop:
                    raise _Stopped()
            index.build(seg.vectors, progress=progress)
            index.save(self._dir / name)
            # serve what a reopen will: the file, mapped (it holds no second copy of the rows)
            index = load_index(self._dir / name, config, seg.vectors, self._dim, self._metric)
            st.memory_bytes = index.memory_bytes()
            st.seconds = time.perf_counter() - st.started
            if self._install(seg, config, index, name):
                st.state, st.rows_done = "ready", seg.n
                log.info("%s: %s index on segment %d ready in %.1fs (%.1f MiB)", self._name, config["type"],
                         seg.num, st.seconds, st.memory_bytes / 2**20)
        except _Stopped:
            st.state = "queued"
        except Exception as e:  # a failed build leaves the segment searched exactly; logged
            st.state, st.error = "failed", f"{type(e).__name__}: {e}"
            log.exception("%s: index build on segment %d failed", self._name, seg.num)
            if self._on_failure is not None:
                self._on_failure(seg, config, e)
        finally:
            self._pending.discard(name)


class _Stopped(Exception):
    pass
