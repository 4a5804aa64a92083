"""The one error -> gRPC status table (DESIGN §11), built from each error class's ``grpc_code``.

The class name travels in the trailing metadata ``vecdb-error`` (and a filter error's position
in ``vecdb-filter-position``) so the client raises exactly the class the engine raised.
"""
from __future__ import annotations

import grpc

from vecdb.errors import FilterError, VecdbError, error_classes

ERROR_HEADER = "vecdb-error"
POSITION_HEADER = "vecdb-filter-position"

STATUS: dict[type[VecdbError], grpc.StatusCode] = {
    cls: getattr(grpc.StatusCode, cls.grpc_code) for cls in error_classes().values()}


def status_of(err: VecdbError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """(status code, message, trailing metadata) for an error of the tree."""
    code = STATUS.get(type(err)) or getattr(grpc.StatusCode, err.grpc_code, grpc.StatusCode.UNKNOWN)
    meta = [(ERROR_HEADER, type(err).__name__)]
    if isinstance(err, FilterError) and err.position is not None:
        meta.append((POSITION_HEADER, str(err.position)))
    return code, str(err), tuple(meta)
