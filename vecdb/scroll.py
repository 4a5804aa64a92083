"""Keyset pagination (``Collection.scroll``): the next rows in id order after a cursor.

A page is the ``limit`` smallest ids greater than the previous page's last id, among the rows
of the view current when the page is read. So a row present throughout a scroll comes back
exactly once, however writes interleave; rows written or deleted meanwhile may or may not.
Sealed segments keep their ids' sort order (computed once per segment, since a segment never
changes); the memtable prefix, which changes with every write, is cut and sorted per page.
Pure logic over a store view's parts; no I/O.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import weakref
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdb.errors import InvalidArgument
from vecdb.rows import INT64_MAX, INT64_MIN
from vecdb.storage.schema import ID
from vecdb.storage.store import Part

CURSOR_FORMAT = 1
MAX_CURSOR_CHARS = 8192
_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")
_orders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # Segment -> (order, sorted ids)
_orders_lock = threading.Lock()


def encode_cursor(last_id: str | int) -> str:
    """The opaque cursor that resumes a scroll after ``last_id`` (URL-safe base64 of JSON)."""
    raw = json.dumps({"v": CURSOR_FORMAT, "after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor, id_type: str | None) -> str | int | None:
    """The last id a cursor names (None for no cursor); InvalidArgument if it is not a cursor
    ``encode_cursor`` made for ids of ``id_type`` (None: the collection has no rows yet)."""
    if cursor is None:
        return None
    bad = f"cursor {cursor!r:.80} is not a cursor returned by scroll"
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS or not _CURSOR.match(cursor):
        raise InvalidArgument(bad)
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):    # JSON and UTF-8 errors are ValueErrors
        raise InvalidArgument(bad) from None
    if not isinstance(data, dict) or set(data) != {"v", "after"} or data["v"] != CURSOR_FORMAT:
        raise InvalidArgument(bad)
    after = data["after"]
    is_str = isinstance(after, str)
    is_int = isinstance(after, int) and not isinstance(after, bool) and INT64_MIN <= after <= INT64_MAX
    if not (is_str or is_int) or (id_type == "string" and not is_str) or (id_type == "int64" and not is_int):
        raise InvalidArgument(f"{bad} (it does not hold an id of this collection's type {id_type})")
    return after


def page(parts: Sequence[Part], allowed: Sequence[np.ndarray | None], after, need: int,
         id_type: str) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The ``need`` smallest ids greater than ``after`` (None: from the start) among rows
    ``allowed`` (per part; None = every row), in id order: (ids, part index, row) each."""
    ids, part_of, rows = [], [], []
    for i, (part, mask) in enumerate(zip(parts, allowed)):
        if part.segment is not None:
            part_ids, part_rows = _segment_page(part.segment, mask, after, need, id_type)
        else:
            part_ids, part_rows = _memtable_page(part, mask, after, need)
        if len(part_rows):
            ids.append(part_ids)
            rows.append(part_rows)
            part_of.append(np.full(len(part_rows), i, dtype=np.int64))
    if not ids:
        return pa.array([], type=pa.string() if id_type == "string" else pa.int64()), \
            np.empty(0, np.int64), np.empty(0, np.int64)
    if len(ids) == 1:
        return ids[0], part_of[0], rows[0]
    merged = pa.concat_arrays(ids)
    order = pc.sort_indices(merged).to_numpy().astype(np.int64)[:need]
    return merged.take(pa.array(order)), np.concatenate(part_of)[order], np.concatenate(rows)[order]


def _segment_page(seg, allowed: np.ndarray | None, after, need: int, id_type: str):
    """A sealed segment's next rows: a binary search into its id order, then a walk along it
    in growing steps until ``need`` allowed rows are found."""
    order, sorted_ids = _id_order(seg, id_type)
    start = 0 if after is None else _bisect_right(sorted_ids, after)
    if allowed is None:
        positions = np.arange(start, min(start + need, len(order)))
    else:
        picked, got, pos, step = [], 0, start, max(2 * need, 1024)
        while pos < len(order) and got < need:
            ok = np.flatnonzero(allowed[order[pos:pos + step]]) + pos
            picked.append(ok)
            got += len(ok)
            pos += step
            step *= 2
        positions = np.concatenate(picked)[:need] if picked else np.empty(0, np.int64)
    if isinstance(sorted_ids, np.ndarray):
        ids = pa.array(sorted_ids[positions])
    else:
        ids = sorted_ids.take(pa.array(positions, type=pa.int64()))
    return ids, order[positions]


def _memtable_page(part: Part, allowed: np.ndarray | None, after, need: int):
    """The memtable prefix's next rows: every id after the cursor, then the smallest ``need``."""
    col = part.table().column(ID)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    mask = np.ones(len(col), dtype=bool) if after is None else \
        pc.greater(col, pa.scalar(after, type=col.type)).to_numpy(zero_copy_only=False)
    if allowed is not None:
        mask = mask & allowed
    rows = np.flatnonzero(mask)
    ids = col.take(pa.array(rows))
    if len(rows) > need:     # the ``need`` smallest (any order), then only those sorted
        first = pc.select_k_unstable(ids, k=need, sort_keys=[(ID, "ascending")])
        order = first.take(pc.sort_indices(ids.take(first))).to_numpy().astype(np.int64)
    else:
        order = pc.sort_indices(ids).to_numpy().astype(np.int64)
    return ids.take(pa.array(order)), rows[order]


def _id_order(seg, id_type: str) -> tuple[np.ndarray, np.ndarray | pa.Array]:
    """(row numbers in id order, the ids in that order) of a sealed segment, kept per segment."""
    hit = _orders.get(seg)
    if hit is None:
        if id_type == "int64":
            ids = seg.id_array()
            order = np.argsort(ids, kind="stable")
            hit = (order, ids[order])
        else:
            col = seg.ids.combine_chunks()
            order = pc.sort_indices(col).to_numpy().astype(np.int64)
            hit = (order, col.take(pa.array(order)))
        with _orders_lock:
            hit = _orders.setdefault(seg, hit)
    return hit


def _bisect_right(sorted_ids, after) -> int:
    """How many of ``sorted_ids`` are <= ``after`` (UTF-8 byte order is code point order)."""
    if isinstance(sorted_ids, np.ndarray):
        return int(np.searchsorted(sorted_ids, after, side="right"))
    lo, hi = 0, len(sorted_ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_ids[mid].as_py() <= after:
            lo = mid + 1
        else:
            hi = mid
    return lo
