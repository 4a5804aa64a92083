"""A database: a directory of named collections, opened by one writer process at a time.

Layout::

    <path>/LOCK                      writer lock (storage/lock.py)
    <path>/collections/<name>/       one collection each (storage/store.py)
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from pathlib import Path

from vecdb import retrieval
from vecdb.collection import Collection
from vecdb.errors import (AlreadyExists, CollectionNotFound, DimensionMismatch, InvalidArgument,
                          Unavailable)
from vecdb.index.base import check_index_config
from vecdb.storage import snapshot
from vecdb.storage.lock import DirLock
from vecdb.storage.manifest import Manifest
from vecdb.storage.schema import ID_TYPES, METRICS, check_payload_schema
from vecdb.storage.store import CollectionStore, StoreOptions
from vecdb.storage.verify import VerifyReport, verify_database
from vecdb.storage.wal import DURABILITY_MODES, RECOVERY_MODES, fsync_dir

MAX_DIM = 65_536
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def connect(path: str | os.PathLike, *, durability: str = "always", sync_interval_ms: int = 100,
            read_only: bool = False, seal_rows: int = 1_000_000, seal_bytes: int = 256 << 20,
            compact_target_rows: int = 2_000_000, auto_compact: bool = True,
            keep_versions: int = 10, keep_versions_for_s: float = 0.0,
            wal_recovery: str = "tolerate_tail") -> "Database":
    """Open (creating if needed) the database at ``path``.

    durability: ``always`` (default) acknowledges a write after fsync, with group commit;
    ``batch`` fsyncs every ``sync_interval_ms`` and loses at most that window on power loss,
    nothing on a process kill. ``read_only`` opens without the writer lock; collections are
    then the versions current at open. Sealing, compaction and version-retention thresholds
    are tunable; the defaults suit most uses. ``wal_recovery``: ``tolerate_tail`` (default:
    truncate a torn last record, refuse to open on damage mid-log), ``absolute`` (refuse on any
    bad record) or ``salvage`` (keep every intact record and segment, skip and report the rest).
    """
    if durability not in DURABILITY_MODES:
        raise InvalidArgument(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
    if wal_recovery not in RECOVERY_MODES:
        raise InvalidArgument(f"wal_recovery must be one of {RECOVERY_MODES}, got {wal_recovery!r}")
    for name, value in (("sync_interval_ms", sync_interval_ms), ("seal_rows", seal_rows),
                        ("seal_bytes", seal_bytes), ("compact_target_rows", compact_target_rows),
                        ("keep_versions", keep_versions)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    options = StoreOptions(durability, sync_interval_ms, seal_rows, seal_bytes,
                           compact_target_rows, auto_compact, keep_versions, float(keep_versions_for_s),
                           wal_recovery)
    return Database(Path(path), options, read_only)


class Database:
    """Named collections in one directory. Thread-safe; use as a context manager or ``close()``."""

    def __init__(self, path: Path, options: StoreOptions, read_only: bool = False):
        self.path = path
        self.options = options
        self.read_only = read_only
        self._lock = threading.RLock()
        self._collections: dict[str, Collection] = {}
        self._closed = False
        if read_only:
            if not (path / "collections").is_dir():
                raise CollectionNotFound(f"no vecdb database at {path}")
            self._dirlock = None
        else:
            (path / "collections").mkdir(parents=True, exist_ok=True)
            self._dirlock = DirLock(path)
            for leftover in (path / "collections").glob("*.creating"):
                shutil.rmtree(leftover, ignore_errors=True)
            for leftover in (path / "collections").glob("*.restoring"):
                shutil.rmtree(leftover, ignore_errors=True)
            for leftover in path.glob("trash-*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"database {self.path} is closed")

    def _check_writable(self) -> None:
        if self.read_only:
            raise Unavailable(f"database {self.path} is open read-only")

    def _dir(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidArgument(f"collection name {name!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]* "
                                  f"(at most 128 characters)")
        return self.path / "collections" / name

    def create_collection(self, name: str, dim: int | None = None, metric: str = "cosine", *,
                          schema: dict[str, str] | None = None, id_type: str | None = None,
                          index: dict | None = None, embedding: str | None = None,
                          text_field: str | None = None, text_fields=None,
                          stopwords: bool = False) -> Collection:
        """Create a collection; raises ``AlreadyExists`` if the name is taken.

        metric: ``cosine`` (vectors stored normalised; score = cosine similarity), ``dot``
        (inner product) or ``l2`` (squared euclidean distance, lower is better).
        schema: payload field -> type (int64, float64, bool, string, timestamp, list<string>,
        list<int64>); every field is nullable. id_type: ``string`` or ``int64``; if omitted,
        the first write decides. index: ``{"type": "auto"}`` (default: exact for small
        segments, HNSW for large ones), ``flat`` (always exact), ``hnsw``, ``hnsw_sq8``,
        ``ivf_flat``, ``ivf_pq`` or ``sq_fp16`` with build params, e.g.
        ``{"type": "hnsw", "m": 32, "ef_construction": 200}``; sealed segments get their index
        built in the background and are searched exactly until it is ready.

        embedding: a model name (``all-MiniLM-L6-v2``, the packaged default, or a local model
        directory) that ``add_texts`` and text queries embed with; ``dim`` defaults to the
        model's. text_field / text_fields: the string field(s) BM25 indexes for
        ``mode="sparse"``/``"hybrid"``, e.g. ``{"title": 2.0, "text": 1.0}`` (weights); they
        are added to the schema if missing (default with an embedding: ``text``). stopwords:
        drop common English words from BM25. The config persists with the collection.
        """
        self._check_open()
        self._check_writable()
        directory = self._dir(name)
        if embedding is not None:
            if not isinstance(embedding, str) or not embedding:
                raise InvalidArgument(f"embedding must be a model name or path, got {embedding!r}")
            from vecdb.rag.embedding import get_embedder
            model_dim = get_embedder(embedding).dim
            if dim is None:
                dim = model_dim
            elif dim != model_dim:
                raise DimensionMismatch(f"dim={dim} but embedding {embedding!r} gives {model_dim}-d vectors")
        elif dim is None:
            raise InvalidArgument("create_collection needs dim (or an embedding model to infer it from)")
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
            raise InvalidArgument(f"dim must be an integer in [1, {MAX_DIM}], got {dim!r}")
        if metric not in METRICS:
            raise InvalidArgument(f"metric must be one of {METRICS}, got {metric!r}")
        if id_type is not None and id_type not in ID_TYPES:
            raise InvalidArgument(f"id_type must be one of {ID_TYPES} or None, got {id_type!r}")
        fields = check_payload_schema(schema)
        text = retrieval.text_config(text_field, text_fields, stopwords, fields, embedding)
        fields = check_payload_schema(fields)          # text fields it added: names checked too
        index_config = check_index_config(index)
        with self._lock:
            if directory.exists():
                raise AlreadyExists(f"collection {name!r} already exists")
            manifest = Manifest(version=1, name=name, dim=dim, metric=metric, id_type=id_type,
                                schema=fields, index=index_config, embedding=embedding, text=text)
            col = Collection(CollectionStore.create(directory, manifest, self.options))
            self._collections[name] = col
            return col

    def get_or_create_collection(self, name: str, dim: int | None = None, metric: str = "cosine", *,
                                 schema: dict[str, str] | None = None, id_type: str | None = None,
                                 index: dict | None = None, embedding: str | None = None,
                                 text_field: str | None = None, text_fields=None,
                                 stopwords: bool = False) -> Collection:
        """The collection ``name``, created as ``create_collection`` would if it does not exist.

        An existing collection must match ``dim`` and ``metric``, and ``schema``, ``id_type``
        and ``index`` where given (None: not checked); otherwise InvalidArgument names the
        mismatch. Check and create happen under the database lock, so concurrent callers get
        the same collection.
        """
        self._check_open()
        directory = self._dir(name)
        with self._lock:
            if not (directory / "manifest").is_dir():
                return self.create_collection(name, dim, metric, schema=schema, id_type=id_type,
                                              index=index, embedding=embedding, text_field=text_field,
                                              text_fields=text_fields, stopwords=stopwords)
            col = self.get_collection(name)
            m = col._store.manifest
            wanted = {"metric": metric}
            if dim is not None:
                wanted["dim"] = dim
            if embedding is not None:
                wanted["embedding"] = embedding
            if text_field is not None or text_fields is not None:
                wanted["text"] = retrieval.text_config(text_field, text_fields, stopwords, {}, embedding)
            if schema is not None:
                wanted["schema"] = check_payload_schema(schema)
                retrieval.text_config(text_field, text_fields, stopwords, wanted["schema"], embedding)
            if id_type is not None:
                wanted["id_type"] = id_type
            if index is not None:
                wanted["index"] = check_index_config(index)
            have = {"dim": m.dim, "metric": m.metric, "schema": dict(m.schema), "id_type": m.id_type,
                    "index": dict(m.index), "embedding": m.embedding, "text": m.text}
            for key, value in wanted.items():
                if value != have[key]:
                    raise InvalidArgument(f"collection {name!r} exists with {key}={have[key]!r}, "
                                          f"not {key}={value!r}")
            return col

    def get_collection(self, name: str) -> Collection:
        """The collection named ``name``; raises ``CollectionNotFound``."""
        self._check_open()
        directory = self._dir(name)
        with self._lock:
            col = self._collections.get(name)
            if col is not None:
                return col
            if not (directory / "manifest").is_dir():
                raise CollectionNotFound(f"collection {name!r} does not exist")
            col = Collection(CollectionStore.open(directory, self.options, read_only=self.read_only))
            self._collections[name] = col
            return col

    def verify(self) -> VerifyReport:
        """Check every checksum, the manifest chain, WAL coverage and index/segment agreement of
        every collection; changes nothing. ``report.ok`` is False on damage (see ``problems``).
        Writes to a collection wait while it is being checked."""
        self._check_open()
        with self._lock:
            open_now = dict(self._collections)

        def hold(name: str):   # an open collection is checked under its write lock (no GC race)
            col = open_now.get(name)
            return col._store.write_lock if col is not None else contextlib.nullcontext()
        return verify_database(self.path, hold)

    def list_collections(self) -> list[str]:
        self._check_open()
        root = self.path / "collections"
        return sorted(p.name for p in root.iterdir() if (p / "manifest").is_dir() and _NAME.match(p.name))

    def drop_collection(self, name: str) -> None:
        """Delete a collection and all its files; raises ``CollectionNotFound``."""
        self._check_open()
        self._check_writable()
        directory = self._dir(name)
        with self._lock:
            if not (directory / "manifest").is_dir():
                raise CollectionNotFound(f"collection {name!r} does not exist")
            col = self._collections.pop(name, None)
            if col is not None:
                col._store.close()
            trash = self.path / f"trash-{name}-{time.time_ns()}"
            os.replace(directory, trash)
            fsync_dir(directory.parent)
            shutil.rmtree(trash, ignore_errors=True)

    def restore(self, source: str | os.PathLike, name: str) -> Collection:
        """Restore a snapshot (directory or .tar from ``Collection.snapshot``) as collection ``name``."""
        self._check_open()
        self._check_writable()
        directory = self._dir(name)
        with self._lock:
            if directory.exists():
                raise AlreadyExists(f"collection {name!r} already exists")
            snapshot.restore(Path(source), directory, name)
            fsync_dir(directory.parent)
            return self.get_collection(name)

    def close(self) -> None:
        """Finish background work, sync and release the lock. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for col in self._collections.values():
                col._store.close()
            self._collections.clear()
            if self._dirlock is not None:
                self._dirlock.release()
