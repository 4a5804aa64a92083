"""The one error tree (DESIGN §11), re-exported from ``vecdb_client.errors`` where it lives.

A leaf: importing it loads neither the engine nor gRPC, so every layer may use it.
"""
from vecdb_client.errors import (AlreadyExists, CollectionNotFound, Corruption, DatabaseLocked,
                                 DeadlineExceeded, DimensionMismatch, FilterError, Internal,
                                 InvalidArgument, InvalidId, InvalidVector, NotFound,
                                 PermissionDenied, ResourceExhausted, SchemaError, StorageFull,
                                 Unauthenticated, Unavailable, VecdbError, VersionNotFound,
                                 __all__, base_class_for, error_classes)

__all__ = list(__all__)
