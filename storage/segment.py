"""Sealed segments: immutable Arrow IPC files read through mmap, plus their delete bitmaps.

A segment file holds one uncompressed record batch with the row schema (``id``, ``vector``
as FixedSizeList<float32>, payload columns) and schema metadata naming the format version.
Vectors reach numpy as a zero-copy view of the mapped file.

Delete bitmap file: ``b"VDBDEL01"`` + u64 row count + u32 crc32(bits) + packed bits
(``np.packbits``, 1 = deleted). Each version of a segment's deletes is a new file; the
manifest names the one that belongs to it.

In memory a segment keeps ``deleted_seq`` (int64 per row: the sequence number of the delete,
``ALIVE`` if none) so a reader at sequence ``s`` sees exactly the deletes up to ``s``.
"""
from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from vecdb.errors import Corruption
from vecdb.storage.fileio import crc32c, write_durably
from vecdb.storage.schema import ID, VECTOR

SEGMENT_FORMAT = b"vecdb-segment"
SEGMENT_FORMAT_VERSION = b"1"
DEL_MAGIC = b"VDBDEL01"
DEL_HEADER = struct.Struct("<8sQI")
ALIVE = np.iinfo(np.int64).max
FILTER_CACHE_ENTRIES = 32     # filter masks kept per segment (n bytes each)
SUBSET_CACHE_BYTES = 128 << 20  # compact copies of selective filters' rows, per segment


def segment_name(num: int) -> str:
    return f"seg-{num:08d}.arrow"


def deletes_name(num: int, version: int) -> str:
    return f"seg-{num:08d}.del-{version:08d}"


def write_segment(path: Path, table: pa.Table) -> tuple[int, int]:
    """Write ``table`` (row schema) as one uncompressed record batch, durably; (size, crc32c)."""
    meta = dict(table.schema.metadata or {})
    meta.update({b"vecdb.format": SEGMENT_FORMAT, b"vecdb.format_version": SEGMENT_FORMAT_VERSION})
    table = table.replace_schema_metadata(meta).combine_chunks()
    batch = table.to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)

    def write(f):
        with pa.ipc.new_file(pa.PythonFile(f, mode="w"), table.schema) as w:
            w.write_batch(batch)
    return write_durably(path, write)


def write_deletes(path: Path, deleted: np.ndarray) -> tuple[int, int]:
    """Persist a bool mask of deleted rows durably; (size, crc32c)."""
    bits = np.packbits(deleted.astype(bool)).tobytes()

    def write(f):
        f.write(DEL_HEADER.pack(DEL_MAGIC, len(deleted), zlib.crc32(bits)))
        f.write(bits)
    return write_durably(path, write)


def read_deletes(path: Path, n_rows: int, checksum=None) -> np.ndarray:
    """The bool mask of deleted rows; ``checksum`` (size, crc32c) from the manifest if known."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Corruption(f"delete bitmap {path.name} is missing") from None
    if checksum is not None and (len(data), crc32c(data)) != tuple(checksum):
        raise Corruption(f"delete bitmap {path.name} fails its checksum: which rows of its segment "
                         f"are deleted is unknown, so none of them is served")
    if len(data) < DEL_HEADER.size:
        raise Corruption(f"delete bitmap {path.name} is truncated")
    magic, n, crc = DEL_HEADER.unpack_from(data)
    bits = data[DEL_HEADER.size:]
    if magic != DEL_MAGIC or n != n_rows or zlib.crc32(bits) != crc or len(bits) != (n + 7) // 8:
        raise Corruption(f"delete bitmap {path.name} fails its header or checksum")
    return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=n).astype(bool)


class Segment:
    """One sealed, memory-mapped segment and its in-memory delete state.

    Thread contract: ``delete_rows`` is called under the owning store's write lock; readers
    call ``alive_mask`` without locks (``deleted_seq`` only ever changes ALIVE -> seq).
    """

    def __init__(self, num: int, path: Path, dim: int, deleted: np.ndarray | None = None,
                 deletes_file: str | None = None):
        self.num = num
        self.path = path
        try:
            source = pa.memory_map(str(path), "r")
            reader = pa.ipc.open_file(source)
            meta = reader.schema.metadata or {}
            if meta.get(b"vecdb.format") != SEGMENT_FORMAT:
                raise Corruption(f"segment {path.name} is not a vecdb segment")
            if meta.get(b"vecdb.format_version") != SEGMENT_FORMAT_VERSION:
                raise Corruption(f"segment {path.name} has unsupported format version")
            self.table = reader.read_all()
        except (OSError, pa.ArrowInvalid) as e:
            raise Corruption(f"segment {path.name} cannot be read: {e}") from e
        self.n = self.table.num_rows
        self.dim = dim
        if self.n:
            col = self.table.column(VECTOR)
            if col.num_chunks != 1:
                col = pa.chunked_array([pa.concat_arrays(col.chunks)])
            values = col.chunk(0).values
            if col.type.list_size != dim or len(values) != self.n * dim:
                raise Corruption(f"segment {path.name} holds {col.type.list_size}-d vectors, "
                                 f"its manifest says dim={dim}")
            self.vectors = values.to_numpy(zero_copy_only=True).reshape(self.n, dim)
        else:
            self.vectors = np.empty((0, dim), dtype=np.float32)
        self.deleted_seq = np.full(self.n, ALIVE, dtype=np.int64)
        if deleted is not None:
            self.deleted_seq[deleted] = 0
        self.n_deleted = int(deleted.sum()) if deleted is not None else 0
        self.deletes_file = deletes_file
        self.dirty = False          # deletes changed since the manifest's bitmap
        self.last_delete_seq = 0
        self._mask_lock = threading.Lock()
        self._mask: tuple[int, np.ndarray | None] | None = None
        self._norms: np.ndarray | None = None
        self._id_list: list | None = None
        self._id_array: np.ndarray | None = None
        self._columns: dict = {}     # payload field -> reader of rows (see column_at)
        self._filter_masks: dict = {}
        self._subsets: dict = {}
        self._device = None          # GPU exact searcher (index/gpu.py); False: none usable
        self.index = None            # a ready VectorIndex, set once its build is durable
        self.index_kind: str | None = None

    @property
    def ids(self) -> pa.ChunkedArray:
        return self.table.column(ID)

    @property
    def n_alive(self) -> int:
        return self.n - self.n_deleted

    def delete_rows(self, rows: np.ndarray, seq: int) -> None:
        """Mark rows deleted at ``seq`` (rows must be alive). Caller holds the write lock."""
        if len(rows) == 0:
            return
        self.deleted_seq[rows] = seq
        self.n_deleted += len(rows)
        self.last_delete_seq = seq
        self.dirty = True

    def deleted_mask(self) -> np.ndarray:
        """Rows deleted by any delete applied so far (for persisting)."""
        return self.deleted_seq != ALIVE

    def alive_mask(self, seq: int) -> np.ndarray | None:
        """Rows alive for a reader at ``seq``; ``None`` means every row."""
        last = self.last_delete_seq
        if seq < last:  # a reader older than the latest delete: compute its own view
            mask = self.deleted_seq > seq
            return None if mask.all() else mask
        cached = self._mask
        if cached is not None and cached[0] == last:
            return cached[1]
        with self._mask_lock:
            mask = self.deleted_seq > seq
            result = None if mask.all() else mask
            self._mask = (last, result)
        return result

    def filter_mask(self, key, evaluate) -> tuple[np.ndarray, int]:
        """The row mask of filter ``key`` and its number of matches, computed by ``evaluate()``
        once and kept (LRU).

        Rows never change in a sealed segment, so a filter's mask is reusable until the
        segment goes away; deletes are applied separately through ``alive_mask``.
        """
        cache = self._filter_masks
        hit = cache.pop(key, None)
        if hit is None:
            mask = evaluate()
            mask.setflags(write=False)
            hit = (mask, int(np.count_nonzero(mask)))
            while len(cache) >= FILTER_CACHE_ENTRIES:
                cache.pop(next(iter(cache)))
        cache[key] = hit            # most recently used last
        return hit

    def filter_subset(self, key, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row numbers, contiguous copy of their vectors) of a selective filter, kept (LRU,
        ``SUBSET_CACHE_BYTES`` per segment): scanning a compact copy is ~10x faster than
        gathering scattered rows through a mask."""
        cache = self._subsets
        hit = cache.pop(key, None)
        if hit is None:
            rows = np.flatnonzero(mask)
            hit = (rows, np.ascontiguousarray(self.vectors[rows]))
            while cache and sum(v.nbytes for _, v in cache.values()) + hit[1].nbytes > SUBSET_CACHE_BYTES:
                cache.pop(next(iter(cache)))
        if hit[1].nbytes <= SUBSET_CACHE_BYTES:
            cache[key] = hit
        return hit

    def id_array(self) -> np.ndarray | None:
        """Integer ids as a numpy array (zero-copy from the map), None for string ids."""
        ids = self._id_array
        if ids is None:
            col = self.ids
            if not pa.types.is_integer(col.type):
                return None
            chunk = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            ids = self._id_array = chunk.to_numpy(zero_copy_only=False)
        return ids

    def id_list(self) -> list:
        """Ids as a Python list (built once: hits look ids up by row number)."""
        ids = self._id_list
        if ids is None:
            ids = self._id_list = self.ids.to_pylist()
        return ids

    def column_at(self, name: str, rows: np.ndarray) -> list:
        """Values of payload column ``name`` at ``rows`` (int64 row numbers, any order), as
        Python values, None for null. int64/float64 columns are read in place through numpy."""
        read = self._columns.get(name)
        if read is None:
            read = self._columns[name] = _column_reader(self.table.column(name))
        return read(rows)

    def norms(self) -> np.ndarray:
        """Squared L2 norms of the rows, computed once on first use."""
        if self._norms is None:
            from vecdb.index.exact import squared_norms
            self._norms = squared_norms(self.vectors)
        return self._norms

    def device_exact(self, metric: str):
        """The rows copied to the GPU for batch exact scans, on first use; None without one."""
        if self._device is None:
            from vecdb.index.gpu import device_exact
            self._device = device_exact(self.vectors, metric) or False
        return self._device or None

    @property
    def device_bytes(self) -> int:
        """GPU memory this segment holds (0 when it was never scanned there)."""
        return self._device.nbytes if self._device else 0


_NUMPY_TYPES = {pa.int64(): np.int64, pa.float64(): np.float64}


def _column_reader(col: pa.ChunkedArray):
    """A function rows -> Python values of ``col``; numeric columns are gathered with numpy
    straight from the (mapped) Arrow buffers, nothing copied up front, others through Arrow."""
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    dtype = _NUMPY_TYPES.get(arr.type)
    if dtype is None or len(arr) == 0:
        return lambda rows: arr.take(pa.array(rows, type=pa.int64())).to_pylist()
    validity, data = arr.buffers()
    values = np.frombuffer(data, dtype=dtype)[arr.offset:arr.offset + len(arr)]
    if not arr.null_count:
        return lambda rows: values[rows].tolist()
    bits = np.frombuffer(validity, dtype=np.uint8)
    offset = arr.offset

    def read(rows: np.ndarray) -> list:
        out = values[rows].tolist()
        at = rows + offset
        for j in np.flatnonzero(((bits[at >> 3] >> (at & 7)) & 1) == 0).tolist():
            out[j] = None
        return out
    return read
