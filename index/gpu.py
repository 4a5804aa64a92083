"""Exact top-k on a CUDA GPU (DESIGN §5), for batches of queries over sealed segments.

Two backends, chosen once per process by ``device_backend()`` and shown in ``col.stats()``:
torch's cuBLAS GEMM + ``torch.topk`` in row blocks (``TorchExact``) when torch has CUDA, else
a fused Numba CUDA distance + selection kernel (``GpuExact``, described below). The fused
kernel measured 0.03x the cuBLAS path on an H200 (bench/results/gpu_exact.json), which is
why cuBLAS comes first.

Optional: numba.cuda is imported lazily, so this module imports without a GPU; callers ask
``gpu_available()`` first and otherwise use the CPU kernel (``index/exact.py``), which is
always complete.

Kernel design (no (q, n) score matrix in global memory):
- Step 1, ``_scan``: a 2-D grid, block (x = query, y = tile of rows); x varies fastest, so the
  blocks of all queries on one tile run together and share its rows through L2. The block
  walks its tile ``_TPB`` rows at a time: the rows are staged in shared memory ``_DC``
  dimensions at a time (each warp loads a 128-byte run of one row: coalesced; padded stride:
  no bank conflicts) beside the same slice of the query, and thread t scores row t of the
  step. Each thread keeps its best k in local arrays (compile-time bound ``KMAX`` = 64,
  sorted insertion), then the block merges its threads' lists in shared memory (k rounds
  of a tree argmax over the list heads) into the tile's top-k, written to a small
  (q, tiles, k) candidate buffer.
- Step 2, ``_merge``: one block per query merges the tiles' candidates the same way into
  the final (q, k); only that is copied back.
- k > 64 (after clamping k to the allowed rows): not fused; served by the CPU kernel
  ``exact_search`` on the host vectors (kept by reference, never copied).

Scores are keys where higher is better (ip: x.q; l2: -sum (x - q)^2, the direct sum of
squares: no norms needed, and no cancellation near 0). Every row of a call goes through the
same arithmetic, so equal vectors get bit-equal scores and ties go to the lower row exactly,
as on the CPU. Scores may differ from the CPU kernel's in the last bits (summation order).

``NUMBA_ENABLE_CUDASIM=1`` runs the same kernels in Numba's CUDA simulator (slow; for tests):
``gpu_available()`` admits it only when ``VECDB_GPU_SIMULATOR=1`` is set as well.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import warnings

import numpy as np

from vecdb.errors import Unavailable
from vecdb.index.metric import metric_of
from vecdb.index.planner import GPU_MIN_QUERIES  # noqa: F401  (re-exported: the batch size for the GPU)

log = logging.getLogger("vecdb.index")

__all__ = ["gpu_available", "gpu_description", "GpuExact", "TorchExact", "KMAX", "GPU_MIN_QUERIES",
           "device_backend", "device_exact"]

KMAX = 64  # largest k the fused kernel serves (its per-thread local arrays)
_DC = 32  # dimensions staged in shared memory per step (one 128-byte run per row)
_SENTINEL = 2**31 - 1  # row of an empty slot: worse than any real row at an equal key
_TARGET_BLOCKS = 4096  # enough blocks to fill a large GPU several times over

cuda = None  # numba.cuda, bound by _kernels() on first use


def _simulator() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[bool, str]:
    """(usable, device name or the reason there is none); computed once per process."""
    if os.environ.get("VECDB_GPU", "") == "0":
        return False, "disabled by VECDB_GPU=0"
    try:
        if _simulator():
            if os.environ.get("VECDB_GPU_SIMULATOR", "") != "1":
                return False, "Numba CUDA simulator active (set VECDB_GPU_SIMULATOR=1 to use it)"
            return True, "Numba CUDA simulator"
        from numba import cuda
    except Exception as e:  # numba-cuda missing or broken
        return False, f"numba.cuda unavailable: {e}"
    try:
        if not cuda.is_available():
            return False, "no CUDA device or driver (numba.cuda.is_available() is False)"
        name = cuda.get_current_device().name
        return True, name.decode() if isinstance(name, bytes) else str(name)
    except Exception as e:
        return False, f"CUDA initialisation failed: {e}"


def gpu_available() -> bool:
    """Whether the CUDA path may be used (cached; False under VECDB_GPU=0)."""
    return _probe()[0]


def gpu_description() -> str:
    """The device name, or why there is no usable GPU."""
    return _probe()[1]


@functools.lru_cache(maxsize=1)
def _kernels():
    """Compile (lazily, once) and return the CUDA kernels and the block size they use."""
    # The kernels must see ``cuda`` as a module global: the simulator swaps it there.
    global cuda
    from numba import cuda as _cuda_module
    from numba import float32, int32

    cuda = _cuda_module

    # The simulator runs one Python thread per CUDA thread: keep its blocks small.
    tpb, dc = (8, 8) if _simulator() else (128, _DC)
    dcp = dc + 1  # padded row stride in shared memory: no bank conflicts
    kmax = KMAX
    sentinel = _SENTINEL

    @cuda.jit(device=True)
    def better(ka, ra, kb, rb):
        return ka > kb or (ka == kb and ra < rb)

    @cuda.jit(device=True)
    def offer(lk, lr, k, key, row):
        """Insert (key, row) into the sorted (best first) list lk/lr[:k] if it belongs."""
        if not better(key, row, lk[k - 1], lr[k - 1]):
            return
        p = k - 1
        while p > 0 and better(key, row, lk[p - 1], lr[p - 1]):
            lk[p] = lk[p - 1]
            lr[p] = lr[p - 1]
            p -= 1
        lk[p] = key
        lr[p] = row

    @cuda.jit(device=True)
    def block_merge(lk, lr, k, out_k, out_r):
        """Merge every thread's sorted list into the block's best k, written by thread 0.

        k rounds; each one finds the best list head by a tree argmax in shared memory and
        the owning thread advances. All threads of the block must call it.
        """
        sk = cuda.shared.array(tpb, float32)
        sr = cuda.shared.array(tpb, int32)
        sw = cuda.shared.array(tpb, int32)
        tid = cuda.threadIdx.x
        head = 0
        for t in range(k):
            if head < k:
                sk[tid] = lk[head]
                sr[tid] = lr[head]
            else:
                sk[tid] = -math.inf
                sr[tid] = sentinel
            sw[tid] = tid
            cuda.syncthreads()
            s = tpb // 2
            while s > 0:
                if tid < s and better(sk[tid + s], sr[tid + s], sk[tid], sr[tid]):
                    sk[tid] = sk[tid + s]
                    sr[tid] = sr[tid + s]
                    sw[tid] = sw[tid + s]
                cuda.syncthreads()
                s //= 2
            if tid == 0:
                out_k[t] = sk[0]
                out_r[t] = sr[0]
            if sw[0] == tid:
                head += 1
            cuda.syncthreads()

    @cuda.jit
    def scan(x, q, l2, mask, use_mask, k, tile_rows, cand_k, cand_r):
        """Block (query, tile): top-k of the tile's allowed rows into cand_k/cand_r[q, tile]."""
        shx = cuda.shared.array((tpb, dcp), float32)
        shq = cuda.shared.array(dc, float32)
        lk = cuda.local.array(kmax, float32)
        lr = cuda.local.array(kmax, int32)
        qi = cuda.blockIdx.x
        tile = cuda.blockIdx.y
        tid = cuda.threadIdx.x
        n, d = x.shape
        for t in range(k):
            lk[t] = -math.inf
            lr[t] = sentinel
        lo = tile * tile_rows
        hi = min(n, lo + tile_rows)
        for base in range(lo, hi, tpb):
            acc = float32(0.0)
            for j0 in range(0, d, dc):
                if tid < dc:
                    shq[tid] = q[qi, j0 + tid] if j0 + tid < d else float32(0.0)
                for idx in range(tid, tpb * dc, tpb):
                    r = idx // dc
                    c = idx - r * dc
                    if base + r < hi and j0 + c < d:
                        shx[r, c] = x[base + r, j0 + c]
                    else:
                        shx[r, c] = float32(0.0)
                cuda.syncthreads()
                if l2:
                    for c in range(dc):
                        diff = shx[tid, c] - shq[c]
                        acc += diff * diff
                else:
                    for c in range(dc):
                        acc += shx[tid, c] * shq[c]
                cuda.syncthreads()
            row = base + tid
            if row < hi and (not use_mask or mask[row] != 0):
                offer(lk, lr, k, -acc if l2 else acc, row)
        block_merge(lk, lr, k, cand_k[qi, tile], cand_r[qi, tile])

    @cuda.jit
    def merge(cand_k, cand_r, k, out_k, out_r):
        """Block per query: the best k of its (tiles, k) candidates into out_k/out_r[q]."""
        lk = cuda.local.array(kmax, float32)
        lr = cuda.local.array(kmax, int32)
        qi = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        for t in range(k):
            lk[t] = -math.inf
            lr[t] = sentinel
        tiles = cand_k.shape[1]
        for idx in range(tid, tiles * k, tpb):
            a = idx // k
            b = idx - a * k
            offer(lk, lr, k, cand_k[qi, a, b], cand_r[qi, a, b])
        block_merge(lk, lr, k, out_k[qi, 0], out_r[qi, 0])

    return scan, merge, tpb


def _tile_rows(n: int, nq: int, tpb: int) -> int:
    """Rows per tile: a multiple of the block size, enough tiles to fill the GPU."""
    target = 8 if _simulator() else _TARGET_BLOCKS  # simulator: a few tiles, to test merging
    tiles_wanted = max(1, -(-target // max(nq, 1)))
    rows = -(-n // tiles_wanted)
    return max(tpb, -(-rows // tpb) * tpb)


class GpuExact:
    """Exact search over one sealed segment's vectors held on the GPU.

    Built once per segment: the vectors are copied to the device once (``nbytes``); the host
    array is kept by reference (no copy unless it was not C-contiguous float32) for the k > 64
    fallback. ``search`` has exactly ``exact_search``'s contract. Not thread-safe per instance
    beyond what Numba's CUDA context allows; callers serialise GPU searches.
    """

    def __init__(self, vectors: np.ndarray, metric: str):
        if metric not in ("ip", "l2"):
            raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
        if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
            raise ValueError("vectors must be a 2-D numpy array")
        if vectors.shape[0] >= _SENTINEL:
            raise ValueError(f"GpuExact holds fewer than {_SENTINEL} rows")
        if not gpu_available():
            raise Unavailable(f"no usable CUDA GPU: {gpu_description()}")
        from numba import cuda

        self.metric = metric
        self._host = np.ascontiguousarray(vectors, dtype=np.float32)  # a copy only if needed
        self._n, self._d = self._host.shape
        self._dev = cuda.to_device(self._host)

    @property
    def nbytes(self) -> int:
        """Device bytes held (the vectors)."""
        return int(self._n) * int(self._d) * 4

    def search(self, queries: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of each query: scores (q, k) float32, rows (q, k) int64, best first.

        Same contract as ``exact_search``: ties to the lower row; padded with row -1 and score
        -inf (ip) / +inf (l2) when fewer than k rows are allowed; allowed is an optional bool
        mask (n,) (None = all rows). Synchronous: returns when the device is done.
        """
        from vecdb.index.exact import check_queries
        n, d = self._n, self._d
        queries, k = check_queries(queries, d, k)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.bool_)  # a copy only if it was not bool
            if allowed.shape != (n,):
                raise ValueError(f"allowed must be a bool mask of shape ({n},)")
        nq = queries.shape[0]
        pad = np.float32(metric_of(self.metric).worst)
        out_s = np.full((nq, k), pad, dtype=np.float32)
        out_r = np.full((nq, k), -1, dtype=np.int64)
        count = n if allowed is None else int(np.count_nonzero(allowed))
        kk = min(k, count)
        if kk == 0 or nq == 0:
            return out_s, out_r
        if kk > KMAX:  # not fused: the CPU kernel (see the module docstring)
            from vecdb.index.exact import exact_search

            return exact_search(self._host, queries, k, self.metric, allowed)
        keys, rows = self._fused(np.ascontiguousarray(queries, dtype=np.float32), kk, allowed,
                                 count)
        if self.metric == "l2":
            keys = -keys + np.float32(0.0)  # + 0: no -0.0 distances
        out_s[:, :kk] = keys
        out_r[:, :kk] = rows
        return out_s, out_r

    def _fused(self, queries, k, allowed, count):
        """Run the two kernels; (q, k) keys (higher better) and int64 rows on the host."""
        from numba import cuda

        scan, merge, tpb = _kernels()
        nq = queries.shape[0]
        use_mask = allowed is not None and count < self._n
        if use_mask:
            mask = cuda.to_device(allowed.view(np.uint8))
        else:
            mask = cuda.to_device(np.zeros(1, dtype=np.uint8))
        dq = cuda.to_device(queries)
        tile_rows = _tile_rows(self._n, nq, tpb)
        tiles = -(-self._n // tile_rows)
        cand_k = cuda.device_array((nq, tiles, k), dtype=np.float32)
        cand_r = cuda.device_array((nq, tiles, k), dtype=np.int32)
        scan[(nq, tiles), tpb](self._dev, dq, self.metric == "l2", mask, use_mask, k,
                               tile_rows, cand_k, cand_r)
        if tiles == 1:
            out_k, out_r = cand_k, cand_r
        else:
            out_k = cuda.device_array((nq, 1, k), dtype=np.float32)
            out_r = cuda.device_array((nq, 1, k), dtype=np.int32)
            merge[nq, tpb](cand_k, cand_r, k, out_k, out_r)
        keys = out_k.copy_to_host()[:, 0, :]
        rows = out_r.copy_to_host()[:, 0, :].astype(np.int64)
        return keys, rows


# --------------------------------------------------------------------------- cuBLAS backend

_CHUNK_ELEMS = 1 << 27   # scores held per step (q x rows): 512 MB of float32


class TorchExact:
    """Exact top-k through torch: blockwise cuBLAS ``Q @ X.T`` and ``torch.topk``, merged on
    the device; only the (q, k) answer comes back (the reference, ``torch.topk(Q @ X.T)``,
    with bounded memory).

    Same contract as ``exact_search`` except that exact ties may come back in either order.
    ``device`` is "cuda" in the engine; the tests also run it on "cpu", the same code.
    l2 ranks by ``2 q.x - |x|^2`` (higher is better) and reports ``|q|^2 - that``, clamped at 0.
    """

    def __init__(self, vectors: np.ndarray, metric: str, device: str = "cuda"):
        import torch
        if metric not in ("ip", "l2"):
            raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
        self._torch = torch
        self.metric = metric
        self.device = device
        host = np.ascontiguousarray(vectors, dtype=np.float32)
        self._n, self._d = host.shape
        with warnings.catch_warnings():        # a read-only map: torch only reads it here
            warnings.simplefilter("ignore", UserWarning)
            x = torch.from_numpy(host)
        self._x = x.to(device) if device != "cpu" else x
        self._xn = (self._x * self._x).sum(dim=1) if metric == "l2" else None

    @property
    def nbytes(self) -> int:
        """Device bytes held (the vectors, and their norms for l2)."""
        return self._n * self._d * 4 + (self._n * 4 if self._xn is not None else 0)

    def search(self, queries: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        from vecdb.index.exact import check_queries
        torch = self._torch
        queries, k = check_queries(queries, self._d, k)
        nq = queries.shape[0]
        worst = metric_of(self.metric).worst
        out_s = np.full((nq, k), worst, np.float32)
        out_r = np.full((nq, k), -1, np.int64)
        mask = None
        count = self._n
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.bool_)
            if allowed.shape != (self._n,):
                raise ValueError(f"allowed must be a bool mask of shape ({self._n},)")
            count = int(np.count_nonzero(allowed))
            if count < self._n:
                mask = torch.from_numpy(allowed).to(self.device)
        kk = min(k, count)
        if kk == 0 or nq == 0:
            return out_s, out_r
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device)
        neg = torch.tensor(-np.inf, dtype=torch.float32, device=self.device)
        step = max(kk, _CHUNK_ELEMS // nq)
        best_s = best_r = None
        for lo in range(0, self._n, step):
            hi = min(self._n, lo + step)
            s = q @ self._x[lo:hi].T
            if self._xn is not None:
                s = 2 * s - self._xn[lo:hi]
            if mask is not None:
                s = torch.where(mask[lo:hi], s, neg)
            v, i = torch.topk(s, min(kk, hi - lo), dim=1)
            i = i + lo
            if best_s is not None:
                v, j = torch.topk(torch.cat([best_s, v], 1), kk, dim=1)
                i = torch.gather(torch.cat([best_r, i], 1), 1, j)
            best_s, best_r = v, i
        scores = best_s.cpu().numpy()
        rows = best_r.cpu().numpy().astype(np.int64)
        if self.metric == "l2":
            qn = (queries.astype(np.float32) ** 2).sum(axis=1, keepdims=True)
            scores = np.maximum(qn - scores, 0).astype(np.float32)
        out_s[:, :kk] = scores
        out_r[:, :kk] = rows
        return out_s, out_r


# --------------------------------------------------------------------------- choice



@functools.lru_cache(maxsize=1)
def device_backend() -> tuple[str | None, str]:
    """(backend, description): "torch" (cuBLAS) when torch sees a CUDA device, else "numba"
    (the fused kernel) when Numba CUDA does, else (None, why not). Checked once per process
    and logged; without an NVIDIA driver nothing is imported. ``VECDB_GPU=0`` turns it off."""
    backend, description = _choose_backend()
    log.log(logging.INFO if backend else logging.DEBUG,
            "GPU exact search: %s", description if backend else f"off ({description})")
    return backend, description


def _choose_backend() -> tuple[str | None, str]:
    if os.environ.get("VECDB_GPU", "") == "0":
        return None, "disabled by VECDB_GPU=0"
    simulated = os.environ.get("VECDB_GPU_SIMULATOR", "") == "1"
    if not simulated and not (os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")):
        return None, "no NVIDIA driver"
    if not simulated:
        try:
            import torch
            if torch.cuda.is_available():
                return "torch", f"torch {torch.__version__} cuBLAS on {torch.cuda.get_device_name(0)}"
        except Exception:       # torch missing or without CUDA: try Numba
            pass
    if gpu_available():
        return "numba", f"Numba CUDA fused kernel on {gpu_description()}"
    return None, gpu_description()


def device_exact(vectors: np.ndarray, metric: str):
    """A GPU exact searcher over ``vectors`` (same contract as ``exact_search``), or None when
    there is no usable GPU or the vectors do not fit on it."""
    backend, _ = device_backend()
    try:
        if backend == "torch":
            return TorchExact(vectors, metric, "cuda")
        if backend == "numba":
            return GpuExact(vectors, metric)
    except Exception as e:      # out of device memory, driver trouble: the CPU serves
        log.warning("GPU exact search unavailable for %d rows: %s", len(vectors), e)
    return None
