"""Turn user input (ids, vectors, payload dicts or an Arrow table) into validated Arrow rows.

Pure functions, no I/O. Every problem raises a typed error naming the field, the row and
what is wrong, before anything is written; the caller's arrays and dicts are never mutated.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from vecdb.errors import DimensionMismatch, InvalidArgument, InvalidId, InvalidVector, SchemaError
from vecdb.storage.schema import FIELD_TYPES, ID, VECTOR, id_arrow_type

MAX_ID_BYTES = 1024
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def as_vectors(vectors, dim: int, metric: str, what: str = "vectors") -> np.ndarray:
    """A C-contiguous (n, dim) float32 array, normalised for cosine. Copies only when needed."""
    arr = vectors
    if not (type(arr) is np.ndarray and arr.dtype == np.float32 and arr.ndim == 2    # as a search
            and arr.shape[1] == dim and arr.flags.c_contiguous):                     # passes it
        arr = _float_rows(vectors, dim, what)
    if metric == "cosine":
        out = np.empty_like(arr)           # new array: the caller's is untouched
        bad, zero = _unit_rows(arr, out)
    else:
        out, bad, zero = arr, _first_nonfinite_row(arr), -1
    if bad >= 0:
        raise InvalidVector(f"{what} row {bad} holds NaN or infinity (or overflows float32)")
    if zero >= 0:
        raise InvalidVector(f"{what} row {zero} is all zeros: it has no direction for cosine")
    return out


def _float_rows(vectors, dim: int, what: str) -> np.ndarray:
    """Any array-like (or Arrow list array) of numbers as C-contiguous (n, dim) float32."""
    if isinstance(vectors, (pa.Array, pa.ChunkedArray)):
        vectors = _arrow_vectors(vectors, dim, what)
    try:
        arr = np.asarray(vectors)
    except (ValueError, TypeError) as e:
        raise InvalidVector(f"{what} must be a numeric array of shape (n, {dim}): {e}") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InvalidVector(f"{what} must have shape (n, {dim}), got {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatch(f"{what} have dimension {arr.shape[1]}, the collection has dim={dim}")
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise InvalidVector(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.dtype != np.float32 or not arr.flags.c_contiguous:
        with np.errstate(over="ignore"):   # overflow to inf is reported just below
            arr = np.ascontiguousarray(arr, dtype=np.float32)
    return arr


# One pass over the rows, in Numba: a query costs well under a microsecond here, where the
# same checks as numpy calls cost several (this runs once per search). Reassociation lets the
# float64 sums vectorise; no nnan/ninf, the checks must see NaN and infinity.
_FASTMATH = {"reassoc", "contract"}


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _unit_rows(arr, out):
    """Write each row of ``arr`` divided by its L2 norm into ``out``; returns (first row
    holding NaN or infinity, first all-zero row), -1 for none. Squares are summed in float64:
    finite float32 rows neither overflow nor underflow there."""
    zero = -1
    for i in range(arr.shape[0]):
        sq = 0.0
        for j in range(arr.shape[1]):
            x = np.float64(arr[i, j])
            sq += x * x
        if not np.isfinite(sq):
            return i, zero
        if sq == 0.0:
            if zero < 0:
                zero = i
            continue
        inv = 1.0 / np.sqrt(sq)
        for j in range(arr.shape[1]):
            out[i, j] = np.float32(np.float64(arr[i, j]) * inv)
    return -1, zero


@njit(nogil=True, cache=True)
def _first_nonfinite_row(arr):
    """The first row of ``arr`` holding NaN or infinity, -1 if none."""
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            if not np.isfinite(arr[i, j]):
                return i
    return -1


def _arrow_vectors(col, dim: int, what: str) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not (pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type)
            or pa.types.is_large_list(col.type)):
        raise InvalidVector(f"{what} column must be a list of floats, got {col.type}")
    if col.null_count:
        raise InvalidVector(f"{what} column holds nulls")
    if pa.types.is_fixed_size_list(col.type):
        if col.type.list_size != dim:
            raise DimensionMismatch(f"{what} have dimension {col.type.list_size}, the collection has dim={dim}")
        values = col.flatten()
    else:
        lengths = np.asarray(col.value_lengths())
        if len(lengths) and (lengths != dim).any():
            raise DimensionMismatch(f"{what} row {int(np.flatnonzero(lengths != dim)[0])} has "
                                    f"dimension {int(lengths[lengths != dim][0])}, the collection has dim={dim}")
        values = col.flatten()
    if values.null_count:
        raise InvalidVector(f"{what} hold null components")
    return values.to_numpy(zero_copy_only=False).reshape(len(col), dim)


def infer_id_type(ids) -> str:
    """The id type a batch implies: 'string' or 'int64'."""
    first = ids[0] if len(ids) else None
    if isinstance(first, str):
        return "string"
    if isinstance(first, (int, np.integer)) and not isinstance(first, (bool, np.bool_)):
        return "int64"
    raise InvalidId(f"ids must be strings or 64-bit integers, got {type(first).__name__}")


def as_ids(ids, id_type: str, what: str = "ids", unique: bool = True) -> pa.Array:
    """Validated ids as an Arrow array of the collection's id type."""
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = ids.to_pylist()
    elif isinstance(ids, np.ndarray):
        ids = ids.tolist()
    elif isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise InvalidId(f"{what} must be a list, got {type(ids).__name__}")
    else:
        ids = list(ids)
    if id_type == "string":
        for i, v in enumerate(ids):
            if not isinstance(v, str):
                raise InvalidId(f"{what}[{i}] is {type(v).__name__} {v!r}; this collection's ids are strings")
            if not _is_utf8(v):
                raise InvalidId(f"{what}[{i}] is not valid Unicode text (it holds a lone surrogate "
                                f"at position {_bad_char(v)})")
            if not v or len(v.encode()) > MAX_ID_BYTES:
                raise InvalidId(f"{what}[{i}] must be a non-empty string of at most {MAX_ID_BYTES} bytes")
    else:
        for i, v in enumerate(ids):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise InvalidId(f"{what}[{i}] is {type(v).__name__} {v!r}; this collection's ids are 64-bit integers")
            if not INT64_MIN <= int(v) <= INT64_MAX:
                raise InvalidId(f"{what}[{i}] = {v} does not fit in 64 bits")
        ids = [int(v) for v in ids]
    if unique and len(set(ids)) != len(ids):
        seen = set()
        dup = next(v for v in ids if v in seen or seen.add(v))
        raise InvalidId(f"{what} repeat {dup!r} within one batch; each id may appear once per upsert")
    return pa.array(ids, type=id_arrow_type(id_type))


def _is_utf8(s: str) -> bool:
    """True if ``s`` encodes as UTF-8 (no lone surrogates); ASCII is checked without encoding."""
    if s.isascii():
        return True
    try:
        s.encode()
        return True
    except UnicodeEncodeError:
        return False


def _bad_char(s: str) -> int:
    return next(i for i, c in enumerate(s) if 0xD800 <= ord(c) <= 0xDFFF)


def _check_value(field: str, typ: str, v, row: int):
    """The value converted for Arrow, or a SchemaError naming field, row and problem."""
    if v is None:
        return None
    ok = True
    if typ == "int64":
        ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and INT64_MIN <= int(v) <= INT64_MAX
        v = int(v) if ok else v
    elif typ == "float64":
        ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        v = float(v) if ok else v
    elif typ == "bool":
        ok = isinstance(v, (bool, np.bool_))
        v = bool(v) if ok else v
    elif typ == "string":
        ok = isinstance(v, str)
        if ok and not _is_utf8(v):
            raise SchemaError(f"payloads[{row}].{field} is not valid Unicode text (it holds a lone "
                              f"surrogate at position {_bad_char(v)})")
    elif typ == "timestamp":
        if isinstance(v, str):
            try:
                v = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                ok = False
        if ok and isinstance(v, dt.datetime):
            v = v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)
        else:
            ok = False
    elif typ == "list<string>":
        ok = isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
        bad = next((x for x in v if not _is_utf8(x)), None) if ok else None
        if bad is not None:
            raise SchemaError(f"payloads[{row}].{field} holds a string that is not valid Unicode "
                              f"text (a lone surrogate at position {_bad_char(bad)})")
    elif typ == "list<int64>":
        ok = isinstance(v, (list, tuple)) and all(
            isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in v)
    if not ok:
        raise SchemaError(f"payloads[{row}].{field} = {v!r} is not a valid {typ}")
    return v


def payload_columns(payloads, schema: dict[str, str], n: int) -> list[pa.Array]:
    """One Arrow column per schema field from a list of dicts (missing fields are null)."""
    if payloads is None:
        return [pa.nulls(n, type=FIELD_TYPES[t]) for t in schema.values()]
    if isinstance(payloads, dict) or not hasattr(payloads, "__len__"):
        raise SchemaError(f"payloads must be a list of dicts, one per id, got {type(payloads).__name__}")
    if len(payloads) != n:
        raise SchemaError(f"got {len(payloads)} payloads for {n} ids")
    values = {f: [None] * n for f in schema}
    for row, p in enumerate(payloads):
        if p is None:
            continue
        if not isinstance(p, dict):
            raise SchemaError(f"payloads[{row}] must be a dict, got {type(p).__name__}")
        for field, v in p.items():
            typ = schema.get(field)
            if typ is None:
                known = ", ".join(schema) or "none declared"
                raise SchemaError(f"payloads[{row}] has unknown field {field!r} (fields: {known})")
            values[field][row] = _check_value(field, typ, v, row)
    return [pa.array(values[f], type=FIELD_TYPES[t]) for f, t in schema.items()]


def table_columns(table: pa.Table, schema: dict[str, str]) -> list[pa.Array]:
    """Payload columns of a user's Arrow table, cast safely to the schema's types."""
    extra = [c for c in table.column_names if c not in schema and c not in (ID, VECTOR)]
    if extra:
        raise SchemaError(f"table has unknown column(s) {extra} (fields: {', '.join(schema) or 'none declared'})")
    out = []
    for f, t in schema.items():
        if f not in table.column_names:
            out.append(pa.nulls(table.num_rows, type=FIELD_TYPES[t]))
            continue
        col = table.column(f).combine_chunks()
        try:
            if pa.types.is_boolean(col.type) != (t == "bool"):
                raise pa.ArrowInvalid("bool mismatch")
            out.append(col.cast(FIELD_TYPES[t], safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise SchemaError(f"column {f!r} of type {col.type} cannot be stored as {t}: {e}") from None
    return out


@dataclass(frozen=True)
class Rows:
    """A validated batch ready for the store."""

    batch: pa.RecordBatch          # row schema: id, vector, payload columns
    vectors: np.ndarray            # (n, dim) float32, normalised for cosine


def build_rows(ids: pa.Array, vectors: np.ndarray, columns: list[pa.Array],
               row_schema: pa.Schema) -> Rows:
    if len(vectors) != len(ids):
        raise InvalidArgument(f"got {len(ids)} ids but {len(vectors)} vectors")
    dim = vectors.shape[1]
    vec = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
    return Rows(pa.RecordBatch.from_arrays([ids, vec, *columns], schema=row_schema), vectors)
