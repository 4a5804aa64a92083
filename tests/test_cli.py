"""The ``vecdb`` command line against a database directory (in-process and as a subprocess)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import vecdb
from vecdb import cli


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def data(tmp_path, capsys):
    """A database with collection ``docs`` (dim 3, year:int64, tag:string), no rows."""
    d = tmp_path / "db"
    rc, out, _ = run(capsys, "collections", "create", "docs", "--dim", 3, "--schema", "year:int64,tag:string",
                     "--data", d)
    assert rc == 0 and json.loads(out)["schema"] == {"year": "int64", "tag": "string"}
    return d


def rows(n=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def stored(d, name="docs"):
    """Every row of a collection, by id (the database opened for writing: the WAL replayed)."""
    with vecdb.connect(d) as db:
        col = db.get_collection(name)
        return {r.id: r for r in col.scroll(limit=1000, with_vectors=True)[0]} if col.id_type else {}


def test_collections_lifecycle(data, capsys):
    assert run(capsys, "collections", "list", "--data", data)[1] == "docs\n"
    rc, out, _ = run(capsys, "collections", "create", "v", "--dim", 2, "--metric", "l2", "--id-type", "int64",
                     "--index", "flat", "--data", data)
    assert rc == 0 and json.loads(out) == {"name": "v", "dim": 2, "metric": "l2", "id_type": "int64",
                                           "schema": {}, "version": 1, "rows": 0}
    rc, _, err = run(capsys, "collections", "create", "v", "--dim", 2, "--data", data)
    assert rc == 1 and err.startswith("vecdb: error: AlreadyExists") and err.count("\n") == 1
    assert run(capsys, "collections", "create", "v", "--dim", 2, "--metric", "l2", "--if-not-exists",
               "--data", data)[0] == 0
    rc, _, err = run(capsys, "collections", "create", "v", "--dim", 3, "--metric", "l2", "--if-not-exists",
                     "--data", data)
    assert rc == 1 and "dim" in err
    rc, out, _ = run(capsys, "collections", "create", "j", "--dim", 2, "--schema", '{"n": "int64"}',
                     "--index", '{"type": "hnsw", "m": 8}', "--data", data)
    assert rc == 0 and json.loads(out)["schema"] == {"n": "int64"}
    assert json.loads(run(capsys, "collections", "describe", "j", "--data", data)[1])["dim"] == 2
    assert run(capsys, "collections", "drop", "j", "--data", data)[0] == 0
    assert run(capsys, "collections", "list", "--data", data)[1] == "docs\nv\n"
    rc, _, err = run(capsys, "collections", "describe", "j", "--data", data)
    assert rc == 1 and "CollectionNotFound" in err


def test_upsert_npy_with_text_ids_and_json_lines(data, tmp_path, capsys):
    X = rows()
    np.save(tmp_path / "v.npy", X)
    (tmp_path / "ids.txt").write_text("".join(f"d{i}\n" for i in range(6)))
    (tmp_path / "p.jsonl").write_text("\n".join(
        json.dumps({"year": 2000 + i, "tag": "x"}) if i != 3 else "null" for i in range(6)))
    rc, out, _ = run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--ids", tmp_path / "ids.txt",
                     "--payload", tmp_path / "p.jsonl", "--batch-size", 4, "--flush", "--data", data)
    assert rc == 0 and out == "upserted 6 rows into docs\n"
    got = stored(data)
    assert sorted(got) == [f"d{i}" for i in range(6)]
    assert got["d1"].payload == {"year": 2001, "tag": "x"} and got["d3"].payload == {}
    np.testing.assert_allclose(got["d2"].vector, X[2] / np.linalg.norm(X[2]), rtol=1e-6)


def test_upsert_tables(tmp_path, capsys):
    d = tmp_path / "db"
    assert run(capsys, "collections", "create", "t", "--dim", 3, "--metric", "dot", "--schema", "n:int64",
               "--data", d)[0] == 0
    X = rows(4)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), 3)
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "vector": vec, "n": [1, 2, None, 4]}), tmp_path / "t.parquet")
    assert run(capsys, "upsert", "t", "--vectors", tmp_path / "t.parquet", "--data", d)[0] == 0
    got = stored(d, "t")
    assert got["b"].payload == {"n": 2} and got["c"].payload == {}
    np.testing.assert_array_equal(got["a"].vector, X[0])
    # vectors from .npy, payload columns from an Arrow IPC file, ids as row numbers from an offset
    np.save(tmp_path / "w.npy", X)
    feather.write_feather(pa.table({"n": [10, 11, 12, 13]}), tmp_path / "p.arrow")
    assert run(capsys, "collections", "create", "u", "--dim", 3, "--metric", "dot", "--schema", "n:int64",
               "--data", d)[0] == 0
    assert run(capsys, "upsert", "u", "--vectors", tmp_path / "w.npy", "--payload", tmp_path / "p.arrow",
               "--id-offset", 100, "--data", d)[0] == 0
    got = stored(d, "u")
    assert sorted(got) == [100, 101, 102, 103] and got[102].payload == {"n": 12}
    # ids from a .npy of integers replace the table's row numbers
    np.save(tmp_path / "ids.npy", np.array([7, 8, 9, 10]))
    assert run(capsys, "upsert", "u", "--vectors", tmp_path / "w.npy", "--ids", tmp_path / "ids.npy",
               "--data", d)[0] == 0
    assert sorted(stored(d, "u")) == [7, 8, 9, 10, 100, 101, 102, 103]


def test_a_failed_batch_reports_what_was_written(data, tmp_path, capsys):
    np.save(tmp_path / "v.npy", rows(5))
    (tmp_path / "p.jsonl").write_text("\n".join(['{"year": 1}'] * 4 + ['{"year": "x"}']))
    rc, out, err = run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--payload", tmp_path / "p.jsonl",
                       "--batch-size", 2, "--data", data)
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert "SchemaError" in err and "from row 4" in err and "the 4 rows before it were written" in err
    assert sorted(stored(data)) == [0, 1, 2, 3]
    np.save(tmp_path / "e.npy", np.zeros((0, 3), np.float32))
    rc, _, err = run(capsys, "upsert", "docs", "--vectors", tmp_path / "e.npy", "--data", data)
    assert rc == 2 and "no rows" in err


def test_upsert_can_wait_for_indexes(tmp_path, capsys):
    d = tmp_path / "db"
    run(capsys, "collections", "create", "h", "--dim", 4, "--index", '{"type": "hnsw", "m": 8}', "--data", d)
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32))
    assert run(capsys, "upsert", "h", "--vectors", tmp_path / "v.npy", "--wait-for-indexes", "--data", d)[0] == 0
    (segment,) = json.loads(run(capsys, "stats", "h", "--data", d)[1])["segments"]
    assert segment["rows"] == 300 and segment["index"]["state"] == "ready"
    rc, _, err = run(capsys, "upsert", "h", "--vectors", tmp_path / "v.npy", "--wait-for-indexes",
                     "--server", "127.0.0.1:1")
    assert rc == 2 and "--wait-for-indexes" in err


def test_search_json_output(data, tmp_path, capsys):
    X = rows()
    np.save(tmp_path / "v.npy", X)
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"year": 2000 + i, "tag": "xy"[i % 2]}) for i in range(6)))
    assert run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--payload", tmp_path / "p.jsonl",
               "--data", data)[0] == 0
    q = ",".join(str(float(x)) for x in X[2])
    rc, out, _ = run(capsys, "search", "docs", "--query", q, "-k", 3, "--data", data)
    (hits,) = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(hits) == 3 and hits[0]["id"] == 2 and hits[0]["score"] == pytest.approx(1, abs=1e-5)
    assert hits[0]["payload"] == {"year": 2002, "tag": "x"}
    with vecdb.connect(data) as db:
        expect = db.get_collection("docs").search(X[:2], k=2, filter="tag = 'y'", output_fields=["year"])
    np.save(tmp_path / "q.npy", X[:2])
    rc, out, _ = run(capsys, "search", "docs", "--query-file", tmp_path / "q.npy", "-k", 2, "--filter", "tag = 'y'",
                     "--output-fields", "year", "--params", '{"ef": 32}', "--data", data)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [[(h["id"], h["payload"]) for h in hits] for hits in lines] == \
        [[(h.id, h.payload) for h in hits] for hits in expect]
    rc, out, _ = run(capsys, "search", "docs", "--query", q, "-k", 1, "--output-fields", "", "--data", data)
    assert json.loads(out)[0]["payload"] == {}


def test_search_as_of_a_version(data, tmp_path, capsys):
    np.save(tmp_path / "v.npy", rows(2))
    run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--flush", "--data", data)
    version = json.loads(run(capsys, "collections", "describe", "docs", "--data", data)[1])["version"]
    run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--id-offset", 10, "--flush", "--data", data)
    out = run(capsys, "search", "docs", "--query", "1,1,1", "-k", 10, "--at-version", version, "--data", data)[1]
    assert sorted(h["id"] for h in json.loads(out)) == [0, 1]
    out = run(capsys, "search", "docs", "--query", "1,1,1", "-k", 10, "--data", data)[1]
    assert sorted(h["id"] for h in json.loads(out)) == [0, 1, 10, 11]


def test_snapshot_restore_stats_info(data, tmp_path, capsys):
    np.save(tmp_path / "v.npy", rows(3))
    run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--data", data)
    rc, out, _ = run(capsys, "snapshot", "docs", tmp_path / "s.tar", "--data", data)
    assert rc == 0 and out.strip().endswith("s.tar")
    rc, out, _ = run(capsys, "restore", tmp_path / "s.tar", "copy", "--data", data)
    assert rc == 0 and json.loads(out)["rows"] == 3
    rc, out, _ = run(capsys, "stats", "--data", data)
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["copy", "docs"]
    assert json.loads(run(capsys, "stats", "copy", "--data", data)[1])["rows"] == 3
    rc, out, _ = run(capsys, "info", data)
    assert rc == 0 and [json.loads(line)["rows"] for line in out.splitlines()] == [3, 3]


def test_verify(data, tmp_path, capsys):
    np.save(tmp_path / "v.npy", rows(4))
    run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--flush", "--data", data)
    rc, out, _ = run(capsys, "verify", data)
    assert rc == 0 and out.startswith(f"{data}: OK") and "PROBLEM" not in out
    with vecdb.connect(data):        # held by another writer: still checked, with a note
        rc, out, err = run(capsys, "verify", data, "--json")
        assert rc == 0 and json.loads(out)["ok"] is True and "checking while it runs" in err
    (segment,) = (data / "collections" / "docs" / "segments").glob("*.arrow")
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    segment.write_bytes(bytes(raw))
    rc, out, _ = run(capsys, "verify", data)
    assert rc == 1 and "DAMAGED" in out.splitlines()[0] and "PROBLEM" in out
    assert json.loads(run(capsys, "verify", data, "--json")[1])["ok"] is False
    rc, _, err = run(capsys, "verify", tmp_path / "nothing")
    assert rc == 2 and "no vecdb database" in err


def test_reads_while_another_process_holds_the_database(data, tmp_path, capsys):
    np.save(tmp_path / "v.npy", rows(3))
    run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--data", data)     # not flushed
    with vecdb.connect(data):        # the writer lock, as a server would hold it
        rc, out, err = run(capsys, "collections", "describe", "docs", "--data", data)
        assert rc == 0 and json.loads(out)["rows"] == 3 and "read-only as of now" in err
        rc, _, err = run(capsys, "upsert", "docs", "--vectors", tmp_path / "v.npy", "--data", data)
        assert rc == 1 and "DatabaseLocked" in err and "--server" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,code,words", [
    (["info", "/nonexistent/db"], 2, "no vecdb database"),
    (["collections", "list", "--data", "/nonexistent/db"], 2, "no vecdb database"),
    (["stats", "--data", "{tmp}"], 2, "no vecdb database"),
    (["upsert", "docs", "--vectors", "/nonexistent.npy", "--data", "{db}"], 2, "cannot read"),
    (["upsert", "docs", "--vectors", "{bad}", "--data", "{db}"], 2, "cannot read"),
    (["upsert", "docs", "--vectors", "{bad_parquet}", "--data", "{db}"], 2, "Parquet"),
    (["upsert", "nope", "--vectors", "{vec}", "--data", "{db}"], 1, "CollectionNotFound"),
    (["upsert", "docs", "--vectors", "{vec}", "--payload", "{bad}", "--data", "{db}"], 2, "JSON lines"),
    (["upsert", "docs", "--vectors", "{vec}", "--payload", "{short}", "--data", "{db}"], 2, "1 payloads for 2"),
    (["upsert", "docs", "--vectors", "{vec}", "--payload", "{typo}", "--data", "{db}"], 1, "SchemaError"),
    (["search", "docs", "--query", "1,x,3", "--data", "{db}"], 2, "comma"),
    (["search", "docs", "--query", "1,2", "--data", "{db}"], 1, "DimensionMismatch"),
    (["search", "docs", "--query", "1,2,3", "--filter", "year >", "--data", "{db}"], 1, "FilterError"),
    (["search", "docs", "--query", "1,2,3", "--params", "{{", "--data", "{db}"], 2, "--params is not valid JSON"),
    (["search", "docs", "--query", "1,2,3", "--at-version", "99", "--data", "{db}"], 1, "VersionNotFound"),
    (["collections", "create", "x", "--dim", "2", "--schema", "year", "--data", "{db}"], 2, "name:type"),
    (["collections", "create", "x", "--dim", "2", "--schema", "y:decimal", "--data", "{db}"], 1, "SchemaError"),
    (["restore", "/nonexistent.tar", "x", "--data", "{db}"], 1, ""),
    (["collections", "list", "--server", "no-port"], 2, "HOST:PORT"),
    (["search", "docs", "--query", "1,2,3", "--server", "host:port"], 2, "HOST:PORT"),
])
def test_bad_input_is_one_line_and_changes_nothing(data, tmp_path, capsys, argv, code, words):
    files = {"tmp": tmp_path, "db": data, "vec": tmp_path / "vec.npy", "bad": tmp_path / "bad.npy",
             "bad_parquet": tmp_path / "bad.parquet", "short": tmp_path / "short.jsonl", "typo": tmp_path / "typo.jsonl"}
    np.save(files["vec"], rows(2))
    files["bad"].write_text("not numpy {")
    files["bad_parquet"].write_text("not parquet")
    files["short"].write_text('{"year": 1}\n')
    files["typo"].write_text('{"yaer": 1}\n{"year": 2}\n')
    before = stored(data)
    rc, out, err = run(capsys, *[a.format(**files) for a in argv])
    assert rc == code and out == "" and err.startswith("vecdb: error:") and err.count("\n") == 1
    assert words in err and "Traceback" not in err
    assert stored(data).keys() == before.keys()
    with vecdb.connect(data, read_only=True) as db:
        assert db.list_collections() == ["docs"]


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["collections"], ["search", "docs", "--data", "x"], ["collections", "list"],
                 ["collections", "list", "--data", "a", "--server", "b:1"], ["search", "d", "--query", "1", "-k", "0",
                                                                           "--data", "x"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
    capsys.readouterr()


def _all_parsers(parser: argparse.ArgumentParser, path=("vecdb",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, path + (name,))


def test_help_describes_every_option(capsys):
    seen = 0
    for path, parser in _all_parsers(cli.build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), path
                continue
            assert action.help and action.help != argparse.SUPPRESS, (path, action.dest)
            seen += 1
        with pytest.raises(SystemExit) as info:
            cli.main([*path[1:], "--help"])
        assert info.value.code == 0 and "usage: " + " ".join(path) in capsys.readouterr().out
    assert seen > 60


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"vecdb {vecdb.__version__}\n"


def test_subprocess_bad_path_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vecdb", "info", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"vecdb: error: no vecdb database at {tmp_path / 'missing'}\n"


def test_subprocess_create_upsert_search(tmp_path):
    d = tmp_path / "db"
    np.save(tmp_path / "v.npy", np.eye(3, dtype=np.float32))

    def vecdb_cli(*argv):
        r = subprocess.run([sys.executable, "-m", "vecdb", *map(str, argv)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout
    vecdb_cli("collections", "create", "c", "--dim", 3, "--metric", "l2", "--data", d)
    vecdb_cli("upsert", "c", "--vectors", tmp_path / "v.npy", "--data", d)
    hits = json.loads(vecdb_cli("search", "c", "--query", "0,0.9,0", "-k", 1, "--data", d))
    assert hits[0]["id"] == 1 and hits[0]["score"] == pytest.approx(0.01, abs=1e-6)


# ---- the same commands against a server (--server) -----------------------------------------

API_KEY = "cli-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A live server on 127.0.0.1 (OS-chosen port) with an API key."""
    app = pytest.importorskip("vecdb.server.app")
    from vecdb.server.config import ServerConfig
    with app.ServerThread(ServerConfig(data=str(tmp_path_factory.mktemp("served")), port=0,
                                       api_keys=(API_KEY,))) as s:
        yield s


@pytest.fixture(params=["embedded", "remote"])
def target(request, tmp_path):
    """The options naming a fresh database: --data DIR, or --server with a collection prefix."""
    if request.param == "embedded":
        return ["--data", str(tmp_path / "db")], f"e{id(tmp_path)}"
    server = request.getfixturevalue("server")
    return ["--server", server.address, "--api-key", API_KEY, "--timeout", "30"], f"r{id(tmp_path)}"


def test_one_code_path_over_both_targets(target, tmp_path, capsys):
    where, name = target
    X = rows(8, seed=5)
    np.save(tmp_path / "v.npy", X)
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"year": 2000 + i, "tag": "xy"[i % 2]}) for i in range(8)))
    rc, out, err = run(capsys, "collections", "create", name, "--dim", 3, "--schema", "year:int64,tag:string",
                       *where)
    assert rc == 0, err
    assert json.loads(out) == {"name": name, "dim": 3, "metric": "cosine", "id_type": None,
                               "schema": {"year": "int64", "tag": "string"}, "version": 1, "rows": 0}
    assert run(capsys, "upsert", name, "--vectors", tmp_path / "v.npy", "--payload", tmp_path / "p.jsonl",
               "--batch-size", 3, *where)[1] == f"upserted 8 rows into {name}\n"
    assert name in run(capsys, "collections", "list", *where)[1].split()
    rc, out, _ = run(capsys, "search", name, "--query", ",".join(map(str, X[3])), "-k", 3, "--filter", "tag = 'y'",
                     "--output-fields", "year", *where)
    hits = json.loads(out)
    assert rc == 0 and hits[0]["id"] == 3 and hits[0]["payload"] == {"year": 2003}
    with vecdb.connect(tmp_path / "check") as db:     # the engine's answer to the same query
        col = db.create_collection("c", dim=3, schema={"year": "int64", "tag": "string"})
        col.upsert(ids=list(range(8)), vectors=X, payloads=[{"year": 2000 + i, "tag": "xy"[i % 2]} for i in range(8)])
        expect = col.search(X[3], k=3, filter="tag = 'y'", output_fields=["year"])   # a 1-d query: one list
    assert [h["id"] for h in hits] == [h.id for h in expect]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expect], rtol=1e-5)
    assert json.loads(run(capsys, "collections", "describe", name, *where)[1])["rows"] == 8
    assert json.loads(run(capsys, "stats", name, *where)[1])["rows"] == 8
    snap = f"{name}-snap.tar" if where[0] == "--server" else tmp_path / "snap.tar"   # remote: under its data dir
    assert run(capsys, "snapshot", name, snap, *where)[0] == 0
    rc, out, err = run(capsys, "restore", snap, name + "_copy", *where)
    assert rc == 0 and json.loads(out)["rows"] == 8, err
    assert run(capsys, "collections", "drop", name + "_copy", *where)[0] == 0
    rc, _, err = run(capsys, "search", name, "--query", "1,2", *where)
    assert rc == 1 and err.startswith("vecdb: error: DimensionMismatch") and err.count("\n") == 1
    assert run(capsys, "collections", "drop", name, *where)[0] == 0
    rc, _, err = run(capsys, "collections", "describe", name, *where)
    assert rc == 1 and "CollectionNotFound" in err


def test_bad_server_address_or_key_is_one_line(server, capsys):
    rc, out, err = run(capsys, "collections", "list", "--server", server.address, "--api-key", "wrong")
    assert rc == 1 and out == "" and err.startswith("vecdb: error: Unauthenticated") and err.count("\n") == 1
    import socket
    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, err = run(capsys, "collections", "list", "--server", f"127.0.0.1:{port}", "--timeout", "10")
    assert rc == 1 and out == "" and err.startswith("vecdb: error: Unavailable") and err.count("\n") == 1
