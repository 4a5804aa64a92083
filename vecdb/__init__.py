"""vecdb: a vector database with an Arrow-columnar segment store and an embedded API.

    import vecdb
    db = vecdb.connect("./data")
    col = db.create_collection("docs", dim=384, metric="cosine", schema={"year": "int64"})
"""
from vecdb.collection import Collection
from vecdb.database import Database, connect
from vecdb.errors import (AlreadyExists, CollectionNotFound, Corruption, DatabaseLocked,
                          DeadlineExceeded, DimensionMismatch, FilterError, Internal,
                          InvalidArgument, InvalidId, InvalidVector, NotFound, PermissionDenied,
                          ResourceExhausted, SchemaError, StorageFull, Unauthenticated,
                          Unavailable, VecdbError, VersionNotFound)
from vecdb.hits import Hit, Record

__version__ = "0.1.0"

__all__ = [
    "connect", "Database", "Collection", "Hit", "Record",
    "VecdbError", "InvalidArgument", "DimensionMismatch", "InvalidVector", "InvalidId",
    "SchemaError", "FilterError", "NotFound", "CollectionNotFound", "VersionNotFound",
    "AlreadyExists", "ResourceExhausted", "Unauthenticated", "PermissionDenied",
    "DeadlineExceeded", "Unavailable", "DatabaseLocked", "StorageFull", "Corruption", "Internal",
]
