"""Result types (``Hit``, ``Record``), re-exported from ``vecdb_client.types`` so embedded and
remote results are the same type."""
from vecdb_client.types import Hit, Record

__all__ = ["Hit", "Record"]
