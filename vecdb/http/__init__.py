"""The HTTP gateway (FastAPI): JSON operations, RAG chat and the search/chat page (DESIGN §7)."""
