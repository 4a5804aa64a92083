"""Offline integrity check of a collection or a database (``vecdb verify DIR``, ``db.verify()``).

Reads everything, changes nothing: every manifest version and its checksum, the chain of
versions (numbers, checkpoints and segment numbers never going back), every file the current
version names against its recorded size and crc32c (segments, delete bitmaps, index files),
each segment's rows and dimension, each index file's footer against its segment, and the WAL
after the checkpoint (no damage, no gap). ``problems`` are damage that loses or would serve
wrong data; ``warnings`` are harmless (a torn WAL tail the next open truncates, a damaged
version nothing needs, files from before checksums, leftover files clean-up will remove).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from vecdb.errors import Corruption, VecdbError
from vecdb.storage import fileio, manifest as mf
from vecdb.storage.segment import Segment, read_deletes
from vecdb.storage.wal import ReplayReport, replay


@dataclass
class VerifyReport:
    """What a check found: ``ok`` is False when any problem (damage) was found."""

    path: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    collections: dict = field(default_factory=dict)    # name -> VerifyReport (databases)

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def as_dict(self) -> dict:
        out = {"path": self.path, "ok": self.ok, "problems": self.problems,
               "warnings": self.warnings, "counts": self.counts}
        if self.collections:
            out["collections"] = {n: r.as_dict() for n, r in self.collections.items()}
        return out

    def lines(self) -> list[str]:
        """Human-readable lines, problems first (what ``vecdb verify`` prints)."""
        out = [f"{self.path}: {'OK' if self.ok else 'DAMAGED'} "
               + ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))]
        out += [f"  PROBLEM: {p}" for p in self.problems]
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def verify_collection(directory: str | Path) -> VerifyReport:
    """Check one collection directory (module doc); never raises for damage, reports it."""
    directory = Path(directory)
    r = VerifyReport(str(directory))
    mdir = directory / "manifest"
    versions = mf.list_versions(mdir)
    if not versions:
        r.problems.append(f"no manifest in {mdir}")
        return r
    current = None
    prev = None
    for v in versions:
        try:
            m = mf.load(mdir, v)
        except VecdbError as e:
            if v == versions[-1]:
                r.problems.append(f"current manifest version {v} is damaged: {e}")
            else:
                r.warnings.append(f"old manifest version {v} is damaged (not needed by the current "
                                  f"version): {e}")
            continue
        r.count("versions")
        if prev is not None and (m.checkpoint < prev.checkpoint or m.next_segment < prev.next_segment):
            r.problems.append(f"manifest version {v} goes back from version {prev.version} "
                              f"(checkpoint {prev.checkpoint} -> {m.checkpoint}, next segment "
                              f"{prev.next_segment} -> {m.next_segment})")
        prev = m
        current = m if v == versions[-1] else current
    if current is None:
        return r
    _check_files(directory, current, r)
    _check_wal(directory, current, r)
    return r


def _check_files(directory: Path, m: mf.Manifest, r: VerifyReport) -> None:
    seg_dir = directory / "segments"
    sums = m.sums()
    for name, want in sorted(sums.items()):
        path = seg_dir / name
        if not path.is_file():
            r.problems.append(f"{name} is missing")
            continue
        if want is None:
            r.count("unverified_files")
            r.warnings.append(f"{name} has no recorded checksum (written before checksums): not verified")
            continue
        got = fileio.file_crc32c(path)
        r.count("files_checked")
        r.count("bytes_checked", got[0])
        if got != tuple(want):
            r.problems.append(f"{name} fails its checksum (size, crc32c) {got} != manifest {tuple(want)}")
    for e in m.segments:
        lost = f"{e.rows - e.deleted} live row(s) of {e.file}"
        try:
            deleted = read_deletes(seg_dir / e.deletes, e.rows) if e.deletes else None
            seg = Segment(e.num, seg_dir / e.file, m.dim, deleted)
        except (Corruption, OSError, ValueError) as err:
            r.problems.append(f"{e.file} cannot be read ({err}): {lost} are lost")
            continue
        r.count("segments")
        r.count("rows", seg.n_alive)
        if seg.n != e.rows or seg.n_deleted != e.deleted:
            r.problems.append(f"{e.file} holds {seg.n} rows ({seg.n_deleted} deleted), the manifest says "
                              f"{e.rows} ({e.deleted} deleted)")
        if e.index:
            _check_index(seg_dir / e.index, e, seg, r)
        del seg
    keep = m.files()
    for p in sorted(seg_dir.iterdir()) if seg_dir.is_dir() else ():
        if p.name not in keep:
            r.count("unreferenced_files")
    if r.counts.get("unreferenced_files"):
        r.warnings.append(f"{r.counts['unreferenced_files']} file(s) in segments/ are not named by the "
                          f"current version (older versions' or leftovers; clean-up removes them)")


def _check_index(path: Path, e: mf.SegmentEntry, seg: Segment, r: VerifyReport) -> None:
    from vecdb.index.base import read_footer
    try:
        footer = read_footer(path)
    except Corruption as err:
        r.problems.append(f"index {e.index} of {e.file}: {err} (searches fall back to exact; rebuilt on open)")
        return
    r.count("indexes")
    if footer.get("ntotal") != seg.n or footer.get("dim") not in (None, seg.dim):
        r.problems.append(f"index {e.index} holds {footer.get('ntotal')} rows of dim {footer.get('dim')}, "
                          f"its segment {e.file} {seg.n} of dim {seg.dim}")


def _check_wal(directory: Path, m: mf.Manifest, r: VerifyReport) -> None:
    report = ReplayReport()
    try:
        for rec in replay(directory / "wal", m.checkpoint, "salvage", repair=False, report=report):
            if rec.op == 1 and getattr(rec.batch.column(1).type, "list_size", None) != m.dim:
                r.problems.append(f"WAL record {rec.seq} holds vectors of another dimension than dim={m.dim}")
    except Corruption as e:
        r.problems.append(str(e))
    r.count("wal_records", report.records)
    for name, offset, n in report.skipped:
        r.problems.append(f"WAL {name} is damaged at byte {offset} ({n} bytes); the records there are lost")
    for after, nxt in report.gaps:
        r.problems.append(f"WAL records {after + 1}..{nxt - 1} cannot be replayed (damaged, or a WAL "
                          f"file was removed or shortened): their writes are lost")
    for name, offset, n in report.truncated:
        r.warnings.append(f"WAL {name} ends in a torn record at byte {offset} ({n} bytes, never "
                          f"acknowledged); the next open truncates it")


def verify_database(path: str | Path, hold=None) -> VerifyReport:
    """Check every collection of the database at ``path``.

    ``hold(name)``, if given, returns a context manager held while that collection is checked:
    a process that has the database open passes its collections' write locks, so its own
    clean-up cannot remove a file between listing and reading it.
    """
    path = Path(path)
    r = VerifyReport(str(path))
    root = path / "collections"
    if not root.is_dir():
        r.problems.append(f"no vecdb database at {path}")
        return r
    for d in sorted(root.iterdir()):
        if not (d / "manifest").is_dir() or d.name.endswith((".creating", ".restoring")):
            continue
        with hold(d.name) if hold is not None else nullcontext():
            sub = verify_collection(d)
        r.collections[d.name] = sub
        r.problems += [f"{d.name}: {p}" for p in sub.problems]
        r.warnings += [f"{d.name}: {w}" for w in sub.warnings]
        for k, v in sub.counts.items():
            r.count(k, v)
        r.count("collections")
    return r


def verify_path(path: str | Path) -> VerifyReport:
    """A database directory or a single collection directory, whichever ``path`` is."""
    path = Path(path)
    if (path / "manifest").is_dir():
        return verify_collection(path)
    return verify_database(path)
