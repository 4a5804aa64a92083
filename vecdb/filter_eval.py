"""The filter language's evaluation: an AST to a numpy bool row mask with ``pyarrow.compute``
(SQL NULL semantics)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdb.errors import FilterError

from vecdb.filter_parse import (And, Compare, Contains, Expr, In, IsNull, Like, Literal, Not, Or)

# --- evaluation -------------------------------------------------------------------------------

_CMP = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
        ">": pc.greater, ">=": pc.greater_equal}
_NULL = pa.scalar(None, pa.bool_())
_ALL_BY_PASSES = 8  # CONTAINS ALL with more values than this hashes once instead
_NO_VALUE = object()  # a literal the column's type cannot hold: it never matches


def evaluate(expr: Expr, table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Rows of ``table`` where ``expr`` is TRUE, as a bool array of length ``table.num_rows``.

    NULL results count as FALSE. A field missing from ``table`` (or of arrow type null) is all
    NULL. A value the column cannot hold (e.g. ``id = 'a'`` on int64 ids, possible when the id
    type was unknown at check time) equals nothing and orders with nothing.
    """
    n = table.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    result = _eval(expr, table)
    if isinstance(result, pa.Scalar):
        return np.full(n, result.as_py() is True, dtype=bool)
    result = pc.fill_null(result, False)
    chunks = result.chunks if isinstance(result, pa.ChunkedArray) else [result]
    parts = [c.to_numpy(zero_copy_only=False) for c in chunks if len(c)]
    return np.asarray(np.concatenate(parts) if len(parts) != 1 else parts[0], dtype=bool)


def _eval(node: Expr, table):
    if isinstance(node, And):
        acc = _eval(node.operands[0], table)
        for item in node.operands[1:]:
            acc = pc.and_kleene(acc, _eval(item, table))
        return acc
    if isinstance(node, Or):
        acc = _eval(node.operands[0], table)
        for item in node.operands[1:]:
            acc = pc.or_kleene(acc, _eval(item, table))
        return acc
    if isinstance(node, Not):
        return pc.invert(_eval(node.operand, table))
    idx = table.schema.get_field_index(node.field)
    col = table.column(idx) if idx >= 0 else None
    if col is not None and pa.types.is_null(col.type):
        col = None
    elif col is not None and pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if isinstance(node, IsNull):
        return pa.scalar(True) if col is None else pc.is_null(col)
    if col is None:
        return _NULL
    if isinstance(node, Compare):
        value = _py_value(col.type, node.value)
        if value is _NO_VALUE:
            return _constant(col, node.op == "!=")
        return _CMP[node.op](col, _arrow(col.type, [value], scalar=True))
    if isinstance(node, In):
        values = [_py_value(col.type, lit) for lit in node.values]
        values = [v for v in values if v is not _NO_VALUE]
        if not values:
            return _constant(col, False)
        if pa.types.is_floating(col.type) and 0.0 in values:
            values += [0.0, -0.0]  # is_in hashes -0.0 apart from 0.0, but they are equal
        hit = pc.is_in(col, value_set=_arrow(col.type, values))
        return pc.if_else(pc.is_valid(col), hit, _NULL) if col.null_count else hit
    if isinstance(node, Like):
        if not _is_string(col.type):
            return _constant(col, False)
        if node.exact:
            return pc.equal(col, pa.scalar(node.prefix, col.type))
        return pc.starts_with(col, node.prefix)
    if isinstance(node, Contains):
        return _contains(col, node)
    raise FilterError(f"not a filter node: {type(node).__name__}")


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _py_value(t: pa.DataType, lit: Literal):
    """The literal as a Python value for a column of arrow type ``t``, or ``_NO_VALUE``."""
    kind = lit.kind
    if kind == "int" and pa.types.is_integer(t):
        return lit.value
    if kind in ("int", "float") and pa.types.is_floating(t):
        return float(lit.value)
    if kind == "string" and _is_string(t):
        return lit.value
    if kind == "bool" and pa.types.is_boolean(t):
        return lit.value
    if kind == "timestamp" and pa.types.is_timestamp(t):
        return lit.value
    return _NO_VALUE


def _arrow(t: pa.DataType, values: list, scalar: bool = False):
    """Values (from ``_py_value``) as an arrow array (or scalar) of type ``t``."""
    if pa.types.is_timestamp(t):  # values are µs since epoch
        arr = pa.array(values, pa.timestamp("us", tz=t.tz))
        arr = arr if arr.type == t else arr.cast(t, safe=False)
    else:
        try:
            arr = pa.array(values, t)
        except (pa.ArrowInvalid, OverflowError):  # e.g. a big integer for an int32 column
            arr = pa.array(values, pa.int64() if pa.types.is_integer(t) else None)
    return arr[0] if scalar else arr


def _constant(col, value: bool):
    """``value`` where ``col`` is not NULL, NULL where it is."""
    if not col.null_count:
        return pa.scalar(value)
    return pc.if_else(pc.is_valid(col), pa.scalar(value), _NULL)


def _contains(col, node: Contains):
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return _constant(col, False)
    values = [_py_value(t.value_type, lit) for lit in node.values]
    if node.mode == "all" and _NO_VALUE in values:
        return _constant(col, False)
    values = list(dict.fromkeys(v for v in values if v is not _NO_VALUE))
    if not values:
        return _constant(col, False)
    value_set = _arrow(t.value_type, values)
    need_all = node.mode == "all" and len(values) > 1
    if isinstance(col, pa.ChunkedArray):
        return pa.chunked_array([_contains_chunk(c, value_set, need_all) for c in col.chunks],
                                pa.bool_())
    return _contains_chunk(col, value_set, need_all)


def _contains_chunk(arr, value_set: pa.Array, need_all: bool) -> pa.Array:
    """Per list: does it hold any (or, with ``need_all``, every) value of ``value_set``."""
    n, m = len(arr), len(value_set)
    offsets = arr.offsets.to_numpy().astype(np.int64)  # absolute offsets into arr.values
    start = offsets[0]
    elements = arr.values.slice(start, offsets[-1] - start)
    bounds = offsets - start
    if need_all and m > _ALL_BY_PASSES:  # one hash pass, then count distinct values per list
        codes = pc.fill_null(pc.index_in(elements, value_set=value_set), -1)
        codes = codes.to_numpy(zero_copy_only=False)
        hit_pos = np.flatnonzero(codes >= 0)
        parents = np.searchsorted(bounds, hit_pos, side="right") - 1
        pairs = np.unique(parents * m + codes[hit_pos])
        hit = np.bincount(pairs // m, minlength=n) == m
    elif need_all:  # a few values: one equality pass each
        hit = np.ones(n, dtype=bool)
        for i in range(m):
            hit &= _any_per_list(pc.equal(elements, value_set[i]), bounds)
    elif m == 1:
        hit = _any_per_list(pc.equal(elements, value_set[0]), bounds)
    else:
        hit = _any_per_list(pc.is_in(elements, value_set=value_set), bounds)
    mask = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    return pa.array(hit, pa.bool_(), mask=mask)


def _any_per_list(found: pa.Array, bounds: np.ndarray) -> np.ndarray:
    """Whether each list (elements ``bounds[i]:bounds[i+1]``) has a TRUE in ``found``."""
    if found.null_count:
        found = pc.fill_null(found, False)
    counts = np.zeros(len(found) + 1, dtype=np.int64)
    np.cumsum(found.to_numpy(zero_copy_only=False), out=counts[1:])
    return counts[bounds[1:]] > counts[bounds[:-1]]
