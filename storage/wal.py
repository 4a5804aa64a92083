"""Write-ahead log: append-only frames, replayed on open, with group commit.

Frame: ``[u32 length][u32 crc32(payload)][payload]`` (little-endian; zlib CRC-32, kept for
compatibility with existing logs). Payload: ``[u64 seq][u8 op][Arrow IPC stream of one record
batch]``. Sequence numbers are consecutive: each record is the previous one plus one.

Recovery (after RocksDB's WAL recovery modes, DESIGN §4). A *torn tail* is a bad frame (short,
failing its CRC, or undecodable) with no valid frame after it anywhere in the log: the crash
cut the last write, so it is truncated. Anything else is *damage*: a bad frame followed by a
valid frame, records not continuing the manifest's checkpoint (a missing or shortened file),
sequence numbers going backwards. Modes:

- ``tolerate_tail`` (default): truncate a torn tail; damage raises ``Corruption`` naming the
  file, the byte offset and how many intact records follow.
- ``absolute``: any bad frame, even a torn tail, raises ``Corruption``.
- ``salvage``: skip damaged frames and gaps, keep every intact record, and report what was
  skipped (``ReplayReport``); the store logs it and commits a clean checkpoint.

Durability (DESIGN §4):
- ``always`` (default): a write is acknowledged after fsync; concurrent writers share one
  fsync (group commit: the first waiter syncs for everyone queued behind it).
- ``batch``: fsync every ``sync_interval_ms`` in a background thread; loses at most that
  window on power loss, nothing on a process kill (the bytes are in the OS page cache).
"""
from __future__ import annotations

import io
import logging
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa

from vecdb.errors import Corruption, InvalidArgument, Unavailable
from vecdb.storage import fileio

log = logging.getLogger("vecdb.storage")

FRAME_HEADER = struct.Struct("<II")
PAYLOAD_HEADER = struct.Struct("<QB")
MAX_FRAME = 1 << 31

OP_UPSERT = 1
OP_DELETE = 2

DURABILITY_MODES = ("always", "batch")
RECOVERY_MODES = ("tolerate_tail", "absolute", "salvage")
_RESYNC_SPAN = 1 << 40        # a frame found while resyncing must have seq within this of the last


@dataclass(frozen=True)
class WalRecord:
    seq: int
    op: int
    batch: pa.RecordBatch


@dataclass
class ReplayReport:
    """What recovery found: records replayed, tail bytes cut, damage skipped (salvage)."""

    records: int = 0
    truncated: list = field(default_factory=list)   # (file, offset, bytes) torn tails cut
    skipped: list = field(default_factory=list)     # (file, offset, bytes) damaged frames skipped
    gaps: list = field(default_factory=list)        # (after seq, next seq) missing records

    @property
    def damaged(self) -> bool:
        return bool(self.skipped or self.gaps)

    def as_dict(self) -> dict:
        return {"records": self.records, "truncated": self.truncated, "skipped": self.skipped,
                "gaps": self.gaps}


def encode_record(seq: int, op: int, batch: pa.RecordBatch) -> bytes:
    """One framed record, ready to append."""
    sink = io.BytesIO()
    sink.write(PAYLOAD_HEADER.pack(seq, op))
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    payload = sink.getvalue()
    return FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _decode_payload(payload) -> WalRecord:
    seq, op = PAYLOAD_HEADER.unpack_from(payload)
    reader = pa.ipc.open_stream(pa.py_buffer(payload[PAYLOAD_HEADER.size:]))
    batches = list(reader)
    if len(batches) != 1 or op not in (OP_UPSERT, OP_DELETE):
        raise ValueError("bad record")
    return WalRecord(seq, op, batches[0])


def _frame_at(data: bytes, pos: int) -> tuple[WalRecord, int] | None:
    """The valid record framed at ``pos`` and where it ends, or None."""
    if pos + FRAME_HEADER.size > len(data):
        return None
    length, crc = FRAME_HEADER.unpack_from(data, pos)
    start = pos + FRAME_HEADER.size
    end = start + length
    if length < PAYLOAD_HEADER.size or length > MAX_FRAME or end > len(data):
        return None
    payload = memoryview(data)[start:end]
    if zlib.crc32(payload) != crc:
        return None
    try:
        return _decode_payload(bytes(payload)), end
    except Exception:   # a good CRC over an undecodable body: a bad frame like any other
        return None


def _next_valid(data: bytes, pos: int, last_seq: int) -> int | None:
    """Offset of the first valid frame after ``pos`` (resync after a bad frame), or None.

    Candidates are screened with numpy (op byte known, length fits, seq plausible) before
    the CRC, so a torn multi-megabyte frame is scanned in milliseconds.
    """
    hdr, n = FRAME_HEADER.size, len(data)
    arr = np.frombuffer(data, dtype=np.uint8)
    first, stop = pos + 1, n - hdr - PAYLOAD_HEADER.size + 1
    if stop <= first:
        return None
    op_at = hdr + 8
    ops = arr[first + op_at:stop + op_at]
    cand = np.flatnonzero((ops == OP_UPSERT) | (ops == OP_DELETE)).astype(np.int64) + first
    if not len(cand):
        return None
    length = sum(arr[cand + k].astype(np.uint64) << np.uint64(8 * k) for k in range(4))
    seq = sum(arr[cand + hdr + k].astype(np.uint64) << np.uint64(8 * k) for k in range(8))
    ok = ((length >= PAYLOAD_HEADER.size) & (cand + hdr + length.astype(np.int64) <= n)
          & (seq >= np.uint64(last_seq + 1))
          & (seq <= np.uint64(max(last_seq, 0) + _RESYNC_SPAN)))
    for p in cand[ok].tolist():
        if _frame_at(data, p) is not None:
            return p
    return None


def scan(data: bytes, last_seq: int = -1) -> tuple[list[tuple[int, int, WalRecord]], list[tuple[int, int]]]:
    """Split a WAL file's bytes into good frames and bad stretches:
    ([(start, end, record)], [(start, end)])."""
    good, bad = [], []
    pos = 0
    while pos < len(data):
        hit = _frame_at(data, pos)
        if hit is not None:
            good.append((pos, hit[1], hit[0]))
            last_seq = hit[0].seq
            pos = hit[1]
            continue
        nxt = _next_valid(data, pos, last_seq)
        bad.append((pos, len(data) if nxt is None else nxt))
        if nxt is None:
            break
        pos = nxt
    return good, bad


def read_records(path: Path) -> tuple[list[WalRecord], int]:
    """The good records of one WAL file up to its first bad frame, and where that prefix ends."""
    data = path.read_bytes()
    records, pos = [], 0
    while (hit := _frame_at(data, pos)) is not None:
        records.append(hit[0])
        pos = hit[1]
    return records, pos


def replay(wal_dir: Path, checkpoint: int = 0, mode: str = "tolerate_tail", repair: bool = True,
           report: ReplayReport | None = None) -> Iterator[WalRecord]:
    """Yield every record with ``seq > checkpoint``, in order, checking the log (module doc).

    ``repair`` truncates a torn tail on disk (a read-only reader passes False and only stops
    there). Raises ``Corruption`` on damage unless ``mode`` is ``salvage``.
    """
    if mode not in RECOVERY_MODES:
        raise InvalidArgument(f"wal_recovery must be one of {RECOVERY_MODES}, got {mode!r}")
    report = report if report is not None else ReplayReport()
    last_seq = -1
    expect = checkpoint + 1            # the next seq the manifest needs
    files = wal_files(wal_dir)
    if files and _first_seq(files[0]) > expect:
        what = (f"WAL records {expect}..{_first_seq(files[0]) - 1} are missing: the oldest WAL file "
                f"is {files[0].name} (a WAL file was removed)")
        if mode != "salvage":
            raise Corruption(what + "; open with wal_recovery='salvage' to keep the rest")
        log.error("%s: skipped (salvage)", what)
        report.gaps.append((expect - 1, _first_seq(files[0])))
        expect = _first_seq(files[0])
    for i, path in enumerate(files):
        try:
            data = path.read_bytes()
        except FileNotFoundError:      # retired by the writer meanwhile (read-only readers)
            newer = [f for f in wal_files(wal_dir) if f.name > path.name]
            if newer and _first_seq(newer[0]) <= expect:
                continue               # it held only records the checkpoint covers
            raise Corruption(f"WAL {path.name} vanished during replay") from None
        good, bad = scan(data, last_seq)
        later = bool(bad) and any(_has_frame(f) for f in files[i + 1:])
        for start, end in bad:
            tail = end == len(data) and not later
            intact = sum(1 for s, _, _ in good if s > start) + (
                sum(_frames_in(f) for f in files[i + 1:]) if later and end == len(data) else 0)
            if tail and mode != "absolute":
                report.truncated.append((path.name, start, end - start))
                if repair:
                    log.warning("WAL %s: torn tail of %d bytes at offset %d truncated", path.name,
                                end - start, start)
                    with fileio.open_file(path, "r+b", 0) as f:
                        fileio.truncate(f, start)
                        fileio.fsync(f)
                continue
            what = (f"WAL {path.name} is damaged at byte {start} ({end - start} bytes); "
                    f"{intact} intact record(s) follow")
            if mode != "salvage":
                raise Corruption(what + "; open with wal_recovery='salvage' to skip the damage "
                                        "and keep the intact records")
            log.error("%s: skipped (salvage)", what)
            report.skipped.append((path.name, start, end - start))
        for start, end, rec in good:
            if rec.seq <= last_seq:
                if mode == "salvage":
                    report.skipped.append((path.name, start, end - start))
                    continue
                raise Corruption(f"WAL {path.name}: sequence {rec.seq} after {last_seq}")
            last_seq = rec.seq
            if rec.seq < expect:
                continue               # already in the manifest's segments
            if rec.seq != expect:
                what = (f"WAL {path.name}: records {expect}..{rec.seq - 1} are missing "
                        f"(a WAL file was removed or shortened)")
                if mode != "salvage":
                    raise Corruption(what + "; open with wal_recovery='salvage' to keep the rest")
                log.error("%s: skipped (salvage)", what)
                report.gaps.append((expect - 1, rec.seq))
            expect = rec.seq + 1
            report.records += 1
            fileio.crash_point("wal.replay_record")
            yield rec


def _frames_in(path: Path) -> int:
    """How many valid frames a WAL file holds (0 if it vanished)."""
    try:
        return len(scan(path.read_bytes())[0])
    except FileNotFoundError:
        return 0


def _has_frame(path: Path) -> bool:
    return _frames_in(path) > 0


def _first_seq(path: Path) -> int:
    """The first sequence number a WAL file may hold (from its name)."""
    return int(path.stem[4:])


def wal_files(wal_dir: Path) -> list[Path]:
    """WAL files in write order (named by the first sequence number they may hold)."""
    return sorted(wal_dir.glob("wal-*.log"))


def wal_path(wal_dir: Path, first_seq: int) -> Path:
    return wal_dir / f"wal-{first_seq:020d}.log"


def fsync_dir(path: Path) -> None:
    fileio.fsync_dir(path)


class WalWriter:
    """Appends framed records to the current WAL file and makes them durable.

    Contract: ``append`` is called with the owner's write lock held (it orders records);
    ``sync_to`` is called without it, so concurrent writers can share one fsync.
    A failed append (e.g. ENOSPC) cuts its partial frame and raises ``StorageFull`` /
    ``Unavailable``: the log stays healthy and later appends work once space is freed. A
    failed fsync poisons the log (the kernel may have dropped the dirty pages).
    """

    def __init__(self, wal_dir: Path, first_seq: int, durability: str = "always",
                 sync_interval_ms: int = 100):
        if durability not in DURABILITY_MODES:
            raise InvalidArgument(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
        self.dir = wal_dir
        self.durability = durability
        self.sync_interval = sync_interval_ms / 1000.0
        self._cond = threading.Condition()
        self._syncing = False
        self._written_seq = first_seq - 1   # last seq appended
        self._synced_seq = first_seq - 1    # last seq known durable
        self._file: BinaryIO = self._open(first_seq)
        self._closed = False
        self._failed: BaseException | None = None   # a failed fsync poisons the log
        self._ticker = None
        if durability == "batch":
            self._ticker = threading.Thread(target=self._tick, name="vecdb-wal-sync", daemon=True)
            self._ticker.start()

    def _open(self, first_seq: int) -> BinaryIO:
        path = wal_path(self.dir, first_seq)
        try:
            f = fileio.open_file(path, "ab", 0)
            try:
                fileio.fsync_dir(self.dir)
            except BaseException:
                f.close()
                raise
        except OSError as e:
            raise fileio.io_error(e, f"opening WAL {path}") from e
        return f

    @property
    def synced_seq(self) -> int:
        return self._synced_seq

    def append(self, seq: int, op: int, batch: pa.RecordBatch) -> None:
        """Write one record (not yet durable). Caller holds the owner's write lock."""
        frame = encode_record(seq, op, batch)
        with self._cond:
            self._check_healthy()
            f = self._file
            pos = f.tell()
            try:
                fileio.write(f, frame)   # unbuffered: in the OS, safe from a process kill
            except BaseException as e:
                try:   # cut the partial frame so later records stay replayable
                    fileio.truncate(f, pos)
                    f.seek(pos)
                except BaseException:
                    self._failed = e
                if isinstance(e, OSError):
                    raise fileio.io_error(e, f"appending to WAL {f.name}") from e
                raise
            self._written_seq = seq

    def _check_healthy(self) -> None:
        if self._failed is not None:
            raise Unavailable(f"the write-ahead log failed ({self._failed}); writes are refused "
                              f"until the database is reopened")

    def sync_to(self, seq: int) -> None:
        """Return once every record up to ``seq`` is fsynced (group commit)."""
        with self._cond:
            while self._synced_seq < seq:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._check_healthy()
                self._syncing = True
                target, f = self._written_seq, self._file
                self._cond.release()
                try:
                    fileio.fsync(f)
                except BaseException as e:
                    # After a failed fsync the kernel may have dropped the dirty pages, so a
                    # retry could falsely succeed: refuse all further writes instead.
                    self._failed = e
                    if isinstance(e, OSError):
                        raise fileio.io_error(e, f"syncing WAL {f.name}") from e
                    raise
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced_seq = max(self._synced_seq, target)

    def sync(self) -> None:
        self.sync_to(self._written_seq)

    def rotate(self, next_seq: int) -> None:
        """Sync and close the current file and start a new one. Caller holds the write lock."""
        self.sync()
        with self._cond:
            while self._syncing:
                self._cond.wait()
            old = self._file
            self._file = self._open(next_seq)
            old.close()

    def _tick(self) -> None:
        while not self._closed:
            with self._cond:
                self._cond.wait(self.sync_interval)
            if self._closed:
                return
            try:
                self.sync()
            except (OSError, ValueError, Unavailable):  # failed (poisoned) or closed during shutdown
                return

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._failed is None:
                self.sync()
        finally:
            self._closed = True
            with self._cond:
                self._cond.notify_all()
                self._file.close()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
