"""GpuExact (index/gpu.py) against the CPU kernel ``exact_search``.

The simulator test runs the real kernels in Numba's CUDA simulator in a subprocess (the
simulator must be chosen before numba is imported), on tiny sizes; the other tests need a
CUDA GPU and are skipped without one.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vecdb.index.gpu import KMAX, GpuExact, gpu_available, gpu_description

ROOT = Path(__file__).resolve().parents[2]
needs_gpu = pytest.mark.skipif(not gpu_available(),
                               reason=f"no CUDA GPU: {gpu_description()}")

# Shared by the simulator script and the GPU tests: GpuExact must equal the CPU kernel.
CHECK = '''
import numpy as np
from vecdb.index.exact import exact_search
from vecdb.index.gpu import GpuExact

def check(g, vectors, queries, k, metric, allowed=None, exact_ties=False):
    s, r = g.search(queries, k, allowed)
    cs, cr = exact_search(vectors, queries, k, metric, allowed)
    assert s.dtype == np.float32 and r.dtype == np.int64 and s.shape == r.shape == cs.shape
    assert np.array_equal(r == -1, cr == -1), (r, cr)
    assert np.array_equal(np.isinf(s), np.isinf(cs))
    assert np.array_equal(s[np.isinf(s)], cs[np.isinf(cs)])
    fin = ~np.isinf(cs)
    np.testing.assert_allclose(s[fin], cs[fin], rtol=1e-5, atol=1e-5)
    if exact_ties:  # integer data: every score is exact, so ties must go to the lower row
        assert np.array_equal(r, cr), (r, cr)
        return
    # rows must agree wherever the CPU score is clear of every other candidate's
    ks, _ = exact_search(vectors, queries, k + 1, metric, allowed)
    for i in range(len(cs)):
        for j in range(k):
            if cr[i, j] < 0:
                continue
            others = np.delete(ks[i][~np.isinf(ks[i])], j)
            if others.size == 0 or np.min(np.abs(others - cs[i, j])) > 1e-4:
                assert r[i, j] == cr[i, j], (i, j, r[i], cr[i])
'''

SIM_SCRIPT = CHECK + '''
import time
from vecdb.index.gpu import gpu_available, gpu_description
assert gpu_available(), gpu_description()
t0 = time.perf_counter()
rng = np.random.default_rng(7)
x = rng.standard_normal((160, 8)).astype(np.float32)
q = rng.standard_normal((3, 8)).astype(np.float32)
half = rng.random(160) < 0.5
few = np.zeros(160, bool); few[rng.choice(160, 3, replace=False)] = True
for metric in ("ip", "l2"):
    g = GpuExact(x, metric)
    assert g.nbytes == x.nbytes
    check(g, x, q, 5, metric)
    check(g, x, q[:1], 1, metric, half)
    check(g, x, q[:2], 5, metric, few)                    # fewer allowed rows than k
    check(g, x, q, 5, metric, np.zeros(160, bool))        # all false: padding only
    check(g, x, q[:2], 70, metric)                        # k > 64: the CPU fallback
# k > n, d not a multiple of the staged width; integer data with duplicate rows: exact ties
xi = rng.integers(-2, 3, (40, 11)).astype(np.float32)
xi[20:30] = xi[0:10]
xs = xi[:9].copy()
qi = rng.integers(-2, 3, (2, 11)).astype(np.float32)
for metric in ("ip", "l2"):
    g = GpuExact(xi, metric)
    check(GpuExact(xs, metric), xs, qi, 12, metric, exact_ties=True)  # k > n: padded
    check(g, xi, qi, 7, metric, xi[:, 0] >= 0, exact_ties=True)
    print(metric, f"{time.perf_counter() - t0:.1f}s")
print(f"simulator ok in {time.perf_counter() - t0:.1f}s")
'''


def test_simulator_matches_cpu_kernel():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", VECDB_GPU_SIMULATOR="1")
    env.pop("VECDB_GPU", None)
    proc = subprocess.run([sys.executable, "-c", SIM_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "simulator ok" in proc.stdout


def test_simulator_needs_opt_in():
    """Under the simulator without VECDB_GPU_SIMULATOR=1 the GPU path stays off."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env.pop("VECDB_GPU_SIMULATOR", None)
    code = "from vecdb.index.gpu import gpu_available as a, gpu_description as d; print(a(), d())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("False")


def test_disabled_by_env():
    env = dict(os.environ, VECDB_GPU="0")
    code = "from vecdb.index.gpu import gpu_available as a, gpu_description as d; print(a(), d())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False disabled by VECDB_GPU=0"


# --------------------------------------------------------------------------- real GPU

_ns: dict = {}
exec(CHECK, _ns)
check = _ns["check"]


@needs_gpu
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_gpu_matches_cpu_kernel(metric):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50_000, 96)).astype(np.float32)
    q = rng.standard_normal((37, 96)).astype(np.float32)
    g = GpuExact(x, metric)
    allowed = rng.random(len(x)) < 0.3
    for k in (1, 10, KMAX):
        check(g, x, q, k, metric)
        check(g, x, q[:1], k, metric, allowed)
    check(g, x, q[:3], 100, metric)  # fallback
    sparse = np.zeros(len(x), bool)
    sparse[rng.choice(len(x), 5, replace=False)] = True
    check(g, x, q, 10, metric, sparse)
    check(g, x, q, 10, metric, np.zeros(len(x), bool))


@needs_gpu
def test_gpu_exact_ties_and_odd_shapes():
    rng = np.random.default_rng(2)
    x = rng.integers(-2, 3, (20_011, 45)).astype(np.float32)
    x[10_000:11_000] = x[:1000]
    q = rng.integers(-2, 3, (9, 45)).astype(np.float32)
    for metric in ("ip", "l2"):
        g = GpuExact(x, metric)
        check(g, x, q, 33, metric, exact_ties=True)
        check(g, x, q[:1], 64, metric, x[:, 3] > 0, exact_ties=True)


# ---- the cuBLAS backend (TorchExact): the same code runs on the CPU here, on CUDA in the engine

@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_torch_backend_matches_cpu_kernel(metric, monkeypatch):
    import vecdb.index.gpu as gpu
    from vecdb.index.exact import exact_search
    monkeypatch.setattr(gpu, "_CHUNK_ELEMS", 40 * 37)     # several row blocks, merged
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 37)).astype(np.float32)
    q = rng.normal(size=(40, 37)).astype(np.float32)
    t = gpu.TorchExact(x, metric, device="cpu")
    allowed = rng.random(1000) < 0.3
    for k, mask in ((10, None), (10, allowed), (50, allowed), (1, None)):
        s, r = t.search(q, k, mask)
        cs, cr = exact_search(x, q, k, metric, mask)
        assert s.dtype == np.float32 and r.dtype == np.int64 and s.shape == (40, k)
        np.testing.assert_array_equal(r, cr)                  # random data: no ties
        np.testing.assert_allclose(s, cs, rtol=1e-4, atol=1e-3)


def test_torch_backend_pads_when_few_rows_pass():
    from vecdb.index.gpu import TorchExact
    x = np.eye(5, dtype=np.float32)
    t = TorchExact(x, "ip", device="cpu")
    allowed = np.array([False, True, False, True, False])
    s, r = t.search(x, 4, allowed)
    assert (r[:, 2:] == -1).all() and np.isneginf(s[:, 2:]).all()
    assert set(r[1, :2]) == {1, 3} and r[1, 0] == 1
    s, r = t.search(x, 3, np.zeros(5, bool))
    assert (r == -1).all()


def test_no_backend_without_a_driver_or_when_disabled(monkeypatch):
    import vecdb.index.gpu as gpu
    monkeypatch.setenv("VECDB_GPU", "0")
    gpu.device_backend.cache_clear()
    try:
        assert gpu.device_backend() == (None, "disabled by VECDB_GPU=0")
        assert gpu.device_exact(np.ones((3, 2), np.float32), "ip") is None
    finally:
        gpu.device_backend.cache_clear()
