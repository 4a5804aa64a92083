"""vecdb.rag: documents in, answers out: embedding, ingest, hybrid retrieval and the LLM layer (DESIGN §8).

Submodules load on first use, so ``import vecdb.rag`` stays cheap (no torch).
"""
from __future__ import annotations

import importlib

_LAZY = {"ingest": "vecdb.rag.pipeline", "IngestSummary": "vecdb.rag.pipeline",
         "ingest_fields": "vecdb.rag.pipeline", "open_collection": "vecdb.rag.pipeline"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vecdb.rag' has no attribute {name!r}")
