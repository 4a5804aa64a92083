"""Result types shared by the embedded API and the remote client (one type for both)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class Hit(NamedTuple):
    """One search result: the row's id, its score and the requested payload fields.

    Scores: cosine and dot are similarities (higher is better); l2 is the squared distance
    (lower is better). Hits are always ordered best first. (A named tuple: cheap to build,
    since a search makes one per result.)
    """

    id: str | int
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Record:
    """One stored row as returned by ``Collection.get``."""

    id: str | int
    vector: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpsertAck:
    """The server's acknowledgement of one streamed batch: it is durable once this arrives.

    ``seq`` is the batch's 0-based position in the stream, ``rows`` how many rows it held.
    """

    seq: int
    rows: int
