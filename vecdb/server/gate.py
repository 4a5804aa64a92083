"""What every RPC passes through: auth, the concurrency limit, deadlines, the thread pool, the
error table, metrics and the request log. Servicers stay convert-call-convert."""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Callable

import grpc

from vecdb.errors import DeadlineExceeded, Internal, ResourceExhausted, Unavailable, VecdbError
from vecdb.server.auth import Authenticator
from vecdb.server.metrics import Metrics
from vecdb.server.status import status_of

log = logging.getLogger("vecdb.server")


class Gate:
    """Admission and bookkeeping for calls; ``database`` is None while starting and draining."""

    def __init__(self, auth: Authenticator, max_concurrency: int, workers: int | None = None,
                 metrics: Metrics | None = None):
        self.auth = auth
        self.max_concurrency = max_concurrency
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vecdb-engine")  # None: min(32, CPUs + 4)
        self.database = None
        self.in_flight = 0
        self.touched: set[str] = set()      # collections served since start (flushed on drain)

    def admit(self, metadata, method: str) -> None:
        """Check the caller's key, that the server is serving and the concurrency limit, then
        count the call in flight (the caller decrements ``in_flight`` when it ends)."""
        self.auth.check(metadata, method)
        if self.database is None:
            raise Unavailable("the server is starting or shutting down; retry shortly")
        if self.in_flight >= self.max_concurrency:
            raise ResourceExhausted(f"{self.in_flight} requests in flight, the limit is "
                                    f"{self.max_concurrency}; retry with backoff")
        self.in_flight += 1

    @asynccontextmanager
    async def call(self, method: str, context: grpc.aio.ServicerContext):
        """Admit a call, then map whatever it raises to a status (the message names the problem)."""
        t0 = time.perf_counter()
        code = "OK"
        admitted = recorded = False
        try:
            self.admit(context.invocation_metadata(), method)
            admitted = True
            yield
        except VecdbError as e:
            status, message, trailing = status_of(e)
            code = status.name
            log.warning("rpc=%s code=%s peer=%s error=%s message=%r", method, code, context.peer(),
                        type(e).__name__, message)
            self._record(method, code, t0, context)     # before the client can see the status
            recorded = True
            await context.abort(status, message, trailing)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            code = "CANCELLED"
            raise
        except Exception as e:
            code = "INTERNAL"
            log.exception("rpc=%s code=INTERNAL peer=%s unexpected error", method, context.peer())
            status, message, trailing = status_of(Internal(f"{method} failed: {type(e).__name__}: {e}"))
            self._record(method, code, t0, context)
            recorded = True
            await context.abort(status, message, trailing)
        finally:
            if admitted:
                self.in_flight -= 1
            if not recorded:
                self._record(method, code, t0, context)

    def _record(self, method: str, code: str, t0: float, context: grpc.aio.ServicerContext) -> None:
        """Count the call in the metrics and the debug log."""
        seconds = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.observe(method, code, seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("rpc=%s code=%s ms=%.3f peer=%s", method, code, seconds * 1000, context.peer())

    async def run(self, context: grpc.aio.ServicerContext, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run engine work in the thread pool, refusing to start (or to answer) past the deadline.

        Work still queued when the call is cancelled (deadline, client gone) is dropped; work
        that a worker picks up after the deadline is not started.
        """
        _check_deadline(context, "before the work started")
        left = context.time_remaining()
        work = partial(fn, *args, **kwargs)
        if left is not None:
            work = partial(_before, time.monotonic() + left, work)
        result = await asyncio.get_running_loop().run_in_executor(self.pool, work)
        _check_deadline(context, "while the work ran")
        return result

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class ReflectionGuard(grpc.aio.ServerInterceptor):
    """Puts server reflection behind the API keys too (only health stays open)."""

    def __init__(self, auth: Authenticator):
        self.auth = auth

    async def intercept_service(self, continuation, details):
        if details.method.startswith("/grpc.reflection."):
            try:
                self.auth.check(details.invocation_metadata, "ServerReflectionInfo")
            except VecdbError as e:
                status, message, trailing = status_of(e)

                async def deny(request_iterator, context):
                    await context.abort(status, message, trailing)
                return grpc.stream_stream_rpc_method_handler(deny)
        return await continuation(details)


def _before(deadline: float, work: Callable[[], Any]) -> Any:
    if time.monotonic() > deadline:
        raise DeadlineExceeded("the call's deadline passed while it waited for a worker")
    return work()


def _check_deadline(context: grpc.aio.ServicerContext, when: str) -> None:
    left = context.time_remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded(f"the call's deadline passed {when}")
