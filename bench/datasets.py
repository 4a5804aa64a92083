"""Load the shared benchmark datasets (../shared/data), checking their sha256 before use."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecdb.index.reference import recall_at  # noqa: F401  (the one reference; bench modules import it here)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Dataset:
    name: str
    base: np.ndarray       # (n, d) float32
    queries: np.ndarray    # (q, d) float32
    gt: np.ndarray         # (q, 100) int32 row numbers, best first
    metric: str            # vecdb metric name


def cache_dir() -> Path:
    return Path(os.environ.get("VECDB_DATASETS", Path.home() / ".cache" / "vecdb-datasets"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(name: str) -> Dataset:
    """``glove-6b-50d`` or ``wordnet-3.0-glosses/minilm``; raises with the prepare command if absent."""
    folder = cache_dir() / name
    kept = json.loads((SHARED / name / "meta.json").read_text())
    if not (folder / "base.npy").exists():
        raise SystemExit(f"dataset {name} is not prepared: run  python {SHARED / 'prepare.py'} {name}")
    cached = json.loads((folder / "meta.json").read_text())
    for array in ("base.npy", "queries.npy"):
        if _sha256(folder / array) != cached["sha256"][array]:
            raise SystemExit(f"{folder / array} does not match its meta.json sha256: re-run prepare.py")
    gt = np.load(SHARED / name / "gt.npy")   # the kept ground truth is the reference
    metric = {"angular": "cosine", "euclidean": "l2", "ip": "dot"}[kept["metric"]]
    return Dataset(name, np.load(folder / "base.npy"), np.load(folder / "queries.npy"), gt, metric)


