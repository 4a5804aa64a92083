"""One metric object for the search kernels: what a collection metric becomes in the kernels,
which way scores order, and the score that pads a short result."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["Metric", "metric_of"]


@dataclass(frozen=True)
class Metric:
    """A kernel metric: "ip" (higher is better; cosine arrives as ip over normalised vectors)
    or "l2" (squared euclidean distance, lower is better)."""

    kernel: str

    @property
    def higher_is_better(self) -> bool:
        return self.kernel == "ip"

    @property
    def worst(self) -> float:
        """The score of a pad (row -1): worse than any real score."""
        return -np.inf if self.kernel == "ip" else np.inf

    def pad(self, nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """All-padding results: scores ``worst``, rows -1."""
        return np.full((nq, k), self.worst, np.float32), np.full((nq, k), -1, np.int64)


@lru_cache(maxsize=None)
def metric_of(name: str) -> Metric:
    """The kernel metric of a collection or index metric ("cosine", "dot", "ip", "l2")."""
    return Metric("l2" if name == "l2" else "ip")
