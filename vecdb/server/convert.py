"""Engine results -> vecdb.v1 messages, and request fields -> engine arguments (server side).

The value-level codec (vectors, ids, payload values) is ``vecdb_client.codec``, shared with the
client; this module adds what only the server builds: collection descriptions, hits, Arrow
tables from IPC bytes.
"""
from __future__ import annotations

import json

import pyarrow as pa

from vecdb.errors import InvalidArgument
from vecdb_client import codec
from vecdb_client._proto import common_pb2, search_pb2

_SCALARS = (bool, int, float, str, type(None))


def collection_info(col, out: common_pb2.CollectionInfo | None = None) -> common_pb2.CollectionInfo:
    """A Collection's description; the index config is read from its manifest."""
    out = common_pb2.CollectionInfo() if out is None else out
    manifest = col._store.manifest          # the one place the server reads the index config
    out.name, out.dim, out.metric = col.name, col.dim, col.metric
    out.id_type = col.id_type or ""
    out.schema.update(col.schema)
    codec.value_map_to_pb({k: v for k, v in dict(manifest.index).items() if isinstance(v, _SCALARS)},
                          out.index, "index")
    out.version = col.version
    return out


def hits_to_pb(hits, response: search_pb2.SearchResponse) -> None:
    """One ``QueryHits`` per query; payloads only when some hit carries one."""
    for row in hits:
        q = response.results.add()
        if not row:
            continue
        q.ids.CopyFrom(codec.ids_to_pb([h[0] for h in row]))
        q.scores.extend([h[1] for h in row])
        if any(h[2] for h in row):
            for h in row:
                codec.payload_to_pb(h[2], out=q.payloads.add())


def optional(msg, field: str):
    """A proto3 ``optional`` field's value, or None when unset."""
    return getattr(msg, field) if msg.HasField(field) else None


def field_list(msg, field: str = "output_fields") -> list[str] | None:
    return list(getattr(msg, field).names) if msg.HasField(field) else None


def arrow_table(data: bytes) -> pa.Table:
    """An Arrow IPC stream's batches as one table, without copying the buffers."""
    try:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        raise InvalidArgument(f"arrow_ipc is not a valid Arrow IPC stream: {e}") from None


def to_json(value) -> str:
    return json.dumps(value, default=str)
