"""vecdb.rag: documents in, answers out: embedding, ingest, hybrid retrieval and the LLM layer (DESIGN §8)."""
