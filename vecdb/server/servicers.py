"""The four vecdb.v1 services: convert the request, call the engine in the pool, convert back.

Every method runs inside ``Gate.call`` (auth, limits, error table, metrics) and does its engine
work through ``Gate.run`` (thread pool, deadline checks).
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from vecdb.collection import MAX_K
from vecdb.errors import InvalidArgument, ResourceExhausted
from vecdb.server import convert
from vecdb.server.gate import Gate
from vecdb_client import codec
from vecdb_client._proto import (admin_pb2, admin_pb2_grpc, collection_pb2, collection_pb2_grpc,
                                 common_pb2, data_pb2, data_pb2_grpc, search_pb2, search_pb2_grpc)


class _Base:
    def __init__(self, gate: Gate, max_batch_rows: int, max_k: int):
        self.gate = gate
        self.max_batch_rows = max_batch_rows
        self.max_k = max_k

    @property
    def db(self):
        return self.gate.database

    def collection(self, name: str):
        """The named collection (engine call; run it in the pool)."""
        if not name:
            raise InvalidArgument("collection name is empty")
        col = self.db.get_collection(name)
        self.gate.touched.add(name)
        return col

    def check_rows(self, n: int) -> None:
        if n > self.max_batch_rows:
            raise ResourceExhausted(f"batch of {n} rows exceeds the server's limit max_batch_rows="
                                    f"{self.max_batch_rows}; split it")

    def read(self, name: str, version: int | None, method: str, *args, **kwargs):
        """A read on the named collection, as of ``version`` when given (time travel)."""
        return getattr(self.collection(name), method)(*args, version=version, **kwargs)


STREAM_WINDOW = 2      # streamed batches received ahead of the one being written
_END = object()


async def _receive(requests, window: asyncio.Queue) -> None:
    """Move the incoming stream into ``window`` (blocking when it is full), then ``_END``."""
    try:
        async for request in requests:
            await window.put(request)
    finally:
        await window.put(_END)


class CollectionServicer(_Base, collection_pb2_grpc.CollectionServiceServicer):
    def _create(self, request, get_or_create: bool):
        kwargs = dict(metric=request.metric or "cosine", schema=dict(request.schema) or None,
                      id_type=request.id_type or None,
                      index=codec.value_map_from_pb(request.index) or None)
        fn = self.db.get_or_create_collection if get_or_create else self.db.create_collection
        return convert.collection_info(fn(request.name, int(request.dim), **kwargs))

    async def CreateCollection(self, request, context):
        async with self.gate.call("CreateCollection", context):
            return await self.gate.run(context, self._create, request, False)

    async def GetOrCreateCollection(self, request, context):
        async with self.gate.call("GetOrCreateCollection", context):
            return await self.gate.run(context, self._create, request, True)

    async def GetCollection(self, request, context):
        async with self.gate.call("GetCollection", context):
            return await self.gate.run(context, lambda: convert.collection_info(self.collection(request.name)))

    async def ListCollections(self, request, context):
        async with self.gate.call("ListCollections", context):
            names = await self.gate.run(context, self.db.list_collections)
            return collection_pb2.ListCollectionsResponse(names=names)

    async def DropCollection(self, request, context):
        async with self.gate.call("DropCollection", context):
            await self.gate.run(context, self.db.drop_collection, request.name)
            self.gate.touched.discard(request.name)
            return collection_pb2.DropCollectionResponse()


class DataServicer(_Base, data_pb2_grpc.DataServiceServicer):
    def _upsert(self, name: str, request) -> int:
        ids = codec.ids_from_pb(request.ids)
        self.check_rows(max(len(ids), request.vectors.rows))
        vectors = codec.vectors_from_pb(request.vectors)
        payloads = [codec.payload_from_pb(p) for p in request.payloads] if request.payloads else None
        return self.collection(name).upsert(ids, vectors, payloads)

    async def Upsert(self, request, context):
        async with self.gate.call("Upsert", context):
            rows = await self.gate.run(context, self._upsert, request.collection, request)
            return data_pb2.UpsertResponse(rows=rows)

    async def UpsertStream(self, request_iterator, context):
        # Flow control: a reader receives at most STREAM_WINDOW batches ahead (so the transfer
        # of the next overlaps the engine's write of this one) while batches are applied one at
        # a time, in order, each acknowledged once the engine's upsert returned (durable).
        async with self.gate.call("UpsertStream", context):
            window: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)
            reader = asyncio.create_task(_receive(request_iterator, window))
            try:
                name, seq = "", 0
                while (request := await window.get()) is not _END:
                    name = request.collection or name
                    rows = await self.gate.run(context, self._upsert, name, request)
                    yield data_pb2.UpsertAck(seq=seq, rows=rows)
                    seq += 1
                await reader                    # re-raises a failure of the incoming stream
            finally:
                reader.cancel()

    def _upsert_arrow(self, request) -> int:
        table = convert.arrow_table(request.arrow_ipc)
        self.check_rows(table.num_rows)
        return self.collection(request.collection).upsert(table)

    async def UpsertArrow(self, request, context):
        async with self.gate.call("UpsertArrow", context):
            rows = await self.gate.run(context, self._upsert_arrow, request)
            return data_pb2.UpsertResponse(rows=rows)

    async def Get(self, request, context):
        async with self.gate.call("Get", context):
            records = await self.gate.run(context, self.read, request.collection,
                                          convert.optional(request, "version"), "get",
                                          codec.ids_from_pb(request.ids))
            return codec.records_to_pb(records, common_pb2.Records())

    async def Delete(self, request, context):
        async with self.gate.call("Delete", context):
            which = request.WhichOneof("selector")
            ids = codec.ids_from_pb(request.ids) if which == "ids" else None
            flt = request.filter if which == "filter" else None
            deleted = await self.gate.run(context, lambda: self.collection(request.collection).delete(ids, filter=flt))
            return data_pb2.DeleteResponse(deleted=deleted)

    async def Count(self, request, context):
        async with self.gate.call("Count", context):
            n = await self.gate.run(context, self.read, request.collection,
                                    convert.optional(request, "version"), "count",
                                    convert.optional(request, "filter"))
            return data_pb2.CountResponse(count=n)

    async def Scroll(self, request, context):
        async with self.gate.call("Scroll", context):
            records, cursor = await self.gate.run(
                context, self.read, request.collection, convert.optional(request, "version"), "scroll",
                convert.optional(request, "filter"), limit=request.limit or 100,
                cursor=convert.optional(request, "cursor"), output_fields=convert.field_list(request),
                with_vectors=request.with_vectors)
            out = data_pb2.ScrollResponse()
            codec.records_to_pb(records, out.records, with_vectors=request.with_vectors)
            if cursor is not None:
                out.next_cursor = cursor
            return out

    async def UpdatePayload(self, request, context):
        async with self.gate.call("UpdatePayload", context):
            ids = codec.ids_from_pb(request.ids)
            self.check_rows(len(ids))
            if request.HasField("every"):
                payloads = codec.payload_from_pb(request.every, keep_nulls=True)
            else:
                payloads = [codec.payload_from_pb(p, keep_nulls=True) for p in request.payloads]
            n = await self.gate.run(context, lambda: self.collection(request.collection).update_payload(ids, payloads))
            return data_pb2.UpdatePayloadResponse(updated=n)


class SearchServicer(_Base, search_pb2_grpc.SearchServiceServicer):
    async def Search(self, request, context):
        async with self.gate.call("Search", context):
            k = request.k
            if k > self.max_k and self.max_k < MAX_K:
                raise ResourceExhausted(f"k={k} exceeds the server's limit max_k={self.max_k}")
            queries = codec.vectors_from_pb(request.queries, "queries")
            self.check_rows(len(queries))
            params = codec.value_map_from_pb(request.params) or None
            result = await self.gate.run(
                context, self.read, request.collection, convert.optional(request, "version"), "search",
                queries, k, filter=convert.optional(request, "filter"),
                output_fields=convert.field_list(request), params=params, explain=request.explain)
            hits, plan = result if request.explain else (result, None)
            out = search_pb2.SearchResponse()
            convert.hits_to_pb(hits, out)
            if plan is not None:
                out.plan_json = convert.to_json(plan)
            return out


class AdminServicer(_Base, admin_pb2_grpc.AdminServiceServicer):
    def _path(self, path: str) -> Path:
        """A server-side path; relative ones are relative to the data directory."""
        if not path:
            raise InvalidArgument("path is empty")
        p = Path(path)
        return p if p.is_absolute() else self.db.path / p

    async def Flush(self, request, context):
        async with self.gate.call("Flush", context):
            v = await self.gate.run(context, lambda: self.collection(request.collection).flush())
            return admin_pb2.FlushResponse(version=v)

    async def Compact(self, request, context):
        async with self.gate.call("Compact", context):
            done = await self.gate.run(context, lambda: self.collection(request.collection).compact())
            return admin_pb2.JsonResponse(json=convert.to_json(done))

    async def Snapshot(self, request, context):
        async with self.gate.call("Snapshot", context):
            path = await self.gate.run(
                context, lambda: self.collection(request.collection).snapshot(self._path(request.path)))
            return admin_pb2.SnapshotResponse(path=str(path))

    async def Restore(self, request, context):
        async with self.gate.call("Restore", context):
            return await self.gate.run(
                context, lambda: convert.collection_info(self.db.restore(self._path(request.source), request.name)))

    async def Stats(self, request, context):
        async with self.gate.call("Stats", context):
            stats = await self.gate.run(context, lambda: self.collection(request.collection).stats())
            return admin_pb2.JsonResponse(json=convert.to_json(stats))

    async def ListVersions(self, request, context):
        async with self.gate.call("ListVersions", context):
            versions = await self.gate.run(context, lambda: self.collection(request.collection).list_versions())
            return admin_pb2.ListVersionsResponse(versions=[
                admin_pb2.VersionInfo(version=v["version"], created_at=float(v["created_at"] or 0),
                                      rows=v["rows"], segments=v["segments"]) for v in versions])
