"""The synchronous client: ``Client`` mirrors ``vecdb.Database``, ``RemoteCollection`` mirrors
``vecdb.Collection`` (same arguments, same return types, same error classes)."""
from __future__ import annotations

import threading
import time
from typing import Iterable, Iterator

import grpc

from vecdb_client import channel
from vecdb_client._proto import (admin_pb2_grpc, collection_pb2, collection_pb2_grpc,
                                 data_pb2_grpc, search_pb2_grpc)
from vecdb_client.errors import VecdbError
from vecdb_client.operations import CollectionOps, DatabaseOps, ack, batch_request, info_dict
from vecdb_client.types import UpsertAck

_STUBS = {"collection": collection_pb2_grpc.CollectionServiceStub, "data": data_pb2_grpc.DataServiceStub,
          "search": search_pb2_grpc.SearchServiceStub, "admin": admin_pb2_grpc.AdminServiceStub}


class Client(DatabaseOps):
    """A connection to a vecdb server.

    ``address`` is ``host:port``; ``api_key`` is sent as ``authorization: Bearer``; ``tls``
    True (system roots) or PEM root certificates (also ``root_certs=``); ``timeout`` is each
    call's deadline in seconds (None: none); ``retries`` how often a call is retried, with
    exponential backoff, when the server is UNAVAILABLE (no other status is retried).
    """

    def __init__(self, address: str, *, api_key: str | None = None, tls: bool | bytes = False,
                 root_certs: bytes | None = None, timeout: float | None = None, retries: int = 3):
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self._metadata = channel.metadata(api_key)
        self._channel = channel.open_channel(grpc, address, tls, root_certs)
        self._stubs = {k: stub(self._channel) for k, stub in _STUBS.items()}

    def _invoke(self, service: str, method: str, request, parse):
        fn = getattr(self._stubs[service], method)
        attempt = 0
        while True:
            try:
                return parse(fn(request, metadata=self._metadata, timeout=self.timeout))
            except grpc.RpcError as e:
                attempt += 1
                if channel.retryable(e) and attempt <= self.retries:
                    time.sleep(channel.backoff(attempt))
                    continue
                raise channel.to_error(e) from None

    def _collection(self, name: str, info=None) -> "RemoteCollection":
        return RemoteCollection(self, name, info)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.address!r})"


class RemoteCollection(CollectionOps):
    """A collection on a server; its description is fetched on first use of a property."""

    def _describe(self, refresh: bool = False) -> dict:
        if self._info is None or refresh:
            self._info = self._invoke("collection", "GetCollection",
                                      collection_pb2.GetCollectionRequest(name=self._name), lambda i: i)
        return info_dict(self._info)

    @property
    def dim(self) -> int:
        return self._describe()["dim"]

    @property
    def metric(self) -> str:
        return self._describe()["metric"]

    @property
    def id_type(self) -> str | None:
        """'string' or 'int64'; None until the first write fixes it (asked again until then)."""
        return self._describe()["id_type"] or self._describe(refresh=True)["id_type"]

    @property
    def schema(self) -> dict[str, str]:
        return self._describe()["schema"]

    @property
    def version(self) -> int:
        """The manifest version: the pinned one for an ``at_version`` view, else the current one."""
        return self._version if self._version is not None else self._describe(refresh=True)["version"]

    def upsert_stream(self, batches: Iterable, *, window: int = 2) -> Iterator[UpsertAck]:
        """Stream batches (``(ids, vectors[, payloads])`` or dicts); yields one ``UpsertAck`` per
        batch, in order, once it is durable. At most ``window`` batches are unacknowledged."""
        self._writable()
        credit = threading.Semaphore(max(1, window))
        failure: list[VecdbError] = []
        done = threading.Event()

        def requests():
            for batch in batches:
                try:
                    req = batch_request(self._name, batch)
                except VecdbError as e:      # reported after the acks of the batches before it
                    failure.append(e)
                    return
                while not credit.acquire(timeout=0.1):
                    if done.is_set():
                        return
                yield req

        client = self._client
        call = client._stubs["data"].UpsertStream(requests(), metadata=client._metadata, timeout=client.timeout)
        try:
            for a in call:
                credit.release()
                yield ack(a)
        except grpc.RpcError as e:
            raise channel.to_error(e) from None
        finally:
            done.set()
            call.cancel()
        if failure:
            raise failure[0]
