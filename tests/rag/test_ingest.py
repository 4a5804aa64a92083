"""The ingest pipeline end to end with the real MiniLM model: idempotent re-runs, replaced and bad
sources, vector import, the CLI, and a SIGKILL mid-ingest followed by a resume."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vecdb
from vecdb import cli, rag
from vecdb.errors import SchemaError
from vecdb.rag.embedding import get_embedder

WORDS = ("heron egret wading bird marsh river stone tide reed fish long legs grey feather nest "
         "dawn water slow patient strike").split()


@pytest.fixture(scope="module")
def minilm():
    return get_embedder("all-MiniLM-L6-v2", device="cpu")


def corpus(folder, files=6, words=120, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (folder / f"doc{i:03d}.txt").write_text(" ".join(rng.choice(WORDS, words)) + ".\n")
    return folder


def all_rows(col):
    rows, cursor = [], None
    while True:
        page, cursor = col.scroll(limit=1000, cursor=cursor)
        rows += page
        if cursor is None:
            return rows


def test_reingest_is_idempotent_and_chunks_carry_offsets(tmp_path, minilm):
    docs = corpus(tmp_path / "docs")
    with vecdb.connect(tmp_path / "db") as db:
        col = rag.open_collection(db, "docs")
        first = rag.ingest(col, [docs], embedder=minilm, chunk_tokens=32, overlap=8, progress=False)
        n = col.count()
        assert first.rows == n > 6 and first.sources == 6 and not first.failed
        rows = all_rows(col)
        assert len({r.id for r in rows}) == n
        for r in rows:
            p = r.payload
            text = (docs.parent / p["source"]).read_text() if not os.path.isabs(p["source"]) else \
                open(p["source"]).read()
            assert p["text"] == text[p["start"]:p["end"]] and r.id == f"{p['source']}#{p['chunk']}"
        assert sum(r.payload.get("last_chunk", False) for r in rows) == 6
        # the stored vector is the model's embedding of the chunk text
        r = rows[0]
        np.testing.assert_allclose(r.vector if r.vector.size else col.get([r.id])[0].vector,
                                   minilm.encode([r.payload["text"]])[0], atol=1e-5)
        again = rag.ingest(col, [docs], embedder=minilm, chunk_tokens=32, overlap=8, progress=False)
        assert again.unchanged == 6 and again.rows == 0 and col.count() == n
        # other chunk settings are a different ingest: the sources are replaced, not doubled
        other = rag.ingest(col, [docs], embedder=minilm, chunk_tokens=64, overlap=0, progress=False)
        assert other.replaced == 6 and col.count() == other.rows < n


def test_changed_source_replaces_its_chunks_and_bad_files_are_skipped(tmp_path, minilm):
    docs = corpus(tmp_path / "docs", files=3, words=200)
    (docs / "broken.md").write_bytes(b"\xff\xfe not utf-8")
    (docs / "rows.jsonl").write_text("\n".join(json.dumps({"text": f"row {i} {WORDS[i]}"}) for i in range(5))
                                     + "\n{broken json\n")
    with vecdb.connect(tmp_path / "db") as db:
        col = rag.open_collection(db, "docs")
        s = rag.ingest(col, [docs], embedder=minilm, chunk_tokens=32, overlap=4, progress=False)
        assert sorted(os.path.basename(f) for f, _ in s.failed) == ["broken.md", "rows.jsonl"]
        assert "2 failed" in str(s)
        # the JSONL failed on its 6th line: none of its 5 good rows stay behind
        assert col.count("source = '" + str(docs / "rows.jsonl") + "'") == 0
        before = col.count()
        target = str(docs / "doc000.txt")
        old = col.count(f"source = '{target}'")
        (docs / "doc000.txt").write_text("a short heron.\n")
        s = rag.ingest(col, [docs], embedder=minilm, chunk_tokens=32, overlap=4, progress=False)
        assert s.unchanged == 2 and s.replaced == 1 and s.rows == 1
        assert col.count(f"source = '{target}'") == 1 and col.count() == before - old + 1
        (hit,) = col.get([f"{target}#0"])
        assert hit.payload["text"] == "a short heron.\n"


def test_table_rows_keep_ids_and_payloads(tmp_path, minilm):
    rows = [{"gloss": f"{w}: something about a {w}", "key": f"syn{i}", "pos": "n"} for i, w in enumerate(WORDS)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "g.parquet")
    with vecdb.connect(tmp_path / "db") as db:
        col = rag.open_collection(db, "g", payload_schema={"pos": "string"})
        s = rag.ingest(col, [tmp_path / "g.parquet"], text_field="gloss", id_field="key",
                       payload_fields=["pos"], embedder=minilm, progress=False)
        assert s.rows == s.documents == len(WORDS) == col.count()
        (r,) = col.get(["syn3#0"])
        assert r.payload["doc"] == "syn3" and r.payload["pos"] == "n" and r.payload["text"] == rows[3]["gloss"]
        # an id repeated within a source makes it a bad source, skipped and reported
        (tmp_path / "dup.jsonl").write_text('{"gloss": "a", "key": "x"}\n{"gloss": "b", "key": "x"}\n')
        s = rag.ingest(col, [tmp_path / "dup.jsonl"], text_field="gloss", id_field="key",
                       embedder=minilm, progress=False)
        assert s.rows == 0 and "appears twice" in s.failed[0][1] and col.count() == len(WORDS)
        with pytest.raises(SchemaError, match="lacks ingest field"):
            rag.ingest(db.create_collection("plain", dim=384), [tmp_path / "g.parquet"], embedder=minilm)


def test_vector_column_imports_without_a_model(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((300, 8)).astype(np.float32)
    table = pa.table({"id": [f"v{i}" for i in range(300)],
                      "emb": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 8),
                      "text": [f"t{i}" for i in range(300)]})
    pq.write_table(table, tmp_path / "v.parquet")
    with vecdb.connect(tmp_path / "db") as db:
        col = rag.open_collection(db, "v", embedding=None, dim=8)
        s = rag.ingest(col, [tmp_path / "v.parquet"], vector_field="emb", id_field="id", progress=False)
        assert s.rows == 300 == col.count()
        got = col.get(["v7", "v299"])
        np.testing.assert_allclose(got[0].vector, vecs[7] / np.linalg.norm(vecs[7]), rtol=1e-5)
        assert got[1].payload["last_chunk"] is True and got[0].payload["text"] == "t7"
        assert rag.ingest(col, [tmp_path / "v.parquet"], vector_field="emb", id_field="id",
                          progress=False).unchanged == 1
        # JSONL rows with a vector field import the same way; a text file has no vector field
        (tmp_path / "v.jsonl").write_text("".join(json.dumps({"emb": vecs[i].tolist(), "text": f"j{i}"}) + "\n"
                                                  for i in range(5)))
        (tmp_path / "t.txt").write_text("no vectors here")
        s = rag.ingest(col, [tmp_path / "v.jsonl", tmp_path / "t.txt"], vector_field="emb", progress=False)
        assert s.rows == 5 and col.count() == 305 and "no vector field" in s.failed[0][1]
        (r,) = col.get([f"{tmp_path / 'v.jsonl'}#4"])
        assert r.payload["text"] == "j4"
        np.testing.assert_allclose(r.vector, vecs[4] / np.linalg.norm(vecs[4]), rtol=1e-5)


def test_cli_ingest(tmp_path, minilm, capsys):
    docs = corpus(tmp_path / "docs", files=2)
    argv = ["ingest", "--data", str(tmp_path / "db"), "--collection", "docs", str(docs),
            "--chunk-tokens", "48", "--overlap", "8", "--quiet"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "from 2 documents in 2 sources" in out
    assert cli.main(argv) == 0 and "2 unchanged" in capsys.readouterr().out
    with vecdb.connect(tmp_path / "db") as db:
        col = db.get_collection("docs")
        assert col.dim == 384 and col.metric == "cosine" and col.count() > 2
        # the collection embeds text queries itself: ingest, then search by text
        hits = col.search("a grey heron by the river", k=3, mode="hybrid")
        assert len(hits) == 3 and all(h.id.startswith(str(docs)) for h in hits)


CHILD = textwrap.dedent("""
    import sys, time
    import vecdb
    from vecdb import rag
    from vecdb.rag.embedding import get_embedder

    class Slow:
        # the real model, announcing each encoded group and pausing so the kill lands mid-run
        def __init__(self, inner):
            self.inner, self.name, self.dim = inner, inner.name, inner.dim
            self.tokenizer, self.max_seq_length = inner.tokenizer, inner.max_seq_length
        def encode(self, texts, batch_size=64):
            out = self.inner.encode(texts, batch_size)
            print("encoded", len(texts), flush=True)
            time.sleep(0.5)
            return out

    db = vecdb.connect(sys.argv[1])
    col = rag.open_collection(db, "docs")
    rag.ingest(col, [sys.argv[2]], embedder=Slow(get_embedder("all-MiniLM-L6-v2", device="cpu")),
               chunk_tokens=16, overlap=4, batch_size=2, progress=False)
    print("finished", flush=True)
""")


@pytest.mark.slow
def test_sigkill_mid_ingest_then_resume_gives_exactly_the_full_set(tmp_path, minilm):
    docs = corpus(tmp_path / "docs", files=24, words=60, seed=7)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "db"), str(docs)],
                             stdout=subprocess.PIPE, text=True)
    try:
        seen, deadline = 0, time.monotonic() + 120
        while seen < 3 and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, "the child ended before it was killed"
            seen += line.startswith("encoded")
        assert seen == 3
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    with vecdb.connect(tmp_path / "db") as db:
        col = db.get_collection("docs")
        partial = col.count()
        assert partial > 0
        s = rag.ingest(col, [docs], embedder=minilm, chunk_tokens=16, overlap=4, progress=False)
        assert 0 < s.unchanged < 24 and s.rows > 0, (partial, str(s))
        got = sorted(r.id for r in all_rows(col))
        full = db.create_collection("full", 384, schema=rag.ingest_fields())
        rag.ingest(full, [docs], embedder=minilm, chunk_tokens=16, overlap=4, progress=False)
        want = sorted(r.id for r in all_rows(full))
        assert got == want and col.count() == len(want) == len(set(got))
        assert col.count("last_chunk = TRUE") == 24


def test_stages_are_bounded_while_the_writer_lags(tmp_path, monkeypatch):
    """A slow writer holds the reader back: rows read but not yet written stay within the
    queues' bound, so a corpus larger than memory streams through."""
    from vecdb.rag import pipeline
    n, batch = 6000, 16
    group = batch * pipeline.ENCODE_GROUP
    (tmp_path / "v.jsonl").write_text("".join(json.dumps({"vector": [1.0, i % 7, 2.0, 3.0]}) + "\n"
                                              for i in range(n)))
    read = [0]

    def counted(source, fields):
        for doc in pipeline_documents(source, fields):
            read[0] += 1
            yield doc
    pipeline_documents = pipeline.documents
    monkeypatch.setattr(pipeline, "documents", counted)

    class SlowCollection:
        def __init__(self, col):
            self.col, self.written, self.ahead = col, 0, 0

        def __getattr__(self, name):
            return getattr(self.col, name)

        def upsert(self, *args):
            self.ahead = max(self.ahead, read[0] - self.written)
            time.sleep(0.02)
            k = self.col.upsert(*args)
            self.written += k
            return k

    with vecdb.connect(tmp_path / "db") as db:
        slow = SlowCollection(rag.open_collection(db, "v", embedding=None, dim=4))
        s = rag.ingest(slow, [tmp_path / "v.jsonl"], vector_field="vector", batch_size=batch,
                       progress=False)
        assert s.rows == n == slow.count() and read[0] == n
        # groups: one being written, QUEUE_DEPTH per queue, one in the encoder, one being filled
        assert group <= slow.ahead <= (2 * pipeline.QUEUE_DEPTH + 3) * group, slow.ahead
