"""The ``vecdb`` command line: one code path over an embedded database or a server.

    vecdb serve --data DIR [...]                       the gRPC server
    vecdb demo [--path DIR] [--query TEXT]             the main job end to end
    vecdb collections {list,create,drop,describe} ...  manage collections
    vecdb upsert NAME --vectors FILE [--ids FILE] [--payload FILE]
    vecdb search NAME (--query 0.1,0.2,... | --query-file Q.npy) [-k K] [--filter EXPR]
    vecdb snapshot NAME PATH / vecdb restore SOURCE NAME / vecdb stats [NAME]
    vecdb info DIR                                     every collection's stats (read-only)
    vecdb ingest --data DIR --collection NAME SOURCES...  chunk, embed and store documents
    vecdb verify DIR                                   check checksums and versions offline

Every data command takes ``--data DIR`` (the embedded engine on that directory) or
``--server HOST:PORT`` (a running server, through ``vecdb_client.Client``); the objects the
two return have the same methods, so each command is written once. Errors are one line on
stderr and a non-zero exit: 1 for a failed operation, 2 for bad usage.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from pathlib import Path

from vecdb import errors

EXIT_FAILED, EXIT_USAGE = 1, 2
TABLE_SUFFIXES = (".parquet", ".arrow", ".feather", ".ipc")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")


class UsageError(Exception):
    """A bad command-line value (file, format, option) found after parsing: exit code 2."""


# ---- targets: the embedded database or a server --------------------------------------------

@contextlib.contextmanager
def open_target(args, *, write: bool, create: bool = False):
    """The database ``args`` names: ``vecdb.connect(--data)`` or ``vecdb_client.Client(--server)``.

    Embedded reads open the directory for writing and fall back to a read-only open (every
    write acknowledged until then, nothing after) when another process, such as a server,
    holds it, with a note on stderr. Only ``create`` may make a new database.
    """
    if args.server:
        if not _ADDRESS.match(args.server):
            raise UsageError(f"--server must be HOST:PORT, got {args.server!r}")
        from vecdb_client import Client
        api_key = args.api_key or os.environ.get("VECDB_API_KEY") or None
        root_certs = Path(args.ca_cert).read_bytes() if args.ca_cert else None
        with Client(args.server, api_key=api_key, tls=bool(args.tls or root_certs),
                    root_certs=root_certs, timeout=args.timeout) as client:
            yield client
        return
    import vecdb
    path = Path(args.data)
    if not create and not (path / "collections").is_dir():
        raise UsageError(f"no vecdb database at {path}")
    try:
        db = vecdb.connect(path)
    except errors.DatabaseLocked as e:
        if write:
            raise errors.DatabaseLocked(f"{e}; is a server running on it? use --server") from None
        print(f"vecdb: note: {e}; reading it read-only as of now (use --server for live data)",
              file=sys.stderr)
        db = vecdb.connect(path, read_only=True)
    with db:
        yield db


def _print_json(value) -> None:
    print(json.dumps(value, default=str, ensure_ascii=False))


def describe(col) -> dict:
    """What a collection is: name, dim, metric, id type, schema, version, rows."""
    return {"name": col.name, "dim": col.dim, "metric": col.metric, "id_type": col.id_type,
            "schema": col.schema, "version": col.version, "rows": col.count()}


# ---- commands ------------------------------------------------------------------------------

def cmd_collections(args) -> int:
    write = args.action in ("create", "drop")
    with open_target(args, write=write, create=args.action == "create") as db:
        if args.action == "list":
            for name in db.list_collections():
                print(name)
        elif args.action == "create":
            make = db.get_or_create_collection if args.if_not_exists else db.create_collection
            col = make(args.name, args.dim, args.metric, schema=_schema(args.schema),
                       id_type=args.id_type, index=_index(args.index))
            _print_json(describe(col))
        elif args.action == "drop":
            db.drop_collection(args.name)
            print(f"dropped {args.name}")
        else:
            _print_json(describe(db.get_collection(args.name)))
    return 0


def cmd_upsert(args) -> int:
    import pyarrow as pa
    if args.wait_for_indexes and args.server:
        raise UsageError("--wait-for-indexes is for --data: a server builds indexes as it runs")
    with open_target(args, write=True) as db:
        col = db.get_collection(args.name)
        data = read_rows(args, col.id_type)
        n = data.num_rows if isinstance(data, pa.Table) else len(data[0])
        if n == 0:
            raise UsageError(f"{args.vectors} holds no rows")
        total = 0
        for lo in range(0, n, args.batch_size):
            try:
                if isinstance(data, pa.Table):
                    total += col.upsert(data.slice(lo, args.batch_size))
                else:
                    ids, vectors, payloads = data
                    hi = lo + args.batch_size
                    total += col.upsert(ids[lo:hi], vectors[lo:hi],
                                        None if payloads is None else payloads[lo:hi])
            except errors.VecdbError as e:
                if not total:
                    raise
                return _fail(f"{type(e).__name__}: {e} (in the batch from row {lo}; the {total} "
                             f"rows before it were written)")
        if args.flush or args.wait_for_indexes:
            col.flush()
        if args.wait_for_indexes:
            col.wait_for_indexes()
        print(f"upserted {total} rows into {args.name}")
    return 0


def cmd_search(args) -> int:
    queries = read_queries(args)
    fields = None if args.output_fields is None else [f for f in args.output_fields.split(",") if f]
    with open_target(args, write=False) as db:
        col = db.get_collection(args.name)
        results = col.search(queries, args.k, filter=args.filter, output_fields=fields,
                             params=_json_option(args.params, "--params"), version=args.at_version)
    for hits in results:
        _print_json([{"id": h.id, "score": h.score, "payload": h.payload} for h in hits])
    return 0


def cmd_snapshot(args) -> int:
    with open_target(args, write=False) as db:
        print(db.get_collection(args.name).snapshot(args.path))
    return 0


def cmd_restore(args) -> int:
    with open_target(args, write=True, create=True) as db:
        _print_json(describe(db.restore(args.source, args.name)))
    return 0


def cmd_stats(args) -> int:
    with open_target(args, write=False) as db:
        for name in [args.name] if args.name else db.list_collections():
            _print_json(db.get_collection(name).stats())
    return 0


def cmd_info(args) -> int:
    import vecdb
    path = Path(args.path)
    if not (path / "collections").is_dir():
        raise UsageError(f"no vecdb database at {path}")
    with vecdb.connect(path, read_only=True) as db:
        for name in db.list_collections():
            _print_json(db.get_collection(name).stats())
    return 0


def cmd_ingest(args) -> int:
    from vecdb import rag
    payload = _payload_fields(args.payload_field)
    with open_target(args, write=True, create=True) as db:
        exists = args.collection in db.list_collections()
        model = None
        if args.vector_field is None:
            from vecdb.rag.embedding import DEFAULT_MODEL
            model = (args.model or (db.get_collection(args.collection).embedding if exists else None)
                     or DEFAULT_MODEL)
        elif not exists and args.dim is None:
            raise UsageError("a new collection fed by --vector-field needs --dim")
        col = rag.open_collection(db, args.collection, payload_schema=payload, dim=args.dim,
                                  embedding=model)
        summary = rag.ingest(col, args.sources, text_field=args.text_field, id_field=args.id_field,
                             payload_fields=list(payload), vector_field=args.vector_field,
                             chunk_tokens=args.chunk_tokens, overlap=args.overlap,
                             embedder=model, batch_size=args.batch_size,
                             progress=not args.quiet)
        if args.flush:
            col.flush()
        print(summary)
    return EXIT_FAILED if summary.failed and args.strict else 0


def _payload_fields(specs: list[str] | None) -> dict[str, str]:
    """--payload-field NAME[:TYPE] values as a schema (type default string)."""
    out = {}
    for spec in specs or []:
        name, _, kind = spec.partition(":")
        if not name:
            raise UsageError(f"--payload-field {spec!r}: expected NAME or NAME:TYPE")
        out[name] = kind or "string"
    return out


def cmd_verify(args) -> int:
    """Check a database offline (storage/verify.py), holding its writer lock when it is free so
    no clean-up removes a file mid-check; exits 1 on damage."""
    from vecdb.storage.lock import DirLock
    from vecdb.storage.verify import verify_database
    path = Path(args.path)
    if not (path / "collections").is_dir():
        raise UsageError(f"no vecdb database at {path}")
    try:
        lock = DirLock(path)
    except errors.DatabaseLocked as e:
        print(f"vecdb: note: {e}; checking while it runs (a file its clean-up removes meanwhile "
              f"can show as a problem: check again to confirm)", file=sys.stderr)
        lock = None
    try:
        report = verify_database(path)
    finally:
        if lock is not None:
            lock.release()
    if args.json:
        _print_json(report.as_dict())
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else EXIT_FAILED


def cmd_serve(args) -> int:
    from vecdb.server import app
    return app.run(args)


def cmd_demo(args) -> int:
    from vecdb.server.demo import run_demo
    return run_demo(args.path, args.query, args.k)


# ---- option values and input files ---------------------------------------------------------

def _json_option(text: str | None, option: str):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise UsageError(f"{option} is not valid JSON: {e}") from None


def _schema(text: str | None) -> dict | None:
    """``{"year": "int64"}`` (JSON) or ``year:int64,tag:string``."""
    if text is None or text.lstrip().startswith("{"):
        return _json_option(text, "--schema")
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, typ = item.partition(":")
        if not sep:
            raise UsageError(f"--schema item {item!r} must be name:type")
        out[name.strip()] = typ.strip()
    return out


def _index(text: str | None) -> dict | None:
    """``hnsw`` or ``{"type": "hnsw", "m": 32}``."""
    if text is None or text.lstrip().startswith("{"):
        return _json_option(text, "--index")
    return {"type": text.strip()}


def read_table(path: str):
    """A Parquet file or an Arrow IPC file or stream, as a pyarrow Table."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    p = Path(path)
    try:
        if p.suffix == ".parquet":
            return pq.read_table(p)
        with pa.memory_map(str(p)) as source:
            try:
                return pa.ipc.open_file(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as e:
        raise UsageError(f"cannot read {path} as {'Parquet' if p.suffix == '.parquet' else 'Arrow IPC'}: {e}") from None


def _read_npy(path: str):
    import numpy as np
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UsageError(f"cannot read {path} as a NumPy .npy file: {e}") from None


def read_ids(path: str, id_type: str | None) -> list:
    """Ids from .npy (integers or strings), .txt (one a line) or a table's ``id`` (or only) column."""
    p = Path(path)
    if p.suffix == ".npy":
        return _read_npy(path).tolist()
    if p.suffix in TABLE_SUFFIXES:
        table = read_table(path)
        if "id" not in table.column_names and table.num_columns != 1:
            raise UsageError(f"{path} has no 'id' column")
        return table.column("id" if "id" in table.column_names else 0).to_pylist()
    try:
        lines = [line.rstrip("\r\n") for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read ids from {path}: {e}") from None
    if id_type == "int64":
        try:
            return [int(x) for x in lines]
        except ValueError as e:
            raise UsageError(f"{path}: the collection's ids are integers: {e}") from None
    return lines


def read_payloads(path: str, n: int):
    """Payloads from a table (one column per field, ``n`` rows) or JSON lines (``null`` = none)."""
    if Path(path).suffix in TABLE_SUFFIXES:
        table = read_table(path)
    else:
        try:
            table = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise UsageError(f"cannot read payloads from {path} as JSON lines: {e}") from None
    if len(table) != n:
        raise UsageError(f"{path} holds {len(table)} payloads for {n} vectors")
    return table


def read_rows(args, id_type: str | None):
    """What ``upsert`` sends: a pyarrow Table (id, vector, payload columns) or (ids, vectors, payloads)."""
    import numpy as np
    import pyarrow as pa
    if Path(args.vectors).suffix in TABLE_SUFFIXES:
        table = read_table(args.vectors)
        if "vector" not in table.column_names:
            raise UsageError(f"{args.vectors} has no 'vector' column")
        vectors = None
    else:
        vectors = _read_npy(args.vectors)
        if vectors.ndim != 2:
            raise UsageError(f"{args.vectors} holds an array of shape {vectors.shape}, not (rows, dim)")
        table = None
    n = len(vectors) if table is None else table.num_rows
    if args.ids:
        ids = read_ids(args.ids, id_type)
        if len(ids) != n:
            raise UsageError(f"{args.ids} holds {len(ids)} ids for {n} vectors")
    elif table is not None and "id" in table.column_names:
        ids = None
    else:      # no ids given: row numbers from --id-offset
        ids = list(range(args.id_offset, args.id_offset + n))
    payloads = read_payloads(args.payload, n) if args.payload else None
    if table is None and not isinstance(payloads, pa.Table):
        return ids, vectors, payloads
    if table is None:
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        table = pa.table({"vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
    if ids is not None:
        table = (table.drop_columns(["id"]) if "id" in table.column_names else table) \
            .add_column(0, "id", pa.array(ids))
    if payloads is not None:
        if not isinstance(payloads, pa.Table):
            raise UsageError("with a table of vectors, give --payload as a Parquet or Arrow file")
        for name in payloads.column_names:
            table = table.append_column(name, payloads.column(name))
    return table


def read_queries(args):
    import numpy as np
    if args.query_file:
        q = np.asarray(_read_npy(args.query_file), dtype=np.float32)
    else:
        try:
            q = np.array([float(x) for x in args.query.split(",")], dtype=np.float32)
        except ValueError:
            raise UsageError(f"--query must be numbers separated by commas, got {args.query!r}") from None
    return q.reshape(1, -1) if q.ndim == 1 else q


# ---- the parser ----------------------------------------------------------------------------

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("vecdb")
    except PackageNotFoundError:
        import vecdb
        return vecdb.__version__


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _target_options() -> argparse.ArgumentParser:
    """--data / --server and the connection options every data command shares."""
    parent = argparse.ArgumentParser(add_help=False)
    where = parent.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", metavar="DIR",
                       help="a database directory, used in this process (embedded); or:")
    where.add_argument("--server", metavar="HOST:PORT", help="a running vecdb server")
    g = parent.add_argument_group("connecting to --server")
    g.add_argument("--api-key", metavar="KEY",
                   help="API key for --server (default: $VECDB_API_KEY)")
    g.add_argument("--tls", action="store_true", help="connect to --server over TLS (system roots)")
    g.add_argument("--ca-cert", metavar="PEM", help="TLS with these root certificates (implies --tls)")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="deadline of each call to --server, in seconds (default: 60)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vecdb", description="vecdb vector database: serve it, or manage and query a database "
        "directory (--data) or a server (--server).")
    parser.add_argument("--version", action="version", version=f"vecdb {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    target = _target_options()

    p = sub.add_parser("serve", help="serve a database over gRPC", description="Serve a database over gRPC.")
    from vecdb.server import app
    app.add_arguments(p)
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("demo", help="embed a small corpus, serve it and answer a query",
                       description="Embed a small corpus with all-MiniLM-L6-v2 (offline), serve "
                       "it on 127.0.0.1 and answer a query through the client, unfiltered and filtered.")
    p.add_argument("--path", default="./vecdb-demo-data", help="database directory (default: %(default)s)")
    p.add_argument("--query", default="how do I keep writes from being lost?", help="the question to answer")
    p.add_argument("-k", type=_positive, default=3, help="passages to return (default: %(default)s)")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("collections", help="list, create, drop or describe collections",
                       description="List, create, drop or describe collections.")
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = acts.add_parser("list", parents=[target], help="collection names, one a line")
    a = acts.add_parser("create", parents=[target], help="create a collection; prints its description")
    a.add_argument("name", help="collection name ([A-Za-z0-9_][A-Za-z0-9_.-]*)")
    a.add_argument("--dim", type=_positive, required=True, help="vector dimension")
    a.add_argument("--metric", default="cosine", choices=["cosine", "dot", "l2"],
                   help="similarity: cosine (default), dot (inner product) or l2 (squared distance)")
    a.add_argument("--schema", metavar="FIELDS",
                   help="payload fields: name:type,... or a JSON object; types int64, float64, bool, "
                   "string, timestamp, list<string>, list<int64>")
    a.add_argument("--id-type", choices=["string", "int64"],
                   help="id type (default: fixed by the first write)")
    a.add_argument("--index", metavar="INDEX",
                   help="index type (auto, flat, hnsw, hnsw_sq8, ivf_flat, ivf_pq, sq_fp16) or a JSON "
                   "config such as '{\"type\": \"hnsw\", \"m\": 32}' (default: auto)")
    a.add_argument("--if-not-exists", action="store_true",
                   help="succeed if a matching collection exists (get_or_create_collection)")
    a = acts.add_parser("drop", parents=[target], help="delete a collection and all its data")
    a.add_argument("name", help="collection name")
    a = acts.add_parser("describe", parents=[target], help="dim, metric, id type, schema, version, rows (JSON)")
    a.add_argument("name", help="collection name")
    p.set_defaults(run=cmd_collections)

    p = sub.add_parser(
        "upsert", parents=[target], help="insert or replace rows from Parquet, Arrow or NumPy files",
        description="Insert or replace rows. --vectors is a .npy array of shape (rows, dim), or a "
        "Parquet / Arrow IPC (.arrow, .feather, .ipc) table with a 'vector' column (list of floats) "
        "and optionally 'id' and payload columns. Ids come from that 'id' column, from --ids, or "
        "else are row numbers from --id-offset. Rows are sent --batch-size at a time, each batch "
        "durable once acknowledged; if one fails, the batches before it stay written.")
    p.add_argument("name", help="collection name")
    p.add_argument("--vectors", required=True, metavar="FILE", help=".npy, .parquet, .arrow, .feather or .ipc")
    p.add_argument("--ids", metavar="FILE",
                   help="ids: .npy (integers or strings), .txt (one a line) or a table's 'id' column")
    p.add_argument("--id-offset", type=int, default=0, metavar="N",
                   help="without ids, rows get the integer ids N, N+1, ... (default: 0)")
    p.add_argument("--payload", metavar="FILE",
                   help="payloads, one per vector: a Parquet/Arrow table of payload columns, or JSON "
                   "lines (.jsonl: one object a line)")
    p.add_argument("--batch-size", type=_positive, default=10_000, metavar="N",
                   help="rows per upsert call (default: %(default)s)")
    p.add_argument("--flush", action="store_true", help="seal the written rows into a segment afterwards")
    p.add_argument("--wait-for-indexes", action="store_true",
                   help="with --data: seal, then build the sealed segments' indexes before exiting "
                   "(otherwise a build started by this short run is left to the next process)")
    p.set_defaults(run=cmd_upsert)

    p = sub.add_parser("search", parents=[target], help="nearest neighbours of query vectors (JSON lines)",
                       description="Print, for each query, one line holding a JSON array of hits "
                       "{id, score, payload}, best first.")
    p.add_argument("name", help="collection name")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", metavar="X,Y,...", help="one query vector as comma-separated numbers")
    q.add_argument("--query-file", metavar="Q.npy", help="query vectors: .npy of shape (dim,) or (queries, dim)")
    p.add_argument("-k", type=_positive, default=10, help="hits per query (default: %(default)s)")
    p.add_argument("--filter", metavar="EXPR", help="payload filter, e.g. \"year >= 2020 AND tag = 'x'\"")
    p.add_argument("--output-fields", metavar="F,G", help="payload fields to return (default: all; '' for none)")
    p.add_argument("--params", metavar="JSON", help="search parameters, e.g. '{\"ef\": 64}'")
    p.add_argument("--at-version", type=_positive, metavar="V", help="search as of manifest version V")
    p.set_defaults(run=cmd_search)

    p = sub.add_parser("snapshot", parents=[target], help="copy a collection consistently while it is in use",
                       description="Write a consistent copy of a collection to PATH (a directory, or "
                       "a .tar archive); with --server, PATH is on the server's machine.")
    p.add_argument("name", help="collection name")
    p.add_argument("path", help="destination directory or .tar file (must not exist)")
    p.set_defaults(run=cmd_snapshot)

    p = sub.add_parser("restore", parents=[target], help="restore a snapshot as a new collection",
                       description="Restore a snapshot (directory or .tar) as collection NAME; with "
                       "--server, SOURCE is on the server's machine.")
    p.add_argument("source", help="snapshot directory or .tar archive")
    p.add_argument("name", help="name of the new collection")
    p.set_defaults(run=cmd_restore)

    p = sub.add_parser("stats", parents=[target], help="rows, segments, index state (JSON, one collection a line)")
    p.add_argument("name", nargs="?", help="one collection (default: all)")
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser(
        "ingest", help="chunk, embed and store text, Markdown, HTML, JSONL, CSV or Parquet sources",
        description="Chunk documents by tokens, embed them (all-MiniLM-L6-v2 by default, offline) "
        "and upsert them into a collection, created with the model's dim and metric cosine if "
        "missing. Re-running skips unchanged sources and replaces changed ones; bad files are "
        "reported and skipped.")
    p.add_argument("--data", metavar="DIR", required=True, help="database directory (created if missing)")
    p.add_argument("--collection", required=True, metavar="NAME", help="collection to write")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="files, folders or globs")
    p.add_argument("--text-field", default="text", metavar="F",
                   help="JSONL/CSV/Parquet field holding the text (default: %(default)s)")
    p.add_argument("--id-field", metavar="F", help="JSONL/CSV/Parquet field holding a document id")
    p.add_argument("--payload-field", action="append", metavar="F[:TYPE]",
                   help="a JSONL/CSV/Parquet field to keep as payload (repeatable; type default string)")
    p.add_argument("--vector-field", metavar="F",
                   help="import this Parquet/Arrow/JSONL vector field as is, without embedding")
    p.add_argument("--dim", type=_positive, help="dim of a new collection fed by --vector-field")
    p.add_argument("--chunk-tokens", type=_positive, default=256, metavar="N",
                   help="tokens per chunk (default: %(default)s; capped at the model's limit)")
    p.add_argument("--overlap", type=int, default=32, metavar="N",
                   help="tokens shared by consecutive chunks (default: %(default)s)")
    p.add_argument("--model", metavar="NAME|PATH",
                   help="embedding model: all-MiniLM-L6-v2 or a local model directory (default: the "
                   "collection's embedding, else all-MiniLM-L6-v2)")
    p.add_argument("--batch-size", type=_positive, default=64, metavar="N",
                   help="texts per model batch (default: %(default)s)")
    p.add_argument("--flush", action="store_true", help="seal the written rows into a segment afterwards")
    p.add_argument("--strict", action="store_true", help="exit 1 if any source failed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_ingest, server=None)

    p = sub.add_parser("info", help="every collection's stats in a database directory (read-only)",
                       description="Print every collection's stats, one JSON line each, opening DIR "
                       "read-only (works while a server holds it).")
    p.add_argument("path", metavar="DIR", help="database directory")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("verify", help="check every checksum and the version chain; exit 1 on damage",
                       description="Check a database directory offline, changing nothing: every "
                       "checksum (segments, delete bitmaps, manifests, index files), every manifest "
                       "version and their chain, WAL coverage of the checkpoint, index files against "
                       "their segments. Prints what it found, problems first; exits 1 on damage.")
    p.add_argument("path", metavar="DIR", help="database directory")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(run=cmd_verify)
    return parser


def _fail(message: str) -> int:
    print(f"vecdb: error: {' '.join(message.split())}", file=sys.stderr)     # one line
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors are a single line on stderr and a non-zero return."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        _fail(str(e))
        return EXIT_USAGE
    except errors.VecdbError as e:
        return _fail(f"{type(e).__name__}: {e}")
    except OSError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
