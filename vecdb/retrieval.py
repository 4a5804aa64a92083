"""Text retrieval for collections: the text/embedding config, query parsing, BM25 over a view's
parts and hybrid fusion of dense and sparse top lists (DESIGN §8).

A collection's text config lives in its manifest: ``embedding`` (a model name resolved by
``vecdb.rag.embedding``) and ``text`` (``{"fields": {name: weight}, "stopwords": bool, "source": name}``, ``source`` being
the field ``add_texts`` stores the embedded text in: ``text`` when it is a text field, else the
first).
Sparse and hybrid results are keyed like dense ones (part << PART_BITS | row) over the same
view, so fusion works on row keys and hits are gathered once, the dense way.
"""
from __future__ import annotations

import hashlib
import numbers
import time
from typing import Sequence

import numpy as np

from vecdb.errors import InvalidArgument, SchemaError
from vecdb.index.sparse import PostingsCache, bm25_search, build_postings
from vecdb.index.text import ENGLISH_STOPWORDS, tokenize
from vecdb.index.topk import merge_topk
from vecdb.storage.store import Part

MODES = ("dense", "sparse", "hybrid")
HYBRID_FETCH_MIN = 50          # each side of a hybrid search fetches max(2k, this) candidates
_postings = PostingsCache()    # per sealed segment (kept while it lives) or per memtable view part


def text_config(text_field, text_fields, stopwords, schema: dict[str, str],
                embedding: str | None) -> dict | None:
    """The manifest's ``text`` entry from create-collection arguments (None: no text fields);
    a text field absent from ``schema`` is added to it as a string field."""
    if text_field is not None and text_fields is not None:
        raise InvalidArgument("pass text_field or text_fields, not both")
    if text_field is not None:
        text_fields = [text_field]
    if text_fields is None:
        if embedding is None:
            if stopwords:
                raise InvalidArgument("stopwords applies to text fields; none given")
            return None
        text_fields = ["text"]              # an embedding function stores its text here
    if isinstance(text_fields, str):
        text_fields = [text_fields]
    if isinstance(text_fields, dict):
        fields = dict(text_fields)
    elif isinstance(text_fields, (list, tuple)):
        fields = dict.fromkeys(text_fields, 1.0)
        if len(fields) != len(text_fields):
            raise InvalidArgument(f"text_fields names a field twice: {list(text_fields)}")
    else:
        raise InvalidArgument(f"text_fields must be a field name, a list of names or a "
                              f"{{name: weight}} dict, got {type(text_fields).__name__}")
    if not fields:
        raise InvalidArgument("text_fields is empty")
    for name, weight in fields.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"text field names must be non-empty strings, got {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0 < weight < float("inf"):
            raise InvalidArgument(f"text field {name!r} weight must be a positive number, got {weight!r}")
        have = schema.get(name)
        if have is None:
            schema[name] = "string"
        elif have != "string":
            raise SchemaError(f"text field {name!r} is {have} in the schema; it must be string")
    if not isinstance(stopwords, bool):
        raise InvalidArgument(f"stopwords must be a bool, got {stopwords!r}")
    source = "text" if "text" in fields else next(iter(fields))
    return {"fields": {k: float(v) for k, v in fields.items()}, "stopwords": stopwords, "source": source}


def parse_queries(queries) -> tuple[list[str] | None, object, bool]:
    """(texts or None, vectors or None, single): one string or one 1-d vector is a single query."""
    if type(queries) is np.ndarray:
        return None, queries, queries.ndim == 1
    if isinstance(queries, str):
        return [queries], None, True
    if isinstance(queries, (list, tuple)) and queries and all(isinstance(q, str) for q in queries):
        return list(queries), None, False
    if isinstance(queries, (list, tuple)) and any(isinstance(q, str) for q in queries):
        raise InvalidArgument("queries mix strings and vectors")
    single = (isinstance(queries, (list, tuple)) and bool(queries)
              and isinstance(queries[0], (numbers.Number, np.number)))
    return None, queries, single


def check_mode(mode, weights) -> tuple[float, float]:
    """Validated ``mode``; the (dense, sparse) fusion weights (only hybrid takes weights)."""
    if mode not in MODES:
        raise InvalidArgument(f"mode must be one of {MODES}, got {mode!r}")
    if weights is None:
        return 1.0, 1.0
    if mode != "hybrid":
        raise InvalidArgument(f"weights apply to mode='hybrid' only, not {mode!r}")
    if isinstance(weights, dict):
        unknown = set(weights) - {"dense", "sparse"}
        if unknown:
            raise InvalidArgument(f"weights keys must be 'dense' and 'sparse', got {sorted(unknown)}")
        pair = (weights.get("dense", 1.0), weights.get("sparse", 1.0))
    elif isinstance(weights, (list, tuple)) and len(weights) == 2:
        pair = tuple(weights)
    else:
        raise InvalidArgument("weights must be (dense, sparse) or {'dense': w, 'sparse': w}")
    for w in pair:
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not 0 <= w < float("inf"):
            raise InvalidArgument(f"weights must be non-negative numbers, got {weights!r}")
    if not any(pair):
        raise InvalidArgument("at least one hybrid weight must be positive")
    return float(pair[0]), float(pair[1])


def text_rows(texts, payloads, field: str) -> tuple[list[str], list[dict]]:
    """Checked ``texts`` and their payloads with the text set in ``field`` (for ``add_texts``)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidArgument("texts must be a list of strings")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise InvalidArgument(f"texts must be strings, got {type(t).__name__}")
    if not texts:
        raise InvalidArgument("add_texts got no texts")
    if payloads is None:
        payloads = [None] * len(texts)
    elif isinstance(payloads, dict) or len(payloads) != len(texts):
        raise SchemaError(f"payloads must be a list of one dict (or None) per text ({len(texts)})")
    merged = []
    for t, p in zip(texts, payloads):
        if p is not None and not isinstance(p, dict):
            raise SchemaError(f"each payload must be a dict or None, got {type(p).__name__}")
        if p and field in p and p[field] != t:
            raise SchemaError(f"payload field {field!r} holds the text itself; it must not differ")
        merged.append({**(p or {}), field: t})
    return texts, merged


def text_ids(texts: Sequence[str], id_type: str | None) -> list:
    """Deterministic ids from the texts themselves (re-adding a text replaces it)."""
    digests = [hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in texts]
    if id_type == "int64":
        return [int.from_bytes(d, "big") >> 1 for d in digests]
    return [d.hex() for d in digests]


def _column_texts(part: Part, field: str) -> list:
    return part.table().column(field).to_pylist()


def sparse_search(parts: Sequence[Part], texts: Sequence[str], k: int, text: dict, allowed,
                  part_bits: int, explain: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BM25 top ``k`` per text over ``parts``: scores and keys (part << part_bits | row), each
    (q, k), padded with (-inf, -1). ``allowed(part)`` gives the part's candidate mask."""
    fields = list(text["fields"])
    weights = [text["fields"][f] for f in fields]
    stop = text.get("stopwords", False)
    entries = []
    for part in parts:
        t0 = time.perf_counter()
        owner = part.segment if part.segment is not None else part
        postings = _postings.get(owner, (tuple(fields), stop),
                                 lambda p=part: build_postings([_column_texts(p, f) for f in fields], stop))
        entries.append((postings, part.alive, allowed(part)))
        if explain is not None:
            explain.append({"part": f"segment {part.segment.num}" if part.segment is not None else "memtable",
                            "strategy": "bm25", "rows": part.n_alive, "terms": len(postings.vocab),
                            "ms": round((time.perf_counter() - t0) * 1000, 3)})
    tokens = [tokenize(t, ENGLISH_STOPWORDS if stop else None) for t in texts]
    if not entries:
        return np.full((len(texts), k), -np.inf, np.float32), np.full((len(texts), k), -1, np.int64)
    results = bm25_search(entries, tokens, k, weights)
    keyed = [(s, np.where(r >= 0, (np.int64(i) << part_bits) | r, -1)) for i, (s, r) in enumerate(results)]
    if len(keyed) == 1:
        return keyed[0]
    return merge_topk(keyed, k, higher_is_better=True)


def fuse(dense_keys: np.ndarray, sparse_keys: np.ndarray, k: int, weights: tuple[float, float],
         rrf_k: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal rank fusion of two keyed top lists per query: (RRF scores, keys), each (q, k)."""
    from vecdb.rag.fusion import rrf
    nq = len(dense_keys)
    scores = np.full((nq, k), -np.inf, np.float32)
    keys = np.full((nq, k), -1, np.int64)
    for i in range(nq):
        d = dense_keys[i][dense_keys[i] >= 0].tolist()
        s = sparse_keys[i][sparse_keys[i] >= 0].tolist()
        fused = rrf([d, s], k=rrf_k, weights=weights, limit=k)
        if fused:
            keys[i, :len(fused)] = [key for key, _ in fused]
            scores[i, :len(fused)] = [sc for _, sc in fused]
    return scores, keys
