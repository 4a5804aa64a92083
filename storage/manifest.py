"""Versioned manifests: the one description of a collection's durable state.

Each version is a JSON file ``manifest/v{version:08d}.json`` with an explicit format header,
committed atomically (temp file, fsync, rename, fsync the directory). The highest version on
disk is current; older ones stay readable (time travel) until garbage collection.

Format version 2 ends with a line ``crc32c=<8 hex digits>`` over every byte before it, and
records each data file's ``[size, crc32c]`` (``file_sum``, ``deletes_sum``, ``index_sum``), so
one read of a manifest verifies it and tells what every file it names must hold. Version 1
manifests (written before checksums) still open; their files are not verified.

A manifest names the collection's settings, its sealed segments with their delete bitmap
files, and the WAL checkpoint: every record with ``seq <= checkpoint`` is reflected in the
segments and bitmaps, so replay starts after it.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from vecdb.errors import Corruption, VersionNotFound
from vecdb.storage.fileio import crc32c, write_durably

FORMAT = "vecdb-manifest"
_SEGMENT_FILE = re.compile(r"^seg-\d{8}\.arrow$")
_DELETES_FILE = re.compile(r"^seg-\d{8}\.del-\d{8}$")
_ALWAYS = {"deletes", "index", "index_config"}
_INDEX_FILE = re.compile(r"^seg-\d{8}\.idx$")
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
_TRAILER = b"\ncrc32c="


@dataclass(frozen=True)
class SegmentEntry:
    num: int
    file: str
    rows: int
    deletes: str | None = None   # delete bitmap file, None when no row is deleted
    deleted: int = 0
    index: str | None = None     # index file, None while not built (or not wanted)
    index_config: dict | None = None
    file_sum: tuple | None = None     # [size, crc32c] of each file; None: not recorded (v1)
    deletes_sum: tuple | None = None
    index_sum: tuple | None = None


@dataclass(frozen=True)
class Manifest:
    version: int
    name: str
    dim: int
    metric: str
    id_type: str | None
    schema: dict[str, str]
    index: dict
    segments: tuple[SegmentEntry, ...] = ()
    checkpoint: int = 0          # last WAL seq reflected in segments and bitmaps
    next_segment: int = 1
    created_at: float = field(default_factory=time.time)
    embedding: str | None = None   # embedding model name (vecdb.rag.embedding); None: vectors only
    text: dict | None = None       # {"fields": {name: weight}, "stopwords", "source"}; None: no BM25

    def files(self) -> set[str]:
        """Data files (segments, bitmaps) this version needs."""
        out = set()
        for s in self.segments:
            out.add(s.file)
            if s.deletes:
                out.add(s.deletes)
            if s.index:
                out.add(s.index)
        return out

    def sums(self) -> dict[str, tuple[int, int] | None]:
        """Each data file's recorded (size, crc32c); None where the manifest predates checksums."""
        out: dict = {}
        for s in self.segments:
            out[s.file] = s.file_sum and tuple(s.file_sum)
            if s.deletes:
                out[s.deletes] = s.deletes_sum and tuple(s.deletes_sum)
            if s.index:
                out[s.index] = s.index_sum and tuple(s.index_sum)
        return out

    def to_json(self) -> str:
        body = asdict(self)
        body["segments"] = [{k: v for k, v in asdict(s).items() if v is not None or k in _ALWAYS}
                            for s in self.segments]
        for optional in ("embedding", "text"):      # absent when unset: older readers still read it
            if body[optional] is None:
                del body[optional]
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **body}, indent=1)

    def to_bytes(self) -> bytes:
        """The file content: JSON, then the crc32c trailer line."""
        data = self.to_json().encode()
        return data + _TRAILER + b"%08x\n" % crc32c(data)

    @staticmethod
    def from_bytes(data: bytes) -> "Manifest":
        """Parse a manifest file; ValueError if its checksum or content is wrong."""
        cut = data.rfind(_TRAILER)
        if cut >= 0 and len(data) - cut == len(_TRAILER) + 9:
            body, want = data[:cut], data[cut + len(_TRAILER):-1]
            if b"%08x" % crc32c(body) != want:
                raise ValueError("checksum mismatch (the file was changed or damaged)")
            return Manifest.from_json(body.decode())[0]
        m, version = Manifest.from_json(data.decode())
        if version >= 2:
            raise ValueError("checksum line missing (the file was truncated or edited)")
        return m

    @staticmethod
    def from_json(text: str) -> tuple["Manifest", int]:
        body = json.loads(text)
        fmt, version = body.pop("format", None), body.pop("format_version", None)
        if fmt != FORMAT or version not in READ_VERSIONS:
            raise ValueError("not a vecdb manifest of a supported version")
        body["segments"] = tuple(SegmentEntry(**{k: tuple(v) if k.endswith("_sum") and v else v
                                                  for k, v in s.items()}) for s in body["segments"])
        for e in body["segments"]:   # names only: a manifest must never point outside its folder
            if (not _SEGMENT_FILE.match(e.file) or (e.deletes is not None and not _DELETES_FILE.match(e.deletes))
                    or (e.index is not None and not _INDEX_FILE.match(e.index))):
                raise ValueError(f"segment entry names unexpected files {e.file!r}, {e.deletes!r}")
        return Manifest(**body), version

    def next(self, **changes) -> "Manifest":
        """The following version with ``changes`` applied."""
        return replace(self, version=self.version + 1, created_at=time.time(), **changes)


def manifest_path(directory: Path, version: int) -> Path:
    return directory / f"v{version:08d}.json"


def list_versions(directory: Path) -> list[int]:
    out = []
    for p in directory.glob("v*.json"):
        try:
            out.append(int(p.stem[1:]))
        except ValueError:
            continue
    return sorted(out)


def load(directory: Path, version: int | None = None) -> Manifest:
    """The given version, or the current (highest) one."""
    versions = list_versions(directory)
    if not versions:
        raise Corruption(f"no manifest in {directory}")
    v = versions[-1] if version is None else version
    if v not in versions:
        raise VersionNotFound(f"version {v} does not exist (versions: {versions[0]}..{versions[-1]})")
    try:
        m = Manifest.from_bytes(manifest_path(directory, v).read_bytes())
    except FileNotFoundError:
        raise VersionNotFound(f"version {v} was removed (garbage-collected) while being opened") from None
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as e:
        raise Corruption(f"manifest version {v} in {directory} cannot be read: {e}") from e
    if m.version != v:
        raise Corruption(f"manifest file v{v} claims version {m.version}")
    return m


def commit(directory: Path, manifest: Manifest) -> None:
    """Write ``manifest`` as a new version, atomically and durably (a version is written once)."""
    path = manifest_path(directory, manifest.version)
    if path.exists():
        raise Corruption(f"manifest version {manifest.version} already exists")
    write_durably(path, lambda f: f.write(manifest.to_bytes()))
