"""Benchmarks (run from the repository root: ``python -m bench.X``). Never timed tests."""

import os


def warn_openblas() -> None:
    """Say so when OPENBLAS_CORETYPE is set: it slows numpy's BLAS (and faiss's) on these machines."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f"note: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is set; it slows numpy's BLAS. "
              "Run under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` for representative figures.")
