"""Collection.update_payload: merge fields without resending vectors; atomic, durable, typed errors."""
from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pytest

import vecdb

SCHEMA = {"n": "int64", "tag": "string", "at": "timestamp", "tags": "list<string>"}


@pytest.fixture
def db(tmp_path):
    with vecdb.connect(tmp_path / "db") as d:
        yield d


@pytest.fixture
def col(db):
    c = db.create_collection("c", dim=3, metric="cosine", schema=SCHEMA)
    rng = np.random.default_rng(0)
    c.upsert(ids=["a", "b", "c"], vectors=rng.normal(size=(3, 3)),
             payloads=[{"n": 1, "tag": "x"}, {"n": 2, "tags": ["p"]}, None])
    c.flush()
    c.upsert(ids=["d"], vectors=rng.normal(size=(1, 3)), payloads=[{"n": 4, "tag": "y"}])
    return c


def state(col) -> dict:
    return {r.id: (r.vector.copy(), r.payload) for r in col.get(["a", "b", "c", "d"])}


def test_merges_fields_and_keeps_vectors_bit_for_bit(col):
    before = state(col)
    at = dt.datetime(2025, 1, 2, 3, tzinfo=dt.timezone.utc)
    assert col.update_payload(["a", "d", "missing"], [{"tag": "new", "at": at}, {"n": None}, {"n": 9}]) == 2
    after = state(col)
    assert after["a"][1] == {"n": 1, "tag": "new", "at": at}          # merged, n kept
    assert after["d"][1] == {"tag": "y"}                              # None clears a field
    assert after["b"][1] == before["b"][1] and after["c"][1] == {}
    for i in before:                                                  # segment and memtable rows
        np.testing.assert_array_equal(after[i][0], before[i][0])
    assert col.count() == 4 and col.count(filter="tag = 'new'") == 1
    hits = col.search(before["a"][0], k=1, output_fields=["tag"])
    assert hits[0].id == "a" and hits[0].payload == {"tag": "new"}
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)


def test_one_dict_for_every_id(col):
    assert col.update_payload(["a", "b", "c"], {"tags": ["q", "r"]}) == 3
    assert all(r.payload["tags"] == ["q", "r"] for r in col.get(["a", "b", "c"]))
    assert col.get(["b"])[0].payload == {"n": 2, "tags": ["q", "r"]}


def test_nothing_to_do_writes_nothing(col):
    v = col.version
    col.flush()
    v = col.version
    assert col.update_payload(["zzz"], {"n": 1}) == 0
    assert col.update_payload(["a"], {}) == 0
    assert col.update_payload(["a", "b"], [None, {}]) == 0
    assert col.update_payload([], []) == 0
    assert col.flush() == v        # no write reached the WAL: nothing to seal


def test_int_ids_and_empty_collection(db):
    c = db.create_collection("i", dim=2, metric="l2", schema={"n": "int64"})
    assert c.update_payload([1, 2], {"n": 3}) == 0          # no rows, no id type yet
    assert c.id_type is None
    c.upsert(ids=[1, 2], vectors=[[0, 1], [1, 0]])
    assert c.update_payload(np.array([2, 7]), {"n": 3}) == 1
    assert [r.payload for r in c.get([1, 2])] == [{}, {"n": 3}]


BAD = [
    (dict(ids=["a"], payloads={"nope": 1}), vecdb.SchemaError),
    (dict(ids=["a"], payloads={"n": "1"}), vecdb.SchemaError),
    (dict(ids=["a"], payloads={"n": 1.5}), vecdb.SchemaError),
    (dict(ids=["a"], payloads={"tags": "p"}), vecdb.SchemaError),
    (dict(ids=["a", "b"], payloads=[{"n": 1}, {"at": "not a time"}]), vecdb.SchemaError),
    (dict(ids=["a", "b"], payloads=[{"n": 1}]), vecdb.SchemaError),
    (dict(ids=["a"], payloads=[3]), vecdb.SchemaError),
    (dict(ids=["a"], payloads="n=1"), vecdb.SchemaError),
    (dict(ids=["a"], payloads=None), vecdb.SchemaError),
    (dict(ids=["a", "a"], payloads={"n": 1}), vecdb.InvalidId),
    (dict(ids=[1], payloads={"n": 1}), vecdb.InvalidId),
    (dict(ids="a", payloads={"n": 1}), vecdb.InvalidId),
    (dict(ids=[""], payloads={"n": 1}), vecdb.InvalidId),
]


@pytest.mark.parametrize("kwargs,error", BAD)
def test_bad_update_raises_typed_error_and_changes_nothing(col, kwargs, error):
    before = (state(col), col.version, col.count())
    with pytest.raises(error) as info:
        col.update_payload(**kwargs)
    assert isinstance(info.value, vecdb.InvalidArgument) and str(info.value)
    after = (state(col), col.version, col.count())
    assert after[1:] == before[1:]
    assert {i: p for i, (_, p) in after[0].items()} == {i: p for i, (_, p) in before[0].items()}


def test_read_only_view_refuses(col):
    with col.at_version(col.version) as past:
        with pytest.raises(vecdb.Unavailable):
            past.update_payload(["a"], {"n": 1})


def test_durable_across_reopen(tmp_path):
    with vecdb.connect(tmp_path / "d") as db:
        c = db.create_collection("c", dim=2, schema={"n": "int64"})
        c.upsert(ids=["a", "b"], vectors=[[1, 0], [0, 1]], payloads=[{"n": 1}, {"n": 2}])
        c.update_payload(["b"], {"n": 20})
    with vecdb.connect(tmp_path / "d") as db:
        assert [r.payload for r in db.get_collection("c").get(["a", "b"])] == [{"n": 1}, {"n": 20}]


def test_atomic_against_concurrent_upserts_of_the_same_ids(db):
    """An upserter writes n = 1..N (vector encodes n) while another thread updates a tag:
    a merge built on a stale read would bring back an older n or vector."""
    c = db.create_collection("race", dim=2, metric="l2", schema={"n": "int64", "tag": "string"})
    ids = [f"r{i}" for i in range(8)]
    c.upsert(ids=ids, vectors=np.zeros((8, 2)), payloads=[{"n": 0}] * 8)
    N = 150
    errors = []

    def upserter():
        try:
            for n in range(1, N + 1):
                c.upsert(ids=ids, vectors=np.full((8, 2), float(n)), payloads=[{"n": n}] * 8)
        except Exception as e:   # reported below
            errors.append(e)

    def updater(name):
        try:
            for j in range(N):
                c.update_payload(ids, {"tag": f"{name}{j}"})
        except Exception as e:
            errors.append(e)

    done = threading.Event()
    went_back = []

    def reader():   # n only ever grows: a stale merge would write an older n back
        last = dict.fromkeys(ids, 0)
        while not done.is_set():
            for r in c.get(ids):
                if r.payload["n"] < last[r.id]:
                    went_back.append((r.id, last[r.id], r.payload["n"]))
                last[r.id] = r.payload["n"]

    threads = [threading.Thread(target=upserter)] + [threading.Thread(target=updater, args=(x,)) for x in "uv"]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert not errors and not went_back
    for r in c.get(ids):
        assert r.payload["n"] == N
        np.testing.assert_array_equal(r.vector, [N, N])
        assert r.payload.get("tag") in (None, f"u{N - 1}", f"v{N - 1}")
