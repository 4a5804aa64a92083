"""The index file format: ``[payload][footer json][u32 LE json length][magic]``, written
durably and its footer checked on read (see ``index/base.py``)."""
from __future__ import annotations

import json

import os
import struct
import threading
from pathlib import Path

from vecdb.errors import Corruption


FORMAT = "vecdb-index"
FORMAT_VERSION = 1
MAGIC = b"vecdbidx"
_TAIL = struct.Struct("<I8s")     # footer length, magic

def write_index_file(path: str | Path, footer: dict, write_payload=None) -> None:
    """Durably write ``[payload][footer]`` to ``path``: temp file, fsync, rename, fsync dir.

    ``write_payload(tmp_path)`` creates the temp file with the payload (None: no payload).
    File operations go through ``vecdb.storage.fileio`` (one place, fault-injectable).
    """
    from vecdb.storage import fileio
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        if write_payload is not None:
            write_payload(str(tmp))
            fileio.created(tmp)
        payload_bytes = tmp.stat().st_size if tmp.exists() else 0
        blob = json.dumps({**footer, "format": FORMAT, "version": FORMAT_VERSION,
                           "payload_bytes": payload_bytes}, sort_keys=True).encode()
        with fileio.open_file(tmp, "ab", 0) as f:
            fileio.write(f, blob + _TAIL.pack(len(blob), MAGIC))
            fileio.fsync(f)
        fileio.replace(tmp, path)
    except BaseException as e:
        try:
            fileio.unlink(tmp, missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise fileio.io_error(e, f"writing index file {path}") from e
        raise
    try:
        fileio.fsync_dir(path.parent)
    except OSError as e:
        raise fileio.io_error(e, f"writing index file {path}") from e


def read_footer(path: str | Path) -> dict:
    """The footer of an index file; Corruption if it is missing, torn or of an unknown version."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _TAIL.size:
                raise Corruption(f"index file {path} is too short ({size} bytes)")
            f.seek(size - _TAIL.size)
            length, magic = _TAIL.unpack(f.read(_TAIL.size))
            if magic != MAGIC or length > size - _TAIL.size:
                raise Corruption(f"index file {path} has no vecdb index footer")
            f.seek(size - _TAIL.size - length)
            footer = json.loads(f.read(length))
    except FileNotFoundError:
        raise Corruption(f"index file {path} is missing") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise Corruption(f"index file {path} has an unreadable footer: {e}") from None
    if footer.get("format") != FORMAT or footer.get("version") != FORMAT_VERSION:
        raise Corruption(f"index file {path}: unsupported format {footer.get('format')!r} "
                         f"version {footer.get('version')!r}")
    if footer.get("payload_bytes", -1) + length + _TAIL.size != size:
        raise Corruption(f"index file {path}: size {size} does not match its footer")
    return footer
