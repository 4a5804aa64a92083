"""Stateful property test: upsert / delete / flush / compact / reopen against a dict model."""
from __future__ import annotations

import shutil
import tempfile

import numpy as np
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import vecdb
from tests.invariants import assert_exact_search, assert_state

DIM = 5
POOL = [f"id{i}" for i in range(24)]
vectors = st.lists(st.integers(-8, 8), min_size=DIM, max_size=DIM).filter(any)


class YearFilter:
    """A filter both as text for vecdb and as a Python predicate for the model."""

    def __init__(self, year: int):
        self.expr = f"year >= {year}"
        self.year = year

    def __call__(self, payload: dict) -> bool:
        return payload.get("year") is not None and payload["year"] >= self.year


class CollectionMachine(RuleBasedStateMachine):
    @initialize(metric=st.sampled_from(["cosine", "dot", "l2"]))
    def open(self, metric):
        self.dir = tempfile.mkdtemp(prefix="vecdb-prop-")
        self.options = dict(seal_rows=6, keep_versions=3)
        self.db = vecdb.connect(self.dir, **self.options)
        self.col = self.db.create_collection("c", dim=DIM, metric=metric,
                                             schema={"year": "int64", "tag": "string"})
        self.model: dict = {}

    def teardown(self):
        if hasattr(self, "db"):
            self.db.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(data=st.data(), n=st.integers(1, 6))
    def upsert(self, data, n):
        ids = data.draw(st.lists(st.sampled_from(POOL), min_size=n, max_size=n, unique=True))
        vecs = np.array([data.draw(vectors) for _ in ids], dtype=np.float32)
        payloads = [data.draw(st.fixed_dictionaries({}, optional={
            "year": st.integers(2000, 2010), "tag": st.sampled_from(["x", "y"])})) for _ in ids]
        assert self.col.upsert(ids=ids, vectors=vecs, payloads=payloads) == n
        for i, v, p in zip(ids, vecs, payloads):
            self.model[i] = (v, p)

    @rule(ids=st.lists(st.sampled_from(POOL), max_size=5))
    def delete_ids(self, ids):
        expected = len({i for i in ids if i in self.model})
        assert self.col.delete(ids=ids) == expected
        for i in ids:
            self.model.pop(i, None)

    @rule(tag=st.sampled_from(["x", "y"]))
    def delete_filter(self, tag):
        doomed = [i for i, (_, p) in self.model.items() if p.get("tag") == tag]
        assert self.col.delete(filter=f"tag = '{tag}'") == len(doomed)
        for i in doomed:
            del self.model[i]

    @rule(data=st.data(), ids=st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    def update_payload(self, data, ids):
        change = data.draw(st.fixed_dictionaries({}, optional={
            "year": st.none() | st.integers(2000, 2010), "tag": st.none() | st.sampled_from(["x", "y"])}))
        present = [i for i in ids if i in self.model]
        assert self.col.update_payload(ids, change) == (len(present) if change else 0)
        for i in present:
            vec, payload = self.model[i]
            self.model[i] = (vec, {**payload, **change})

    @precondition(lambda self: hasattr(self, "col"))
    @rule(limit=st.integers(1, 10), year=st.none() | st.integers(2000, 2011))
    def scroll_pages_match_the_model(self, limit, year):
        flt = None if year is None else YearFilter(year)
        seen, cursor = [], None
        for _ in range(len(POOL) + 1):
            page, cursor = self.col.scroll(None if flt is None else flt.expr, limit=limit, cursor=cursor)
            seen += [(r.id, r.payload) for r in page]
            if cursor is None:
                break
        expect = sorted((i, {f: v for f, v in p.items() if v is not None})
                        for i, (_, p) in self.model.items() if flt is None or flt(p))
        assert cursor is None and seen == expect

    @rule()
    def flush(self):
        self.col.flush()

    @rule()
    def compact(self):
        self.col.compact()

    @rule()
    def reopen(self):
        self.db.close()
        self.db = vecdb.connect(self.dir, **self.options)
        self.col = self.db.get_collection("c")

    @invariant()
    def state_matches(self):
        if hasattr(self, "col"):
            assert_state(self.col, self.model, DIM)

    @precondition(lambda self: hasattr(self, "col"))
    @rule(data=st.data(), k=st.integers(1, 30), year=st.none() | st.integers(2000, 2011))
    def search_is_exact(self, data, k, year):
        q = np.array([data.draw(vectors) for _ in range(2)], dtype=np.float32)
        assert_exact_search(self.col, self.model, q, k, None if year is None else YearFilter(year))
        if year is not None:
            assert self.col.count(filter=f"year >= {year}") == sum(YearFilter(year)(p) for _, p in self.model.values())


CollectionMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
TestCollection = CollectionMachine.TestCase
