"""vecdb: a vector database with an Arrow-columnar segment store and an embedded API.

    import vecdb
    db = vecdb.connect("./data")
    col = db.create_collection("docs", dim=384, metric="cosine", schema={"year": "int64"})

The public names load lazily (PEP 562), so ``import vecdb.storage.store`` or
``vecdb.index.topk`` does not pull in the API (``Collection``, ``Database``).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_ERRORS = ("VecdbError", "InvalidArgument", "DimensionMismatch", "InvalidVector", "InvalidId",
           "SchemaError", "FilterError", "NotFound", "CollectionNotFound", "VersionNotFound",
           "AlreadyExists", "ResourceExhausted", "Unauthenticated", "PermissionDenied",
           "DeadlineExceeded", "Unavailable", "DatabaseLocked", "StorageFull", "Corruption",
           "Internal")

# public name -> module that defines it
_HOME = {"connect": "vecdb.database", "Database": "vecdb.database",
         "Collection": "vecdb.collection", "Hit": "vecdb.hits", "Record": "vecdb.hits",
         **{name: "vecdb.errors" for name in _ERRORS}}

__all__ = ["connect", "Database", "Collection", "Hit", "Record", *_ERRORS]


def __getattr__(name: str):
    """Load a public name from its module on first use and cache it here."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'vecdb' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
