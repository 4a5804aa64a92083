"""The embedded Collection: validated writes into the store, and exact search over a view.

A search runs: store view (segments + memtable prefix, DESIGN §9) -> filter bitmap per part
-> exact kernel over the allowed rows -> best-first merge -> hits. Every write is validated
completely before the store sees it, so a failed call changes nothing.
"""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdb import filter as filters, retrieval, scroll as paging
from vecdb.errors import InvalidArgument, InvalidId, InvalidVector, SchemaError
from vecdb.hits import Hit, Record
from vecdb.index.base import check_search_params
from vecdb.index.gpu import device_backend
from vecdb.index.planner import GPU_MIN_QUERIES
from vecdb.index.state import peek as peek_state
from vecdb.rows import (as_ids, as_vectors, build_rows, infer_id_type, payload_columns,
                        table_columns)
from vecdb.storage import snapshot
from vecdb.storage.schema import ID, VECTOR, row_schema
from vecdb.search import PART_BITS, ROW_MASK, allowed_rows, search_parts
from vecdb.storage.store import CollectionStore, Part, StoreView

log = logging.getLogger("vecdb")

MAX_K = 16_384
MAX_BATCH = 1_000_000
MAX_SCROLL = 10_000       # rows per scroll page
_new_hit = partial(tuple.__new__, Hit)   # Hit from an (id, score, payload) tuple, unchecked


def _gpu_bytes(segment) -> int:
    """GPU memory search holds for ``segment``."""
    state = peek_state(segment)
    return state.device_bytes if state is not None else 0


class Collection:
    """A named set of vectors with typed payloads; thread-safe (DESIGN §9).

    Obtain one from ``Database.create_collection`` / ``get_collection``; do not construct.
    """

    def __init__(self, store: CollectionStore):
        self._store = store

    # ---- description ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._store.manifest.name

    @property
    def dim(self) -> int:
        return self._store.manifest.dim

    @property
    def metric(self) -> str:
        return self._store.manifest.metric

    @property
    def id_type(self) -> str | None:
        """'string' or 'int64'; None until the first write fixes it."""
        return self._store.manifest.id_type

    @property
    def schema(self) -> dict[str, str]:
        return dict(self._store.manifest.schema)

    @property
    def version(self) -> int:
        """The manifest version this collection stands on."""
        return self._store.manifest.version

    @property
    def embedding(self) -> str | None:
        """The embedding model text queries and ``add_texts`` use; None: vectors only."""
        return self._store.manifest.embedding

    @property
    def text_fields(self) -> dict[str, float] | None:
        """The BM25 text fields and their weights; None: no sparse search."""
        text = self._store.manifest.text
        return dict(text["fields"]) if text else None

    def embedder(self):
        """The collection's embedder (loaded once per process); InvalidArgument if it has none."""
        name = self._store.manifest.embedding
        if name is None:
            raise InvalidArgument(f"collection {self.name!r} has no embedding function: pass vectors, "
                                  "or create it with embedding=")
        from vecdb.rag.embedding import get_embedder
        return get_embedder(name)

    @property
    def read_only(self) -> bool:
        return self._store.read_only

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, dim={self.dim}, metric={self.metric!r})"

    # ---- writes ------------------------------------------------------------------------

    def upsert(self, ids=None, vectors=None, payloads: Sequence[dict | None] | None = None) -> int:
        """Insert or replace rows by id; returns the number of rows written.

        ``upsert(ids, vectors, payloads)`` with ids a list of str or int, vectors (n, dim)
        float32-convertible and payloads one dict (or None) per id; or ``upsert(table)`` with a
        pyarrow Table holding ``id``, ``vector`` and payload columns. Ids repeated within one
        batch are rejected. Returns once the write is acknowledged (durable under ``always``).
        """
        self._store._check_open(write=True)
        m = self._store.manifest
        if isinstance(ids, (pa.Table, pa.RecordBatch)):
            if vectors is not None or payloads is not None:
                raise InvalidArgument("pass either a table or ids/vectors/payloads, not both")
            table = pa.Table.from_batches([ids]) if isinstance(ids, pa.RecordBatch) else ids
            for need in (ID, VECTOR):
                if need not in table.column_names:
                    raise SchemaError(f"table has no {need!r} column")
            raw_ids = table.column(ID)
            vec = as_vectors(table.column(VECTOR), m.dim, m.metric)
            columns = table_columns(table, m.schema)
        else:
            if ids is None or vectors is None:
                raise InvalidArgument("upsert needs ids and vectors (or one pyarrow Table)")
            raw_ids = ids
            vec = as_vectors(vectors, m.dim, m.metric)
            n_ids = len(ids) if hasattr(ids, "__len__") and not isinstance(ids, (str, bytes)) else None
            if n_ids is None:
                raise InvalidId(f"ids must be a list, got {type(ids).__name__}")
            columns = payload_columns(payloads, m.schema, n_ids)
        n = len(raw_ids)
        if n == 0:
            raise InvalidArgument("upsert got an empty batch")
        if n > MAX_BATCH:
            raise InvalidArgument(f"upsert batch of {n} rows exceeds the limit of {MAX_BATCH}")
        id_type = m.id_type or infer_id_type(
            raw_ids.to_pylist()[:1] if isinstance(raw_ids, (pa.Array, pa.ChunkedArray)) else list(raw_ids[:1]))
        arrow_ids = as_ids(raw_ids, id_type)
        rows = build_rows(arrow_ids, vec, columns, row_schema(m.dim, id_type, m.schema))
        if m.id_type is None:
            with self._store.write_lock:   # the first write fixes the id type, once
                if self._store.manifest.id_type is None:
                    self._store.set_id_type(id_type)
                elif self._store.manifest.id_type != id_type:
                    raise InvalidId(f"ids are {id_type} but this collection's ids are "
                                    f"{self._store.manifest.id_type}")
        self._store.upsert(rows.batch, rows.vectors)
        return n

    def add_texts(self, texts: Sequence[str], payloads: Sequence[dict | None] | None = None,
                  ids: Sequence | None = None, *, batch_size: int = 64) -> list:
        """Embed ``texts`` with the collection's model and upsert them; returns the ids (default:
        a hash of each text, so re-adding is idempotent). Each text is stored in the ``text``
        field (or the first text field when none is called ``text``) beside its payload.
        Validated like ``upsert``: a failed call writes nothing."""
        self._store._check_open(write=True)
        m = self._store.manifest
        embedder = self.embedder()
        texts, merged = retrieval.text_rows(texts, payloads, m.text["source"])
        if ids is None:
            ids = retrieval.text_ids(texts, m.id_type)
            if len(set(ids)) != len(ids):
                raise InvalidArgument("texts repeat within the batch (their default ids collide); "
                                      "drop the repeats or pass ids")
        elif isinstance(ids, (str, bytes)) or len(ids) != len(texts):
            raise InvalidId(f"ids must be a list of one id per text ({len(texts)})")
        payload_columns(merged, m.schema, len(merged))           # bad payloads fail before embedding
        self.upsert(list(ids), embedder.encode(texts, batch_size=batch_size), merged)
        return list(ids)

    def delete(self, ids: Sequence | None = None, *, filter: str | None = None) -> int:
        """Delete rows by ids or by filter (exactly one); returns how many rows were deleted."""
        self._store._check_open(write=True)
        if (ids is None) == (filter is None):
            raise InvalidArgument("delete needs exactly one of ids= or filter=")
        if ids is not None:
            if self.id_type is None:
                as_ids(ids, infer_id_type(list(ids)) if len(ids) else "string", unique=False)
                return 0
            id_list = list(dict.fromkeys(as_ids(ids, self.id_type, unique=False).to_pylist()))
            if not id_list:
                return 0
            return self._store.delete(id_list)
        expr = self._compile_filter(filter)

        def matching(view: StoreView) -> list:
            doomed = []
            for part in view.parts():
                mask, _ = self._allowed(expr, part)
                if mask is None:
                    doomed.extend(part.table().column(ID).to_pylist())
                elif mask.any():
                    doomed.extend(part.table().column(ID).take(pa.array(np.flatnonzero(mask))).to_pylist())
            return doomed
        return self._store.delete_matching(matching)

    def update_payload(self, ids: Sequence, payloads: dict | Sequence[dict | None]) -> int:
        """Set payload fields of existing rows without resending their vectors; returns how
        many rows were rewritten.

        ``payloads`` is one dict per id, or one dict applied to every id; only the fields
        named change (a field set to None is cleared). Ids not present, and ids whose dict
        is empty or None, are skipped. An unknown field or a wrong type raises SchemaError
        and changes nothing. Atomic with respect to concurrent writes of the same ids, and
        durable like ``upsert`` (it is an upsert of the merged rows).
        """
        self._store._check_open(write=True)
        m = self._store.manifest
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
            raise InvalidId(f"ids must be a list, got {type(ids).__name__}")
        if len(ids) > MAX_BATCH:
            raise InvalidArgument(f"update_payload batch of {len(ids)} rows exceeds the limit of {MAX_BATCH}")
        single = isinstance(payloads, dict)
        if single:
            given = [payloads]
        elif isinstance(payloads, (str, bytes)) or not hasattr(payloads, "__len__"):
            raise SchemaError(f"payloads must be a dict or a list of dicts, got {type(payloads).__name__}")
        else:
            given = list(payloads)
            if len(given) != len(ids):
                raise SchemaError(f"got {len(given)} payloads for {len(ids)} ids")
        new_columns = payload_columns(given, m.schema, len(given))    # validates every value
        with self._store.write_lock:    # read, merge and write with no write in between
            id_type = self._store.manifest.id_type
            arrow_ids = as_ids(ids, id_type or (infer_id_type(list(ids)) if len(ids) else "string"))
            if id_type is None or not len(arrow_ids) or not any(given):
                return 0
            if self._store.visible_seq() < self._store._seq:   # let the view see every applied write
                self._store._wal.sync_to(self._store._seq)
            table = self._store.lookup(self._store.view(), arrow_ids.to_pylist())
            if table is None:
                return 0
            table = table.combine_chunks().to_batches()[0]   # found rows, any order
            pos = np.zeros(table.num_rows, np.int64) if single else \
                pc.index_in(table.column(ID), value_set=arrow_ids).to_numpy(zero_copy_only=False)
            changed = np.zeros(table.num_rows, dtype=bool)
            columns = []
            for f, new in zip(m.schema, new_columns):
                named = np.array([bool(p) and f in p for p in given], dtype=bool)[pos]
                changed |= named
                old = table.column(f)
                columns.append(pc.if_else(pa.array(named), new.take(pa.array(pos)), old)
                               if named.any() else old)
            if not changed.any():
                return 0
            keep = pa.array(np.flatnonzero(changed))
            vectors = table.column(VECTOR).take(keep)
            vec = vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, m.dim)
            rows = build_rows(table.column(ID).take(keep), np.ascontiguousarray(vec, np.float32),
                              [c.take(keep) for c in columns], row_schema(m.dim, id_type, m.schema))
            self._store.upsert(rows.batch, rows.vectors)   # stored vectors as they are: no renormalising
            return len(rows.vectors)

    def flush(self) -> int:
        """Seal recent writes into an immutable segment; returns the manifest version."""
        return self._store.flush()

    def compact(self) -> dict:
        """Merge small segments and drop deleted rows now (it also runs automatically)."""
        return self._store.compact()

    # ---- reads -------------------------------------------------------------------------

    def count(self, filter: str | None = None, *, version: int | None = None) -> int:
        """Rows visible now (or as of manifest ``version``), optionally only those matching ``filter``."""
        if version is not None:
            with self.at_version(version) as past:
                return past.count(filter)
        expr = self._compile_filter(filter) if filter is not None else None
        view = self._store.view()
        total = 0
        for part in view.parts():
            total += self._allowed(expr, part)[1]
        return total

    def get(self, ids: Sequence, *, version: int | None = None) -> list[Record]:
        """Stored rows for ``ids`` (now, or as of manifest ``version``), in the order asked;
        ids not present are left out."""
        if version is not None:
            with self.at_version(version) as past:
                return past.get(ids)
        if self.id_type is None:
            return []
        id_list = as_ids(ids, self.id_type, unique=False).to_pylist()
        if not id_list:
            return []
        table = self._store.lookup(self._store.view(), id_list)
        if table is None:
            return []
        fields = list(self.schema)
        found = {}
        vectors = table.column(VECTOR).combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, self.dim)
        cols = {f: table.column(f).to_pylist() for f in fields}
        for i, rid in enumerate(table.column(ID).to_pylist()):
            found[rid] = Record(rid, vectors[i].copy(), {f: cols[f][i] for f in fields if cols[f][i] is not None})
        return [found[i] for i in id_list if i in found]

    def scroll(self, filter: str | None = None, *, limit: int = 100, cursor: str | None = None,
               output_fields: Sequence[str] | None = None, with_vectors: bool = False,
               version: int | None = None) -> tuple[list[Record], str | None]:
        """One page of rows matching ``filter``, in id order, and the cursor of the next page
        (None after the last).

        Pass the returned cursor back to continue. Each page is read from the then-current
        view (or manifest ``version``), keyed on ids: a row present throughout a scroll is
        returned exactly once while writes go on. Records carry the vector only with
        ``with_vectors`` (else an empty array) and the payload fields in ``output_fields``
        (default: all).
        """
        if version is not None:
            with self.at_version(version) as past:
                return past.scroll(filter, limit=limit, cursor=cursor, output_fields=output_fields,
                                   with_vectors=with_vectors)
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= MAX_SCROLL:
            raise InvalidArgument(f"limit must be an integer in [1, {MAX_SCROLL}], got {limit!r}")
        if not isinstance(with_vectors, (bool, np.bool_)):
            raise InvalidArgument(f"with_vectors must be a bool, got {with_vectors!r}")
        view = self._store.view()
        m = view.manifest
        fields = self._output_fields(output_fields, m.schema)
        expr = self._compile_filter(filter) if filter is not None else None
        after = paging.decode_cursor(cursor, m.id_type)
        if m.id_type is None:
            return [], None
        parts = view.parts()
        ids, part_of, rows = paging.page(parts, [self._allowed(expr, p)[0] for p in parts], after,
                                         int(limit) + 1, m.id_type)
        more = len(rows) > limit
        ids, part_of, rows = ids[:limit].to_pylist(), part_of[:limit], rows[:limit]
        payloads = [{} for _ in ids]
        vectors = np.empty((len(ids), m.dim if with_vectors else 0), np.float32)
        for p in np.unique(part_of).tolist():
            at = np.flatnonzero(part_of == p)
            if with_vectors:
                vectors[at] = parts[p].vectors[rows[at]]
            for f, values in zip(fields, parts[p].columns_at(fields, rows[at])):
                for j, v in zip(at.tolist(), values):
                    if v is not None:
                        payloads[j][f] = v
        empty = np.empty(0, np.float32)
        records = [Record(i, vectors[j] if with_vectors else empty, payloads[j]) for j, i in enumerate(ids)]
        return records, paging.encode_cursor(ids[-1]) if more else None

    def search(self, queries, k: int = 10, *, mode: str = "dense", weights=None,
               filter: str | None = None, output_fields: Sequence[str] | None = None,
               params: dict | None = None, explain: bool = False, version: int | None = None):
        """Top-k hits, best first: one list for a single query (a string or a (dim,) vector), a
        list of lists for a batch (a list of strings or a (q, dim) array).

        Strings are embedded with the collection's model (``embedding=``). ``mode``: ``dense``
        (vectors), ``sparse`` (BM25 over the text fields; strings only) or ``hybrid``
        (reciprocal rank fusion, k=60, of dense and sparse top lists; hit scores are the RRF
        scores); ``weights`` (dense, sparse) weighs the fusion. ``filter`` restricts the
        candidate rows; ``output_fields`` names the payload fields to return (default: all);
        ``params`` tunes ANN search (``ef``, ``nprobe``, ``rescore``). Segments without a ready
        index are searched exactly. With ``explain=True`` returns ``(hits, plan)``: per part the
        planner's ``strategy`` and ``reason``, the ``steps`` it allows, the steps that ``ran``,
        ``est_cost``, the selectivity and ``ms``. ``version`` searches the
        collection as of that manifest version (``at_version``).
        """
        if version is not None:
            with self.at_version(version) as past:
                return past.search(queries, k, mode=mode, weights=weights, filter=filter,
                                   output_fields=output_fields, params=params, explain=explain)
        m = self._store.manifest
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k must be an integer in [1, {MAX_K}], got {k!r}")
        fusion = retrieval.check_mode(mode, weights)
        texts, vectors, single = retrieval.parse_queries(queries)
        if mode != "dense" and texts is None:
            raise InvalidArgument(f"mode={mode!r} needs text queries (strings), not vectors")
        if mode != "dense" and m.text is None:
            raise InvalidArgument(f"mode={mode!r} needs text fields: collection {self.name!r} has none "
                                  "(create it with text_field= or text_fields=)")
        params = check_search_params(params)
        fields = self._output_fields(output_fields, m.schema)
        expr = self._compile_filter(filter) if filter is not None else None
        if mode != "sparse":
            if texts is not None:
                vectors = self.embedder().encode(texts)
            q = as_vectors(vectors, m.dim, m.metric, what="queries")
            if len(q) == 0:
                raise InvalidVector("queries is empty")
        parts = self._store.view().parts()
        plan = [] if explain else None
        fetch = int(k) if mode == "dense" else min(MAX_K, max(2 * int(k), retrieval.HYBRID_FETCH_MIN))
        if mode != "sparse":
            scores, keys = self._search_parts(parts, q, fetch, expr, params, plan, m)
        if mode != "dense":
            s_scores, s_keys = retrieval.sparse_search(parts, texts, fetch, m.text,
                                                       lambda p: self._allowed(expr, p)[0], PART_BITS, plan)
        if mode == "sparse":
            scores, keys = s_scores[:, :k], s_keys[:, :k]
        elif mode == "hybrid":
            scores, keys = retrieval.fuse(keys, s_keys, int(k), fusion)
        hits = self._hits(parts, scores, keys, fields)
        if single:
            hits = hits[0]
        return (hits, plan) if explain else hits

    def _search_parts(self, parts: Sequence[Part], q: np.ndarray, k: int, expr, params: dict,
                      explain: list | None, m=None):
        """Plan and search each part, then merge best-first (``vecdb/search.py``); appends each
        part's plan and the steps that ran to ``explain``.

        Returns scores and keys (part << PART_BITS | row), each (q, k), a negative key being a
        pad. ``m`` is the manifest the query was validated against (default: the current one).
        """
        m = m or self._store.manifest
        return search_parts(parts, q, k, expr, params, explain, m.metric, m.dim)

    def _hits(self, parts: Sequence[Part], scores: np.ndarray, keys: np.ndarray, fields: list[str]) -> list[list[Hit]]:
        """Hits per query: the leading valid keys of each row, their ids and payload fields
        gathered part by part in one vectorised lookup each."""
        nq = len(keys)
        counts = None          # hits per query; None: k each
        if nq == 1:
            flat_keys, flat_scores = keys.ravel(), scores.ravel()
            n = len(flat_keys)
            if n and flat_keys.item(n - 1) < 0:  # short: hits end at the first pad (pads trail)
                n = int(np.argmax(flat_keys < 0))
                flat_keys, flat_scores = flat_keys[:n], flat_scores[:n]
        else:
            valid = keys >= 0
            if valid.all():
                flat_keys, flat_scores = keys.ravel(), scores.ravel()
            else:
                lead = np.logical_and.accumulate(valid, axis=1)
                counts = lead.sum(axis=1).tolist()
                flat_keys, flat_scores = keys[lead], scores[lead]
            n = len(flat_keys)
        if n == 0:
            return [[] for _ in range(nq)]
        if len(parts) == 1:
            first, single = 0, True
        else:
            part_of = flat_keys >> PART_BITS
            first = int(part_of[0])
            single = bool((part_of == first).all())
        if single:
            rows = flat_keys & ROW_MASK if first else flat_keys
            ids = parts[first].ids_at(rows)
            cols = parts[first].columns_at(fields, rows) if fields else []
        else:
            ids = [None] * n
            cols = [[None] * n for _ in fields]
            for p in np.unique(part_of).tolist():
                at = np.flatnonzero(part_of == p)
                rows = flat_keys[at] & ROW_MASK
                at = at.tolist()
                for dst, src in zip([ids, *cols], [parts[p].ids_at(rows), *parts[p].columns_at(fields, rows)]):
                    for j, v in zip(at, src):
                        dst[j] = v
        if not fields:
            payloads = [{} for _ in range(n)]
        elif len(fields) == 1:
            f = fields[0]
            payloads = [{} if v is None else {f: v} for v in cols[0]]
        else:
            payloads = [{f: v for f, v in zip(fields, vals) if v is not None} for vals in zip(*cols)]
        hits = list(map(_new_hit, zip(ids, flat_scores.tolist(), payloads)))
        if nq == 1:
            return [hits]
        if counts is None:
            k = keys.shape[1]
            return [hits[lo:lo + k] for lo in range(0, n, k)]
        out, lo = [], 0
        for c in counts:
            out.append(hits[lo:lo + c])
            lo += c
        return out

    # ---- helpers -----------------------------------------------------------------------

    def _compile_filter(self, expression):
        if not isinstance(expression, str):
            raise InvalidArgument(f"filter must be a string, got {type(expression).__name__}")
        return filters.compile(expression, self.schema, self.id_type)

    @staticmethod
    def _allowed(expr, part: Part) -> tuple[np.ndarray | None, int]:
        """Rows of ``part`` alive and matching ``expr`` (None means every row), and how many."""
        return allowed_rows(expr, part)

    def _output_fields(self, output_fields, schema: dict[str, str] | None = None) -> list[str]:
        """The payload fields to return, checked against ``schema`` (default: the current one)."""
        if schema is None:
            schema = self._store.manifest.schema
        if output_fields is None:
            return list(schema)
        if isinstance(output_fields, str):
            raise InvalidArgument("output_fields must be a list of field names, not a string")
        fields = list(output_fields)
        for f in fields:
            if f not in schema:
                raise SchemaError(f"output_fields names unknown field {f!r} (fields: {', '.join(schema) or 'none'})")
        return fields

    # ---- versions, snapshots, stats ------------------------------------------------------

    def list_versions(self) -> list[dict]:
        """Manifest versions still on disk: version, created_at, rows, segments."""
        return self._store.list_versions()

    def snapshot(self, path: str | Path) -> Path:
        """A consistent copy of this collection at ``path`` (a directory, or a ``.tar`` archive),
        taken while writes go on; restore it with ``Database.restore``."""
        return snapshot.export(self._store, Path(path))

    def at_version(self, version: int) -> "Collection":
        """A read-only view of this collection as of manifest ``version`` (time travel).

        Close it (or use ``with``) to let garbage collection reclaim that version's files.
        """
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
            raise InvalidArgument(f"version must be a positive integer, got {version!r}")
        self._store._check_open()
        return Collection(CollectionStore.open(self._store.dir, self._store.options, int(version),
                                               read_only=True))

    def close(self) -> None:
        """Release a read-only view; for a writable collection, ``Database.close`` does this."""
        if self._store.read_only:
            self._store.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_for_indexes(self, timeout: float | None = None) -> bool:
        """Block until every sealed segment's index is built; False if ``timeout`` (s) passed."""
        return self._store.wait_for_indexes(timeout)

    def stats(self) -> dict:
        """Rows, segments (with their index state, rows done and memory), memtable, settings."""
        view = self._store.view()
        indexes = self._store.index_stats()
        backend, device = device_backend()
        return {
            "name": self.name, "dim": self.dim, "metric": self.metric, "id_type": self.id_type,
            "version": view.manifest.version, "rows": self.count(),
            "index": dict(view.manifest.index),
            "segments": [{"num": s.num, "rows": s.n, "deleted": s.n_deleted,
                          "index": indexes.get(s.num, {"state": "none"}),
                          "gpu_bytes": _gpu_bytes(s)} for s in view.segments],
            "gpu": {"backend": backend, "device": device,
                    "use": f"exact scans of sealed segments for batches of >= {GPU_MIN_QUERIES} queries"
                    if backend else "none"},
            "memtable_rows": view.memtable.n if view.memtable else 0,
            "embedding": view.manifest.embedding, "text": view.manifest.text,
            "durability": self._store.options.durability,
            "integrity": self._store.background_errors(),
        }
