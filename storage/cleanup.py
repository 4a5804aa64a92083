"""Garbage collection of a collection directory: old manifest versions and unreferenced files.

Keeps the installed version's files, the newest ``keep_versions`` versions (and those younger
than ``keep_versions_for_s``), versions pinned by open read-only views in this process, and
files being written (a compaction's segments, an index build's temp file
``.seg-N.idx.tmp-<pid>-<tid>``). A damaged old version is skipped with a warning.
Pins are per process: a reader in another process is protected by retrying its open on a
newer version instead (storage/store.py), and by unlink keeping files it has mapped.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

from vecdb.errors import Corruption
from vecdb.storage import fileio, manifest as mf

log = logging.getLogger("vecdb.storage")

_pins: Counter = Counter()
_pins_lock = threading.Lock()


def pin(directory: Path, version: int) -> None:
    """A read-only view of ``version`` is open: keep its files."""
    with _pins_lock:
        _pins[(str(directory), version)] += 1


def unpin(directory: Path, version: int) -> None:
    with _pins_lock:
        _pins[(str(directory), version)] -= 1


def pinned(directory: Path) -> set[int]:
    with _pins_lock:
        return {v for (d, v), c in _pins.items() if d == str(directory) and c > 0}


def written_name(name: str) -> str:
    """The file a temp file becomes: ``x.tmp`` and ``.x.tmp-<pid>-<tid>`` -> ``x``."""
    if name.endswith(".tmp"):
        return name[:-4]
    if name.startswith(".") and ".tmp-" in name:
        return name[1:name.index(".tmp-")]
    return name


def collect(directory: Path, current: mf.Manifest, keep_versions: int, keep_for_s: float,
            pending: set[str]) -> None:
    """Remove what no kept version needs (module doc). Caller holds the writer's lock."""
    mdir = directory / "manifest"
    versions = mf.list_versions(mdir)
    keep_n = set(versions[-max(1, keep_versions):])
    now = time.time()
    pins = pinned(directory)
    keep_files: set[str] = set(current.files())
    for v in versions:
        path = mf.manifest_path(mdir, v)
        keep = v in keep_n or v in pins or v >= current.version
        if not keep and keep_for_s:
            keep = now - path.stat().st_mtime < keep_for_s
        if not keep:
            fileio.unlink(path, missing_ok=True)
            continue
        try:
            keep_files |= mf.load(mdir, v).files()
        except Corruption as e:
            log.warning("%s: skipping damaged old manifest version %d: %s", current.name, v, e)
    for p in (directory / "segments").iterdir():
        if p.name in keep_files or written_name(p.name) in pending:
            continue
        fileio.unlink(p, missing_ok=True)
    for p in mdir.glob("*.tmp"):
        fileio.unlink(p, missing_ok=True)
