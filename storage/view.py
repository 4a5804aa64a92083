"""What a reader sees: an immutable view of a collection's segments and memtable prefix.

``StoreView`` is taken without locks (DESIGN §9); ``Part`` is one searchable piece of it (a
sealed segment or the memtable prefix); ``lookup`` reads rows by id from a view.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdb.storage.manifest import Manifest
from vecdb.storage.memtable import MemtableView
from vecdb.storage.schema import ID
from vecdb.storage.segment import Segment


@dataclass(frozen=True)
class Part:
    """One searchable part of a view: a sealed segment or the memtable prefix."""

    vectors: np.ndarray
    alive: np.ndarray | None          # rows visible to the view; None = all
    table_fn: object                  # () -> pa.Table with id + payload columns
    norms_fn: object | None           # () -> squared norms (segments only)
    segment: Segment | None = None    # None for the memtable

    def table(self) -> pa.Table:
        return self.table_fn()

    @cached_property
    def n_alive(self) -> int:
        """Rows visible to the view (counted once per view)."""
        return len(self.vectors) if self.alive is None else int(np.count_nonzero(self.alive))

    def ids_at(self, rows: np.ndarray) -> list:
        """The ids of ``rows`` (int64 row numbers, any order, repeats allowed), as Python values."""
        if self.segment is not None:
            ids = self.segment.id_array()
            if ids is not None:          # one gather, fresh ints: no walk over a big list
                return ids[rows].tolist()
            ids = self.segment.id_list()
            return [ids[r] for r in rows.tolist()]
        return self.table().column(ID).take(pa.array(rows, type=pa.int64())).to_pylist()

    def columns_at(self, fields: list[str], rows: np.ndarray) -> list[list]:
        """Payload ``fields`` of ``rows`` (int64 row numbers, any order, repeats allowed):
        one list of Python values (None for null) per field."""
        if self.segment is not None:
            return [self.segment.column_at(f, rows) for f in fields]
        t = self.table().select(fields).take(pa.array(rows, type=pa.int64()))
        return [t.column(f).to_pylist() for f in fields]


@dataclass(frozen=True)
class StoreView:
    """What one reader sees: sealed segments and a memtable prefix, as of ``seq``."""

    seq: int
    segments: tuple[Segment, ...]
    memtable: MemtableView | None
    manifest: Manifest
    schema: pa.Schema = field(repr=False)      # id + payload columns

    def parts(self) -> tuple[Part, ...]:
        """The searchable parts: each sealed segment, then the memtable prefix if not empty."""
        return self._parts

    @cached_property
    def _parts(self) -> tuple[Part, ...]:
        # built once per view: what a view sees never changes (deletes newer than ``seq``
        # are invisible to it), and the store hands out the same view until something moves
        out = [Part(s.vectors, s.alive_mask(self.seq), (lambda s=s: s.table), s.norms, s)
               for s in self.segments]
        if self.memtable is not None and self.memtable.n:
            m = self.memtable
            out.append(Part(m.vectors[:m.n], m.alive_mask(), lambda: m.payload_table(self.schema), None))
        return tuple(out)


def lookup(view: StoreView, ids: list) -> pa.Table | None:
    """Rows (row schema) for ``ids`` that exist in ``view``, any order; None if none."""
    id_type = view.schema.field(ID).type
    value_set = pa.array(ids, type=id_type)
    tables = []
    for part in view.parts():
        table = part.table()
        hit = pc.is_in(table.column(ID), value_set=value_set).to_numpy(zero_copy_only=False)
        if part.alive is not None:
            hit &= part.alive
        rows = np.flatnonzero(hit)
        if len(rows):
            t = table.take(pa.array(rows)).select([f.name for f in view.schema])
            vec = np.asarray(part.vectors[rows], dtype=np.float32)
            t = t.append_column("vector", pa.FixedSizeListArray.from_arrays(
                pa.array(vec.reshape(-1), type=pa.float32()), view.manifest.dim))
            tables.append(t)
    if not tables:
        return None
    return pa.concat_tables(tables)
