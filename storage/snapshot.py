"""Snapshots: a consistent copy of one collection version, as a directory or a tar archive.

A snapshot directory has the layout of a collection directory holding exactly one manifest
version and the files it names (hard links to the immutable originals where the filesystem
allows). Restore accepts only that layout: archives with absolute paths, ``..``, links,
devices or unknown files are rejected before anything is written.
"""
from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from vecdb.errors import Corruption, InvalidArgument
from vecdb.storage import fileio, manifest as mf
from vecdb.storage.manifest import Manifest
from vecdb.storage.segment import Segment, read_deletes

_ALLOWED = re.compile(r"^(manifest/v\d{8}\.json|segments/seg-\d{8}\.(arrow|del-\d{8}|idx)|manifest|segments|wal)$")


def export(store, dest: Path) -> Path:
    """Snapshot ``store`` into ``dest``: a directory, or a tar archive if it ends in ``.tar``."""
    if dest.exists():
        raise InvalidArgument(f"snapshot destination {dest} already exists")
    if dest.suffix != ".tar":
        store.snapshot(dest)
        return dest
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        staged = Path(tmp) / "snap"
        store.snapshot(staged)
        partial = dest.with_name(dest.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            for p in sorted(staged.rglob("*")):
                tar.add(p, arcname=p.relative_to(staged).as_posix(), recursive=False)
        partial.replace(dest)
    return dest


def _check_members(names: list[str]) -> None:
    for name in names:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not _ALLOWED.match(pure.as_posix()):
            raise InvalidArgument(f"snapshot holds an unexpected entry {name!r}")


def restore(src: Path, dest: Path, name: str) -> Manifest:
    """Copy the snapshot at ``src`` (directory or .tar) into the new collection dir ``dest``,
    naming the collection ``name``."""
    if dest.exists():
        raise InvalidArgument(f"restore destination {dest} already exists")
    if not src.exists():
        raise InvalidArgument(f"snapshot {src} does not exist")
    staging = dest.with_name(dest.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if src.is_dir():
            names = [p.relative_to(src).as_posix() for p in src.rglob("*")]
            if any(p.is_symlink() or not (p.is_file() or p.is_dir()) for p in src.rglob("*")):
                raise InvalidArgument(f"snapshot {src} holds links or special files")
            _check_members(names)
            shutil.copytree(src, staging)
        else:
            try:
                tar = tarfile.open(src, "r:")
            except (tarfile.TarError, OSError) as e:
                raise InvalidArgument(f"snapshot {src} is not a tar archive: {e}") from None
            with tar:
                members = tar.getmembers()
                for m in members:
                    if not (m.isfile() or m.isdir()):
                        raise InvalidArgument(f"snapshot holds a link or special file {m.name!r}")
                _check_members([m.name for m in members])
                staging.mkdir(parents=True)
                tar.extractall(staging, filter="data")
        for sub in ("manifest", "segments", "wal"):
            (staging / sub).mkdir(exist_ok=True)
        versions = mf.list_versions(staging / "manifest")
        if len(versions) != 1:
            raise InvalidArgument(f"snapshot must hold exactly one manifest version, found {len(versions)}")
        m = mf.load(staging / "manifest")
        missing = [f for f in m.files() if not (staging / "segments" / f).is_file()]
        if missing:
            raise InvalidArgument(f"snapshot is missing files {missing}")
        for fname, want in m.sums().items():   # recorded checksums must match before anything opens
            if want is not None and fileio.file_crc32c(staging / "segments" / fname) != tuple(want):
                raise InvalidArgument(f"snapshot file {fname} fails its checksum")
        for e in m.segments:   # every file must open and check before the collection appears
            deleted = read_deletes(staging / "segments" / e.deletes, e.rows) if e.deletes else None
            seg = Segment(e.num, staging / "segments" / e.file, m.dim, deleted)
            if seg.n != e.rows:
                raise InvalidArgument(f"snapshot segment {e.file} has {seg.n} rows, its manifest says {e.rows}")
            del seg
        if m.name != name:
            m = m.next(name=name)
            mf.commit(staging / "manifest", m)
        staging.rename(dest)
        return m
    except (tarfile.TarError, OSError, ValueError, Corruption) as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, InvalidArgument):
            raise
        raise InvalidArgument(f"snapshot {src} cannot be restored: {e}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
