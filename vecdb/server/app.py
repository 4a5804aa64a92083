"""``vecdb serve``: start the gRPC server over a database directory, stop it gracefully.

Startup: listen with health NOT_SERVING, open the database in the pool (WAL replay may take a
while), then SERVING. SIGTERM/SIGINT: health NOT_SERVING, stop accepting, let in-flight calls
finish within ``grace_s``, close the database (seals nothing new, syncs), exit 0.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import vecdb
from vecdb.errors import VecdbError
from vecdb.server import config as config_mod
from vecdb.server.auth import Authenticator
from vecdb.server.config import ServerConfig
from vecdb.server.gate import Gate, ReflectionGuard
from vecdb.server.metrics import Metrics
from vecdb.server.servicers import (AdminServicer, CollectionServicer, DataServicer,
                                    SearchServicer)
from vecdb_client._proto import (admin_pb2, admin_pb2_grpc, collection_pb2, collection_pb2_grpc,
                                 data_pb2, data_pb2_grpc, search_pb2, search_pb2_grpc)

log = logging.getLogger("vecdb.server")

# full service name -> (generated module, registration function, servicer class)
SERVICES = {
    "vecdb.v1.CollectionService": (collection_pb2, collection_pb2_grpc.add_CollectionServiceServicer_to_server,
                                   CollectionServicer),
    "vecdb.v1.DataService": (data_pb2, data_pb2_grpc.add_DataServiceServicer_to_server, DataServicer),
    "vecdb.v1.SearchService": (search_pb2, search_pb2_grpc.add_SearchServiceServicer_to_server, SearchServicer),
    "vecdb.v1.AdminService": (admin_pb2, admin_pb2_grpc.add_AdminServiceServicer_to_server, AdminServicer),
}


class VecdbServer:
    """One grpc.aio server over one database; ``await start()``, then ``await stop()``."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.metrics = Metrics(lambda: self.gate.database)
        self.gate = Gate(Authenticator(config.api_keys, config.read_only_keys), config.max_concurrency,
                         config.workers, self.metrics)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._http = None

    async def start(self) -> int:
        """Bind, open the database, flip health to SERVING; returns the bound port."""
        c = self.config
        options = [("grpc.max_receive_message_length", c.max_message_bytes),
                   ("grpc.max_send_message_length", c.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        guards = [ReflectionGuard(self.gate.auth)] if self.gate.auth.enabled else []
        self._server = grpc.aio.server(options=options, interceptors=guards)
        for _, add, servicer in SERVICES.values():
            add(servicer(self.gate, c.max_batch_rows, c.max_k), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            [*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self._server)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{c.host}:{c.port}"
        if c.tls:
            creds = grpc.ssl_server_credentials([(Path(c.tls_key).read_bytes(), Path(c.tls_cert).read_bytes())])
            self.port = self._server.add_secure_port(address, creds)
        else:
            self.port = self._server.add_insecure_port(address)
        await self._server.start()
        try:
            self.gate.database = await asyncio.get_running_loop().run_in_executor(
                self.gate.pool, lambda: vecdb.connect(c.data, durability=c.durability))
        except BaseException:
            await self._server.stop(0)
            raise
        if c.metrics_port is not None:
            metrics_host = "127.0.0.1" if c.host in config_mod.LOOPBACK else c.host
            self.metrics_port = self.metrics.serve(c.metrics_port, metrics_host)
        if c.http_port is not None:
            from vecdb.http.server import HttpServer      # FastAPI loads only when the gateway is on
            self._http = await HttpServer.start(self.gate, c)
            self.http_port = self._http.port
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def _set_health(self, status) -> None:
        for name in ("", *SERVICES):
            result = self.health.set(name, status)
            if asyncio.iscoroutine(result):
                await result

    async def stop(self, grace: float | None = None) -> None:
        """Drain: health NOT_SERVING, refuse new calls, finish in-flight ones, close the database."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._http is not None:
            await self._http.stop()
        if self._server is not None:
            await self._server.stop(self.config.grace_s if grace is None else grace)
        db, self.gate.database = self.gate.database, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self.gate.pool, _flush_and_close, db, self.gate.touched)
        self.gate.close()
        self.metrics.close()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


class ServerThread:
    """A ``VecdbServer`` on its own event-loop thread, for in-process use (demo, benchmarks,
    tests): ``with ServerThread(ServerConfig(data=..., port=0)) as s: Client(s.address)``."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.server = VecdbServer(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vecdb-server", daemon=True)
        self._thread.start()
        try:
            self.port = self.call(self.server.start())
        except BaseException:
            self._close_loop()
            raise
        self.address = f"{config.host}:{self.port}"

    def call(self, coro, timeout: float | None = 60):
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def database(self):
        return self.server.gate.database

    def stop(self, grace: float | None = None) -> None:
        """Drain and stop (idempotent)."""
        if self._loop.is_running():
            self.call(self.server.stop(grace), None)
            self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _flush_and_close(db, names) -> None:
    """Seal what the served collections hold in memory (a quick restart), then close."""
    try:
        for name in sorted(names):
            try:
                db.get_collection(name).flush()
            except VecdbError as e:          # dropped meanwhile, or its disk is full: the WAL has it
                log.warning("drain: flush of %r skipped: %s", name, e)
    finally:
        db.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``vecdb serve`` option (flags > VECDB_* environment > --config TOML > defaults)."""
    config_mod.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``vecdb serve`` until SIGTERM/SIGINT; 0 after a clean drain, 2 on a bad setting."""
    try:
        config = config_mod.load(args)
    except VecdbError as e:
        print(f"vecdb serve: {e}", file=sys.stderr)
        return 2
    level = logging.getLevelName(config.log_level.upper())
    if not isinstance(level, int):
        print(f"vecdb serve: log_level {config.log_level!r} is not a logging level", file=sys.stderr)
        return 2
    logging.basicConfig(level=max(level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("vecdb").setLevel(level)
    try:
        return asyncio.run(_serve(config))
    except VecdbError as e:
        print(f"vecdb serve: {e}", file=sys.stderr)
        return 1


async def _serve(config: ServerConfig) -> int:
    server = VecdbServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = await server.start()
    print(f"listening on {config.host}:{port}", flush=True)
    if server.metrics_port is not None:
        print(f"metrics on {config.host}:{server.metrics_port}", flush=True)
    if server.http_port is not None:
        print(f"http on {config.host}:{server.http_port}", flush=True)
    await stop.wait()
    log.info("draining: grace %.1fs", config.grace_s)
    await server.stop()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m vecdb.server.app`` = ``vecdb serve``."""
    parser = argparse.ArgumentParser(prog="vecdb serve", description="serve a vecdb database over gRPC")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
