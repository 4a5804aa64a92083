"""vecdb.rag: ingest, embedding, retrieval and generation over vecdb collections (DESIGN §8)."""
