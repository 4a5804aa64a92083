"""Storage-engine benchmark (issue 2): ingest, reopen, exact search vs faiss.IndexFlat, scan bandwidth.

    python -m bench.storage [--threads N] [--quick]

On GloVe-6B-50d (390k base, 1,000 queries, cosine) from ../shared/data, plus ingest of 384-d
WordNet/MiniLM vectors when that dataset is prepared. Peers run in the same process on the
same data with the same pinned thread count; figures are medians of repeats. Prints a table
and writes bench/results/storage.json and storage.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import warn_openblas
from bench.datasets import load, recall_at

RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def memory_bandwidth() -> float:
    """Read bandwidth in GB/s with the current Numba thread count: a vectorised parallel sum
    over 1 GiB, far larger than any cache (best of 5)."""
    import numba

    @numba.njit(parallel=True, nogil=True, fastmath=True, cache=True)
    def _sum(a):
        rows = a.reshape(-1, 4096)
        acc = np.zeros(rows.shape[0], dtype=np.float32)
        for i in numba.prange(rows.shape[0]):
            acc[i] = rows[i].sum()
        return acc.sum()

    a = np.ones(1 << 28, dtype=np.float32)
    _sum(a)
    best = min(_median_time(lambda: _sum(a), 1) for _ in range(5))
    return a.nbytes / best / 1e9


def ingest(path: Path, vectors: np.ndarray, durability: str, batch: int) -> dict:
    import vecdb
    n = len(vectors)
    with vecdb.connect(path, durability=durability) as db:
        col = db.create_collection("bench", dim=vectors.shape[1], metric="cosine",
                                   schema={"n": "int64"}, id_type="int64")
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            ids = list(range(s, min(s + batch, n)))
            col.upsert(ids=ids, vectors=vectors[s:s + batch], payloads=[{"n": i} for i in ids])
        t_ack = time.perf_counter() - t0
        col.flush()
        t_all = time.perf_counter() - t0
    return {"durability": durability, "rows": n, "dim": vectors.shape[1], "batch": batch,
            "rows_per_s": n / t_ack, "rows_per_s_incl_flush": n / t_all}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true", help="fewer queries and repeats (smoke run)")
    args = ap.parse_args()

    import faiss
    import numba
    import pyarrow
    import vecdb
    t = args.threads
    faiss.omp_set_num_threads(t)
    numba.set_num_threads(t)
    n_single = 200 if args.quick else 1000
    repeats = 1 if args.quick else 3

    ds = load("glove-6b-50d")
    work = Path(tempfile.mkdtemp(prefix="vecdb-bench-"))
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": t,
                          "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")},
              "versions": {"vecdb": vecdb.__version__, "numpy": np.__version__, "faiss": faiss.__version__,
                           "numba": numba.__version__, "pyarrow": pyarrow.__version__},
              "dataset": ds.name, "n": len(ds.base), "dim": ds.base.shape[1]}
    try:
        # ---- ingest ---------------------------------------------------------------------
        rows = []
        for durability in ("always", "batch"):
            rows.append(ingest(work / f"ingest-{durability}", ds.base, durability, 1000))
            shutil.rmtree(work / f"ingest-{durability}")
        try:
            v384, source = load("wordnet-3.0-glosses/minilm").base, "wordnet-3.0-glosses/minilm"
        except SystemExit:
            # Ingest cost does not depend on the values; the WordNet set needs minutes of
            # embedding to prepare, so fall back to unit-norm random vectors of its shape.
            rng = np.random.default_rng(0)
            v384 = rng.standard_normal((116_659, 384), dtype=np.float32)
            source = "random unit vectors, 116,659 x 384 (WordNet/MiniLM set not prepared)"
        for durability in ("batch", "always"):
            row = ingest(work / f"ingest-384-{durability}", v384, durability, 1000)
            row["source"] = source
            rows.append(row)
            shutil.rmtree(work / f"ingest-384-{durability}")
        result["ingest"] = rows

        # ---- build the collection once, reopen ------------------------------------------
        path = work / "glove"
        with vecdb.connect(path, durability="batch") as db:
            col = db.create_collection("glove", dim=ds.base.shape[1], metric="cosine", id_type="int64")
            for s in range(0, len(ds.base), 10_000):
                col.upsert(ids=list(range(s, min(s + 10_000, len(ds.base)))), vectors=ds.base[s:s + 10_000])
            col.flush()
        reopen = []
        for _ in range(5):
            t0 = time.perf_counter()
            db = vecdb.connect(path)
            col = db.get_collection("glove")
            col.search(ds.queries[:1], k=10)
            reopen.append(time.perf_counter() - t0)
            db.close()
        result["reopen_s"] = statistics.median(reopen)

        db = vecdb.connect(path)
        col = db.get_collection("glove")
        seg = col._store.view().segments[0]
        X = seg.vectors                         # the mapped, normalised vectors vecdb searches
        Q = ds.queries / np.linalg.norm(ds.queries, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(X.shape[1])
        index.add(np.ascontiguousarray(X))
        col.search(Q[:100], k=10)               # JIT warm-up (also cached on disk)
        index.search(Q[:100], 10)

        found = np.array([[h.id for h in row] for row in col.search(Q, k=10)])
        result["recall_at_10"] = recall_at(found, ds.gt, 10)

        qs = Q[:n_single]
        search = {}
        for threads in sorted({1, t}):
            faiss.omp_set_num_threads(threads)
            numba.set_num_threads(threads)
            single_v = _median_time(lambda: [col.search(qs[i:i + 1], k=10) for i in range(len(qs))], repeats)
            single_f = _median_time(lambda: [index.search(qs[i:i + 1], 10) for i in range(len(qs))], repeats)
            batch_v = _median_time(lambda: [col.search(Q[s:s + 100], k=10) for s in range(0, len(Q), 100)], repeats)
            batch_f = _median_time(lambda: [index.search(Q[s:s + 100], 10) for s in range(0, len(Q), 100)], repeats)
            bw = memory_bandwidth()
            # bytes of vectors read per query: all of them one query at a time, 1/100 per query in a batch
            for mode, v, f, per_query in (("single", single_v, single_f, X.nbytes),
                                          ("batch100", batch_v, batch_f, X.nbytes / 100)):
                n_q = len(qs) if mode == "single" else len(Q)
                qps_v, qps_f = n_q / v, n_q / f
                search[f"{mode}, {threads} thread(s)"] = {
                    "threads": threads, "vecdb_qps": qps_v, "faiss_qps": qps_f, "ratio": qps_v / qps_f,
                    "scan_gb_s": per_query * qps_v / 1e9, "memory_bw_gb_s": bw,
                    "fraction_of_memory_bw": per_query * qps_v / 1e9 / bw}
        result["search"] = search
        db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report(result)


def report(r: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    lines = [f"vecdb storage benchmark — {r['dataset']} ({r['n']:,} x {r['dim']}), threads={r['machine']['threads']}, "
             f"OPENBLAS_CORETYPE={r['machine']['OPENBLAS_CORETYPE']}",
             "", "| ingest | dim | durability | rows/s (acknowledged) | rows/s (incl. final flush) |",
             "| --- | --- | --- | --- | --- |"]
    for i in r["ingest"]:
        lines.append(f"| {i['rows']:,} rows, batches of {i['batch']} | {i['dim']} | {i['durability']} | "
                     f"{i['rows_per_s']:,.0f} | {i['rows_per_s_incl_flush']:,.0f} |")
    lines += ["", "| exact search (k=10) | vecdb QPS | faiss.IndexFlatIP QPS | ratio (target >= 0.9) | "
              "vector scan GB/s | memory bw GB/s (same threads) | fraction |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for mode, v in r["search"].items():
        lines.append(f"| {mode} | {v['vecdb_qps']:,.0f} | {v['faiss_qps']:,.0f} | {v['ratio']:.2f} | "
                     f"{v['scan_gb_s']:.1f} | {v['memory_bw_gb_s']:.1f} | {v['fraction_of_memory_bw']:.0%} |")
    lines += ["", f"reopen of the {r['n']:,}-row collection (connect + first search): {r['reopen_s'] * 1000:.0f} ms (target <= 1000)",
              f"recall@10 of exact search vs shared ground truth: {r['recall_at_10']:.4f} (target 1.0)",
              f"384-d ingest data: {next((i['source'] for i in r['ingest'] if 'source' in i), '-')}"]
    text = "\n".join(lines)
    print(text)
    (RESULTS / "storage.json").write_text(json.dumps(r, indent=1))
    (RESULTS / "storage.md").write_text(text + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    modes = list(r["search"])
    ax[0].bar([m.replace(", ", "\n") for m in modes], [r["search"][m]["ratio"] for m in modes], color="#4c72b0")
    ax[0].axhline(0.9, color="red", ls="--", label="target 0.9")
    ax[0].set_title("exact search QPS, vecdb / faiss flat")
    ax[0].legend()
    ing = r["ingest"]
    ax[1].bar([f"{i['dim']}d {i['durability']}" for i in ing], [i["rows_per_s"] for i in ing], color="#55a868")
    ax[1].set_title("ingest rows/s")
    fig.tight_layout()
    fig.savefig(RESULTS / "storage.png", dpi=110)


if __name__ == "__main__":
    warn_openblas()
    main()
