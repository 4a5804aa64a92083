"""Service benchmark (issue 14): the gRPC hop against the same engine in-process, in one run.

    python -m bench.service [--quick] [--rows N] [--synthetic]

On WordNet-MiniLM-384 (``wordnet-3.0-glosses/minilm`` from ../shared/data; ``--synthetic``
uses random vectors of the same shape when it is not prepared, and says so). The server is a
child process (``vecdb serve``, 127.0.0.1, OS-chosen port), as deployed; once it has loaded
the data and built its indexes, this process opens the same directory read-only, so the
in-process side searches the same files with the same engine.

- serial search latency p50/p99, k=10, one query at a time (target: the hop adds <= 0.3 ms
  at p50), beside the round trip of a trivial RPC (ListCollections) on the same server;
- QPS over concurrency 1, 2, 4, 8, 16, 32 threads (one Client per thread; target: best
  remote >= 0.8x best in-process);
- bulk load rows/s: embedded upsert, remote unary upsert, streaming upsert and Arrow upsert
  (target: streaming and Arrow >= 0.8x embedded).

Embedded and remote are timed in separate passes (never interleaved query by query), median of
repeats. Prints a table and writes bench/results/service.json (and service.png with matplotlib).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench import warn_openblas

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = (1, 2, 4, 8, 16, 32)
BATCH = 1000


def _data(rows: int, queries: int, synthetic: bool) -> tuple[np.ndarray, np.ndarray, str]:
    if not synthetic:
        from bench.datasets import load
        try:
            ds = load("wordnet-3.0-glosses/minilm")
            return ds.base[:rows], ds.queries[:queries], "wordnet-3.0-glosses/minilm"
        except SystemExit as e:
            print(f"{e}\nfalling back to --synthetic")
    rng = np.random.default_rng(20261204)
    base = rng.normal(size=(rows, 384)).astype(np.float32)
    q = rng.normal(size=(queries, 384)).astype(np.float32)
    return base, q, "synthetic-normal-384 (WordNet-MiniLM not prepared)"


def _batches(base: np.ndarray):
    for s in range(0, len(base), BATCH):
        ids = list(range(s, min(s + BATCH, len(base))))
        yield ids, base[s:s + BATCH], [{"n": i} for i in ids]


def _rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


class ChildServer:
    """``vecdb serve`` in a child process (stderr to a file so it can never block)."""

    def __init__(self, data: Path):
        self._log = open(data.parent / "server.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "vecdb", "serve", "--data", str(data), "--port", "0",
                                      "--max-concurrency", "256"], stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, cwd=Path(__file__).resolve().parent.parent)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise SystemExit(f"vecdb serve did not start: {line!r}; see {self._log.name}")
        self.address = line.split()[-1]

    def __enter__(self) -> "ChildServer":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        self._log.close()


def _wait_for_indexes(col, timeout: float = 1800) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        states = [seg["index"].get("state") for seg in col.stats()["segments"]]
        if all(s in ("ready", "none", "failed") for s in states):
            return
        time.sleep(0.5)


def bulk(client, db, base: np.ndarray) -> dict:
    """Rows/s per load path, each into its own collection."""
    import pyarrow as pa
    n = len(base)
    out = {}

    def create(target, name):
        return target.create_collection(name, dim=base.shape[1], metric="cosine", schema={"n": "int64"},
                                        id_type="int64")
    emb = create(db, "embedded")
    warm = create(client, "warm-up")                  # JIT and connection warm-up, untimed
    warm.upsert(*next(_batches(base)))
    create(db, "warm-up").upsert(*next(_batches(base)))
    out["embedded upsert"] = _rate(n, lambda: [emb.upsert(*b) for b in _batches(base)])
    unary = create(client, "unary")
    out["remote upsert"] = _rate(n, lambda: [unary.upsert(*b) for b in _batches(base)])
    stream = create(client, "stream")
    out["remote upsert_stream"] = _rate(n, lambda: sum(a.rows for a in stream.upsert_stream(_batches(base))))
    arrow = create(client, "arrow")
    vec_type = pa.list_(pa.float32(), base.shape[1])
    tables = [pa.table({"id": pa.array(ids, pa.int64()),
                        "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), base.shape[1]).cast(vec_type),
                        "n": pa.array(ids, pa.int64())}) for ids, v, _ in _batches(base)]
    out["remote Arrow upsert"] = _rate(n, lambda: [arrow.upsert(t) for t in tables])
    return {k: round(v) for k, v in out.items()}


def serial(search, Q: np.ndarray, repeats: int) -> dict:
    """Per-query latency in ms (p50/p99 of the pooled repeats)."""
    lat = []
    for _ in range(repeats):
        for q in Q:
            t0 = time.perf_counter()
            search(q[None])
            lat.append(time.perf_counter() - t0)
    a = np.array(lat) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": len(a)}


def qps(make_search, Q: np.ndarray, threads: int, seconds: float) -> float:
    """Queries per second with ``threads`` threads each searching for ``seconds``."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(t: int):
        search, close = make_search()
        try:
            i = t
            start.wait()
            while time.perf_counter() < stop_at[0]:
                search(Q[i % len(Q)][None])
                counts[t] += 1
                i += threads
        finally:
            close()

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    stop_at[0] = time.perf_counter() + seconds + 0.2
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer rows, queries and seconds")
    ap.add_argument("--rows", type=int, default=None, help="base rows to load (default: all, quick: 20,000)")
    ap.add_argument("--synthetic", action="store_true", help="random vectors instead of WordNet-MiniLM")
    args = ap.parse_args()
    rows = args.rows or (20_000 if args.quick else 1 << 30)
    n_q, repeats, seconds = (200, 1, 1.0) if args.quick else (1000, 3, 5.0)
    base, Q, source = _data(rows, n_q, args.synthetic)

    from vecdb_client import Client
    import vecdb

    work = Path(tempfile.mkdtemp(prefix="vecdb-bench-service-"))
    result = {"dataset": source, "rows": len(base), "dim": base.shape[1], "queries": len(Q), "k": 10,
              "quick": args.quick, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                               "python": platform.python_version()}}
    try:
        with ChildServer(work / "served") as server, Client(server.address) as client:
            with vecdb.connect(work / "embedded") as db:
                result["bulk_rows_per_s"] = bulk(client, db, base)
            remote = client.collection("stream")
            remote.flush()
            _wait_for_indexes(remote)
            served = vecdb.connect(work / "served", read_only=True)    # the same files, this process
            col = served.get_collection("stream")
            col.wait_for_indexes()
            result["serial"] = {
                "in-process": serial(lambda q: col.search(q, k=10), Q, repeats),
                "remote": serial(lambda q: remote.search(q, k=10), Q, repeats),
                "remote round trip (ListCollections)": serial(lambda q: client.list_collections(), Q, repeats)}
            result["serial"]["hop_p50_ms"] = result["serial"]["remote"]["p50_ms"] - result["serial"]["in-process"]["p50_ms"]

            def embedded_search():
                return (lambda q: col.search(q, k=10)), (lambda: None)

            def remote_search():
                c = Client(server.address)
                r = c.collection("stream")
                return (lambda q: r.search(q, k=10)), c.close
            result["qps"] = {"in-process": {t: qps(embedded_search, Q, t, seconds) for t in CONCURRENCY},
                             "remote": {t: qps(remote_search, Q, t, seconds) for t in CONCURRENCY}}
            served.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(result)


def report(r: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    bulk_r, s, q = r["bulk_rows_per_s"], r["serial"], r["qps"]
    emb = bulk_r["embedded upsert"]
    lines = [f"vecdb service benchmark — {r['dataset']} ({r['rows']:,} x {r['dim']}), {r['queries']} queries, "
             f"k={r['k']}, {r['machine']['cpus']} cpus{' (quick)' if r['quick'] else ''}", "",
             "| serial search, k=10 | p50 ms | p99 ms |", "| --- | --- | --- |"]
    for side in ("in-process", "remote", "remote round trip (ListCollections)"):
        lines.append(f"| {side} | {s[side]['p50_ms']:.3f} | {s[side]['p99_ms']:.3f} |")
    lines += [f"| gRPC hop at p50 (target <= 0.3 ms) | {s['hop_p50_ms']:.3f} | |", "",
              "| threads | " + " | ".join(str(t) for t in CONCURRENCY) + " |",
              "| --- |" + " --- |" * len(CONCURRENCY)]
    for side in ("in-process", "remote"):
        lines.append(f"| {side} QPS | " + " | ".join(f"{q[side][t]:,.0f}" for t in CONCURRENCY) + " |")
    best = {side: max(q[side].values()) for side in q}
    lines += [f"best remote / best in-process QPS (target >= 0.8): {best['remote'] / best['in-process']:.2f}", "",
              "| bulk load | rows/s | vs embedded (target >= 0.8 for stream and Arrow) |", "| --- | --- | --- |"]
    for name, v in bulk_r.items():
        lines.append(f"| {name} | {v:,} | {v / emb:.2f} |")
    text = "\n".join(lines)
    print(text)
    r["qps"] = {side: {str(t): v for t, v in d.items()} for side, d in q.items()}
    (RESULTS / "service.json").write_text(json.dumps(r, indent=1))
    (RESULTS / "service.md").write_text(text + "\n")
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no service.png")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for side in ("in-process", "remote"):
        ax[0].plot(CONCURRENCY, [q[side][t] for t in CONCURRENCY], marker="o", label=side)
    ax[0].set_xscale("log", base=2)
    ax[0].set_xlabel("threads")
    ax[0].set_title("search QPS, k=10")
    ax[0].legend()
    ax[1].bar(list(bulk_r), list(bulk_r.values()), color="#55a868")
    ax[1].set_title("bulk load rows/s")
    ax[1].tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(RESULTS / "service.png", dpi=110)


if __name__ == "__main__":
    warn_openblas()
    main()
