"""One collection's storage engine: WAL + memtable + sealed segments under versioned manifests.

Layout of a collection directory::

    manifest/v00000001.json ...   versions (the highest is current)
    segments/seg-00000001.arrow   sealed segments; seg-00000001.del-00000004 delete bitmaps
    wal/wal-<first seq>.log       write-ahead log since the manifest's checkpoint

Writers take ``write_lock``: WAL append, then apply to memory. Under ``always`` the write
is acknowledged after the group-commit fsync. Readers take a ``StoreView`` (segments and a
memtable prefix as of the visible sequence number) and never lock (DESIGN §9).
The manifest changes only in ``_commit``: build the next version, write it durably, install.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from vecdb.errors import Corruption, InvalidArgument, Unavailable, VersionNotFound
from vecdb.storage import cleanup, compaction, fileio, manifest as mf
from vecdb.storage.background import BackgroundFailures
from vecdb.storage.manifest import Manifest, SegmentEntry
from vecdb.storage.memtable import Memtable
from vecdb.storage.schema import ID, payload_schema, row_schema
from vecdb.storage.segment import (ALIVE, Segment, deletes_name, read_deletes, segment_name,
                                   write_deletes, write_segment)
from vecdb.index.base import load_index
from vecdb.index.planner import index_config_for
from vecdb.storage.indexer import IndexBuilder
from vecdb.storage.view import Part, StoreView, lookup
from vecdb.storage.wal import (OP_DELETE, OP_UPSERT, RECOVERY_MODES, ReplayReport, WalWriter, replay,
                               wal_files)

__all__ = ["CollectionStore", "StoreOptions", "StoreView", "Part"]

log = logging.getLogger("vecdb.storage")

MEMTABLE_KEY = 0          # id-map code of memtable rows: row number (segment rows: num << 32 | row)
ROW_BITS = 32
READ_ONLY_RETRIES = 5     # a read-only open retries on a newer version this often



@dataclass(frozen=True)
class StoreOptions:
    durability: str = "always"
    sync_interval_ms: int = 100
    seal_rows: int = 1_000_000
    seal_bytes: int = 256 << 20
    compact_target_rows: int = 2_000_000
    auto_compact: bool = True
    keep_versions: int = 10
    keep_versions_for_s: float = 0.0
    wal_recovery: str = "tolerate_tail"   # tolerate_tail | absolute | salvage (storage/wal.py)


class CollectionStore:
    """Durable storage of one collection. Create with ``create`` or ``open``."""

    def __init__(self, directory: Path, manifest: Manifest, options: StoreOptions,
                 read_only: bool = False, replay_wal: bool = True):
        self.dir = directory
        self.options = options
        self.read_only = read_only
        self.write_lock = threading.RLock()
        self._manifest = manifest
        self._closed = False
        self._idmap: dict | None = None
        self._compacting = threading.Lock()
        self._pending: set[str] = set()     # files being written, not yet in a manifest
        self._next_num = manifest.next_segment
        self._bg: threading.Thread | None = None
        self._segments: dict[int, Segment] = {}
        self._view_cache: tuple | None = None   # (seq, state, manifest, memtable rows, view)
        self._failures = BackgroundFailures(manifest.name)
        self.replay_report = ReplayReport()
        self.unverified: list[str] = []      # files opened without a recorded checksum (old format)
        damaged = []
        for e in manifest.segments:
            try:
                self._segments[e.num] = self._open_segment(e)
            except Corruption as err:
                if options.wal_recovery != "salvage":
                    raise
                damaged.append(e)     # salvage: keep the intact segments, report the rest
                self._failures.failed(f"salvage dropped damaged segment {e.file}", err)
        self._memtable = self._new_memtable()
        self._set_state(tuple(self._segments.values()), self._memtable)
        self._indexer = IndexBuilder(manifest.name, manifest.dim, self.kernel_metric,
                                     self.dir / "segments", self._install_index, self._pending,
                                     self._index_failed)
        for e in manifest.segments:
            if e.index:
                self._open_index(self._segments[e.num], e)
        self._seq = manifest.checkpoint
        self._applied = manifest.checkpoint
        self._wal: WalWriter | None = None
        if read_only:
            if replay_wal:   # the current version: see every write acknowledged before opening
                self._replay(repair=False)
            cleanup.pin(directory, manifest.version)
            return
        if damaged:
            kept = tuple(e for e in manifest.segments if e.num in self._segments)
            self._commit(manifest.next(segments=kept))
        self._replay(repair=True)
        self._wal = WalWriter(self.dir / "wal", self._seq + 1, options.durability,
                              options.sync_interval_ms)
        if self.replay_report.damaged:   # salvaged: checkpoint past the damage, retire the bad log
            self.flush()
        self._gc()
        for seg in self._state[0]:
            self._schedule_index(seg)

    def _open_segment(self, e: SegmentEntry) -> Segment:
        """Open one sealed segment and its delete bitmap, verifying their checksums."""
        seg_dir = self.dir / "segments"
        lost = f"its {e.rows - e.deleted} live row(s) cannot be served"
        path = seg_dir / e.file
        if e.file_sum is None:
            self.unverified.append(e.file)
        else:
            try:
                got = fileio.file_crc32c(path)
            except FileNotFoundError:
                raise Corruption(f"segment {e.file} is missing: {lost}") from None
            if got != tuple(e.file_sum):
                raise Corruption(f"segment {e.file} fails its checksum (size/crc32c {got}, manifest "
                                 f"{tuple(e.file_sum)}): {lost}")
        deleted = None
        if e.deletes:
            if e.deletes_sum is None:
                self.unverified.append(e.deletes)
            deleted = read_deletes(seg_dir / e.deletes, e.rows, e.deletes_sum)
        seg = Segment(e.num, path, self._manifest.dim, deleted, e.deletes)
        if seg.n != e.rows:
            raise Corruption(f"segment {e.file} has {seg.n} rows, manifest says {e.rows}")
        return seg

    def _open_index(self, seg: Segment, e: SegmentEntry) -> None:
        """Load a segment's index; a damaged one is dropped (searched exactly, rebuilt), not fatal."""
        path = self.dir / "segments" / e.index
        try:
            if e.index_sum is None:
                self.unverified.append(e.index)
            elif fileio.file_crc32c(path) != tuple(e.index_sum):
                raise Corruption(f"index file {e.index} fails its checksum")
            seg.index = load_index(path, e.index_config, seg.vectors, self._manifest.dim, self.kernel_metric)
        except (Corruption, OSError) as err:
            seg.index = None
            self._failures.failed(f"index {e.index} of segment {e.file} is unusable; the segment is "
                                    f"searched exactly and its index rebuilt", err)
            return
        seg.index_kind = e.index_config["type"]
        self._indexer.ready(seg, seg.index)

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, manifest: Manifest, options: StoreOptions) -> "CollectionStore":
        """Create the directory tree and first manifest atomically (a temp dir renamed)."""
        tmp = directory.with_name(directory.name + ".creating")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for sub in ("manifest", "segments", "wal"):
                fileio.mkdir(tmp / sub)
            mf.commit(tmp / "manifest", manifest)
            fileio.fsync_dir(tmp)
            fileio.replace(tmp, directory)
            fileio.fsync_dir(directory.parent)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise fileio.io_error(e, f"creating collection {directory}") from e
        return cls(directory, manifest, options)

    @classmethod
    def open(cls, directory: Path, options: StoreOptions, version: int | None = None,
             read_only: bool = False) -> "CollectionStore":
        """Open the current (or given) version.

        A read-only open in another process races the writer's clean-up: if what it read
        vanished or changed under it and a newer version exists by now, it retries on that.
        """
        if options.wal_recovery not in RECOVERY_MODES:
            raise InvalidArgument(f"wal_recovery must be one of {RECOVERY_MODES}, "
                                  f"got {options.wal_recovery!r}")
        mdir = directory / "manifest"
        attempts = READ_ONLY_RETRIES if read_only and version is None else 1
        for attempt in range(attempts):
            opened = None
            try:
                m = mf.load(mdir, version)
                opened = m.version
                return cls(directory, m, options, read_only, replay_wal=version is None)
            except (Corruption, VersionNotFound):
                newest = mf.list_versions(mdir)
                if attempt + 1 == attempts or not newest or newest[-1] == opened:
                    raise
                log.info("read-only open of %s raced the writer; retrying on version %d",
                         directory, newest[-1])
            except OSError as e:      # EIO reading a file, EMFILE, ...: typed, names the file
                raise fileio.io_error(e, f"opening collection {directory}") from e
        raise AssertionError("unreachable")

    def _new_memtable(self) -> Memtable:
        m = self._manifest
        return Memtable(m.dim, payload_schema(m.id_type or "string", m.schema))

    # ---- indexes -------------------------------------------------------------------------

    @property
    def kernel_metric(self) -> str:
        """The metric search kernels see: cosine is inner product over normalised vectors."""
        return "l2" if self._manifest.metric == "l2" else "ip"

    def _schedule_index(self, seg: Segment) -> None:
        if seg.index is None:
            config = index_config_for(self._manifest.index, seg.n, self._manifest.dim)
            if config is not None:
                seg.index_kind = config["type"]
                self._indexer.schedule(seg, config)

    def _install_index(self, seg: Segment, config: dict, index, name: str) -> bool:
        """Commit a built index (its file is durable) and let searches use it. Builder thread."""
        with self.write_lock:
            if self._closed or self._segments.get(seg.num) is not seg:
                return False    # compacted away meanwhile: GC removes the file
            isum = fileio.file_crc32c(self.dir / "segments" / name)
            entries = tuple(replace(e, index=name, index_config=config, index_sum=isum)
                            if e.num == seg.num else e for e in self._manifest.segments)
            self._commit(self._manifest.next(segments=entries))
            seg.index = index
            self._gc()
            return True

    def _index_failed(self, seg: Segment, config: dict, e: BaseException) -> None:
        """A build failed (builder thread): report it and retry later, a few times."""
        self._failures.index_failed(seg.num, f"building the {config['type']} index of segment {seg.num}",
                                    e, lambda: self._retry_index(seg, config))

    def _retry_index(self, seg: Segment, config: dict) -> None:
        with self.write_lock:
            if self._closed or self._segments.get(seg.num) is not seg or seg.index is not None:
                return
        self._indexer.schedule(seg, config)

    def wait_for_indexes(self, timeout: float | None = None) -> bool:
        """Block until every sealed segment's index is built; False if ``timeout`` passed."""
        self._check_open()
        return self._indexer.wait(timeout)

    def index_stats(self) -> dict[int, dict]:
        return {num: st.as_dict() for num, st in self._indexer.states.items()}

    # ---- state ---------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    def _check_open(self, write: bool = False) -> None:
        if self._closed:
            raise Unavailable(f"collection {self._manifest.name!r} is closed")
        if write and self.read_only:
            raise Unavailable(f"collection {self._manifest.name!r} is a read-only view "
                              f"(version {self._manifest.version})")

    def visible_seq(self) -> int:
        """Every record up to this is applied and (under ``always``) durable."""
        if self._wal is None or self.options.durability == "batch":
            return self._applied
        return min(self._applied, self._wal.synced_seq)

    def view(self) -> StoreView:
        """A consistent snapshot for one reader; no lock taken.

        Built from (visible seq, segment list + memtable, manifest, memtable rows); while none
        of these changed, the previous view is handed out again (a view is immutable).
        """
        self._check_open()
        seq = self.visible_seq()     # take seq before the state: see DESIGN §9 / memtable.py
        state = self._state
        manifest = self._manifest
        segments, memtable = state
        n = memtable.n               # before the memtable's arrays (Memtable.view)
        cached = self._view_cache
        if (cached is not None and cached[0] == seq and cached[1] is state
                and cached[2] is manifest and cached[3] == n):
            return cached[4]
        view = StoreView(seq, segments, memtable.view(seq, n), manifest, memtable.schema)
        self._view_cache = (seq, state, manifest, n, view)
        return view

    def _set_state(self, segments: tuple[Segment, ...], memtable: Memtable) -> None:
        """Install what new views see. Caller holds write_lock (or is the constructor)."""
        self._state = (segments, memtable)
        self._view_cache = None      # let go of the old segments now, not at the next view

    def set_id_type(self, id_type: str) -> None:
        """Fix the id type on first write (commits a manifest version). Caller holds write_lock."""
        if self._manifest.id_type is None:
            self._commit(self._manifest.next(id_type=id_type))
            assert self._memtable.n == 0
            self._memtable = self._new_memtable()
            self._set_state(self._state[0], self._memtable)

    # ---- writes --------------------------------------------------------------------------

    def _ids_to_codes(self, ids: list) -> list:
        idmap = self._ensure_idmap()
        return [idmap.get(i) for i in ids]

    def _ensure_idmap(self) -> dict:
        if self._idmap is None:
            idmap: dict = {}
            for seg in self._state[0]:
                alive = np.flatnonzero(seg.deleted_seq == ALIVE)
                ids = seg.ids.take(pa.array(alive)).to_pylist()
                idmap.update(zip(ids, ((seg.num << ROW_BITS) + alive).tolist()))
            rows, ids = self._memtable.alive_ids()
            idmap.update(zip(ids, rows.tolist()))
            self._idmap = idmap
        return self._idmap

    def _tombstone(self, codes: list, seq: int) -> int:
        """Delete the rows behind id-map codes (None = absent). Returns how many."""
        mem_rows, seg_rows = [], {}
        for c in codes:
            if c is None:
                continue
            num, row = c >> ROW_BITS, c & ((1 << ROW_BITS) - 1)
            if num == MEMTABLE_KEY:
                mem_rows.append(row)
            else:
                seg_rows.setdefault(num, []).append(row)
        self._memtable.delete_rows(np.array(mem_rows, dtype=np.int64), seq)
        for num, rows in seg_rows.items():
            self._segments[num].delete_rows(np.array(rows, dtype=np.int64), seq)
        return len(mem_rows) + sum(len(r) for r in seg_rows.values())

    def upsert(self, batch: pa.RecordBatch, vectors: np.ndarray) -> int:
        """Insert or replace rows (``batch`` has the row schema, ``vectors`` its vectors).

        Ids must be unique within the batch (the caller checks). Returns once acknowledged.
        """
        self._check_open(write=True)
        with self.write_lock:
            seq = self._seq + 1
            self._wal.append(seq, OP_UPSERT, batch)
            self._seq = seq
            self._apply_upsert(batch, vectors, seq)
        self._acknowledge(seq)
        return seq

    def _apply_upsert(self, batch: pa.RecordBatch, vectors: np.ndarray, seq: int) -> None:
        ids = batch.column(0).to_pylist()
        self._tombstone(self._ids_to_codes(ids), seq)
        payload = pa.RecordBatch.from_arrays(
            [batch.column(0)] + [batch.column(f.name) for f in self._memtable.schema if f.name != ID],
            schema=self._memtable.schema)
        start = self._memtable.append(vectors, payload, seq)
        self._idmap.update(zip(ids, range(start, start + len(ids))))
        self._applied = seq

    def delete(self, ids: list) -> int:
        """Delete rows by id; returns how many existed. Ids not present are ignored."""
        return self.delete_matching(lambda view: ids)

    def delete_matching(self, select) -> int:
        """Delete the ids ``select(view)`` picks from a view taken under the write lock, so
        the choice and the delete are atomic; returns how many rows were deleted."""
        self._check_open(write=True)
        with self.write_lock:
            ids = select(self.view())
            codes = self._ids_to_codes(ids)
            if not any(c is not None for c in codes):
                return 0
            seq = self._seq + 1
            id_type = pa.string() if self._manifest.id_type == "string" else pa.int64()
            batch = pa.RecordBatch.from_arrays([pa.array(ids, type=id_type)], names=[ID])
            self._wal.append(seq, OP_DELETE, batch)
            self._seq = seq
            n = self._apply_delete(ids, seq)
        self._acknowledge(seq)   # outside the lock: concurrent writers share the fsync
        return n

    def _apply_delete(self, ids: list, seq: int) -> int:
        codes = self._ids_to_codes(ids)
        n = self._tombstone(codes, seq)
        for i, c in zip(ids, codes):
            if c is not None:
                del self._idmap[i]
        self._applied = seq
        return n

    def _acknowledge(self, seq: int) -> None:
        """Make ``seq`` durable (raising if it cannot be), then seal if due.

        Once the record is durable the write has succeeded: a failure while sealing is
        retried in the background and reported (``background_errors``), never raised.
        """
        if self.options.durability == "always":
            self._wal.sync_to(seq)
        if self._seal_due():
            with self.write_lock:
                if self._seal_due() and not self._failures.retry_pending:
                    try:
                        self.flush()
                    except Exception as e:   # the write is durable: report and retry, not raise
                        self._failures.failed("sealing the memtable", e, self._retry_flush)

    def _seal_due(self) -> bool:
        return self._memtable.n >= self.options.seal_rows or self._memtable.nbytes >= self.options.seal_bytes

    def _retry_flush(self) -> None:
        """Retry a failed seal (timer thread); a further failure schedules the next retry."""
        with self.write_lock:
            if self._closed:
                return
            try:
                self.flush()
            except Exception as e:
                self._failures.retry_done(ok=False)
                self._failures.failed("retrying the flush", e, self._retry_flush)
                return
            self._failures.retry_done(ok=True)
        log.info("%s: background flush succeeded after earlier failures", self._manifest.name)

    def background_errors(self) -> dict:
        """Failed background steps (sealing, index builds, clean-up) since open, files opened
        without a recorded checksum, and what WAL recovery did: for ``stats()``."""
        return {**self._failures.report(), "unverified_files": list(self.unverified),
                "wal_recovery": self.replay_report.as_dict()}

    def _replay(self, repair: bool) -> None:
        wal_dir = self.dir / "wal"
        mode = self.options.wal_recovery
        for rec in replay(wal_dir, self._manifest.checkpoint, mode, repair, self.replay_report):
            ids = rec.batch.column(0).to_pylist()
            if rec.op == OP_UPSERT:
                if self._manifest.id_type is None:   # crash between first WAL write and manifest
                    raise Corruption("WAL holds rows but the manifest has no id type")
                vec = rec.batch.column(1)
                if getattr(vec.type, "list_size", None) != self._manifest.dim:
                    raise Corruption(f"WAL record {rec.seq} holds vectors of another dimension than "
                                     f"the manifest's dim={self._manifest.dim}")
                vectors = vec.values.to_numpy(zero_copy_only=False).reshape(len(vec), self._manifest.dim)
                self._ensure_idmap()
                self._apply_upsert(rec.batch, vectors, rec.seq)
            else:
                self._apply_delete(ids, rec.seq)
            self._seq = rec.seq
        self._applied = self._seq
        self._set_state(self._state[0], self._memtable)

    # ---- checkpoints: seal, persist deletes, commit ---------------------------------------

    def flush(self) -> int:
        """Seal the memtable and persist pending deletes as a new manifest version.

        Returns the manifest version. If it raises (``StorageFull``, ``Unavailable``), nothing
        changed: the rows stay in the memtable and the WAL. Steps after the commit (WAL
        rotation, retiring old WAL files, clean-up) that fail are reported, not raised.
        """
        self._check_open(write=True)
        with self.write_lock:
            self._wal.sync()
            m = self._manifest
            dirty = [s for s in self._state[0] if s.dirty]
            if self._memtable.n == 0 and not dirty and m.checkpoint == self._seq:
                return m.version
            version = m.version + 1
            new_seg = None
            try:
                if self._memtable.n_alive:
                    rs = row_schema(m.dim, m.id_type, m.schema)
                    table, alive_rows = self._memtable.sealed_table(rs)
                    new_seg = self._next_num
                    self._next_num += 1
                    path = self.dir / "segments" / segment_name(new_seg)
                    t0 = time.perf_counter()
                    seg_sum = write_segment(path, table)
                    log.info("sealed %s: %d rows in %.2fs", path.name, table.num_rows, time.perf_counter() - t0)
                    fileio.crash_point("flush.segment_written")
                entries = self._entries_with_deletes(version, dirty)
                if new_seg is not None:
                    entries.append(SegmentEntry(new_seg, segment_name(new_seg), len(alive_rows),
                                                file_sum=seg_sum))
                self._commit(m.next(segments=tuple(entries), checkpoint=self._seq))
            except OSError as e:
                raise fileio.io_error(e, f"flushing collection {m.name!r}") from e
            fileio.crash_point("flush.committed")
            # install: the sealed rows move from the memtable to the new segment
            if new_seg is not None:
                seg = Segment(new_seg, self.dir / "segments" / segment_name(new_seg), m.dim)
                self._segments[new_seg] = seg
                if self._idmap is not None:
                    base = new_seg << ROW_BITS
                    ids = seg.ids.to_pylist()
                    self._idmap.update(zip(ids, range(base, base + len(ids))))
            by_num = {e.num: e for e in self._manifest.segments}
            for s in dirty:
                s.dirty = False
                if s.num in by_num:
                    s.deletes_file = by_num[s.num].deletes
            self._memtable = self._new_memtable()
            live = [self._segments[e.num] for e in self._manifest.segments]
            self._segments = {s.num: s for s in live}
            self._set_state(tuple(live), self._memtable)
            self._retire_wal()
            self._gc()
            if new_seg is not None:
                self._schedule_index(self._segments[new_seg])
            version = self._manifest.version
        self._maybe_auto_compact()
        return version

    def _retire_wal(self) -> None:
        """After a checkpoint: start a new WAL file and remove the ones it covers (best effort:
        a file left behind holds only records at or before the checkpoint, skipped on replay)."""
        try:
            self._wal.rotate(self._seq + 1)
            fileio.crash_point("flush.wal_rotated")
            for old in wal_files(self.dir / "wal")[:-1]:
                fileio.unlink(old, missing_ok=True)
        except (OSError, Unavailable) as e:
            self._failures.failed("retiring old WAL files after a checkpoint", e)

    def _entries_with_deletes(self, version: int, dirty: list[Segment]) -> list[SegmentEntry]:
        """Current segment entries with fresh bitmaps for ``dirty`` ones; empty segments dropped."""
        entries = []
        dirty_nums = {s.num for s in dirty}
        for e in self._manifest.segments:
            seg = self._segments[e.num]
            if seg.n_alive == 0:
                continue
            if e.num in dirty_nums:
                name = deletes_name(e.num, version)
                dsum = write_deletes(self.dir / "segments" / name, seg.deleted_mask())
                e = replace(e, deletes=name, deleted=seg.n_deleted, deletes_sum=dsum)
            entries.append(e)
        return entries

    def _commit(self, manifest: Manifest) -> None:
        """The one place the manifest changes: write the version durably, then install it."""
        manifest = replace(manifest, next_segment=max(manifest.next_segment, self._next_num))
        path = mf.manifest_path(self.dir / "manifest", manifest.version)
        if path.exists():   # a leftover of a commit that failed after its rename
            fileio.unlink(path, missing_ok=True)
        fileio.crash_point("commit.begin")
        mf.commit(self.dir / "manifest", manifest)
        fileio.crash_point("commit.done")
        self._manifest = manifest

    # ---- compaction ----------------------------------------------------------------------

    def compact(self) -> dict:
        """Merge small segments and drop deleted rows; returns what was done.

        Runs without blocking writers for the heavy part: the merge reads a view; deletes
        that land meanwhile are carried over to the new segment when it is installed.
        """
        self._check_open(write=True)
        with self._compacting:
            self.flush()
            with self.write_lock:
                stats = [compaction.SegmentStats(s.num, s.n, s.n_alive) for s in self._state[0]]
                groups = compaction.plan(stats, self.options.compact_target_rows)
                if not groups:
                    return {"merged": 0, "segments": len(stats)}
                work = []
                for group in groups:
                    segs = [self._segments[n] for n in group]
                    work.append((segs, [s.deleted_seq == ALIVE for s in segs], self._next_num))
                    self._next_num += 1
                mine = {segment_name(num) for *_, num in work}
                self._pending.update(mine)
            written = []
            try:
                for segs, masks, num in work:
                    table = compaction.merge([s.table for s in segs], masks)
                    fsum = None
                    if table.num_rows:
                        fsum = write_segment(self.dir / "segments" / segment_name(num), table)
                    written.append((segs, num, table.num_rows, masks, fsum))
                fileio.crash_point("compact.segments_written")
                with self.write_lock:
                    self._install_compaction(written)
            except OSError as e:
                raise fileio.io_error(e, f"compacting collection {self._manifest.name!r}") from e
            finally:
                self._pending.difference_update(mine)
            merged = sum(len(segs) for segs, *_ in written)
            log.info("compacted %d segment(s) into %d", merged, len(written))
            return {"merged": merged, "segments": len(self._state[0])}

    def _install_compaction(self, written) -> None:
        """Swap merged segments in, carrying over deletes made during the merge. Holds write_lock."""
        m = self._manifest
        replaced = {s.num for segs, *_ in written for s in segs}
        new_segments, sums, id_updates = [], {}, []
        for segs, num, rows, masks, fsum in written:
            if rows == 0:
                continue
            seg = Segment(num, self.dir / "segments" / segment_name(num), m.dim)
            sums[num] = fsum
            offset = 0
            for old, was_alive in zip(segs, masks):
                old_rows = np.flatnonzero(was_alive)
                late = old.deleted_seq[old_rows]
                for s in np.unique(late[late != ALIVE]):
                    seg.delete_rows(offset + np.flatnonzero(late == s), int(s))
                if self._idmap is not None:
                    still = late == ALIVE
                    ids = old.ids.take(pa.array(old_rows[still])).to_pylist()
                    new_rows = offset + np.flatnonzero(still)
                    id_updates.append((ids, ((num << ROW_BITS) + new_rows).tolist()))
                offset += len(old_rows)
            new_segments.append(seg)
        entries = [e for e in m.segments if e.num not in replaced]
        live = [self._segments[e.num] for e in entries]
        for seg in new_segments:
            deletes = dsum = None
            if seg.n_deleted:   # deletes made during the merge may already be out of the WAL
                deletes = deletes_name(seg.num, m.version + 1)
                dsum = write_deletes(self.dir / "segments" / deletes, seg.deleted_mask())
            entries.append(SegmentEntry(seg.num, segment_name(seg.num), seg.n, deletes, seg.n_deleted,
                                        file_sum=sums[seg.num], deletes_sum=dsum))
            live.append(seg)
        self._commit(m.next(segments=tuple(entries)))   # nothing in memory changed before this
        for seg, e in zip(new_segments, entries[len(entries) - len(new_segments):]):
            seg.deletes_file, seg.dirty = e.deletes, False
        if self._idmap is not None:
            for ids, codes in id_updates:
                self._idmap.update(zip(ids, codes))
        self._segments = {s.num: s for s in live}
        self._set_state(tuple(live), self._memtable)
        self._indexer.forget(replaced)
        self._gc()
        for seg in new_segments:
            self._schedule_index(seg)

    def _maybe_auto_compact(self) -> None:
        if not self.options.auto_compact or self._closed:
            return
        stats = [compaction.SegmentStats(s.num, s.n, s.n_alive) for s in self._state[0]]
        if len(stats) < 4 and not any(s.rows and (s.rows - s.alive) / s.rows > 0.5 for s in stats):
            return
        if not compaction.plan(stats, self.options.compact_target_rows):
            return
        if self._bg is not None and self._bg.is_alive():
            return

        def run():
            try:
                self.compact()
            except Exception as e:  # background work must not kill the process; reported
                if not self._closed:
                    self._failures.failed("background compaction", e)
        self._bg = threading.Thread(target=run, name="vecdb-compact", daemon=True)
        self._bg.start()

    # ---- versions, GC, snapshots -----------------------------------------------------------

    def list_versions(self) -> list[dict]:
        out = []
        for v in mf.list_versions(self.dir / "manifest"):
            try:
                m = mf.load(self.dir / "manifest", v)
            except Exception:
                continue
            out.append({"version": v, "created_at": m.created_at,
                        "rows": sum(e.rows - e.deleted for e in m.segments),
                        "segments": len(m.segments)})
        return out

    def _gc(self) -> None:
        """Drop old versions and unreferenced files (storage/cleanup.py). Never raises: a
        failure is reported and the next clean-up tries again."""
        try:
            cleanup.collect(self.dir, self._manifest, self.options.keep_versions,
                            self.options.keep_versions_for_s, set(self._pending))
        except Exception as e:
            self._failures.failed("clean-up of old versions and files", e)

    def snapshot(self, dest: Path) -> Manifest:
        """A consistent copy of the current state in ``dest`` (hard links where possible)."""
        self._check_open()
        with self.write_lock:
            if not self.read_only:
                self.flush()
            m = self._manifest
            try:
                (dest / "manifest").mkdir(parents=True)
                (dest / "segments").mkdir()
                (dest / "wal").mkdir()
                for name in sorted(m.files()):
                    _link_or_copy(self.dir / "segments" / name, dest / "segments" / name)
            except OSError as e:
                raise fileio.io_error(e, f"writing snapshot {dest}") from e
        mf.commit(dest / "manifest", m)
        return m

    def close(self) -> None:
        """Finish background work, sync the WAL and release files. Idempotent."""
        if self._closed:
            return
        bg = self._bg
        if bg is not None:
            bg.join()
        self._failures.close()
        self._indexer.stop()
        with self.write_lock:
            self._closed = True
            self._view_cache = None
            if self._wal is not None:
                self._wal.close()
        if self.read_only:
            cleanup.unpin(self.dir, self._manifest.version)

    # ---- reads that do not search ----------------------------------------------------------

    def lookup(self, view: StoreView, ids: list) -> pa.Table | None:
        """Rows (row schema) for ``ids`` that exist in ``view``, any order."""
        return lookup(view, ids)

def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
