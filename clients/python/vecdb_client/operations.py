"""The Database and Collection operations as request builders and response parsers, written
once for both clients: each method builds its request and hands it to ``self._invoke`` (the
sync client returns the parsed answer, the async one a coroutine of it)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vecdb_client import codec
from vecdb_client._proto import (admin_pb2, collection_pb2, common_pb2, data_pb2, search_pb2)
from vecdb_client.errors import InvalidArgument, Unavailable
from vecdb_client.types import UpsertAck

_UINT32 = (1 << 32) - 1


def _is_arrow(x) -> bool:
    return type(x).__module__.split(".")[0] == "pyarrow" and hasattr(x, "schema")


def _arrow_ipc(table) -> bytes:
    import pyarrow as pa
    sink = pa.BufferOutputStream()
    batches = [table] if isinstance(table, pa.RecordBatch) else table.to_batches()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for b in batches:
            writer.write_batch(b)
    return sink.getvalue().to_pybytes()


def _uint(value, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= _UINT32:
        raise InvalidArgument(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def _filter(value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"filter must be a string, got {type(value).__name__}")
    return value


def _fields(msg, output_fields) -> None:
    if output_fields is None:
        return
    if isinstance(output_fields, str):
        raise InvalidArgument("output_fields must be a list of field names, not a string")
    msg.output_fields.SetInParent()
    msg.output_fields.names.extend(list(output_fields))


def upsert_request(name: str, ids, vectors, payloads) -> data_pb2.UpsertRequest:
    """A validated-enough ``UpsertRequest``: shapes and types; the server checks the rest."""
    if ids is None or vectors is None:
        raise InvalidArgument("upsert needs ids and vectors (or one pyarrow Table)")
    req = data_pb2.UpsertRequest(collection=name)
    req.ids.CopyFrom(codec.ids_to_pb(ids))
    req.vectors.CopyFrom(codec.vectors_to_pb(vectors))
    codec.payloads_to_pb(payloads, req.payloads, len(ids))
    return req


def batch_request(name: str, batch) -> data_pb2.UpsertRequest:
    """One streamed batch: ``(ids, vectors[, payloads])`` or a dict with those keys."""
    if isinstance(batch, dict):
        return upsert_request(name, batch.get("ids"), batch.get("vectors"), batch.get("payloads"))
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        return upsert_request(name, *batch) if len(batch) == 3 else upsert_request(name, *batch, None)
    raise InvalidArgument(f"a streamed batch is (ids, vectors[, payloads]) or a dict, got {type(batch).__name__}")


def ack(a: data_pb2.UpsertAck) -> UpsertAck:
    return UpsertAck(a.seq, a.rows)


def info_dict(info: common_pb2.CollectionInfo) -> dict[str, Any]:
    return {"name": info.name, "dim": info.dim, "metric": info.metric, "id_type": info.id_type or None,
            "schema": dict(info.schema), "index": codec.value_map_from_pb(info.index),
            "version": info.version}


def _versions(r: admin_pb2.ListVersionsResponse) -> list[dict]:
    return [{"version": v.version, "created_at": v.created_at, "rows": v.rows, "segments": v.segments}
            for v in r.versions]


class DatabaseOps:
    """The Database surface; subclasses supply ``_invoke`` and ``_collection``."""

    def _invoke(self, service: str, method: str, request, parse):
        raise NotImplementedError

    def _collection(self, name: str, info=None):
        raise NotImplementedError

    def _create_request(self, name, dim, metric, schema, id_type, index):
        req = collection_pb2.CreateCollectionRequest(name=name, dim=_uint(dim, "dim"), metric=metric,
                                                     id_type=id_type or "")
        if schema:
            req.schema.update(schema)
        codec.value_map_to_pb(index, req.index, "index")
        return req

    def create_collection(self, name: str, dim: int, metric: str = "cosine", *,
                          schema: dict[str, str] | None = None, id_type: str | None = None,
                          index: dict | None = None):
        """Create a collection; ``AlreadyExists`` if the name is taken."""
        req = self._create_request(name, dim, metric, schema, id_type, index)
        return self._invoke("collection", "CreateCollection", req, lambda i: self._collection(i.name, i))

    def get_or_create_collection(self, name: str, dim: int, metric: str = "cosine", *,
                                 schema: dict[str, str] | None = None, id_type: str | None = None,
                                 index: dict | None = None):
        """The collection if it exists (same dim and metric), else a new one."""
        req = self._create_request(name, dim, metric, schema, id_type, index)
        return self._invoke("collection", "GetOrCreateCollection", req, lambda i: self._collection(i.name, i))

    def get_collection(self, name: str):
        """The named collection (its description fetched now); ``CollectionNotFound``."""
        return self._invoke("collection", "GetCollection", collection_pb2.GetCollectionRequest(name=name),
                            lambda i: self._collection(i.name, i))

    def list_collections(self) -> list[str]:
        return self._invoke("collection", "ListCollections", collection_pb2.ListCollectionsRequest(),
                            lambda r: list(r.names))

    def drop_collection(self, name: str) -> None:
        return self._invoke("collection", "DropCollection", collection_pb2.DropCollectionRequest(name=name),
                            lambda r: None)

    def restore(self, source: str, name: str):
        """Restore a snapshot at ``source`` (a path on the server's machine) as ``name``."""
        return self._invoke("admin", "Restore", admin_pb2.RestoreRequest(source=str(source), name=name),
                            lambda i: self._collection(i.name, i))

    def collection(self, name: str):
        """A handle on ``name`` without a round trip (errors surface on first use)."""
        return self._collection(name)


class CollectionOps:
    """The Collection surface over the wire; ``version`` set means a read-only view."""

    def __init__(self, client, name: str, info: common_pb2.CollectionInfo | None = None,
                 version: int | None = None):
        self._client = client
        self._name = name
        self._info = info
        self._version = version

    def _invoke(self, service: str, method: str, request, parse):
        return self._client._invoke(service, method, request, parse)

    def __repr__(self) -> str:
        at = f", version={self._version}" if self._version is not None else ""
        return f"{type(self).__name__}({self._name!r}{at})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def read_only(self) -> bool:
        return self._version is not None

    def _writable(self) -> None:
        if self._version is not None:
            raise Unavailable(f"collection {self._name!r} is a read-only view at version {self._version}")

    def _with_version(self, req):
        if self._version is not None:
            req.version = self._version
        return req

    # ---- writes ------------------------------------------------------------------------

    def upsert(self, ids=None, vectors=None, payloads: Sequence[dict | None] | None = None):
        """Insert or replace rows: ``upsert(ids, vectors, payloads)`` or ``upsert(table)`` (a
        pyarrow Table or RecordBatch, sent as Arrow IPC). Returns the rows written."""
        self._writable()
        if _is_arrow(ids):
            if vectors is not None or payloads is not None:
                raise InvalidArgument("pass either a table or ids/vectors/payloads, not both")
            req = data_pb2.UpsertArrowRequest(collection=self._name, arrow_ipc=_arrow_ipc(ids))
            return self._invoke("data", "UpsertArrow", req, lambda r: r.rows)
        return self._invoke("data", "Upsert", upsert_request(self._name, ids, vectors, payloads), lambda r: r.rows)

    def delete(self, ids: Sequence | None = None, *, filter: str | None = None):
        """Delete rows by ids or by filter (exactly one); returns how many were deleted."""
        self._writable()
        if (ids is None) == (filter is None):
            raise InvalidArgument("delete needs exactly one of ids= or filter=")
        req = data_pb2.DeleteRequest(collection=self._name)
        if ids is not None:
            req.ids.CopyFrom(codec.ids_to_pb(ids))
            req.ids.SetInParent()
        else:
            req.filter = _filter(filter)
        return self._invoke("data", "Delete", req, lambda r: r.deleted)

    def update_payload(self, ids: Sequence, payloads: dict | Sequence[dict | None]):
        """Merge the given fields into rows (None clears a field), one dict per id or one dict
        for every id; vectors are unchanged. Returns rows updated."""
        self._writable()
        req = data_pb2.UpdatePayloadRequest(collection=self._name)
        req.ids.CopyFrom(codec.ids_to_pb(ids))
        if isinstance(payloads, dict):
            codec.payload_to_pb(payloads, out=req.every)
            req.every.SetInParent()
        else:
            codec.payloads_to_pb(payloads, req.payloads, len(ids))
        return self._invoke("data", "UpdatePayload", req, lambda r: r.updated)

    def flush(self):
        """Seal recent writes into a segment; returns the manifest version."""
        self._writable()
        return self._invoke("admin", "Flush", admin_pb2.CollectionRequest(collection=self._name), lambda r: r.version)

    def compact(self):
        self._writable()
        return self._invoke("admin", "Compact", admin_pb2.CollectionRequest(collection=self._name),
                            lambda r: json.loads(r.json))

    def snapshot(self, path: str | Path):
        """A consistent copy at ``path`` on the server's machine (relative: under its data dir)."""
        return self._invoke("admin", "Snapshot", admin_pb2.SnapshotRequest(collection=self._name, path=str(path)),
                            lambda r: Path(r.path))

    # ---- reads -------------------------------------------------------------------------

    def count(self, filter: str | None = None, *, version: int | None = None):
        req = self._with_version(data_pb2.CountRequest(collection=self._name))
        if filter is not None:
            req.filter = _filter(filter)
        if version is not None:
            req.version = version
        return self._invoke("data", "Count", req, lambda r: r.count)

    def get(self, ids: Sequence, *, version: int | None = None):
        """Stored rows for ``ids`` in the order asked; absent ids are left out."""
        req = self._with_version(data_pb2.GetRequest(collection=self._name))
        req.ids.CopyFrom(codec.ids_to_pb(ids))
        if version is not None:
            req.version = version
        return self._invoke("data", "Get", req, codec.records_from_pb)

    def scroll(self, filter: str | None = None, *, limit: int = 100, cursor: str | None = None,
               output_fields: Sequence[str] | None = None, with_vectors: bool = False,
               version: int | None = None):
        """A page of rows matching ``filter`` and the cursor of the next page (None at the end)."""
        req = self._with_version(data_pb2.ScrollRequest(collection=self._name, limit=_uint(limit, "limit"),
                                                        with_vectors=bool(with_vectors)))
        if filter is not None:
            req.filter = _filter(filter)
        if cursor is not None:
            req.cursor = cursor
        if version is not None:
            req.version = version
        _fields(req, output_fields)
        return self._invoke("data", "Scroll", req, lambda r: (
            codec.records_from_pb(r.records), r.next_cursor if r.HasField("next_cursor") else None))

    def search(self, queries, k: int = 10, *, filter: str | None = None,
               output_fields: Sequence[str] | None = None, params: dict | None = None,
               explain: bool = False, version: int | None = None):
        """Top-k, best first: one list of ``Hit`` for a single (dim,) vector, one list per
        query row for a (q, dim) batch (as the embedded API); with ``explain=True``,
        ``(hits, plan)``."""
        single = codec.is_single_vector(queries)
        req = self._with_version(search_pb2.SearchRequest(collection=self._name, k=_uint(k, "k", low=0),
                                                          explain=bool(explain)))
        req.queries.CopyFrom(codec.vectors_to_pb(queries, "queries"))
        if filter is not None:
            req.filter = _filter(filter)
        if version is not None:
            req.version = version
        _fields(req, output_fields)
        codec.value_map_to_pb(params, req.params, "params")
        def hits(r):
            out = codec.hits_from_pb(r.results)
            return out[0] if single else out
        if explain:
            return self._invoke("search", "Search", req, lambda r: (hits(r), codec.plan_from_json(r.plan_json)))
        return self._invoke("search", "Search", req, hits)

    def stats(self):
        return self._invoke("admin", "Stats", admin_pb2.CollectionRequest(collection=self._name),
                            lambda r: json.loads(r.json))

    def list_versions(self):
        return self._invoke("admin", "ListVersions", admin_pb2.CollectionRequest(collection=self._name), _versions)

    def at_version(self, version: int):
        """A read-only handle whose reads are as of manifest ``version`` (time travel)."""
        return type(self)(self._client, self._name, self._info, _uint(version, "version"))

    def close(self) -> None:
        """Nothing to release remotely (present so code written for the engine runs unchanged)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
