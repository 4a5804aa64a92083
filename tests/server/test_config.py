"""Settings: flags > environment > TOML file > defaults; unsafe or bad settings refused."""
from __future__ import annotations

import argparse

import pytest

import vecdb
from vecdb.server import app, config


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_precedence(tmp_path):
    toml = tmp_path / "vecdb.toml"
    toml.write_text('data = "/from/file"\nport = 7000\nmax_k = 50\napi_keys = ["f1", "f2"]\n')
    c = config.load(_args("--config", str(toml)), env={})
    assert (c.data, c.port, c.max_k, c.api_keys) == ("/from/file", 7000, 50, ("f1", "f2"))
    c = config.load(_args("--config", str(toml)), env={"VECDB_PORT": "7001", "VECDB_API_KEYS": "e1,e2"})
    assert (c.port, c.api_keys, c.max_k) == (7001, ("e1", "e2"), 50)
    c = config.load(_args("--config", str(toml), "--port", "7002"), env={"VECDB_PORT": "7001"})
    assert c.port == 7002
    c = config.load(_args("--data", "d"), env={})
    assert (c.host, c.port, c.max_concurrency) == ("127.0.0.1", 50051, 64)


def test_refusals(tmp_path):
    with pytest.raises(vecdb.InvalidArgument, match="without an API key"):
        config.load(_args("--data", "d", "--host", "0.0.0.0"), env={})
    assert config.load(_args("--data", "d", "--host", "0.0.0.0", "--allow-insecure"), env={}).allow_insecure
    assert config.load(_args("--data", "d", "--host", "0.0.0.0"), env={"VECDB_READ_ONLY_KEYS": "r"}).read_only_keys == ("r",)
    with pytest.raises(vecdb.InvalidArgument, match="data directory"):
        config.load(_args(), env={})
    with pytest.raises(vecdb.InvalidArgument, match="port"):
        config.load(_args("--data", "d", "--port", "x"), env={})
    with pytest.raises(vecdb.InvalidArgument, match="both"):
        config.load(_args("--data", "d", "--tls-cert", "c"), env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 1\n")
    with pytest.raises(vecdb.InvalidArgument, match="colour"):
        config.load(_args("--config", str(bad), "--data", "d"), env={})


def test_run_refuses_wide_bind_without_keys(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VECDB_API_KEYS", raising=False)
    monkeypatch.delenv("VECDB_READ_ONLY_KEYS", raising=False)
    assert app.run(_args("--data", str(tmp_path), "--host", "0.0.0.0")) == 2
    assert "--allow-insecure" in capsys.readouterr().err


def test_every_option_has_help():
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, action.dest
    assert "VECDB_MAX_K" in config.table_markdown()
