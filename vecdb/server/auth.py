"""API keys: read-write and read-only, sent as ``authorization: Bearer <key>`` or ``x-api-key``.

When no key is configured every call is allowed. Otherwise a missing or unknown key gets
UNAUTHENTICATED and a read-only key calling a write RPC PERMISSION_DENIED. Keys are compared in
constant time (``hmac.compare_digest``) against every configured key.
"""
from __future__ import annotations

import hmac
from typing import Iterable

from vecdb.errors import PermissionDenied, Unauthenticated

# RPCs that change data or files; everything else is a read (the health service is not wrapped).
WRITE_METHODS = frozenset({
    "CreateCollection", "GetOrCreateCollection", "DropCollection",
    "Upsert", "UpsertStream", "UpsertArrow", "Delete", "UpdatePayload",
    "Flush", "Compact", "Snapshot", "Restore",
})


class Authenticator:
    """Checks a call's metadata against the configured keys."""

    def __init__(self, keys: Iterable[str] = (), read_only_keys: Iterable[str] = ()):
        self._keys = [k.encode() for k in keys if k]
        self._read_only = [k.encode() for k in read_only_keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._keys or self._read_only)

    def check(self, metadata: Iterable[tuple[str, str]] | None, method: str) -> None:
        """Raise ``Unauthenticated`` / ``PermissionDenied`` unless the call may run ``method``."""
        if not self.enabled:
            return
        key = _key_of(metadata or ())
        if key is None:
            raise Unauthenticated(f"{method} needs an API key (metadata 'authorization: Bearer <key>')")
        candidate = key.encode()
        read_write = _member(candidate, self._keys)
        read_only = _member(candidate, self._read_only)
        if not (read_write or read_only):
            raise Unauthenticated(f"{method}: the API key is not valid")
        if not read_write and method in WRITE_METHODS:
            raise PermissionDenied(f"{method} writes; the API key is read-only")


def _key_of(metadata) -> str | None:
    for name, value in metadata:
        if name == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == "x-api-key" and isinstance(value, str) and value:
            return value
    return None


def _member(candidate: bytes, keys: list[bytes]) -> bool:
    found = False
    for k in keys:          # no early exit: the time taken does not depend on which key matched
        found |= hmac.compare_digest(candidate, k)
    return found
