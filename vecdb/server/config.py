"""Server settings: flags > environment (``VECDB_*``) > TOML file (``--config``) > defaults.

``OPTIONS`` is the one table: each setting's name (the TOML key; the flag is ``--name`` with
dashes, the variable ``VECDB_NAME``), type, default and help. ``proto/README.md`` and the
README print it.
"""
from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vecdb.errors import InvalidArgument

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: Any
    help: str


OPTIONS = [
    Option("data", str, None, "database directory (required)"),
    Option("host", str, "127.0.0.1", "address to bind; beyond loopback needs an API key or --allow-insecure"),
    Option("port", int, 50051, "port to bind; 0 picks a free one (printed as 'listening on HOST:PORT')"),
    Option("allow_insecure", bool, False, "allow binding beyond loopback without any API key"),
    Option("api_keys", list, [], "read-write API keys, comma-separated"),
    Option("read_only_keys", list, [], "read-only API keys, comma-separated"),
    Option("tls_cert", str, None, "PEM certificate file (with --tls-key: serve TLS)"),
    Option("tls_key", str, None, "PEM private key file"),
    Option("metrics_port", int, None, "serve Prometheus metrics on this port (off when unset)"),
    Option("http_port", int, None, "serve the HTTP gateway (JSON, RAG chat, page at /) on this port (off when unset)"),
    Option("llm_base_url", str, None, "OpenAI-compatible LLM for RAG chat, e.g. http://127.0.0.1:8080/v1 "
           "(key from OPENAI_API_KEY or VECDB_LLM_API_KEY)"),
    Option("llm_model", str, None, "the model name to ask the LLM server for"),
    Option("max_message_bytes", int, 64 << 20, "largest request or response message"),
    Option("max_batch_rows", int, 1_000_000, "most rows in one upsert batch"),
    Option("max_k", int, 16_384, "largest k a search may ask for"),
    Option("max_concurrency", int, 64, "requests in flight at once; more get RESOURCE_EXHAUSTED"),
    Option("workers", int, None, "threads running engine calls (unset: min(32, CPUs + 4))"),
    Option("grace_s", float, 10.0, "on SIGTERM, seconds in-flight requests get to finish"),
    Option("durability", str, "always", "engine durability: always (fsync per write) or batch"),
    Option("log_level", str, "INFO", "logging level (DEBUG logs one line per request)"),
]


@dataclass(frozen=True)
class ServerConfig:
    data: str | None = None
    host: str = "127.0.0.1"
    port: int = 50051
    allow_insecure: bool = False
    api_keys: tuple[str, ...] = ()
    read_only_keys: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    metrics_port: int | None = None
    http_port: int | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    max_message_bytes: int = 64 << 20
    max_batch_rows: int = 1_000_000
    max_k: int = 16_384
    max_concurrency: int = 64
    workers: int | None = None
    grace_s: float = 10.0
    durability: str = "always"
    log_level: str = "INFO"

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option; every default is None so ``load`` can tell a flag was given."""
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings (keys as in the table)")
    for o in OPTIONS:
        flag = "--" + o.name.replace("_", "-")
        help_text = f"{o.help} [env VECDB_{o.name.upper()}; default {o.default!r}]"
        if o.type is bool:
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(flag, type=str, default=None, metavar=o.name.upper(), help=help_text)


def load(args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> ServerConfig:
    """Merge flags > environment > file > defaults into a checked ``ServerConfig``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = getattr(args, "config", None) or env.get("VECDB_CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as f:
                file_values = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise InvalidArgument(f"config file {config_file}: {e}") from None
        known = {o.name for o in OPTIONS}
        unknown = sorted(set(file_values) - known)
        if unknown:
            raise InvalidArgument(f"config file {config_file}: unknown setting(s) {unknown}")
        values.update(file_values)
    for o in OPTIONS:
        raw = env.get(f"VECDB_{o.name.upper()}")
        if raw is not None and raw != "":
            values[o.name] = raw
    for o in OPTIONS:
        raw = getattr(args, o.name, None) if args is not None else None
        if raw is not None:
            values[o.name] = raw
    out = {}
    for o in OPTIONS:
        if o.name in values and values[o.name] is not None:
            out[o.name] = _coerce(o, values[o.name])
    return _check(ServerConfig(**out))


def _coerce(o: Option, v: Any) -> Any:
    try:
        if o.type is list:
            items = v.split(",") if isinstance(v, str) else list(v)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if o.type is bool:
            if isinstance(v, bool):
                return v
            if str(v).lower() in ("1", "true", "yes", "on"):
                return True
            if str(v).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(v)
        if o.type is int and isinstance(v, float):
            raise ValueError(v)
        return o.type(v)
    except (TypeError, ValueError):
        raise InvalidArgument(f"setting {o.name} = {v!r} is not a valid {o.type.__name__}") from None


def _check(c: ServerConfig) -> ServerConfig:
    if not c.data:
        raise InvalidArgument("the data directory is required (--data DIR or VECDB_DATA)")
    for name in ("max_message_bytes", "max_batch_rows", "max_k", "max_concurrency", "workers"):
        if getattr(c, name) is not None and getattr(c, name) < 1:
            raise InvalidArgument(f"setting {name} must be at least 1, got {getattr(c, name)}")
    for name in ("port", "metrics_port", "http_port"):
        if getattr(c, name) is not None and not 0 <= getattr(c, name) <= 65535:
            raise InvalidArgument(f"{name} must be in [0, 65535], got {getattr(c, name)}")
    if bool(c.llm_base_url) != bool(c.llm_model):
        raise InvalidArgument("the RAG chat's LLM needs both --llm-base-url and --llm-model")
    if bool(c.tls_cert) != bool(c.tls_key):
        raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
    for f in (c.tls_cert, c.tls_key):
        if f and not Path(f).is_file():
            raise InvalidArgument(f"TLS file {f} does not exist")
    if c.host not in LOOPBACK and not (c.api_keys or c.read_only_keys) and not c.allow_insecure:
        raise InvalidArgument(f"refusing to listen on {c.host} without an API key: set "
                              f"VECDB_API_KEYS (or api_keys in the config), or pass --allow-insecure")
    return c


def table_markdown() -> str:
    """The settings table (flag, variable, default, meaning) for the docs."""
    rows = ["| setting (TOML key) | flag | environment | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for o in OPTIONS:
        rows.append(f"| `{o.name}` | `--{o.name.replace('_', '-')}` | `VECDB_{o.name.upper()}` | "
                    f"`{o.default!r}` | {o.help} |")
    return "\n".join(rows)


assert [f.name for f in fields(ServerConfig)] == [o.name for o in OPTIONS]
