"""Service behaviour over the wire: status codes and trailers, health and reflection, internal
errors, limits (deadline, message size, batch rows, k, concurrency), draining, TLS, metrics."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import vecdb
from tests.server.conftest import unique
from tests.server.harness import InProcessServer
from vecdb_client import Client, codec
from vecdb_client._proto import common_pb2, search_pb2, search_pb2_grpc


def _slow(server, name: str, method: str, seconds: float, result=None, error=None):
    """Make the served collection's ``method`` slow (or fail) for this test."""
    col = server.database.get_collection(name)
    real = getattr(col, method)

    def slow(*args, **kwargs):
        time.sleep(seconds)
        if error is not None:
            raise error
        return real(*args, **kwargs) if result is None else result
    setattr(col, method, slow)
    return col


def _wait_in_flight(server, n: int = 1, timeout: float = 10) -> None:
    """Wait until ``n`` calls are admitted and running (rather than sleeping a guessed time)."""
    end = time.monotonic() + timeout
    while server.server.gate.in_flight < n:
        assert time.monotonic() < end, "the call was never admitted"
        time.sleep(0.005)


def test_status_code_and_class_trailer(server):
    with Client(server.address) as c:
        c.create_collection(name := unique(), dim=4)
    with grpc.insecure_channel(server.address) as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        req = search_pb2.SearchRequest(collection=name, queries=codec.vectors_to_pb(np.ones((1, 3))), k=1)
        with pytest.raises(grpc.RpcError) as info:
            stub.Search(req)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "dimension 3" in info.value.details()
        assert dict(info.value.trailing_metadata())["vecdb-error"] == "DimensionMismatch"
        with pytest.raises(grpc.RpcError) as info:
            stub.Search(search_pb2.SearchRequest(collection="nope", queries=req.queries, k=1))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "'nope'" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:     # packed bytes that do not match the shape
            stub.Search(search_pb2.SearchRequest(collection=name, k=1,
                                                 queries=common_pb2.Vectors(data=b"abc", rows=1, dim=4)))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bytes" in info.value.details()


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", "vecdb.v1.SearchService", "vecdb.v1.DataService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        reply = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in reply.list_services_response.service}
        assert {"vecdb.v1.CollectionService", "vecdb.v1.DataService", "vecdb.v1.SearchService",
                "vecdb.v1.AdminService", "grpc.health.v1.Health"} <= names
        reply = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="vecdb.v1.SearchService")])))
        assert reply.file_descriptor_response.file_descriptor_proto


def test_unexpected_error_is_internal_and_logged(server, caplog):
    with Client(server.address) as c:
        col = c.create_collection(name := unique(), dim=2)
        _slow(server, name, "count", 0, error=RuntimeError("boom"))
        with caplog.at_level("ERROR", logger="vecdb.server"):
            with pytest.raises(vecdb.Internal, match="RuntimeError: boom"):
                col.count()
        assert any("INTERNAL" in r.getMessage() and r.exc_info for r in caplog.records)
        assert c.list_collections()                       # still serving


def test_limits(tmp_path):
    with InProcessServer(data=str(tmp_path), max_message_bytes=1 << 20, max_batch_rows=10, max_k=5,
                         max_concurrency=1) as s, Client(s.address, retries=0) as c:
        col = c.create_collection("lim", dim=4)
        with pytest.raises(vecdb.ResourceExhausted, match="max_batch_rows"):
            col.upsert([str(i) for i in range(11)], np.ones((11, 4)))
        assert col.upsert([str(i) for i in range(10)], np.ones((10, 4))) == 10
        with pytest.raises(vecdb.ResourceExhausted, match="max_k"):
            col.search(np.ones((1, 4)), k=6)
        assert len(col.search(np.ones((1, 4)), k=5)[0]) == 5
        with pytest.raises(vecdb.ResourceExhausted):      # gRPC's own message-size check
            col.search(np.ones((70_000, 4)), k=1)
        assert col.count() == 10
        # concurrency: one slow call holds the only slot
        _slow(s, "lim", "count", 1.0)
        first = threading.Thread(target=col.count)
        first.start()
        _wait_in_flight(s)
        with pytest.raises(vecdb.ResourceExhausted, match="in flight"):
            col.search(np.ones((1, 4)), k=1)
        first.join()
        # deadline: the server does not answer a call whose deadline has passed
        with Client(s.address, timeout=0.2, retries=0) as hurried:
            t0 = time.perf_counter()
            with pytest.raises(vecdb.DeadlineExceeded):
                hurried.collection("lim").count()
            assert time.perf_counter() - t0 < 0.9
        time.sleep(1.0)
        assert c.collection("lim").search(np.ones((1, 4)), k=1)[0]


def test_drain_finishes_in_flight_calls(tmp_path):
    s = InProcessServer(data=str(tmp_path))
    with Client(s.address, retries=0) as c:
        col = c.create_collection("d", dim=2)
        col.upsert(["a"], np.ones((1, 2)))
        _slow(s, "d", "count", 1.0)
        out = []
        t = threading.Thread(target=lambda: out.append(col.count()))
        t.start()
        _wait_in_flight(s)
        s.stop(grace=5)
        t.join()
        assert out == [1]
        with pytest.raises(vecdb.Unavailable):
            col.count()


def _self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    with InProcessServer(data=str(tmp_path / "db"), tls_cert=str(cert), tls_key=str(key)) as s:
        with Client(s.address, tls=cert.read_bytes(), retries=0) as c:
            c.create_collection("t", dim=2)
            assert c.list_collections() == ["t"]
        with Client(s.address, retries=0, timeout=5) as plain, pytest.raises(vecdb.Unavailable):
            plain.list_collections()


def test_metrics_endpoint(tmp_path):
    with InProcessServer(data=str(tmp_path), metrics_port=0) as s, Client(s.address) as c:
        col = c.create_collection("m", dim=2)
        col.upsert(["a", "b"], np.ones((2, 2)))
        with pytest.raises(vecdb.InvalidArgument):
            col.search(np.ones((1, 2)), k=0)
        body = urllib.request.urlopen(f"http://127.0.0.1:{s.server.metrics_port}/metrics", timeout=10).read().decode()
        assert 'vecdb_requests_total{code="OK",method="Upsert"} 1.0' in body
        assert 'vecdb_requests_total{code="INVALID_ARGUMENT",method="Search"} 1.0' in body
        assert "vecdb_request_seconds_bucket" in body
        assert 'vecdb_collection_rows{collection="m"} 2.0' in body


def test_not_serving_while_starting_and_clients_retry(tmp_path, monkeypatch):
    import asyncio
    from vecdb.server.app import VecdbServer
    from vecdb.server.config import ServerConfig
    opened = threading.Event()
    real_connect = vecdb.connect

    def slow_connect(*args, **kwargs):          # a long WAL replay, say
        opened.wait(30)
        return real_connect(*args, **kwargs)
    monkeypatch.setattr(vecdb, "connect", slow_connect)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = VecdbServer(ServerConfig(data=str(tmp_path), port=0))
    started = asyncio.run_coroutine_threadsafe(server.start(), loop)
    try:
        for _ in range(200):
            if server.port:
                break
            time.sleep(0.01)
        address = f"127.0.0.1:{server.port}"
        with grpc.insecure_channel(address) as ch:
            check = lambda: health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status
            assert check() == health_pb2.HealthCheckResponse.NOT_SERVING
            with Client(address, retries=0) as c, pytest.raises(vecdb.Unavailable, match="starting"):
                c.list_collections()
            threading.Timer(0.2, opened.set).start()
            with Client(address, retries=8) as c:
                assert c.list_collections() == []       # retried with backoff until the database opened
            assert started.result(10) == server.port
            assert check() == health_pb2.HealthCheckResponse.SERVING
    finally:
        opened.set()
        asyncio.run_coroutine_threadsafe(server.stop(1), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_work_queued_past_its_deadline_never_runs(tmp_path):
    with InProcessServer(data=str(tmp_path), workers=1) as s, Client(s.address, retries=0) as c:
        col = c.create_collection("q", dim=2)
        col.upsert(["a"], np.ones((1, 2)))
        _slow(s, "q", "count", 1.0)
        busy = threading.Thread(target=col.count)        # holds the only worker for 1 s
        busy.start()
        _wait_in_flight(s)
        with Client(s.address, timeout=0.3, retries=0) as hurried, pytest.raises(vecdb.DeadlineExceeded):
            hurried.collection("q").upsert(["late"], np.ones((1, 2)))
        busy.join()
        time.sleep(0.2)
        assert c.collection("q").get(["late"]) == []     # the write behind the expired call never ran
