"""GPU exact-search benchmark: TorchExact and GpuExact (index/gpu.py) vs torch.topk(Q @ X.T).

    python3 bench/gpu_exact.py [--quick] [--cpu-check]      (from the repository root)

Self-contained for a GPU machine with torch, numba-cuda, numpy (no faiss, no network, no
installed vecdb needed): without an install, ``vecdb.index`` is loaded by path from this
checkout; ``vecdb`` loads lazily, so only ``index/gpu.py``, ``index/exact.py`` and the errors
load. Random float32 N(0, 1) data generated on the GPU with torch; metric ip,
k=10. For n = 1,000,000 and 116,659 (d = 384): QPS in batches of 100 queries and one query
at a time (warm, median of >= 5 timed repeats, synchronised) for GpuExact and for the
reference ``torch.topk(Q @ X.T, k)`` in fp32 with TF32 disabled; recall of GpuExact against
torch's top-k (1.0 expected up to ties); an l2 check on the small case. Prints a summary and
writes ``$OUT/gpu_exact.json`` (OUT defaults to bench/results). Bounded to a few minutes.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
T_START = time.perf_counter()
DEADLINE_S = 200.0  # stop starting new measurements after this (the script stays < 4 min)


def _load_vecdb_modules():
    """Import vecdb.index.gpu: installed if it is, else straight from this checkout (``vecdb``
    loads lazily, so this pulls in neither the engine nor the API)."""
    try:
        return importlib.import_module("vecdb.index.gpu")
    except ModuleNotFoundError:
        pass
    sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]
    spec = importlib.util.spec_from_file_location(
        "vecdb.index", ROOT / "index" / "__init__.py",
        submodule_search_locations=[str(ROOT / "index")])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["vecdb.index"] = pkg
    spec.loader.exec_module(pkg)
    return importlib.import_module("vecdb.index.gpu")


def _left() -> float:
    return DEADLINE_S - (time.perf_counter() - T_START)


def _median_time(fn, repeats: int, budget_s: float) -> tuple[float, int]:
    """Median seconds of fn() over >= repeats runs (more while the time budget allows)."""
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < repeats or (time.perf_counter() < t_end and len(times) < 20):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= repeats and time.perf_counter() > t_end:
            break
    return statistics.median(times), len(times)


def _recall(rows_a: np.ndarray, rows_b: np.ndarray) -> float:
    k = rows_b.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(rows_a, rows_b)]))


def _tie_aware_ok(scores_a, ref_kth, tol=1e-4) -> float:
    """Fraction of returned entries at least as good as torch's k-th score (ip, - tol)."""
    kth = ref_kth[:, None]
    return float(np.mean(scores_a >= kth - tol * np.maximum(1, np.abs(kth))))


def run_case(gpu, torch, n: int, d: int, k: int, batch: int, singles: int, repeats: int,
             seed: int, l2_check: bool, cpu_check: bool) -> dict:
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(seed)
    xt = torch.randn(n, d, generator=g, device=dev, dtype=torch.float32)
    qt = torch.randn(batch, d, generator=g, device=dev, dtype=torch.float32)
    x = xt.cpu().numpy()
    q = qt.cpu().numpy()
    res: dict = {"n": n, "d": d, "k": k, "batch": batch, "metric": "ip"}

    # reference: torch fp32 matmul + topk
    def torch_batch():
        v, i = torch.topk(qt @ xt.T, k, dim=1)
        torch.cuda.synchronize()
        return v, i

    v_t, i_t = torch_batch()
    v_t, i_t = v_t.cpu().numpy(), i_t.cpu().numpy()

    sec, reps = _median_time(torch_batch, repeats, min(5.0, max(1.0, _left() / 8)))
    res["torch_batch_qps"] = batch / sec
    res["torch_batch_ms"] = sec * 1e3

    # the engine's first backend: TorchExact (cuBLAS blocks + topk, host in and out)
    tx = gpu.TorchExact(x, "ip", "cuda")
    s_x, r_x = tx.search(q, k)
    res["torch_exact_recall_vs_torch"] = _recall(r_x, i_t)
    res["torch_exact_max_abs_score_diff"] = float(np.max(np.abs(s_x - v_t)))
    sec, reps = _median_time(lambda: tx.search(q, k), repeats, min(5.0, max(1.0, _left() / 8)))
    res["torch_exact_batch_qps"] = batch / sec
    res["torch_exact_batch_ratio_to_torch"] = res["torch_exact_batch_qps"] / res["torch_batch_qps"]
    sec, reps = _median_time(lambda: [tx.search(q[i:i + 1], k) for i in range(min(singles, batch))],
                             repeats, min(5.0, max(1.0, _left() / 8)))
    res["torch_exact_single_qps"] = min(singles, batch) / sec
    del tx
    if not gpu.gpu_available():            # the fused Numba kernel needs numba-cuda
        res["gpu_exact"] = "unavailable: " + gpu.gpu_description()
        return res

    t0 = time.perf_counter()
    index = gpu.GpuExact(x, "ip")
    res["build_s"] = time.perf_counter() - t0
    res["device_bytes"] = index.nbytes
    t0 = time.perf_counter()
    s_g, r_g = index.search(q, k)  # first call: includes the kernels' JIT compile if any
    res["first_search_s"] = time.perf_counter() - t0
    res["recall_vs_torch"] = _recall(r_g, i_t)
    res["tie_aware_match_vs_torch"] = _tie_aware_ok(s_g, v_t[:, -1])
    res["max_abs_score_diff_vs_torch"] = float(np.max(np.abs(s_g - v_t)))

    sec, reps = _median_time(lambda: index.search(q, k), repeats, min(10.0, max(1.0, _left() / 8)))
    res["gpu_exact_batch_qps"] = batch / sec
    res["gpu_exact_batch_ms"] = sec * 1e3
    res["gpu_exact_batch_repeats"] = reps

    # one query at a time
    singles = min(singles, batch)
    qs = [q[i:i + 1] for i in range(singles)]
    qts = [qt[i:i + 1] for i in range(singles)]

    def gpu_single():
        for qq in qs:
            index.search(qq, k)

    def torch_single():
        for qq in qts:
            torch.topk(qq @ xt.T, k, dim=1)[1].cpu()  # .cpu(): results to the host, synced

    gpu_single()
    torch_single()
    sec, reps = _median_time(gpu_single, repeats, min(10.0, max(1.0, _left() / 8)))
    res["gpu_exact_single_qps"] = singles / sec
    res["gpu_exact_single_ms"] = sec * 1e3 / singles
    sec, reps = _median_time(torch_single, repeats, min(5.0, max(1.0, _left() / 8)))
    res["torch_single_qps"] = singles / sec
    res["torch_single_ms"] = sec * 1e3 / singles

    if l2_check:
        gl2 = gpu.GpuExact(x, "l2")
        s2, r2 = gl2.search(q, k)
        d2 = (qt * qt).sum(1, keepdim=True) - 2 * qt @ xt.T + (xt * xt).sum(1)[None, :]
        v2, i2 = torch.topk(d2, k, dim=1, largest=False)
        res["l2_recall_vs_torch"] = _recall(r2, i2.cpu().numpy())
        res["l2_max_abs_score_diff_vs_torch"] = float(np.max(np.abs(s2 - v2.cpu().numpy())))
        del gl2, d2
    if cpu_check:  # congruence with the CPU kernel (its Numba compile can take ~30 s)
        exact = importlib.import_module("vecdb.index.exact")
        s_c, r_c = exact.exact_search(x, q[:10], k, "ip")
        res["rows_equal_cpu_kernel_10q"] = bool(np.array_equal(r_c, r_g[:10]))
        res["max_abs_score_diff_cpu_kernel"] = float(np.max(np.abs(s_c - s_g[:10])))
    del index, xt, qt
    torch.cuda.empty_cache()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--cpu-check", action="store_true",
                    help="also compare 10 queries with the CPU kernel exact_search")
    args = ap.parse_args()

    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = _load_vecdb_modules()
    import numba

    out_dir = Path(os.environ.get("OUT") or ROOT / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "device": torch.cuda.get_device_name(0),
        "gpu_available": gpu.gpu_available(),
        "gpu_description": gpu.gpu_description(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "precision": "fp32 both; torch.backends.cuda.matmul.allow_tf32 = False",
        "reference": "torch.topk(Q @ X.T, k) on the same GPU",
        "gpu_exact": "index/gpu.py GpuExact: fused Numba CUDA scan + per-thread top-k + "
                     "block merge, tiles merged by a second kernel",
        "cases": [],
    }
    print(f"device: {report['device']}  (numba sees: {report['gpu_description']})")
    cases = [(1_000_000, 384), (116_659, 384)]
    if args.quick:
        cases = [(20_000, 384), (11_659, 384)]
    for i, (n, d) in enumerate(cases):
        if _left() < 30:
            print(f"skipping n={n}: time budget spent")
            continue
        res = run_case(gpu, torch, n, d, k=10, batch=100, singles=100, repeats=5, seed=i,
                       l2_check=(i == len(cases) - 1), cpu_check=args.cpu_check)
        report["cases"].append(res)
        print(json.dumps(res, indent=1))
        print(f"n={n} d={d} k=10: batch100 TorchExact {res['torch_exact_batch_qps']:,.0f} QPS "
              f"(recall vs torch {res['torch_exact_recall_vs_torch']:.4f}), single "
              f"{res['torch_exact_single_qps']:,.0f} QPS")
        if "gpu_exact_batch_qps" in res:
            print(f"  GpuExact batch100 {res['gpu_exact_batch_qps']:,.0f} QPS vs torch "
                  f"{res['torch_batch_qps']:,.0f} QPS; single {res['gpu_exact_single_qps']:,.0f} vs "
                  f"{res['torch_single_qps']:,.0f} QPS; recall vs torch {res['recall_vs_torch']:.4f}")
    report["total_s"] = time.perf_counter() - T_START
    path = out_dir / "gpu_exact.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path} in {report['total_s']:.0f}s")


if __name__ == "__main__":
    main()
