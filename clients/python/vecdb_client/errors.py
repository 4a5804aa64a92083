"""The one error tree (DESIGN §11): every failure vecdb reports is a ``VecdbError``.

It lives in the client package so the embedded engine (``vecdb.errors`` re-exports it) and the
remote client raise the very same classes; the server sends the class name in the trailing
metadata ``vecdb-error`` so a subclass round-trips exactly.

Each class declares its gRPC status name and HTTP status so the front doors map errors from
one table. A class may also inherit the builtin whose meaning it has (``CollectionNotFound``
is a ``KeyError``, ``InvalidArgument`` a ``ValueError``), so plain Python code can catch it.
"""
from __future__ import annotations


class VecdbError(Exception):
    """Root of every error vecdb raises on purpose."""

    grpc_code: str = "UNKNOWN"
    http_status: int = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message


class InvalidArgument(VecdbError, ValueError):
    """The caller passed something vecdb cannot accept; nothing was changed."""

    grpc_code = "INVALID_ARGUMENT"
    http_status = 400


class DimensionMismatch(InvalidArgument):
    """A vector's length differs from the collection's ``dim``."""


class InvalidVector(InvalidArgument):
    """A vector is not finite float data of the right shape (NaN, inf, wrong dtype)."""


class InvalidId(InvalidArgument):
    """An id has the wrong type for the collection, or is repeated within one batch."""


class SchemaError(InvalidArgument):
    """A payload field is unknown or its value has the wrong type."""


class FilterError(InvalidArgument):
    """A filter expression does not parse or does not fit the schema.

    ``position`` is the 0-based character offset of the problem in ``expression``.
    """

    def __init__(self, message: str, expression: str = "", position: int | None = None):
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}" + (f" in filter {expression!r}" if expression else ""))
        self.expression = expression
        self.position = position


class NotFound(VecdbError, KeyError):
    """A named thing does not exist."""

    grpc_code = "NOT_FOUND"
    http_status = 404


class CollectionNotFound(NotFound):
    """No collection of that name in this database."""


class VersionNotFound(NotFound):
    """No manifest version of that number (never written, or garbage-collected)."""


class AlreadyExists(VecdbError):
    """A named thing already exists."""

    grpc_code = "ALREADY_EXISTS"
    http_status = 409


class ResourceExhausted(VecdbError):
    """A limit was hit (batch size, k, message size, concurrency)."""

    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 429


class Unauthenticated(VecdbError):
    """The call carried no API key, or an unknown one."""

    grpc_code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(VecdbError):
    """The key may not do this (a read-only key writing)."""

    grpc_code = "PERMISSION_DENIED"
    http_status = 403


class DeadlineExceeded(VecdbError):
    """The call's deadline passed before its work finished."""

    grpc_code = "DEADLINE_EXCEEDED"
    http_status = 504


class Unavailable(VecdbError):
    """The service or object cannot serve now (closed database, read-only view written to)."""

    grpc_code = "UNAVAILABLE"
    http_status = 503


class DatabaseLocked(Unavailable):
    """Another writer process holds this database directory's lock."""


class StorageFull(Unavailable):
    """The disk is full; writes fail until space is freed."""

    http_status = 507


class Corruption(VecdbError):
    """On-disk data failed a check (bad header, checksum, missing file)."""

    grpc_code = "DATA_LOSS"
    http_status = 500


class Internal(VecdbError):
    """An unexpected failure inside the server (a bug); the server logged its traceback."""

    grpc_code = "INTERNAL"
    http_status = 500


def error_classes() -> dict[str, type[VecdbError]]:
    """Every class of the tree by name (how a remote error finds its class again)."""
    out, todo = {}, [VecdbError]
    while todo:
        cls = todo.pop()
        out[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return out


def base_class_for(grpc_code: str) -> type[VecdbError]:
    """The most general class declaring ``grpc_code`` (a status sent without a class name)."""
    for cls in _BASES:
        if cls.grpc_code == grpc_code:
            return cls
    return VecdbError


_BASES = (InvalidArgument, NotFound, AlreadyExists, ResourceExhausted, Unauthenticated,
          PermissionDenied, DeadlineExceeded, Unavailable, Corruption, Internal)

__all__ = [
    "VecdbError", "InvalidArgument", "DimensionMismatch", "InvalidVector", "InvalidId",
    "SchemaError", "FilterError", "NotFound", "CollectionNotFound", "VersionNotFound",
    "AlreadyExists", "ResourceExhausted", "Unauthenticated", "PermissionDenied",
    "DeadlineExceeded", "Unavailable", "DatabaseLocked", "StorageFull", "Corruption", "Internal",
]
