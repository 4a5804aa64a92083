"""The gateway's uvicorn server on the gRPC server's event loop (``vecdb serve --http-port``)."""
from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from vecdb.errors import Unavailable
from vecdb.http.app import create_app


class _Server(uvicorn.Server):
    def capture_signals(self):          # vecdb serve handles SIGTERM/SIGINT and drains both doors
        return contextlib.nullcontext()


class HttpServer:
    """A running gateway: ``await HttpServer.start(gate, config)``, then ``await stop()``."""

    def __init__(self, server: _Server, task: asyncio.Task, port: int):
        self._server, self._task, self.port = server, task, port

    @classmethod
    async def start(cls, gate, config) -> "HttpServer":
        llm = None
        if config.llm_base_url:
            from vecdb.rag.llm import OpenAICompatible
            llm = OpenAICompatible(config.llm_base_url, config.llm_model)
        app = create_app(gate, llm, max_k=config.max_k, max_batch_rows=config.max_batch_rows)
        tls = dict(ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key) if config.tls else {}
        server = _Server(uvicorn.Config(app, host=config.host, port=config.http_port, lifespan="off",
                                        log_level="warning", access_log=False, **tls))
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                try:
                    task.result()
                except SystemExit:          # uvicorn exits when it cannot bind (it logged why)
                    pass
                raise Unavailable(f"the HTTP gateway could not bind {config.host}:{config.http_port}")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        return cls(server, task, port)

    async def stop(self) -> None:
        """Finish in-flight requests, then close the port."""
        self._server.should_exit = True
        await self._task
