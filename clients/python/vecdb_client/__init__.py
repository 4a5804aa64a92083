"""vecdb_client: the slim Python client for a vecdb server (gRPC), and the one error tree and
result types the embedded engine shares.

    from vecdb_client import Client
    with Client("127.0.0.1:50051", api_key="...") as db:
        col = db.get_collection("docs")
        hits = col.search(query_vectors, k=10, filter="year >= 2020")

``Client`` and ``AsyncClient`` load gRPC on first use, so importing the errors or types alone
(as the engine does) stays cheap.
"""
from vecdb_client.errors import (AlreadyExists, CollectionNotFound, Corruption, DatabaseLocked,
                                 DeadlineExceeded, DimensionMismatch, FilterError, Internal,
                                 InvalidArgument, InvalidId, InvalidVector, NotFound,
                                 PermissionDenied, ResourceExhausted, SchemaError, StorageFull,
                                 Unauthenticated, Unavailable, VecdbError, VersionNotFound)
from vecdb_client.types import Hit, Record

__version__ = "0.1.0"

_LAZY = {"Client": "vecdb_client.client", "RemoteCollection": "vecdb_client.client",
         "AsyncClient": "vecdb_client.aio", "AsyncRemoteCollection": "vecdb_client.aio",
         "UpsertAck": "vecdb_client.types"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vecdb_client' has no attribute {name!r}")


__all__ = [
    "Client", "AsyncClient", "RemoteCollection", "AsyncRemoteCollection", "Hit", "Record",
    "UpsertAck", "VecdbError", "InvalidArgument", "DimensionMismatch", "InvalidVector",
    "InvalidId", "SchemaError", "FilterError", "NotFound", "CollectionNotFound",
    "VersionNotFound", "AlreadyExists", "ResourceExhausted", "Unauthenticated",
    "PermissionDenied", "DeadlineExceeded", "Unavailable", "DatabaseLocked", "StorageFull",
    "Corruption", "Internal",
]
