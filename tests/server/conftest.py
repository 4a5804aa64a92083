"""Fixtures: a live in-process server per module, and ``backend``: the same Database surface
embedded (``vecdb.connect``) or remote (``vecdb_client.Client`` through that server)."""
from __future__ import annotations

import itertools

import pytest

import vecdb
from tests.server.harness import InProcessServer
from vecdb_client import Client

_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with InProcessServer(data=str(tmp_path_factory.mktemp("served"))) as s:
        yield s


@pytest.fixture
def client(server):
    with Client(server.address, timeout=30) as c:
        yield c


@pytest.fixture(params=["embedded", "remote"])
def backend(request, tmp_path):
    """A Database-like object; collection names are unique per test on the shared server."""
    if request.param == "embedded":
        with vecdb.connect(tmp_path / "db") as db:
            yield db
    else:
        with Client(request.getfixturevalue("server").address, timeout=30) as c:
            yield c


def unique(prefix: str = "c") -> str:
    return f"{prefix}{next(_names)}"
