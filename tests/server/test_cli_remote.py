"""The ``vecdb`` commands against a live server (``--server``) answer like ``--data`` does."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.server.harness import InProcessServer
from vecdb.cli import main

KEY = "cli-key"


@pytest.fixture
def served(tmp_path):
    with InProcessServer(data=str(tmp_path / "served"), api_keys=(KEY,)) as s:
        yield s


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_over_the_wire_matches_embedded(tmp_path, served, capsys):
    vectors = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    np.save(tmp_path / "q.npy", vectors[:2])
    answers = {}
    for where in (["--data", str(tmp_path / "local")], ["--server", served.address, "--api-key", KEY]):
        assert _run(capsys, "collections", "create", "docs", "--dim", "6", "--metric", "l2", *where)[0] == 0
        assert _run(capsys, "upsert", "docs", "--vectors", str(tmp_path / "v.npy"), "--flush", *where)[0] == 0
        rc, out, err = _run(capsys, "search", "docs", "--query-file", str(tmp_path / "q.npy"), "-k", "3", *where)
        assert rc == 0, err
        answers[where[0]] = [[(h["id"], round(h["score"], 4)) for h in json.loads(line)] for line in out.splitlines()]
    assert answers["--data"] == answers["--server"]
    assert [row[0][0] for row in answers["--server"]] == [0, 1]


def test_cli_remote_errors_are_one_line(served, capsys):
    rc, out, err = _run(capsys, "collections", "list", "--server", served.address)
    assert rc != 0 and "Unauthenticated" in err and err.count("\n") == 1
    rc, out, err = _run(capsys, "collections", "describe", "nope", "--server", served.address, "--api-key", KEY)
    assert rc != 0 and "nope" in err and err.count("\n") == 1
