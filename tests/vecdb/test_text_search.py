"""Embedding functions on collections, BM25 sparse and hybrid search through the embedded API."""
import numpy as np
import pytest

import vecdb
from vecdb.errors import DimensionMismatch, InvalidArgument, InvalidId, SchemaError
from vecdb.rag.fusion import rrf

DOCS = [
    ("heron", "The grey heron is a long-legged wading bird of fresh water", "birds", 2001),
    ("egret", "An egret is a heron with white plumage", "birds", 2002),
    ("tax", "Tax returns are due in April; file them early", "money", 2003),
    ("bank", "A bank keeps money and lends it", "money", 2004),
    ("river", "The river bank was steep and muddy", "nature", 2005),
    ("sparrow", "A small brown bird that sings in gardens", "birds", 2006),
    ("stock", "Shares of stock trade on an exchange", "money", 2007),
    ("kingfisher", "A bright bird that dives for fish in rivers", "birds", 2008),
]


@pytest.fixture
def col(tmp_path):
    with vecdb.connect(tmp_path) as db:
        c = db.create_collection("docs", embedding="all-MiniLM-L6-v2",
                                 text_fields={"title": 2.0, "text": 1.0},
                                 schema={"topic": "string", "year": "int64"})
        c.add_texts([t for _, t, _, _ in DOCS], ids=[i for i, *_ in DOCS],
                    payloads=[{"title": i, "topic": topic, "year": y} for i, _, topic, y in DOCS])
        yield c


def test_config_persists_and_dim_is_inferred(tmp_path):
    with vecdb.connect(tmp_path) as db:
        c = db.create_collection("docs", embedding="all-MiniLM-L6-v2", text_field="body", stopwords=True)
        assert c.dim == 384 and c.schema == {"body": "string"} and c.text_fields == {"body": 1.0}
        c.add_texts(["a heron in the reeds"])
    with vecdb.connect(tmp_path) as db:
        c = db.get_collection("docs")
        assert c.embedding == "all-MiniLM-L6-v2" and c._store.manifest.text["stopwords"] is True
        assert [h.payload["body"] for h in c.search("heron", k=1, mode="sparse")] == ["a heron in the reeds"]
        assert c.search("the", k=1, mode="sparse") == []        # a stopword matches nothing
        same = db.get_or_create_collection("docs", embedding="all-MiniLM-L6-v2", text_field="body",
                                           stopwords=True)
        assert same is c
        with pytest.raises(InvalidArgument):
            db.get_or_create_collection("docs", embedding="all-MiniLM-L6-v2", text_field="other")


def test_add_texts_ids_are_deterministic_and_idempotent(tmp_path):
    with vecdb.connect(tmp_path) as db:
        c = db.create_collection("docs", embedding="all-MiniLM-L6-v2")
        ids = c.add_texts(["one heron", "two egrets"])
        assert c.add_texts(["one heron", "two egrets"]) == ids and c.count() == 2
        [rec] = c.get(ids[:1])
        assert rec.payload == {"text": "one heron"}
        np.testing.assert_allclose(rec.vector, c.embedder().encode(["one heron"])[0], atol=1e-6)
        with pytest.raises(InvalidArgument, match="repeat"):
            c.add_texts(["same", "same"])
        with pytest.raises(SchemaError):
            c.add_texts(["x"], payloads=[{"text": "not x"}])
        with pytest.raises(SchemaError):
            c.add_texts(["x"], payloads=[{"nope": 1}])
        with pytest.raises(InvalidId):
            c.add_texts(["x", "y"], ids=["only-one"])
        with pytest.raises(InvalidArgument):
            c.add_texts("a string, not a list")
        assert c.count() == 2                                     # failed calls wrote nothing


def test_single_and_batch_query_shapes(col):
    one = col.search("what is a heron?", k=3)
    assert isinstance(one, list) and all(isinstance(h, vecdb.Hit) for h in one)
    assert one[0].id in {"heron", "egret"}
    batch = col.search(["heron", "tax return"], k=2)
    assert len(batch) == 2 and all(len(row) == 2 for row in batch)
    assert batch[1][0].id == "tax"
    vec = col.embedder().encode(["what is a heron?"])
    assert col.search(vec[0], k=3) == one                         # one (dim,) vector: one list
    assert col.search(vec, k=3) == [one]                          # (1, dim): a batch of one
    assert col.search(vec[0].tolist(), k=3) == one


def test_sparse_finds_exact_words_with_filters_and_deletes(col):
    hits = col.search("heron", k=5, mode="sparse")
    assert [h.id for h in hits] == ["heron", "egret"]             # title weight puts 'heron' first
    assert hits[0].score > hits[1].score > 0
    assert [h.id for h in col.search("bank", k=5, mode="sparse", filter="topic = 'money'")] == ["bank"]
    col.flush()                                                   # now a sealed segment ...
    col.delete(ids=["heron"])
    assert [h.id for h in col.search("heron", k=5, mode="sparse")] == ["egret"]
    col.add_texts(["A heron again, in the memtable"], ids=["heron2"], payloads=[{"title": "heron"}])
    assert {h.id for h in col.search("heron", k=5, mode="sparse")} == {"egret", "heron2"}
    assert col.search("zzzz unknown", k=5, mode="sparse") == []


def test_sparse_scores_do_not_depend_on_segmentation(tmp_path, col):
    before = col.search(["bird fish", "bank money"], k=8, mode="sparse")
    with vecdb.connect(tmp_path / "split") as db:
        c = db.create_collection("docs", embedding="all-MiniLM-L6-v2", text_fields={"title": 2.0, "text": 1.0},
                                 schema={"topic": "string", "year": "int64"})
        for chunk in (DOCS[:3], DOCS[3:6], DOCS[6:]):
            c.add_texts([t for _, t, _, _ in chunk], ids=[i for i, *_ in chunk],
                        payloads=[{"title": i, "topic": topic, "year": y} for i, _, topic, y in chunk])
            if chunk is not DOCS[6:]:
                c.flush()
        assert len(c._store.view().parts()) == 3
        after = c.search(["bird fish", "bank money"], k=8, mode="sparse")
    for a, b in zip(before, after):
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5)


def test_hybrid_is_rrf_of_dense_and_sparse(col):
    for q, weights in (("bird that eats fish", None), ("money in the bank", (1.0, 2.0))):
        dense = [h.id for h in col.search(q, k=50)]
        sparse = [h.id for h in col.search(q, k=50, mode="sparse")]
        expect = rrf([dense, sparse], k=60, weights=weights, limit=4)
        got = col.search(q, k=4, mode="hybrid", weights=weights)
        assert [h.id for h in got] == [d for d, _ in expect]
        np.testing.assert_allclose([h.score for h in got], [s for _, s in expect], rtol=1e-6)
    filtered = col.search("bird", k=8, mode="hybrid", filter="year >= 2006")
    assert filtered and all(h.payload["year"] >= 2006 for h in filtered)


def test_explain_and_time_travel(col):
    v = col.version
    hits, plan = col.search("heron", k=2, mode="hybrid", explain=True)
    assert {p["strategy"] for p in plan} >= {"bm25"} and len(hits) == 2
    col.add_texts(["heron heron heron"], ids=["late"], payloads=[{"title": "heron"}])
    col.flush()
    assert col.search("heron", k=1, mode="sparse")[0].id == "late"
    assert col.search("heron", k=1, mode="sparse", version=col.version)[0].id == "late"
    assert v < col.version


def test_misuse_is_a_typed_error(tmp_path, col):
    vec = col.embedder().encode(["x"])
    with pytest.raises(InvalidArgument, match="mode"):
        col.search("x", mode="bm25")
    with pytest.raises(InvalidArgument, match="text queries"):
        col.search(vec, mode="sparse")
    with pytest.raises(InvalidArgument, match="hybrid"):
        col.search("x", weights=(1, 2))
    with pytest.raises(InvalidArgument):
        col.search("x", mode="hybrid", weights=(0, 0))
    with pytest.raises(InvalidArgument, match="mix"):
        col.search(["x", [1.0] * 384])
    with vecdb.connect(tmp_path / "plain") as db:
        plain = db.create_collection("plain", dim=384)
        with pytest.raises(InvalidArgument, match="no embedding"):
            plain.search("heron")
        with pytest.raises(InvalidArgument, match="text fields"):
            plain.search("heron", mode="sparse")
        with pytest.raises(InvalidArgument, match="no embedding"):
            plain.add_texts(["heron"])
        with pytest.raises(DimensionMismatch):
            db.create_collection("bad", dim=128, embedding="all-MiniLM-L6-v2")
        with pytest.raises(InvalidArgument):
            db.create_collection("bad", dim=8, text_field="a", text_fields=["b"])
        with pytest.raises(SchemaError):
            db.create_collection("bad", dim=8, text_field="n", schema={"n": "int64"})
        with pytest.raises(InvalidArgument):
            db.create_collection("bad", dim=8, text_fields={"t": -1.0})
        with pytest.raises(InvalidArgument):
            db.create_collection("bad", embedding="some/remote-model")
        with pytest.raises(InvalidArgument):
            db.create_collection("bad")
        assert db.list_collections() == ["plain"]
