"""Collection.scroll: keyset pages in id order, stable while writes go on; bad input typed."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import vecdb
from vecdb.collection import MAX_SCROLL
from vecdb.scroll import decode_cursor, encode_cursor


@pytest.fixture
def db(tmp_path):
    with vecdb.connect(tmp_path / "db", durability="batch") as d:
        yield d


def scroll_all(col, limit, **kwargs) -> list:
    """Every record a full scroll returns, page by page (at most 10_000 pages)."""
    out, cursor = [], None
    for _ in range(10_000):
        page, cursor = col.scroll(limit=limit, cursor=cursor, **kwargs)
        assert len(page) <= limit
        assert cursor is None or len(page) == limit
        out.extend(page)
        if cursor is None:
            return out
    raise AssertionError("scroll did not end")


def filled(db, ids, *, flush_every=None, metric="cosine"):
    """A collection over ``ids`` (vector i+1 along a diagonal, payload n = position, g = parity),
    sealed into a segment every ``flush_every`` rows so pages span segments and the memtable."""
    col = db.create_collection("c", dim=3, metric=metric, schema={"n": "int64", "g": "string"})
    rng = np.random.default_rng(0)
    step = flush_every or len(ids)
    for lo in range(0, len(ids), step):
        chunk = ids[lo:lo + step]
        col.upsert(ids=chunk, vectors=rng.normal(size=(len(chunk), 3)) + 0.01,
                   payloads=[{"n": lo + j, "g": "even" if (lo + j) % 2 == 0 else "odd"}
                             for j in range(len(chunk))])
        if flush_every:
            col.flush()
    return col


@pytest.mark.parametrize("limit", [1, 3, 10, 1000])
def test_pages_cover_every_row_in_id_order(db, limit):
    ids = [f"k{i:04d}" for i in np.random.default_rng(1).permutation(57)]
    col = filled(db, ids, flush_every=20)     # two segments + a memtable, ids interleaved
    got = scroll_all(col, limit)
    assert [r.id for r in got] == sorted(ids)
    payload = {r.id: r.payload for r in col.get(ids)}
    assert all(r.payload == payload[r.id] for r in got)
    assert all(r.vector.shape == (0,) and r.vector.dtype == np.float32 for r in got)


def test_int_ids_order_numerically_and_unicode_strings_by_code_point(db):
    c = db.create_collection("ints", dim=2, metric="l2")
    ids = [5, -3, 2**62, 0, -(2**63), 17]
    c.upsert(ids=ids[:3], vectors=np.ones((3, 2)))
    c.flush()
    c.upsert(ids=ids[3:], vectors=np.ones((3, 2)))
    assert [r.id for r in scroll_all(c, 2)] == sorted(ids)
    s = db.create_collection("strs", dim=2, metric="l2")
    words = ["b", "a", "é", "Z", "ab", "日本", "a b", "\U0001F600", "~"]
    s.upsert(ids=words[:4], vectors=np.ones((4, 2)))
    s.flush()
    s.upsert(ids=words[4:], vectors=np.ones((5, 2)))
    assert [r.id for r in scroll_all(s, 2)] == sorted(words)


def test_filter_output_fields_and_vectors(db):
    ids = [f"k{i:03d}" for i in range(40)]
    col = filled(db, ids, flush_every=15)
    col.delete(ids=["k004", "k031"])
    got = scroll_all(col, 4, filter="g = 'even'", output_fields=["n"], with_vectors=True)
    expect = [i for i in ids if int(i[1:]) % 2 == 0 and i not in ("k004",)]
    assert [r.id for r in got] == expect
    assert all(r.payload == {"n": int(r.id[1:])} for r in got)
    stored = {r.id: r.vector for r in col.get(expect)}
    for r in got:
        np.testing.assert_array_equal(r.vector, stored[r.id])
    assert scroll_all(col, 5, output_fields=[])[0].payload == {}
    assert col.scroll(filter="n > 1000") == ([], None)


def test_empty_collection_and_cursor_at_the_end(db):
    c = db.create_collection("e", dim=2)
    assert c.scroll() == ([], None)
    col = filled(db, ["a", "b", "c"])
    page, cursor = col.scroll(limit=3)
    assert [r.id for r in page] == ["a", "b", "c"] and cursor is None     # no empty last page
    page, cursor = col.scroll(limit=2)
    assert cursor is not None
    assert [r.id for r in col.scroll(limit=2, cursor=cursor)[0]] == ["c"]
    assert col.scroll(cursor=encode_cursor("zzz")) == ([], None)


def test_scroll_as_of_a_version(db):
    col = filled(db, [f"k{i}" for i in range(10)], flush_every=10)
    v = col.version
    col.upsert(ids=["k99"], vectors=[[1, 0, 0]])
    col.delete(ids=["k0"])
    col.flush()
    past = [r.id for r in scroll_all(col, 3, version=v)]
    assert past == sorted(f"k{i}" for i in range(10))
    with col.at_version(v) as view:
        assert [r.id for r in scroll_all(view, 3)] == past
    assert "k99" in [r.id for r in scroll_all(col, 3)]


BAD_SCROLLS = [
    (dict(limit=0), vecdb.InvalidArgument),
    (dict(limit=-1), vecdb.InvalidArgument),
    (dict(limit=MAX_SCROLL + 1), vecdb.InvalidArgument),
    (dict(limit=2.0), vecdb.InvalidArgument),
    (dict(limit=True), vecdb.InvalidArgument),
    (dict(cursor="not a cursor"), vecdb.InvalidArgument),
    (dict(cursor="abc"), vecdb.InvalidArgument),
    (dict(cursor=""), vecdb.InvalidArgument),
    (dict(cursor=12), vecdb.InvalidArgument),
    (dict(cursor=encode_cursor(5)), vecdb.InvalidArgument),          # int cursor, string ids
    (dict(cursor="eyJ2IjoyLCJhZnRlciI6ImEifQ"), vecdb.InvalidArgument),  # format 2
    (dict(cursor="A" * 10_000), vecdb.InvalidArgument),
    (dict(filter="n >>= 1"), vecdb.FilterError),
    (dict(filter=3), vecdb.InvalidArgument),
    (dict(output_fields=["nope"]), vecdb.SchemaError),
    (dict(output_fields="n"), vecdb.InvalidArgument),
    (dict(with_vectors="yes"), vecdb.InvalidArgument),
    (dict(version=0), vecdb.InvalidArgument),
    (dict(version="1"), vecdb.InvalidArgument),
    (dict(version=999), vecdb.VersionNotFound),
]


@pytest.mark.parametrize("kwargs,error", BAD_SCROLLS)
def test_bad_scroll_raises_typed_error(db, kwargs, error):
    col = filled(db, ["a", "b", "c"])
    before = (col.count(), col.version)
    with pytest.raises(error) as info:
        col.scroll(**kwargs)
    assert str(info.value)
    assert (col.count(), col.version) == before


def test_cursor_round_trip_and_type_check():
    assert decode_cursor(encode_cursor("héllo"), "string") == "héllo"
    assert decode_cursor(encode_cursor(-(2**63)), "int64") == -(2**63)
    assert decode_cursor(None, "string") is None
    with pytest.raises(vecdb.InvalidArgument):
        decode_cursor(encode_cursor("a"), "int64")
    with pytest.raises(vecdb.InvalidArgument):
        decode_cursor(encode_cursor(2**63), None)        # beyond int64
    with pytest.raises(vecdb.InvalidArgument):
        decode_cursor(encode_cursor(True), "int64")


# ---- stability while writes go on ----------------------------------------------------------

STABLE = [f"s{i:03d}" for i in range(0, 60, 2)]      # present throughout
OTHERS = [f"s{i:03d}" for i in range(1, 60, 2)] + ["a", "zz", "s0000"]   # come and go

ops = st.one_of(
    st.tuples(st.just("page"), st.integers(1, 7)),
    st.tuples(st.just("upsert"), st.lists(st.sampled_from(STABLE + OTHERS), min_size=1, max_size=6, unique=True)),
    st.tuples(st.just("delete"), st.lists(st.sampled_from(OTHERS), min_size=1, max_size=6, unique=True)),
    st.tuples(st.just("flush"), st.none()),
    st.tuples(st.just("compact"), st.none()),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(ops, min_size=1, max_size=25), filtered=st.booleans())
def test_paging_while_writing_never_repeats_or_skips(tmp_path_factory, script, filtered):
    """Pages interleaved with upserts (also re-upserts of stable rows), deletes, flushes and
    compactions: ids come back strictly increasing, every row present throughout (and
    matching the filter throughout) comes back, and nothing that never existed does."""
    path = tmp_path_factory.mktemp("scroll")
    with vecdb.connect(path, durability="batch", auto_compact=False) as db:
        col = db.create_collection("c", dim=2, metric="l2", schema={"g": "int64"})
        rng = np.random.default_rng(0)

        def write(ids):   # g depends on the id only: a row's filter match never changes
            col.upsert(ids=ids, vectors=rng.normal(size=(len(ids), 2)),
                       payloads=[{"g": int(i[-1]) % 2 if i[-1].isdigit() else 0} for i in ids])
        write(STABLE)
        write(OTHERS[:10])
        col.flush()
        write(OTHERS[10:20])
        flt = "g = 0" if filtered else None
        seen, cursor, done = [], None, False
        for op, arg in script + [("page", 7)] * 100:
            if done and op == "page":
                break
            if op == "page":
                page, cursor = col.scroll(flt, limit=arg, cursor=cursor)
                seen.extend(r.id for r in page)
                done = cursor is None
            elif op == "upsert":
                write(arg)
            elif op == "delete":
                col.delete(ids=arg)
            elif op == "flush":
                col.flush()
            else:
                col.compact()
        assert done
        assert seen == sorted(set(seen))                           # no repeats, in order
        expect = {i for i in STABLE if not filtered or int(i[-1]) % 2 == 0}
        assert expect <= set(seen)                                 # no skips
        assert set(seen) <= set(STABLE + OTHERS)


@pytest.mark.slow
def test_scroll_with_a_concurrent_writer_thread(db):
    """A writer thread re-upserts stable rows and churns others while pages are read."""
    stable = [f"r{i:05d}" for i in range(0, 3000, 3)]
    churn = [f"r{i:05d}" for i in range(3000) if i % 3]
    col = db.create_collection("w", dim=4, metric="dot")
    rng = np.random.default_rng(2)
    col.upsert(ids=stable + churn, vectors=rng.normal(size=(3000, 4)))
    col.flush()
    stop = threading.Event()
    errors = []

    def writer():
        r = np.random.default_rng(3)
        try:
            while not stop.is_set():
                col.upsert(ids=list(r.choice(stable, 50, replace=False)), vectors=r.normal(size=(50, 4)))
                col.delete(ids=list(r.choice(churn, 30, replace=False)))
                col.upsert(ids=list(r.choice(churn, 30, replace=False)), vectors=r.normal(size=(30, 4)))
                if r.random() < 0.1:
                    col.flush()
        except Exception as e:   # reported to the test thread below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 20
        seen = []
        cursor = None
        while time.monotonic() < deadline:
            page, cursor = col.scroll(limit=97, cursor=cursor)
            seen.extend(r.id for r in page)
            if cursor is None:
                break
        assert cursor is None
    finally:
        stop.set()
        t.join()
    assert not errors
    assert seen == sorted(set(seen))
    assert set(stable) <= set(seen)
