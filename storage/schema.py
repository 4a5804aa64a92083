"""Collection schema: payload field types and the Arrow schema of rows (pure, no I/O).

Every row has ``id`` (string or int64), ``vector`` (FixedSizeList<float32, dim>) and one
nullable column per payload field.
"""
from __future__ import annotations

import re

import pyarrow as pa

from vecdb.errors import SchemaError

ID = "id"
VECTOR = "vector"
RESERVED = frozenset({ID, VECTOR})
ID_TYPES = ("string", "int64")
METRICS = ("cosine", "dot", "l2")

FIELD_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "list<string>": pa.list_(pa.string()),
    "list<int64>": pa.list_(pa.int64()),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_payload_schema(schema: dict[str, str] | None) -> dict[str, str]:
    """Validate a user payload schema; returns a normalised copy."""
    if schema is None:
        return {}
    if not isinstance(schema, dict):
        raise SchemaError(f"schema must be a dict of field name -> type, got {type(schema).__name__}")
    out = {}
    for name, typ in schema.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise SchemaError(f"field name {name!r} must match [A-Za-z_][A-Za-z0-9_]* (at most 128 chars)")
        if name in RESERVED or name.startswith("_"):
            raise SchemaError(f"field name {name!r} is reserved")
        if typ not in FIELD_TYPES:
            raise SchemaError(f"field {name!r} has unknown type {typ!r} (types: {', '.join(FIELD_TYPES)})")
        out[name] = typ
    return out


def id_arrow_type(id_type: str) -> pa.DataType:
    return pa.string() if id_type == "string" else pa.int64()


def row_schema(dim: int, id_type: str, payload: dict[str, str]) -> pa.Schema:
    """The Arrow schema of sealed segments: id, vector, payload fields in schema order."""
    fields = [pa.field(ID, id_arrow_type(id_type), nullable=False),
              pa.field(VECTOR, pa.list_(pa.float32(), dim), nullable=False)]
    fields += [pa.field(n, FIELD_TYPES[t]) for n, t in payload.items()]
    return pa.schema(fields)


def payload_schema(id_type: str, payload: dict[str, str]) -> pa.Schema:
    """The Arrow schema of WAL upsert batches and memtable batches (vectors kept apart)."""
    return pa.schema([pa.field(ID, id_arrow_type(id_type), nullable=False)]
                     + [pa.field(n, FIELD_TYPES[t]) for n, t in payload.items()])
