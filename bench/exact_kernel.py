"""Exact-search kernel vs faiss.IndexFlatIP / IndexFlatL2: QPS ratios (vecdb / faiss).

    python -m bench.exact_kernel [--threads 1 2] [--rounds 7] [--quick] [--no-env-rerun]

Data: GloVe-6B-50d (390,000 x 50, from ../shared/data via bench.datasets; random float32 of
the same shape when not prepared), random 384-d (116,659 rows, the WordNet/MiniLM size) and,
when prepared, WordNet/MiniLM itself;
k=10, metrics ip and l2. Modes: one query at a time (q=1, called in a loop) and batches of
100 queries. Both libraries get the same thread count (``faiss.omp_set_num_threads`` and
``numba.set_num_threads``; numpy's BLAS is not used by the kernel).

Method (DESIGN §10, and the machine is shared and noisy): each round times faiss then vecdb
(the order alternates) on the same queries, with a pause between them so the other runtime's
spinning OpenMP threads have parked; the ratio is taken per round and the median ratio over
rounds is reported, with median QPS. l2 gets precomputed norms (as a sealed segment keeps
them); the ``l2 no-norms`` column times the batch path computing them per call.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are printed; when either is set the whole run is repeated
in a child process with both removed (faiss's bundled OpenBLAS reads them too). Prints a table
and writes bench/results/exact_kernel.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
K = 10


def _datasets(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20261127)
    out = {}
    try:
        from bench.datasets import load

        glove = load("glove-6b-50d")
        out["glove-50"] = (np.ascontiguousarray(glove.base, dtype=np.float32),
                           np.ascontiguousarray(glove.queries, dtype=np.float32))
    except (SystemExit, FileNotFoundError, OSError) as e:
        print(f"# glove-6b-50d not available ({e}); using random float32 of its shape")
        out["random-50"] = (rng.standard_normal((390_000, 50), dtype=np.float32),
                            rng.standard_normal((1_000, 50), dtype=np.float32))
    out["random-384"] = (rng.standard_normal((116_659, 384), dtype=np.float32),
                         rng.standard_normal((1_000, 384), dtype=np.float32))
    try:  # the real 384-d set, when prepared
        from bench.datasets import load

        minilm = load("wordnet-3.0-glosses/minilm")
        out["wordnet-384"] = (np.ascontiguousarray(minilm.base, dtype=np.float32),
                              np.ascontiguousarray(minilm.queries, dtype=np.float32))
    except (SystemExit, FileNotFoundError, OSError):
        pass
    if quick:
        out = {name: (b[: len(b) // 4], q) for name, (b, q) in out.items()}
    return out


def _blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [{key: info.get(key) for key in ("internal_api", "version", "architecture",
                                            "threading_layer", "filepath")}
            for info in threadpool_info()]


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _compare(faiss_fn, vecdb_fn, n_queries: int, rounds: int, pause: float) -> dict:
    """Median per-round QPS ratio (vecdb / faiss); faiss and vecdb alternate who goes first."""
    faiss_fn()
    vecdb_fn()  # warm-up (JIT, page cache, caches)
    ratios, f_qps, v_qps = [], [], []
    for r in range(rounds):
        order = (faiss_fn, vecdb_fn) if r % 2 == 0 else (vecdb_fn, faiss_fn)
        took = {}
        for fn in order:
            time.sleep(pause)
            took[fn] = _time(fn)
        f_qps.append(n_queries / took[faiss_fn])
        v_qps.append(n_queries / took[vecdb_fn])
        ratios.append(took[faiss_fn] / took[vecdb_fn])
    return {"ratio": statistics.median(ratios), "faiss_qps": statistics.median(f_qps),
            "vecdb_qps": statistics.median(v_qps), "ratios": ratios}


def run(threads: list[int], rounds: int, quick: bool) -> dict:
    import faiss
    import numba

    from vecdb.index.exact import exact_search, squared_norms

    pause = 0.05
    single = 25 if quick else 60
    batches = 1 if quick else 3
    rows = []
    for name, (base, queries) in _datasets(quick).items():
        norms = squared_norms(base)
        for metric in ("ip", "l2"):
            index = (faiss.IndexFlatIP if metric == "ip" else faiss.IndexFlatL2)(base.shape[1])
            index.add(base)
            for t in threads:
                faiss.omp_set_num_threads(t)
                numba.set_num_threads(t)
                one = [queries[i:i + 1] for i in range(single)]
                many = [queries[i * 100:(i + 1) * 100] for i in range(batches)]

                def faiss_one():
                    for q in one:
                        index.search(q, K)

                def vecdb_one():
                    for q in one:
                        exact_search(base, q, K, metric, norms=norms)

                def faiss_many():
                    for q in many:
                        index.search(q, K)

                def vecdb_many():
                    for q in many:
                        exact_search(base, q, K, metric, norms=norms)

                def vecdb_many_no_norms():
                    for q in many:
                        exact_search(base, q, K, metric)

                row = {"dataset": name, "n": len(base), "d": base.shape[1], "metric": metric,
                       "threads": t,
                       "q1": _compare(faiss_one, vecdb_one, single, rounds, pause),
                       "batch100": _compare(faiss_many, vecdb_many, 100 * batches, rounds, pause)}
                if metric == "l2":
                    row["batch100_no_norms"] = _compare(faiss_many, vecdb_many_no_norms,
                                                        100 * batches, rounds, pause)
                rows.append(row)
                _print_row(row)
    return {"rows": rows}


def _print_header() -> None:
    print(f"{'dataset':<11} {'metric':<6} {'thr':>3} | {'q=1 ratio':>9} {'faiss qps':>9} "
          f"{'vecdb qps':>9} | {'b100 ratio':>10} {'faiss qps':>9} {'vecdb qps':>9} | "
          f"{'l2 no-norms':>11}")


def _print_row(row: dict) -> None:
    q1, b = row["q1"], row["batch100"]
    extra = (f"{row['batch100_no_norms']['ratio']:>11.2f}" if "batch100_no_norms" in row
             else " " * 11)
    print(f"{row['dataset']:<11} {row['metric']:<6} {row['threads']:>3} | {q1['ratio']:>9.2f} "
          f"{q1['faiss_qps']:>9.0f} {q1['vecdb_qps']:>9.0f} | {b['ratio']:>10.2f} "
          f"{b['faiss_qps']:>9.0f} {b['vecdb_qps']:>9.0f} | {extra}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="quarter-size data, fewer queries")
    parser.add_argument("--no-env-rerun", action="store_true",
                        help="do not repeat the run with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset")
    parser.add_argument("--json", type=Path, default=RESULTS / "exact_kernel.json")
    args = parser.parse_args(argv)

    import faiss
    import numba

    env = {var: os.environ.get(var) for var in BLAS_VARS}
    print(f"# OPENBLAS env: {env}")
    print(f"# cpu count {os.cpu_count()}, numba {numba.__version__} "
          f"(threading layer after first use), faiss {faiss.__version__} "
          f"({faiss.get_compile_options()}), numpy {np.__version__}")
    for info in _blas_info():
        print(f"# BLAS/OpenMP: {info}")
    _print_header()
    result = run(args.threads, args.rounds, args.quick)
    print(f"# numba threading layer: {numba.threading_layer()}")
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count()},
              "versions": {"numpy": np.__version__, "numba": numba.__version__,
                           "faiss": faiss.__version__, "python": platform.python_version()},
              "parameters": {"k": K, "threads": args.threads, "rounds": args.rounds,
                             "quick": args.quick},
              "openblas_env": env, "blas": _blas_info(), "as_is": result}
    if any(env.values()) and not args.no_env_rerun:
        print(f"# rerun with {' and '.join(BLAS_VARS)} unset")
        child_env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
        cmd = [sys.executable, "-m", "bench.exact_kernel", "--no-env-rerun", "--rounds",
               str(args.rounds), "--json", str(args.json.with_suffix(".unset.json")),
               "--threads", *map(str, args.threads)] + (["--quick"] if args.quick else [])
        subprocess.run(cmd, env=child_env, check=True)
        report["unset_env_json"] = str(args.json.with_suffix(".unset.json"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
