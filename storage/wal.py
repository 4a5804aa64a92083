"""Write-ahead log: append-only frames, replayed on open, with group commit.

Frame: ``[u32 length][u32 crc32(payload)][payload]`` (little-endian). Payload:
``[u64 seq][u8 op][Arrow IPC stream of one record batch]``. Replay stops at the first frame
that is short or fails its CRC and truncates the file there: a torn tail from a crash is
expected and never fails the open.

Durability (DESIGN §4):
- ``always`` (default): a write is acknowledged after fsync; concurrent writers share one
  fsync (group commit: the first waiter syncs for everyone queued behind it).
- ``batch``: fsync every ``sync_interval_ms`` in a background thread; loses at most that
  window on power loss, nothing on a process kill (the bytes are in the OS page cache).
"""
from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import pyarrow as pa

from vecdb.errors import Corruption, InvalidArgument, Unavailable

FRAME_HEADER = struct.Struct("<II")
PAYLOAD_HEADER = struct.Struct("<QB")
MAX_FRAME = 1 << 31

OP_UPSERT = 1
OP_DELETE = 2

DURABILITY_MODES = ("always", "batch")


@dataclass(frozen=True)
class WalRecord:
    seq: int
    op: int
    batch: pa.RecordBatch


def encode_record(seq: int, op: int, batch: pa.RecordBatch) -> bytes:
    """One framed record, ready to append."""
    sink = io.BytesIO()
    sink.write(PAYLOAD_HEADER.pack(seq, op))
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    payload = sink.getvalue()
    return FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _decode_payload(payload: bytes) -> WalRecord:
    seq, op = PAYLOAD_HEADER.unpack_from(payload)
    reader = pa.ipc.open_stream(pa.py_buffer(payload[PAYLOAD_HEADER.size:]))
    batches = list(reader)
    if len(batches) != 1 or op not in (OP_UPSERT, OP_DELETE):
        raise ValueError("bad record")
    return WalRecord(seq, op, batches[0])


def read_records(path: Path) -> tuple[list[WalRecord], int]:
    """All good records of one WAL file and the byte offset where the good prefix ends."""
    data = path.read_bytes()
    records: list[WalRecord] = []
    pos = 0
    while pos + FRAME_HEADER.size <= len(data):
        length, crc = FRAME_HEADER.unpack_from(data, pos)
        start = pos + FRAME_HEADER.size
        end = start + length
        if length < PAYLOAD_HEADER.size or length > MAX_FRAME or end > len(data):
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        try:
            records.append(_decode_payload(payload))
        except Exception:  # a frame with a good CRC but an undecodable body: treat as torn
            break
        pos = end
    return records, pos


def replay(wal_dir: Path) -> Iterator[WalRecord]:
    """Yield every good record of every WAL file in order, truncating torn tails.

    A bad frame ends its file; later files (written only after the earlier one was rotated
    out whole) are still read. Sequence numbers must increase across files.
    """
    last_seq = -1
    files = wal_files(wal_dir)
    for i, path in enumerate(files):
        records, good = read_records(path)
        if good < path.stat().st_size:
            if any(f.stat().st_size for f in files[i + 1:]):
                # only the newest file can have a torn tail: files are synced before rotation
                raise Corruption(f"WAL {path.name} is damaged at byte {good}, before newer WAL files")
            with open(path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        for rec in records:
            if rec.seq <= last_seq:
                raise Corruption(f"WAL {path.name}: sequence {rec.seq} after {last_seq}")
            last_seq = rec.seq
            yield rec


def wal_files(wal_dir: Path) -> list[Path]:
    """WAL files in write order (named by the first sequence number they may hold)."""
    return sorted(wal_dir.glob("wal-*.log"))


def wal_path(wal_dir: Path, first_seq: int) -> Path:
    return wal_dir / f"wal-{first_seq:020d}.log"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WalWriter:
    """Appends framed records to the current WAL file and makes them durable.

    Contract: ``append`` is called with the owner's write lock held (it orders records);
    ``sync_to`` is called without it, so concurrent writers can share one fsync.
    ``opener`` is the seam tests use to inject faulty files.
    """

    def __init__(self, wal_dir: Path, first_seq: int, durability: str = "always",
                 sync_interval_ms: int = 100, opener=None):
        if durability not in DURABILITY_MODES:
            raise InvalidArgument(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
        self.dir = wal_dir
        self.durability = durability
        self.sync_interval = sync_interval_ms / 1000.0
        self._opener = opener or (lambda path, mode: open(path, mode, buffering=0))
        self._cond = threading.Condition()
        self._syncing = False
        self._written_seq = first_seq - 1   # last seq appended
        self._synced_seq = first_seq - 1    # last seq known durable
        self._file: BinaryIO = self._open(first_seq)
        self._closed = False
        self._failed: BaseException | None = None   # a failed write or fsync poisons the log
        self._ticker = None
        if durability == "batch":
            self._ticker = threading.Thread(target=self._tick, name="vecdb-wal-sync", daemon=True)
            self._ticker.start()

    def _open(self, first_seq: int) -> BinaryIO:
        path = wal_path(self.dir, first_seq)
        f = self._opener(path, "ab")
        fsync_dir(self.dir)
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
                view = memoryview(frame)
                while len(view):   # unbuffered: each write is in the OS, safe from a process kill
                    n = f.write(view)
                    view = view[len(view) if n is None else n:]
                f.flush()
            except BaseException as e:
                try:   # cut the partial frame so later records stay replayable
                    os.ftruncate(f.fileno(), pos)
                except BaseException:
                    self._failed = e
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
                    os.fsync(f.fileno())
                except BaseException as e:
                    # After a failed fsync the kernel may have dropped the dirty pages, so a
                    # retry could falsely succeed: refuse all further writes instead.
                    self._failed = e
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
