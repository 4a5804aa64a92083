"""A fault-injecting file environment for tests (after LevelDB's FaultInjectionTestEnv).

Install with ``fileio.use_env(FaultEnv(root, backup))``. It counts every mutating file
operation (open for writing, write, fsync, directory fsync, rename, unlink, truncate) and can

- fail the Nth one (``fail_at``; once, or ``persistent`` for every later one of the same
  kinds) with ``EIO`` or ``ENOSPC``;
- cut the power at the Nth one (``crash_at``): that operation and every later one raise
  ``PowerLoss``, then ``power_loss()`` puts the disk in the state a real power loss could
  leave: every byte not fsynced is dropped (tracked per inode: the length last fsynced),
  files whose directory entry was never fsynced vanish, and renames / unlinks not followed
  by a directory fsync are undone (the replaced or unlinked file was kept as a hard link).
"""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from vecdb.storage.fileio import FileEnv

ALL_KINDS = frozenset({"open", "write", "fsync", "fsync_dir", "replace", "unlink", "truncate"})


class PowerLoss(BaseException):
    """Raised at and after the simulated power cut (a BaseException: nothing may swallow it)."""


class FaultEnv(FileEnv):
    def __init__(self, root: Path, backup: Path):
        self.root = Path(root)
        self.backup = Path(backup)
        self.backup.mkdir(parents=True, exist_ok=True)
        self.ops = 0
        self.log: list[tuple[int, str, str]] = []
        self.fail_at: int | None = None
        self.fail_errno = errno.EIO
        self.fail_kinds = ALL_KINDS
        self.persistent = False
        self.torn_writes = True
        self._armed = False
        self.faults = 0               # faults injected
        self.crash_at: int | None = None
        self.dead = False
        self._synced: dict[int, int] = {}          # inode -> length last fsynced
        self._new: dict[str, int] = {}             # path -> inode: entry not yet dir-synced
        self._undo: list[tuple] = []               # (dir, action...) not yet dir-synced
        self._nbackup = 0
        self._lock = threading.RLock()

    # ---- fault plan ------------------------------------------------------------------------

    def _tick(self, kind: str, path) -> None:
        with self._lock:
            if self.dead:
                raise PowerLoss()
            self.ops += 1
            n = self.ops
            self.log.append((n, kind, str(path)))
            if self.crash_at is not None and n >= self.crash_at:
                self.dead = True
                raise PowerLoss()
            if (self.fail_at is not None and kind in self.fail_kinds
                    and (n == self.fail_at or (self.persistent and n > self.fail_at))
                    or self._armed and kind in self.fail_kinds):
                self._armed = self._armed and self.persistent
                self.faults += 1
                raise OSError(self.fail_errno, os.strerror(self.fail_errno), str(path))

    def fail_next(self, kinds, err: int = errno.EIO, persistent: bool = False) -> None:
        """Fail the next operation of ``kinds`` (and every later one if ``persistent``)."""
        self.fail_kinds, self.fail_errno, self.persistent = frozenset(kinds), err, persistent
        self._armed = True

    def clear_faults(self) -> None:
        """Space freed / disk repaired: no more injected failures."""
        self.fail_at = None
        self._armed = False

    # ---- operations --------------------------------------------------------------------------

    def open(self, path, mode, buffering=-1):
        if mode.startswith("r") and "+" not in mode:
            return open(path, mode, buffering=buffering)
        self._tick("open", path)
        existed = os.path.exists(path)
        f = open(path, mode, buffering=buffering)
        with self._lock:
            ino = os.fstat(f.fileno()).st_ino
            if not existed:
                self._new[str(path)] = ino
                self._synced[ino] = 0
            elif mode.startswith("w"):
                self._synced[ino] = 0
            else:
                self._synced.setdefault(ino, os.fstat(f.fileno()).st_size)
        return f

    def write(self, f, data):
        with self._lock:   # a file opened before this env was installed: synced so far
            self._synced.setdefault(os.fstat(f.fileno()).st_ino, os.fstat(f.fileno()).st_size)
        try:
            self._tick("write", f.name)
        except OSError:
            if self.torn_writes:     # a real full disk often takes part of the write first
                view = memoryview(data).cast("B")
                super().write(f, view[:len(view) // 2])
            raise
        super().write(f, data)

    def fsync(self, f):
        self._tick("fsync", f.name)
        super().fsync(f)
        with self._lock:
            st = os.fstat(f.fileno())
            self._synced[st.st_ino] = st.st_size

    def fsync_dir(self, path):
        self._tick("fsync_dir", path)
        super().fsync_dir(path)
        d = os.path.abspath(path)
        with self._lock:
            self._undo = [u for u in self._undo if u[0] != d]
            for p in [p for p in self._new if os.path.dirname(os.path.abspath(p)) == d]:
                del self._new[p]

    def _keep(self, path) -> str | None:
        """A hard link to ``path``'s current file, to restore it if the power goes."""
        if not os.path.exists(path):
            return None
        self._nbackup += 1
        b = str(self.backup / f"b{self._nbackup}")
        os.link(path, b)
        return b

    def replace(self, src, dst):
        self._tick("replace", dst)
        with self._lock:
            kept = self._keep(dst)
            src_new = self._new.pop(str(src), None)
            super().replace(src, dst)
            if src_new is not None:
                self._new[str(dst)] = src_new
            self._undo.append((os.path.dirname(os.path.abspath(dst)), "replace", str(src), str(dst),
                               kept, src_new is not None))

    def unlink(self, path):
        self._tick("unlink", path)
        with self._lock:
            kept = None if str(path) in self._new else self._keep(path)
            super().unlink(path)
            self._new.pop(str(path), None)
            if kept:
                self._undo.append((os.path.dirname(os.path.abspath(path)), "unlink", str(path), kept))

    def truncate(self, f, size):
        self._tick("truncate", f.name)
        super().truncate(f, size)
        with self._lock:
            ino = os.fstat(f.fileno()).st_ino
            self._synced[ino] = min(self._synced.get(ino, size), size)

    def created(self, path):
        with self._lock:
            ino = os.stat(path).st_ino
            self._new[str(path)] = ino
            self._synced[ino] = 0

    # ---- the power cut -------------------------------------------------------------------------

    def power_loss(self) -> dict:
        """Make the disk look as after a power cut now; returns what was dropped."""
        with self._lock:
            self.dead = True
            undone = 0
            for u in reversed(self._undo):
                undone += 1
                if u[1] == "replace":
                    _, _, src, dst, kept, src_new = u
                    if os.path.exists(dst):
                        if src_new:
                            os.unlink(dst)
                        else:
                            os.replace(dst, src)
                    if kept:
                        os.replace(kept, dst)
                else:
                    _, _, path, kept = u
                    os.replace(kept, path)
            vanished = 0
            for p in self._new:
                if os.path.exists(p):
                    os.unlink(p)
                    vanished += 1
            dropped = 0
            for dirpath, _, names in os.walk(self.root):
                for name in names:
                    p = os.path.join(dirpath, name)
                    st = os.stat(p)
                    synced = self._synced.get(st.st_ino)
                    if synced is not None and st.st_size > synced:
                        dropped += st.st_size - synced
                        os.truncate(p, synced)
            return {"undone": undone, "vanished": vanished, "bytes_dropped": dropped}
