"""Prometheus metrics on their own port: requests and latency by method and status, and per
collection rows, segments and index build state (read from ``Collection.stats`` at scrape)."""
from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("vecdb.server")

_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """One registry per server (tests run several servers in one process)."""

    def __init__(self, database: Callable[[], object | None]):
        self.registry = CollectorRegistry()
        self.requests = Counter("vecdb_requests", "gRPC requests by method and status code",
                                ["method", "code"], registry=self.registry)
        self.latency = Histogram("vecdb_request_seconds", "gRPC request latency by method and status code",
                                 ["method", "code"], buckets=_BUCKETS, registry=self.registry)
        self.registry.register(_CollectionCollector(database))
        self._http = None

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method, code).observe(seconds)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the HTTP endpoint; returns the bound port."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _CollectionCollector:
    """Per collection gauges, gathered when Prometheus scrapes."""

    def __init__(self, database: Callable[[], object | None]):
        self._database = database

    def collect(self):
        rows = GaugeMetricFamily("vecdb_collection_rows", "visible rows", labels=["collection"])
        segments = GaugeMetricFamily("vecdb_collection_segments", "sealed segments", labels=["collection"])
        memtable = GaugeMetricFamily("vecdb_collection_memtable_rows", "rows not yet sealed", labels=["collection"])
        indexes = GaugeMetricFamily("vecdb_collection_indexes", "segments by index build state",
                                    labels=["collection", "state"])
        db = self._database()
        if db is not None:
            try:
                for name in db.list_collections():
                    s = db.get_collection(name).stats()
                    rows.add_metric([name], s["rows"])
                    segments.add_metric([name], len(s["segments"]))
                    memtable.add_metric([name], s["memtable_rows"])
                    states: dict[str, int] = {}
                    for seg in s["segments"]:
                        state = str(seg.get("index", {}).get("state", "none"))
                        states[state] = states.get(state, 0) + 1
                    for state, n in states.items():
                        indexes.add_metric([name, state], n)
            except Exception:      # a scrape must not fail because a collection went away
                log.exception("metrics: collecting collection stats failed")
        yield from (rows, segments, memtable, indexes)
