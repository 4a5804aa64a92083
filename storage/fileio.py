"""Every file operation of the storage engine, in one place (DESIGN §4).

The engine opens, writes, fsyncs, renames, truncates and unlinks files only through the
functions here, and writes a file durably only through ``write_durably`` (temp file, fsync,
rename, directory fsync). The functions call the module-level ``env`` (a ``FileEnv``); tests
install a fault-injecting one (``tests/storage/faultenv.py``, after LevelDB's FaultInjectionTestEnv)
with ``use_env``. ``crash_point(name)`` marks the steps of a commit where a test may kill the
process; it costs one global lookup when no hook is armed.

OS errors are mapped to the one error tree by ``io_error``: ENOSPC/EDQUOT -> ``StorageFull``,
any other -> ``Unavailable``; both name the file and the errno.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable

import crc32c as _crc32c

from vecdb.errors import StorageFull, Unavailable

_FULL = {errno.ENOSPC, errno.EDQUOT}


def crc32c(data, value: int = 0) -> int:
    """CRC32C (Castagnoli; hardware-accelerated) of ``data``, continuing from ``value``."""
    return _crc32c.crc32c(data, value)


def file_crc32c(path: Path, chunk: int = 16 << 20) -> tuple[int, int]:
    """(size, crc32c) of the file at ``path``, read in chunks."""
    value, size = 0, 0
    with env.open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return size, value
            value = _crc32c.crc32c(block, value)
            size += len(block)


def io_error(e: OSError, what: str) -> Unavailable:
    """The typed error for OS error ``e`` while doing ``what`` (names the file and errno)."""
    name = errno.errorcode.get(e.errno or 0, str(e.errno))
    if e.errno in _FULL:
        return StorageFull(f"{what}: the disk is full ({name}); writes fail until space is freed")
    return Unavailable(f"{what}: {name} {e.strerror or e}")


class FileEnv:
    """The real file system. Subclasses (tests) override methods to inject faults."""

    def open(self, path: Path, mode: str, buffering: int = -1) -> BinaryIO:
        return open(path, mode, buffering=buffering)

    def write(self, f: BinaryIO, data) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            n = f.write(view)
            view = view[len(view) if n is None else n:]

    def fsync(self, f: BinaryIO) -> None:
        f.flush()
        os.fsync(f.fileno())

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def truncate(self, f: BinaryIO, size: int) -> None:
        os.ftruncate(f.fileno(), size)

    def mkdir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def created(self, path: Path) -> None:
        """``path`` was created by code outside this module (FAISS writes by name)."""


env: FileEnv = FileEnv()
_crash_hook: Callable[[str], None] | None = None


@contextmanager
def use_env(new: FileEnv):
    """Route the engine's file operations through ``new`` for the duration (tests)."""
    global env
    old, env = env, new
    try:
        yield new
    finally:
        env = old


def set_crash_hook(hook: Callable[[str], None] | None) -> None:
    """Call ``hook(name)`` at every named crash point (tests kill the process there)."""
    global _crash_hook
    _crash_hook = hook


def crash_point(name: str) -> None:
    """A named step of a commit where a test may stop the process."""
    if _crash_hook is not None:
        _crash_hook(name)


# ---- the operations the engine uses ---------------------------------------------------------

def open_file(path: Path, mode: str, buffering: int = -1) -> BinaryIO:
    return env.open(path, mode, buffering)


def write(f: BinaryIO, data) -> None:
    """Write all of ``data`` (not yet durable)."""
    env.write(f, data)


def fsync(f: BinaryIO) -> None:
    env.fsync(f)


def fsync_dir(path: Path) -> None:
    env.fsync_dir(path)


def replace(src: Path, dst: Path) -> None:
    env.replace(src, dst)


def unlink(path: Path, missing_ok: bool = False) -> None:
    try:
        env.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def truncate(f: BinaryIO, size: int) -> None:
    env.truncate(f, size)


def mkdir(path: Path) -> None:
    env.mkdir(path)


def created(path: Path) -> None:
    env.created(path)


class _CrcWriter:
    """A write-only file object that checksums what passes through it (for Arrow writers)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.crc = 0
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        env.write(self._f, view)
        self.crc = _crc32c.crc32c(view, self.crc)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:   # Arrow closes its sink; the real file is closed by write_durably
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False


def write_durably(path: Path, write_fn: Callable[[object], None]) -> tuple[int, int]:
    """Write ``path`` atomically and durably; returns its (size, crc32c).

    ``write_fn(f)`` writes the content to a file object (``f.write``); then: fsync the temp
    file, rename it over ``path``, fsync the directory. On failure the temp file is removed
    and ``path`` is untouched; OS errors surface as ``StorageFull`` / ``Unavailable``.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with env.open(tmp, "wb", 0) as f:
            w = _CrcWriter(f)
            write_fn(w)
            crash_point("write_durably.written")
            env.fsync(f)
        crash_point("write_durably.synced")
        env.replace(tmp, path)
        crash_point("write_durably.renamed")
        env.fsync_dir(path.parent)
        crash_point("write_durably.dir_synced")
    except OSError as e:
        try:
            unlink(tmp, missing_ok=True)
        except OSError:
            pass
        raise io_error(e, f"writing {path}") from e
    except BaseException:
        try:
            unlink(tmp, missing_ok=True)
        except OSError:
            pass
        raise
    return w.size, w.crc
