"""One writer process per database directory: an OS advisory lock on ``LOCK``."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vecdb.errors import DatabaseLocked


class DirLock:
    """Holds an exclusive ``flock`` on ``directory/LOCK`` until released.

    The kernel drops the lock when the process dies, so a crashed writer never leaves a
    stale lock behind. The file records the holder's pid for the error message.
    """

    def __init__(self, directory: Path):
        self.path = directory / "LOCK"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise DatabaseLocked(
                f"database {directory} is open for writing by another process (pid {holder})") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
