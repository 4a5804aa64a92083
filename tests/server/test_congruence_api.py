"""get_or_create, scroll, update_payload and reads with ``version=`` on both backends."""
from __future__ import annotations

import numpy as np
import pytest

import vecdb
from tests.server.conftest import unique



def _col(db, n=25):
    col = db.create_collection(unique(), dim=4, metric="l2", schema={"year": "int64", "tag": "string"})
    X = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    col.upsert(list(range(n)), X, [{"year": 2000 + i, "tag": "ab"[i % 2]} for i in range(n)])
    return col, X


def test_get_or_create(backend):
    name = unique()
    a = backend.get_or_create_collection(name, dim=4, schema={"year": "int64"})
    a.upsert([1], np.ones((1, 4)))
    b = backend.get_or_create_collection(name, dim=4, schema={"year": "int64"})
    assert b.count() == 1 and b.dim == 4
    with pytest.raises(vecdb.InvalidArgument, match="dim"):
        backend.get_or_create_collection(name, dim=5)


def test_scroll_pages_cover_every_row_once(backend):
    col, X = _col(backend)
    seen, cursor = [], None
    while True:
        page, cursor = col.scroll("tag = 'a'", limit=4, cursor=cursor, output_fields=["year"], with_vectors=True)
        assert len(page) <= 4
        for r in page:
            assert set(r.payload) <= {"year"}
            np.testing.assert_array_equal(r.vector, X[r.id])
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert sorted(seen) == list(range(0, 25, 2))


def test_update_payload_merges_and_clears(backend):
    col, X = _col(backend, n=3)
    assert col.update_payload([0, 1], [{"year": 1999}, {"tag": None}]) == 2
    got = {r.id: r for r in col.get([0, 1, 2])}
    assert got[0].payload == {"year": 1999, "tag": "a"}
    assert got[1].payload == {"year": 2001}
    np.testing.assert_array_equal(got[0].vector, X[0])
    assert col.update_payload([0, 2, 99], {"tag": "z"}) == 2            # one dict for every id
    assert {r.id: r.payload.get("tag") for r in col.get([0, 1, 2])} == {0: "z", 1: None, 2: "z"}
    with pytest.raises(vecdb.SchemaError, match="nope"):
        col.update_payload([0], [{"nope": 1}])


def test_reads_as_of_a_version(backend):
    col, X = _col(backend, n=5)
    v = col.flush()
    col.delete(ids=[0, 1])
    col.flush()
    assert col.count() == 3 and col.count(version=v) == 5
    assert [r.id for r in col.get([0, 4], version=v)] == [0, 4]
    assert col.search(X[:1], k=1, version=v)[0][0].id == 0
    assert col.search(X[:1], k=1)[0][0].id == 2
    page, _ = col.scroll(limit=10, version=v)
    assert [r.id for r in page] == [0, 1, 2, 3, 4]
    with col.at_version(v) as old:
        assert old.count() == 5 and [r.id for r in old.scroll(limit=2)[0]] == [0, 1]


def test_single_query_gives_one_list_batch_a_list_per_query(backend):
    col, X = _col(backend, n=6)
    one = col.search(X[2], k=3)                       # one (dim,) vector: one list of hits
    assert [h.id for h in one] == [2, 1, 3]
    assert col.search(X[2].tolist(), k=3) == one
    assert col.search(X[2:3], k=3) == [one]           # a (1, dim) batch: a list per query
    assert [[h.id for h in row] for row in col.search(X[:2], k=1)] == [[0], [1]]
    hits, plan = col.search(X[2], k=1, explain=True)
    assert [h.id for h in hits] == [2] and plan
