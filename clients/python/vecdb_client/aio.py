"""The asyncio client (grpc.aio): ``AsyncClient`` mirrors ``Client``; every method is awaited."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Iterable

import grpc

from vecdb_client import channel
from vecdb_client.client import _STUBS
from vecdb_client.errors import InvalidArgument, VecdbError
from vecdb_client.operations import CollectionOps, DatabaseOps, ack, batch_request, info_dict
from vecdb_client.types import UpsertAck


class AsyncClient(DatabaseOps):
    """Like ``Client`` (same arguments), over grpc.aio; use ``async with`` or ``await close()``."""

    def __init__(self, address: str, *, api_key: str | None = None, tls: bool | bytes = False,
                 root_certs: bytes | None = None, timeout: float | None = None, retries: int = 3):
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self._metadata = channel.metadata(api_key)
        self._channel = channel.open_channel(grpc.aio, address, tls, root_certs)
        self._stubs = {k: stub(self._channel) for k, stub in _STUBS.items()}

    async def _invoke(self, service: str, method: str, request, parse):
        fn = getattr(self._stubs[service], method)
        attempt = 0
        while True:
            try:
                return parse(await fn(request, metadata=self._metadata, timeout=self.timeout))
            except grpc.RpcError as e:
                attempt += 1
                if channel.retryable(e) and attempt <= self.retries:
                    await asyncio.sleep(channel.backoff(attempt))
                    continue
                raise channel.to_error(e) from None

    def _collection(self, name: str, info=None) -> "AsyncRemoteCollection":
        return AsyncRemoteCollection(self, name, info)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class AsyncRemoteCollection(CollectionOps):
    """A collection on a server, for asyncio. Properties come from the description fetched by
    ``get_collection`` / ``create_collection``; a ``collection(name)`` handle needs
    ``await col.describe()`` first."""

    async def describe(self) -> dict:
        from vecdb_client._proto import collection_pb2
        self._info = await self._invoke("collection", "GetCollection",
                                        collection_pb2.GetCollectionRequest(name=self._name), lambda i: i)
        return info_dict(self._info)

    def _described(self) -> dict:
        if self._info is None:
            raise InvalidArgument(f"collection {self._name!r}: await describe() before reading its properties")
        return info_dict(self._info)

    dim = property(lambda self: self._described()["dim"])
    metric = property(lambda self: self._described()["metric"])
    id_type = property(lambda self: self._described()["id_type"])
    schema = property(lambda self: self._described()["schema"])

    async def upsert_stream(self, batches: Iterable, *, window: int = 2) -> AsyncIterator[UpsertAck]:
        """Async twin of ``RemoteCollection.upsert_stream``; ``batches`` may be sync or async."""
        self._writable()
        credit = asyncio.Semaphore(max(1, window))
        failure: list[VecdbError] = []

        async def requests():
            source = batches if hasattr(batches, "__aiter__") else _aiter(batches)
            async for batch in source:
                try:
                    req = batch_request(self._name, batch)
                except VecdbError as e:
                    failure.append(e)
                    return
                await credit.acquire()
                yield req

        client = self._client
        call = client._stubs["data"].UpsertStream(requests(), metadata=client._metadata, timeout=client.timeout)
        try:
            async for a in call:
                credit.release()
                yield ack(a)
        except grpc.RpcError as e:
            raise channel.to_error(e) from None
        if failure:
            raise failure[0]


async def _aiter(items: Iterable):
    for item in items:
        yield item
