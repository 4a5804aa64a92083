"""Python values <-> vecdb.v1 messages, shared by the client and the server (one codec).

Vectors travel as packed little-endian float32 with their shape; ids as a string or int64
list; payload values as a typed ``Value`` (int64 exact, timestamps as Timestamp at microsecond
precision). Pure functions, no I/O; bad input raises the error tree's classes.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Sequence

import numpy as np

from vecdb_client._proto import common_pb2 as pb
from vecdb_client.errors import InvalidArgument, InvalidId, InvalidVector, SchemaError
from vecdb_client.types import Hit, Record

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_US = dt.timedelta(microseconds=1)
_F32 = np.dtype("<f4")


# ---- vectors ---------------------------------------------------------------------------

def is_single_vector(queries) -> bool:
    """True for one (dim,) vector (its search returns one list of hits), False for a batch."""
    if isinstance(queries, np.ndarray):
        return queries.ndim == 1
    return (isinstance(queries, (list, tuple)) and len(queries) > 0
            and isinstance(queries[0], (int, float, np.number)) and not isinstance(queries[0], bool))


def vectors_to_pb(vectors, what: str = "vectors") -> pb.Vectors:
    """(n, dim) numbers (or one (dim,) vector) as packed float32; no copy for float32 input."""
    if isinstance(vectors, np.ndarray) and vectors.dtype == _F32 and vectors.ndim == 2:
        arr = vectors
    else:
        try:
            arr = np.asarray(vectors)
        except (ValueError, TypeError) as e:
            raise InvalidVector(f"{what} must be a numeric array of shape (n, dim): {e}") from None
        if arr.dtype.kind not in "fiu":
            raise InvalidVector(f"{what} must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise InvalidVector(f"{what} must have shape (n, dim), got {arr.shape}")
        with np.errstate(over="ignore"):      # overflow to inf: the server names the row
            arr = arr.astype(_F32, copy=False)
    return pb.Vectors(data=np.ascontiguousarray(arr).tobytes(), rows=arr.shape[0], dim=arr.shape[1])


def vectors_from_pb(v: pb.Vectors, what: str = "vectors") -> np.ndarray:
    """A read-only (rows, dim) float32 view of the packed bytes (no copy)."""
    if len(v.data) != v.rows * v.dim * 4:
        raise InvalidVector(f"{what} carry {len(v.data)} bytes, expected rows {v.rows} x dim "
                            f"{v.dim} x 4")
    return np.frombuffer(v.data, _F32).reshape(v.rows, v.dim)


# ---- ids -------------------------------------------------------------------------------

def ids_to_pb(ids, what: str = "ids") -> pb.Ids:
    """A list of str or of int (or an integer numpy array) as ``Ids``; [] as an empty one."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        return pb.Ids(ints=pb.Int64List(values=ids.astype(np.int64).tolist()))
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise InvalidId(f"{what} must be a list, got {type(ids).__name__}")
    ids = list(ids.tolist() if isinstance(ids, np.ndarray) else ids)
    if not ids:
        return pb.Ids()
    if all(type(i) is str for i in ids):
        return pb.Ids(strings=pb.StringList(values=ids))
    for n, i in enumerate(ids):
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise InvalidId(f"{what}[{n}] is {type(i).__name__} {i!r}; ids are all strings or "
                            f"all 64-bit integers")
        if not INT64_MIN <= int(i) <= INT64_MAX:
            raise InvalidId(f"{what}[{n}] = {i} does not fit in 64 bits")
    return pb.Ids(ints=pb.Int64List(values=[int(i) for i in ids]))


def ids_from_pb(ids: pb.Ids) -> list:
    kind = ids.WhichOneof("kind")
    if kind is None:
        return []
    return list(ids.strings.values) if kind == "strings" else list(ids.ints.values)


# ---- payload values ----------------------------------------------------------------------

def value_to_pb(v: Any, where: str = "value") -> pb.Value:
    """One payload value as a typed ``Value``."""
    out = pb.Value()
    fill_value(out, v, where)
    return out


def fill_value(out: pb.Value, v: Any, where: str = "value") -> None:
    """Set ``out`` (a fresh ``Value``, e.g. a map entry) to ``v`` in place: no temporary message.

    bool is tested before int (a bool is an int in Python); exact types first, for speed."""
    t = type(v)
    if t is str:
        out.string_value = v
    elif t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise SchemaError(f"{where} = {v} does not fit in 64 bits")
        out.int_value = v
    elif t is float:
        out.double_value = v
    elif v is None:
        out.null_value = 0
    elif isinstance(v, (bool, np.bool_)):
        out.bool_value = bool(v)
    elif isinstance(v, (int, np.integer)):
        fill_value(out, int(v), where)
    elif isinstance(v, (float, np.floating)):
        out.double_value = float(v)
    elif isinstance(v, str):
        out.string_value = str(v)
    elif isinstance(v, dt.datetime):
        aware = v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)
        seconds, rem = divmod((aware - _EPOCH) // _US, 1_000_000)
        out.timestamp_value.seconds, out.timestamp_value.nanos = seconds, rem * 1000
    elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
        out.string_list.values.extend(v)
        out.string_list.SetInParent()
    elif isinstance(v, (list, tuple)) and all(
            isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in v):
        out.int_list.values.extend([int(x) for x in v])
        out.int_list.SetInParent()
    else:
        raise SchemaError(f"{where} = {v!r} ({type(v).__name__}) is not a payload value vecdb can "
                          f"carry (int, float, bool, str, datetime, list of str, list of int, None)")


_SCALAR_KINDS = {"int_value", "double_value", "bool_value", "string_value"}


def value_from_pb(v: pb.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind in _SCALAR_KINDS:
        return getattr(v, kind)
    if kind == "timestamp_value":
        ts = v.timestamp_value
        return _EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    if kind == "string_list":
        return list(v.string_list.values)
    if kind == "int_list":
        return list(v.int_list.values)
    return None


def payload_to_pb(p: dict | None, row: int = 0, out: pb.Payload | None = None) -> pb.Payload:
    out = pb.Payload() if out is None else out
    if p is None:
        return out
    if not isinstance(p, dict):
        raise SchemaError(f"payloads[{row}] must be a dict, got {type(p).__name__}")
    fields = out.fields
    for k, v in p.items():
        if type(k) is not str:
            raise SchemaError(f"payloads[{row}] has a non-string field name {k!r}")
        try:
            fill_value(fields[k], v)
        except SchemaError:      # said again with where (building it per value would cost)
            fill_value(pb.Value(), v, f"payloads[{row}].{k}")
    return out


def payload_from_pb(p: pb.Payload, keep_nulls: bool = False) -> dict:
    """A payload dict; null fields are left out unless ``keep_nulls`` (update_payload clears)."""
    out = {}
    for k, v in p.fields.items():
        kind = v.WhichOneof("kind")
        if kind in _SCALAR_KINDS:
            out[k] = getattr(v, kind)
        elif kind is None or kind == "null_value":
            if keep_nulls:
                out[k] = None
        else:
            out[k] = value_from_pb(v)
    return out


def payloads_to_pb(payloads: Sequence[dict | None] | None, repeated, n: int | None = None) -> None:
    """Fill a repeated ``Payload`` field from a list of dicts (None: no payloads at all)."""
    if payloads is None:
        return
    if isinstance(payloads, dict) or not hasattr(payloads, "__len__"):
        raise SchemaError(f"payloads must be a list of dicts, one per id, got {type(payloads).__name__}")
    if n is not None and len(payloads) != n:
        raise SchemaError(f"got {len(payloads)} payloads for {n} ids")
    for row, p in enumerate(payloads):
        payload_to_pb(p, row, repeated.add())


def value_map_to_pb(d: dict | None, target, what: str) -> None:
    """A dict of scalars (index config, search params) into a ``map<string, Value>``."""
    if d is None:
        return
    if not isinstance(d, dict):
        raise InvalidArgument(f"{what} must be a dict, got {type(d).__name__}")
    for k, v in d.items():
        target[str(k)].CopyFrom(value_to_pb(v, f"{what}[{k!r}]"))


def value_map_from_pb(m) -> dict:
    return {k: value_from_pb(v) for k, v in m.items()}


# ---- results -----------------------------------------------------------------------------

def records_from_pb(r: pb.Records) -> list[Record]:
    ids = ids_from_pb(r.ids)
    vecs = vectors_from_pb(r.vectors) if r.HasField("vectors") else None
    payloads = r.payloads
    return [Record(rid, None if vecs is None else vecs[i].copy(),
                   payload_from_pb(payloads[i]) if payloads else {}) for i, rid in enumerate(ids)]


def records_to_pb(records: Sequence[Record], out: pb.Records, with_vectors: bool = True) -> pb.Records:
    out.ids.CopyFrom(ids_to_pb([r.id for r in records]))
    if with_vectors and records and records[0].vector is not None:
        out.vectors.CopyFrom(vectors_to_pb(np.stack([r.vector for r in records])))
    if any(r.payload for r in records):
        for r in records:
            payload_to_pb(r.payload, out=out.payloads.add())
    return out


def hits_from_pb(results) -> list[list[Hit]]:
    out = []
    for q in results:
        ids = ids_from_pb(q.ids)
        scores = list(q.scores)
        if q.payloads:
            out.append([Hit(i, s, payload_from_pb(p)) for i, s, p in zip(ids, scores, q.payloads)])
        else:
            out.append([Hit(i, s, {}) for i, s in zip(ids, scores)])
    return out


def plan_from_json(text: str) -> list[dict]:
    return json.loads(text) if text else []
