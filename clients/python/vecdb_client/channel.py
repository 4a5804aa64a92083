"""Channel set-up, call metadata, retries and status -> error mapping, shared by both clients."""
from __future__ import annotations

import random

import grpc

from vecdb_client.errors import FilterError, Unavailable, VecdbError, base_class_for, error_classes

ERROR_HEADER = "vecdb-error"
POSITION_HEADER = "vecdb-filter-position"
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
_CLASSES = error_classes()


def credentials(tls: bool | bytes, root_certs: bytes | None) -> grpc.ChannelCredentials | None:
    """None for a plain channel; TLS when ``tls`` is true or root certificates are given."""
    if isinstance(tls, (bytes, bytearray)):
        root_certs, tls = bytes(tls), True
    if not tls and root_certs is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=root_certs)


def open_channel(module, address: str, tls: bool | bytes, root_certs: bytes | None):
    """A channel to ``address`` from ``module`` (``grpc`` or ``grpc.aio``), TLS as ``credentials``."""
    creds = credentials(tls, root_certs)
    if creds is None:
        return module.insecure_channel(address, options=CHANNEL_OPTIONS)
    return module.secure_channel(address, creds, options=CHANNEL_OPTIONS)


def metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): exponential with jitter, at most 2 s."""
    return min(2.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + random.random())


def retryable(e: grpc.RpcError) -> bool:
    return isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.UNAVAILABLE


def to_error(e: grpc.RpcError) -> VecdbError:
    """The error tree's class for a failed call: the server's class name if it sent one, else
    the most general class of the status code."""
    code = e.code()
    name = code.name if code is not None else "UNKNOWN"
    trailing = dict(e.trailing_metadata() or ())
    cls = _CLASSES.get(trailing.get(ERROR_HEADER, ""))
    message = e.details() or name
    if cls is None and name == "CANCELLED":
        # not our handler's answer: the server cancelled the call (shutting down); not acknowledged
        cls, message = Unavailable, f"the server cancelled the call ({message}); it was not acknowledged"
    elif cls is None or cls.grpc_code != name:
        cls = base_class_for(name)
    err = cls.__new__(cls)
    VecdbError.__init__(err, message)
    if issubclass(cls, FilterError):
        err.expression = ""
        pos = trailing.get(POSITION_HEADER)
        err.position = int(pos) if pos and pos.isdigit() else None
    err.grpc_status = name
    return err
