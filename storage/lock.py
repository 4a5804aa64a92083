"""One writer process per database directory: an OS advisory lock on ``LOCK``."""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from vecdb.errors import DatabaseLocked
from vecdb.storage import fileio

# Directories this process holds: flock is per open file, so a second connect() in the same
# process would otherwise be refused as if another process held the lock.
_held: set[str] = set()
_held_lock = threading.Lock()


class DirLock:
    """Holds an exclusive ``flock`` on ``directory/LOCK`` until released.

    The kernel drops the lock when the process dies, so a crashed writer never leaves a
    stale lock behind. The file records the holder's pid for the error message.
    """

    def __init__(self, directory: Path):
        self.path = directory / "LOCK"
        self._key = os.path.realpath(directory)
        self._fd = -1
        with _held_lock:
            if self._key in _held:
                raise DatabaseLocked(f"database {directory} is already open in this process "
                                     f"(pid {os.getpid()}); use that connection or close it first")
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except IsADirectoryError:
                raise DatabaseLocked(f"database {directory} cannot be locked: {self.path} is a "
                                     f"directory, not a lock file (remove it)") from None
            except OSError as e:
                raise fileio.io_error(e, f"opening lock file {self.path}") from e
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(self._fd)
                raise DatabaseLocked(
                    f"database {directory} is open for writing by another process (pid {holder})") from None
            _held.add(self._key)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
            with _held_lock:
                _held.discard(self._key)
