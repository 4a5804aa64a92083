"""A real ``vecdb serve`` (gRPC + HTTP gateway on 127.0.0.1, ports chosen by the OS) for the
gateway tests, with the fake LLM test server behind its RAG chat."""
from __future__ import annotations

import contextlib

import httpx

from vecdb.server.app import ServerThread
from vecdb.server.config import ServerConfig

RW, RO = "rw-key", "ro-key"


@contextlib.contextmanager
def gateway(data, llm_base_url: str | None = None, llm_model: str = "m", **config):
    """(ServerThread, base URL) with keys RW (read-write) and RO (read-only)."""
    cfg = ServerConfig(data=str(data), port=0, http_port=0, api_keys=(RW,), read_only_keys=(RO,),
                       llm_base_url=llm_base_url, llm_model=llm_model if llm_base_url else None, **config)
    with ServerThread(cfg) as server:
        yield server, f"http://127.0.0.1:{server.server.http_port}"


def client(base: str, key: str | None = RW) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=60)
