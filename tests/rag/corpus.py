"""A small chunked corpus in a real collection, for the RAG and gateway tests.

Chunks are sentences of a few short documents, each with ``source``, ``chunk``, ``start`` and
``end`` payloads (as the ingest pipeline writes them) and the sentence as ``text``. The
collection embeds with all-MiniLM-L6-v2 (the packaged files, offline).
"""
from __future__ import annotations

import inspect
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCS = {
    "birds/heron.md": "Herons are long-legged wading birds that hunt fish in shallow water. "
                      "The grey heron nests in colonies called heronries. "
                      "Herons fly with their necks folded back.",
    "birds/owl.md": "Owls are nocturnal birds of prey with large forward-facing eyes. "
                    "An owl can turn its head about 270 degrees.",
    "home/kettle.md": "An electric kettle boils water with a heating element in its base. "
                      "Descale a kettle with vinegar when limescale builds up.",
    "space/mars.md": "Mars is the fourth planet from the Sun and has two small moons, Phobos and Deimos. "
                     "Its red colour comes from iron oxide dust.",
}
SCHEMA = {"source": "string", "chunk": "int64", "start": "int64", "end": "int64", "text": "string"}


def chunks() -> list[dict]:
    """Every sentence of every document as a chunk payload (offsets into the document)."""
    out = []
    for source, text in DOCS.items():
        for n, m in enumerate(re.finditer(r"[^.]+\.", text)):
            start = m.start() + (len(m.group()) - len(m.group().lstrip()))
            out.append({"id": f"{source}#{n}", "source": source, "chunk": n, "start": start, "end": m.end(),
                        "text": text[start:m.end()]})
    return out


def supports_text_collections(db) -> bool:
    return "embedding" in inspect.signature(db.create_collection).parameters


def fill(db, name: str = "docs"):
    """Create ``name`` with an embedding model and the corpus in it."""
    rows = chunks()
    col = db.create_collection(name, embedding="all-MiniLM-L6-v2", text_field="text", schema=SCHEMA)
    col.add_texts([r["text"] for r in rows], ids=[r["id"] for r in rows],
                  payloads=[{k: v for k, v in r.items() if k not in ("id", "text")} for r in rows])
    return col
