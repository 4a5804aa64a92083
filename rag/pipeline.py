"""The ingest pipeline: sources -> chunks -> vectors -> upserts, three overlapping stages.

    reader thread   discover, hash, skip unchanged sources, read, chunk  -> queue (bounded)
    encoder thread  embed each group of chunks (or pass precomputed vectors) -> queue (bounded)
    caller thread   delete replaced sources, upsert in order, progress bar

Each chunk row's id is ``<source>#<chunk>`` (or ``<doc id>#<n>`` with an id field), so a re-run
rewrites the same rows. The collection is the source of truth for resuming: every row carries
its source's ``source_hash`` (content plus ingest settings) and the source's final row carries
``last_chunk = true``; rows are written in order, so a final row present means the whole
source is present. A re-run skips sources whose final row has the current hash, and replaces
(deletes by ``source``, then writes) sources that changed or were cut off half way.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from vecdb.errors import InvalidArgument, SchemaError
from vecdb.rag.chunker import check_sizes, chunk_spans, tokenizer_offsets
from vecdb.rag.sources import Document, Fields, Source, SourceError, discover, documents, table_batches

log = logging.getLogger("vecdb.rag")

INGEST_SCHEMA = {"source": "string", "chunk": "int64", "doc": "string", "start": "int64",
                 "end": "int64", "text": "string", "source_hash": "string", "last_chunk": "bool"}
ENCODE_GROUP = 16        # batches per encode call: the model sorts a group by length, less padding
QUEUE_DEPTH = 2          # groups waiting between stages (bounds memory)
_DONE = object()


@dataclass
class IngestSummary:
    """What a run did: sources seen, skipped as unchanged, replaced, failed; rows written; time."""
    sources: int = 0
    unchanged: int = 0
    replaced: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)   # (source, reason)
    documents: int = 0
    rows: int = 0
    seconds: float = 0.0
    chunk_tokens: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        text = (f"ingested {self.rows} rows from {self.documents} documents in "
                f"{self.sources - self.unchanged - len(self.failed)} sources "
                f"({self.unchanged} unchanged, {self.replaced} replaced, {len(self.failed)} failed) "
                f"in {self.seconds:.1f}s, {self.rows_per_s:.0f} rows/s")
        return "\n".join([text] + [f"  failed: {why}" for _, why in self.failed])


@dataclass
class _Group:
    """Rows on their way to the collection: ids, texts, payloads, and vectors once encoded."""
    ids: list[str] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    payloads: list[dict] = field(default_factory=list)
    vectors: list = field(default_factory=list)        # precomputed vectors (vector field) or []
    table: object = None                               # a ready pyarrow Table (vector import)
    encoded: np.ndarray | None = None


@dataclass
class _Delete:
    source: str
    written: int = 0       # rows of a failed source already on their way: not counted as ingested


def ingest_fields(payload_schema: dict[str, str] | None = None) -> dict[str, str]:
    """The schema a collection needs to take ingested rows: the ingest fields plus payload fields."""
    schema = dict(INGEST_SCHEMA)
    for name, kind in (payload_schema or {}).items():
        if name in INGEST_SCHEMA:
            raise InvalidArgument(f"payload field {name!r} clashes with an ingest field "
                                  f"({', '.join(INGEST_SCHEMA)})")
        schema[name] = kind
    return schema


def open_collection(db, name: str, *, embedding: str | None = "all-MiniLM-L6-v2", dim: int | None = None,
                    payload_schema: dict[str, str] | None = None):
    """Collection ``name`` of ``db``; if missing, created for ingest: metric cosine, string ids,
    the ingest fields, and (with ``embedding``) the model as its embedding function with BM25
    over ``text``, so text and hybrid search work on what was ingested. ``dim`` defaults to the
    model's; without an embedding (vector import) it is required."""
    if name in db.list_collections():
        return db.get_collection(name)
    schema = ingest_fields(payload_schema)
    if embedding is None:
        if dim is None:
            raise InvalidArgument("a collection without an embedding model needs dim")
        return db.create_collection(name, dim, "cosine", schema=schema, id_type="string")
    return db.create_collection(name, dim, "cosine", schema=schema, id_type="string",
                                embedding=str(embedding), text_field="text")


def _check_collection(collection, fields: Fields, dim: int | None) -> None:
    schema = collection.schema
    missing = [f"{n}:{t}" for n, t in INGEST_SCHEMA.items() if schema.get(n) != t]
    missing += [p for p in fields.payload if p not in schema]
    if missing:
        raise SchemaError(f"collection {collection.name!r} lacks ingest field(s) {', '.join(missing)}; "
                          "create it with schema=vecdb.rag.ingest_fields(...)")
    if collection.id_type not in (None, "string"):
        raise SchemaError(f"collection {collection.name!r} has {collection.id_type} ids; "
                          "ingest writes string ids")
    if dim is not None and collection.dim != dim:
        raise InvalidArgument(f"collection {collection.name!r} has dim {collection.dim} but the "
                              f"embedder gives {dim}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def held_sources(collection) -> tuple[dict[str, str], dict[str, str]]:
    """(started, complete): source -> source_hash of its first row / its final row."""
    out = []
    for flt in ("chunk = 0", "last_chunk = TRUE"):
        found, cursor = {}, None
        while True:
            page, cursor = collection.scroll(flt, limit=10_000, cursor=cursor,
                                             output_fields=["source", "source_hash"])
            for r in page:
                found[r.payload.get("source")] = r.payload.get("source_hash")
            if cursor is None:
                break
        out.append(found)
    return out[0], out[1]


def _settings_digest(embedder_name: str, size: int, overlap: int, fields: Fields) -> str:
    return json.dumps([embedder_name, size, overlap, fields.text, fields.id, list(fields.payload),
                       fields.vector])


def _with_last(items: Iterator) -> Iterator[tuple[object, bool]]:
    """Each item with whether it is the last one (one item of lookahead)."""
    prev, have = None, False
    for item in items:
        if have:
            yield prev, False
        prev, have = item, True
    if have:
        yield prev, True


class _Pipeline:
    """One ingest run's three stages; ``run`` drives them and returns the summary."""

    def __init__(self, collection, sources: list[Source], fields: Fields, embedder, size: int,
                 overlap: int, batch_size: int, progress: bool):
        self.collection, self.sources, self.fields = collection, sources, fields
        self.embedder, self.size, self.overlap = embedder, size, overlap
        self.batch_size, self.progress = batch_size, progress
        self.group_rows = batch_size * ENCODE_GROUP
        self.offsets = tokenizer_offsets(embedder.tokenizer) if fields.vector is None else None
        self.settings = _settings_digest(getattr(embedder, "name", "none"), size, overlap, fields)
        self.summary = IngestSummary(sources=len(sources), chunk_tokens=size)
        self.emitted_rows = 0
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    # ---- stage plumbing --------------------------------------------------------------------

    def _put(self, q: queue.Queue, item) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                pass
        raise _Stopped

    def _get(self, q: queue.Queue):
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stopped from None

    def _stage(self, body, out: queue.Queue):
        def run():
            try:
                body()
            except _Stopped:
                return
            except BaseException as e:       # handed to the caller thread, which re-raises
                self.errors.append(e)
                self.stop.set()
                return
            try:
                self._put(out, _DONE)
            except _Stopped:
                pass
        return threading.Thread(target=run, daemon=True, name=f"vecdb-ingest-{body.__name__}")

    # ---- reader ----------------------------------------------------------------------------

    def read(self) -> None:
        started, complete = held_sources(self.collection)
        group = _Group()
        for source in self.sources:
            name = source.name
            try:
                digest = hashlib.sha256(f"{source.content_hash()}|{self.settings}".encode()).hexdigest()
            except SourceError as e:
                self._fail(name, e)
                continue
            if complete.get(name) == digest:
                self.summary.unchanged += 1
                continue
            must_delete = name in started or name in complete
            emitted, rows_before, docs_before = False, self.emitted_rows, self.summary.documents
            try:
                for rows in self._source_rows(source, digest):
                    if not emitted:
                        emitted = True
                        if must_delete:
                            self.summary.replaced += 1
                            group = self._flush(group)
                            self._put(self.q_read, _Delete(name))
                    if isinstance(rows, _Group):        # a ready table (vector import)
                        self.emitted_rows += len(rows.ids)
                        group = self._flush(group)
                        self._put(self.q_read, rows)
                        continue
                    self.emitted_rows += len(rows)
                    for rid, text, payload, vector in rows:
                        group.ids.append(rid)
                        group.texts.append(text)
                        group.payloads.append(payload)
                        if vector is not None:
                            group.vectors.append(vector)
                        if len(group.ids) >= self.group_rows:
                            group = self._flush(group)
            except SourceError as e:
                self._fail(name, e)
                self.summary.documents = docs_before
                if emitted:   # drop what was queued of it: a source is in whole or not at all
                    group = self._flush(group)
                    self._put(self.q_read, _Delete(name, self.emitted_rows - rows_before))
        self._flush(group)

    def _fail(self, name: str, error: Exception) -> None:
        log.warning("skipped source: %s", error)
        self.summary.failed.append((name, str(error)))

    def _flush(self, group: _Group) -> _Group:
        if group.ids:
            if group.vectors and len(group.vectors) != len(group.ids):
                raise SourceError("a source mixes rows with and without vectors")
            self._put(self.q_read, group)
            return _Group()
        return group

    def _source_rows(self, source: Source, digest: str) -> Iterator:
        """Lists of (id, text, payload, vector) per document, or ready _Groups (vector import)."""
        name = source.name
        if self.fields.vector is not None:
            if source.kind == "table":
                yield from self._vector_tables(source, digest)
                return
            if source.kind != "jsonl":
                raise SourceError(f"{name}: a {source.kind} file has no vector field "
                                  f"{self.fields.vector!r}")
        number = 0
        chunked = ((doc, self._chunks(doc)) for doc in self._unique(documents(source, self.fields), name))
        nonempty = ((doc, chunks) for doc, chunks in chunked if chunks)
        for (doc, chunks), last_doc in _with_last(nonempty):
            self.summary.documents += 1
            rows = []
            for k, (start, end) in enumerate(chunks):
                rid = f"{doc.doc}#{k}" if self.fields.id is not None else f"{name}#{number}"
                payload = dict(doc.payload)
                payload.update(source=name, chunk=number, doc=doc.doc, start=start, end=end,
                               text=doc.text[start:end] if doc.text is not None else None,
                               source_hash=digest,
                               last_chunk=last_doc and k == len(chunks) - 1)
                rows.append((rid, payload["text"], payload, doc.vector))
                number += 1
            yield rows

    def _unique(self, docs: Iterator[Document], name: str) -> Iterator[Document]:
        """The documents, checking that an id field's values are unique within the source (the
        rows' ids derive from them; a repeat would overwrite a row of the same run)."""
        if self.fields.id is None:
            yield from docs
            return
        seen: set[str] = set()
        for doc in docs:
            if doc.doc in seen:
                raise SourceError(f"{name}: id {doc.doc!r} ({self.fields.id!r}) appears twice")
            seen.add(doc.doc)
            yield doc

    def _chunks(self, doc: Document) -> list[tuple[int, int]]:
        if doc.vector is not None:
            return [(0, len(doc.text or ""))]
        return [(c.start, c.end) for c in chunk_spans(self.offsets(doc.text), len(doc.text),
                                                     self.size, self.overlap)]

    def _vector_tables(self, source: Source, digest: str) -> Iterator[_Group]:
        """Record batches of a Parquet/Arrow file with a vector column, as upsert-ready tables
        (the vector column is passed through as Arrow, not copied into Python)."""
        import pyarrow as pa
        f = self.fields
        cols = [c for c in dict.fromkeys([f.vector, f.id, f.text, *f.payload]) if c]
        have_text = True
        try:
            batches = table_batches(source.path, cols, batch_rows=self.group_rows)
            first = next(batches, None)
        except SourceError:
            have_text = False   # the text column is optional for vector import
            cols.remove(f.text)
            batches = table_batches(source.path, cols, batch_rows=self.group_rows)
            first = next(batches, None)
        if first is None:
            return
        batches = _chain(first, batches)
        number = 0
        for batch, last in _with_last(b for b in batches if b.num_rows):
            n = batch.num_rows
            if f.id is not None:
                ids = batch.column(f.id).cast(pa.string())
            else:
                ids = pa.array([f"{source.name}#{i}" for i in range(number, number + n)], pa.string())
            lastcol = np.zeros(n, dtype=bool)
            lastcol[-1] = last
            columns = {"id": ids, "vector": batch.column(f.vector),
                       "source": pa.array([source.name] * n, pa.string()),
                       "chunk": pa.array(np.arange(number, number + n, dtype=np.int64)),
                       "doc": ids if f.id is not None else pa.array(
                           [str(i) for i in range(number, number + n)], pa.string()),
                       "text": batch.column(f.text) if have_text else pa.nulls(n, pa.string()),
                       "source_hash": pa.array([digest] * n, pa.string()),
                       "last_chunk": pa.array(lastcol)}
            for p in f.payload:
                columns[p] = batch.column(p)
            self.summary.documents += n
            number += n
            yield _Group(ids=ids.to_pylist(), table=pa.table(columns))

    # ---- encoder ---------------------------------------------------------------------------

    def encode(self) -> None:
        while (item := self._get(self.q_read)) is not _DONE:
            if isinstance(item, _Group) and item.table is None:
                if item.vectors:
                    item.encoded = np.asarray(item.vectors, dtype=np.float32)
                else:
                    item.encoded = self.embedder.encode(item.texts, batch_size=self.batch_size)
            self._put(self.q_encoded, item)

    # ---- writer (caller thread) ------------------------------------------------------------

    def run(self) -> IngestSummary:
        from tqdm.auto import tqdm
        t0 = time.perf_counter()
        self.q_read: queue.Queue = queue.Queue(QUEUE_DEPTH)
        self.q_encoded: queue.Queue = queue.Queue(QUEUE_DEPTH)
        threads = [self._stage(self.read, self.q_read), self._stage(self.encode, self.q_encoded)]
        for t in threads:
            t.start()
        bar = tqdm(desc=f"ingest {self.collection.name}", unit=" rows", disable=not self.progress,
                   dynamic_ncols=True)
        try:
            while True:
                try:
                    item = self._get(self.q_encoded)
                except _Stopped:
                    break
                if item is _DONE:
                    break
                if isinstance(item, _Delete):
                    self.collection.delete(filter=f"source = {_quote(item.source)}")
                    self.summary.rows -= item.written
                    continue
                if item.table is not None:
                    n = self.collection.upsert(item.table)
                else:
                    n = self._upsert(item)
                self.summary.rows += n
                bar.update(n)
        finally:
            self.stop.set()
            for t in threads:
                t.join()
            bar.close()
        if self.errors:
            raise self.errors[0]
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    def _upsert(self, group: _Group) -> int:
        written = 0
        for lo in range(0, len(group.ids), 10_000):
            hi = lo + 10_000
            written += self.collection.upsert(group.ids[lo:hi], group.encoded[lo:hi],
                                              group.payloads[lo:hi])
        return written


class _Stopped(Exception):
    """Another stage failed or the run was stopped: this stage ends quietly."""


def _chain(first, rest):
    yield first
    yield from rest


def ingest(collection, sources: str | os.PathLike | Iterable[str | os.PathLike], *,
           text_field: str = "text", id_field: str | None = None,
           payload_fields: Sequence[str] = (), vector_field: str | None = None,
           chunk_tokens: int = 256, overlap: int = 32, embedder=None, batch_size: int = 64,
           progress: bool = True) -> IngestSummary:
    """Chunk, embed and upsert ``sources`` (paths, folders, globs) into ``collection``.

    Text/Markdown/HTML files are one document each; JSONL/CSV/Parquet rows take their text
    from ``text_field``, their id from ``id_field`` and the ``payload_fields`` as payload.
    With ``vector_field`` the rows' vectors are imported as they are (no chunking, no model).
    ``embedder``: an Embedder, a model name or local path (default: the collection's
    ``embedding``, else all-MiniLM-L6-v2). The
    collection needs the ingest fields (``ingest_fields()``). Bad files are skipped and listed
    in the summary; re-running skips unchanged sources and replaces changed ones.
    """
    check_sizes(chunk_tokens, overlap)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size must be a positive integer, got {batch_size!r}")
    fields = Fields(text_field, id_field, tuple(payload_fields), vector_field)
    found = discover(sources)
    if vector_field is None:
        if embedder is None or isinstance(embedder, (str, os.PathLike)):
            from vecdb.rag.embedding import DEFAULT_MODEL, get_embedder
            embedder = get_embedder(embedder or getattr(collection, "embedding", None) or DEFAULT_MODEL)
        tok = getattr(embedder, "tokenizer", None)
        if tok is None:
            raise InvalidArgument(f"embedder {embedder!r} has no tokenizer: token-aware chunking "
                                  "needs its Hugging Face fast tokenizer (a .tokenizer attribute)")
        limit = getattr(embedder, "max_seq_length", None)
        if limit:   # the model truncates past this; keep each chunk whole
            limit -= tok.num_special_tokens_to_add() if hasattr(tok, "num_special_tokens_to_add") else 2
            if chunk_tokens > limit:
                log.info("chunk_tokens %d exceeds the model's %d; using %d", chunk_tokens, limit, limit)
                chunk_tokens = limit
                overlap = min(overlap, chunk_tokens - 1)
    elif isinstance(embedder, (str, os.PathLike)):
        embedder = None
    _check_collection(collection, fields, getattr(embedder, "dim", None))
    return _Pipeline(collection, found, fields, embedder, chunk_tokens, overlap, batch_size,
                     progress).run()
