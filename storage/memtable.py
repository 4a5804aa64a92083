"""The growing segment: recent rows as Arrow batches plus one contiguous float32 buffer.

Rows are only appended. Each row records the sequence number that wrote it and the one
that deleted it (``ALIVE`` if none), so a reader at sequence ``s`` sees exactly the rows
written and not deleted up to ``s`` without copying anything (DESIGN §9).

Thread contract: ``append`` and ``delete_rows`` are called under the owning store's write
lock; ``view`` may be called from any thread. Buffers only grow by reallocation, so a view
keeps the arrays it took and never sees them change under it, apart from ``deleted_seq``
entries going from ALIVE to a sequence number newer than the view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vecdb.storage.schema import ID, VECTOR
from vecdb.storage.segment import ALIVE


@dataclass(frozen=True)
class MemtableView:
    """An immutable prefix of the memtable as of sequence ``seq``."""

    n: int
    vectors: np.ndarray        # (n, dim) float32
    row_seq: np.ndarray        # (n,) int64
    deleted_seq: np.ndarray    # shared; entries > seq count as alive
    batches: tuple[pa.RecordBatch, ...]
    seq: int

    def alive_mask(self) -> np.ndarray | None:
        if self.n == 0:
            return None
        mask = (self.row_seq[:self.n] <= self.seq) & (self.deleted_seq[:self.n] > self.seq)
        return None if mask.all() else mask

    def payload_table(self, schema: pa.Schema) -> pa.Table:
        """id + payload columns of the view's rows (zero-copy over the batches)."""
        table = pa.Table.from_batches(list(self.batches), schema=schema)
        return table.slice(0, self.n)


class Memtable:
    def __init__(self, dim: int, payload_schema: pa.Schema, capacity: int = 1024):
        self.dim = dim
        self.schema = payload_schema
        self.n = 0
        self.n_deleted = 0
        self._vectors = np.empty((capacity, dim), dtype=np.float32)
        self._row_seq = np.empty(capacity, dtype=np.int64)
        self._deleted_seq = np.empty(capacity, dtype=np.int64)
        self._batches: list[pa.RecordBatch] = []

    @property
    def n_alive(self) -> int:
        return self.n - self.n_deleted

    @property
    def nbytes(self) -> int:
        return self.n * self.dim * 4

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = len(self._row_seq)
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        vectors = np.empty((new_cap, self.dim), dtype=np.float32)
        vectors[:self.n] = self._vectors[:self.n]
        row_seq = np.empty(new_cap, dtype=np.int64)
        row_seq[:self.n] = self._row_seq[:self.n]
        deleted = np.empty(new_cap, dtype=np.int64)
        deleted[:self.n] = self._deleted_seq[:self.n]
        self._vectors, self._row_seq, self._deleted_seq = vectors, row_seq, deleted

    def append(self, vectors: np.ndarray, payload: pa.RecordBatch, seq: int) -> int:
        """Append rows written at ``seq``; returns the first new row number."""
        m = len(vectors)
        self._reserve(m)
        start = self.n
        self._vectors[start:start + m] = vectors
        self._row_seq[start:start + m] = seq
        self._deleted_seq[start:start + m] = ALIVE
        batches = self._batches + [payload]
        if len(batches) >= 256:  # keep filters fast after many small writes
            batches = pa.Table.from_batches(batches, schema=self.schema).combine_chunks().to_batches()
        self._batches = batches
        self.n = start + m   # publish last: readers never see a half-filled row
        return start

    def delete_rows(self, rows: np.ndarray, seq: int) -> None:
        if len(rows):
            self._deleted_seq[rows] = seq
            self.n_deleted += len(rows)

    def alive_ids(self) -> tuple[np.ndarray, list]:
        """Row numbers and ids of the rows not deleted so far."""
        rows = np.flatnonzero(self._deleted_seq[:self.n] == ALIVE)
        if not len(rows):
            return rows, []
        ids = pa.Table.from_batches(self._batches, schema=self.schema).column(ID)
        return rows, ids.take(pa.array(rows)).to_pylist()

    def view(self, seq: int, n: int | None = None) -> MemtableView:
        """The first ``n`` rows (default: all published now; a caller passing ``n`` read it
        from ``self.n`` before this call) as seen at ``seq``."""
        if n is None:
            n = self.n
        return MemtableView(n, self._vectors, self._row_seq, self._deleted_seq,
                            tuple(self._batches), seq)

    def sealed_table(self, row_schema: pa.Schema) -> tuple[pa.Table, np.ndarray]:
        """The alive rows as a table with the row schema, and their memtable row numbers."""
        alive = np.flatnonzero(self._deleted_seq[:self.n] == ALIVE)
        payload = pa.Table.from_batches(self._batches, schema=self.schema).take(pa.array(alive))
        flat = pa.array(np.ascontiguousarray(self._vectors[alive]).reshape(-1), type=pa.float32())
        vec = pa.FixedSizeListArray.from_arrays(flat, self.dim)
        columns = [payload.column(ID), vec] + [payload.column(f.name) for f in row_schema if f.name not in (ID, VECTOR)]
        return pa.Table.from_arrays(columns, schema=row_schema), alive
