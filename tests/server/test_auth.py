"""API keys: every RPC x (no key, wrong key, read-only key, read-write key); health stays open."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import vecdb
from tests.server.harness import InProcessServer
from vecdb.server.auth import WRITE_METHODS, Authenticator
from vecdb_client import Client, codec
from vecdb_client._proto import (admin_pb2, admin_pb2_grpc, collection_pb2, collection_pb2_grpc,
                                 data_pb2, data_pb2_grpc, search_pb2, search_pb2_grpc)

RW, RO = "rw-secret-key", "ro-secret-key"


def _calls(channel):
    """Each RPC with a request that is valid enough to reach the engine."""
    c, d = collection_pb2_grpc.CollectionServiceStub(channel), data_pb2_grpc.DataServiceStub(channel)
    s, a = search_pb2_grpc.SearchServiceStub(channel), admin_pb2_grpc.AdminServiceStub(channel)
    ids = codec.ids_to_pb(["a"])
    vec = codec.vectors_to_pb(np.ones((1, 2), np.float32))
    col = admin_pb2.CollectionRequest(collection="docs")
    return {
        "CreateCollection": lambda md: c.CreateCollection(collection_pb2.CreateCollectionRequest(name="new", dim=2), metadata=md),
        "GetOrCreateCollection": lambda md: c.GetOrCreateCollection(collection_pb2.CreateCollectionRequest(name="docs", dim=2), metadata=md),
        "GetCollection": lambda md: c.GetCollection(collection_pb2.GetCollectionRequest(name="docs"), metadata=md),
        "ListCollections": lambda md: c.ListCollections(collection_pb2.ListCollectionsRequest(), metadata=md),
        "DropCollection": lambda md: c.DropCollection(collection_pb2.DropCollectionRequest(name="nope"), metadata=md),
        "Upsert": lambda md: d.Upsert(data_pb2.UpsertRequest(collection="docs", ids=ids, vectors=vec), metadata=md),
        "UpsertStream": lambda md: list(d.UpsertStream(iter([data_pb2.UpsertRequest(collection="docs", ids=ids, vectors=vec)]), metadata=md)),
        "UpsertArrow": lambda md: d.UpsertArrow(data_pb2.UpsertArrowRequest(collection="docs", arrow_ipc=b"x"), metadata=md),
        "Get": lambda md: d.Get(data_pb2.GetRequest(collection="docs", ids=ids), metadata=md),
        "Delete": lambda md: d.Delete(data_pb2.DeleteRequest(collection="docs", ids=ids), metadata=md),
        "Count": lambda md: d.Count(data_pb2.CountRequest(collection="docs"), metadata=md),
        "Scroll": lambda md: d.Scroll(data_pb2.ScrollRequest(collection="docs"), metadata=md),
        "UpdatePayload": lambda md: d.UpdatePayload(data_pb2.UpdatePayloadRequest(collection="docs", ids=ids, payloads=[codec.payload_to_pb({})]), metadata=md),
        "Search": lambda md: s.Search(search_pb2.SearchRequest(collection="docs", queries=vec, k=1), metadata=md),
        "Flush": lambda md: a.Flush(col, metadata=md),
        "Compact": lambda md: a.Compact(col, metadata=md),
        "Snapshot": lambda md: a.Snapshot(admin_pb2.SnapshotRequest(collection="docs", path="snap"), metadata=md),
        "Restore": lambda md: a.Restore(admin_pb2.RestoreRequest(source="missing-snapshot", name="restored"), metadata=md),
        "Stats": lambda md: a.Stats(col, metadata=md),
        "ListVersions": lambda md: a.ListVersions(col, metadata=md),
    }


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    with InProcessServer(data=str(tmp_path_factory.mktemp("auth")), api_keys=(RW,), read_only_keys=(RO,)) as s:
        with Client(s.address, api_key=RW) as c:
            c.create_collection("docs", dim=2).upsert(["a"], np.ones((1, 2)))
        with grpc.insecure_channel(s.address) as ch:
            yield s, ch


def _code(call, md):
    try:
        call(md)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_every_rpc_is_covered():
    from vecdb.server.app import SERVICES
    names = {m.name for mod, _, _ in SERVICES.values() for svc in mod.DESCRIPTOR.services_by_name.values()
             for m in svc.methods}
    with grpc.insecure_channel("127.0.0.1:1") as ch:
        assert set(_calls(ch)) == names
    assert WRITE_METHODS <= names


@pytest.mark.parametrize("rpc", sorted(_calls(grpc.insecure_channel("127.0.0.1:1"))))
def test_rpc_by_key(secured, rpc):
    _, ch = secured
    call = _calls(ch)[rpc]
    assert _code(call, ()) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(call, (("authorization", "Bearer wrong"),)) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(call, (("authorization", f"Basic {RW}"),)) == grpc.StatusCode.UNAUTHENTICATED
    ro = _code(call, (("authorization", f"Bearer {RO}"),))
    if rpc in WRITE_METHODS:
        assert ro == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert ro == grpc.StatusCode.OK
    rw = _code(call, (("x-api-key", RW),))
    assert rw not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL)


def test_client_errors_and_open_health(secured):
    server, ch = secured
    with Client(server.address) as anon, pytest.raises(vecdb.Unauthenticated, match="API key"):
        anon.list_collections()
    with Client(server.address, api_key=RO) as ro:
        assert ro.get_collection("docs").count() == 1
        with pytest.raises(vecdb.PermissionDenied, match="read-only"):
            ro.collection("docs").upsert(["b"], np.ones((1, 2)))
        assert ro.get_collection("docs").count() == 1
    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_a_key(secured):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    _, ch = secured
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    ask = lambda: iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    with pytest.raises(grpc.RpcError) as info:
        next(stub.ServerReflectionInfo(ask()))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = next(stub.ServerReflectionInfo(ask(), metadata=(("authorization", f"Bearer {RO}"),)))
    assert "vecdb.v1.SearchService" in {s.name for s in reply.list_services_response.service}


def test_authenticator_unit():
    a = Authenticator(["k1"], ["r1"])
    a.check([("authorization", "Bearer k1")], "Upsert")
    a.check([("x-api-key", "r1")], "Search")
    with pytest.raises(vecdb.PermissionDenied):
        a.check([("x-api-key", "r1")], "Upsert")
    with pytest.raises(vecdb.Unauthenticated):
        a.check([("authorization", "Bearer k")], "Search")
    Authenticator().check([], "Upsert")        # no keys configured: open
