"""Property test over the wire: random upserts (with overwrites) and deletes through the client
keep a remote collection equal to a dict model (shared invariants with the engine's tests)."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.invariants import assert_exact_search, assert_state
from tests.server.conftest import unique
from vecdb_client import Client

DIM = 5
IDS = st.integers(0, 30)
VEC = st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=DIM, max_size=DIM).filter(
    lambda v: any(abs(x) > 1e-3 for x in v))
UPSERT = st.tuples(st.just("upsert"), st.dictionaries(IDS, st.tuples(VEC, st.integers(-2**62, 2**62) | st.none()),
                                                      min_size=1, max_size=6))
DELETE = st.tuples(st.just("delete"), st.lists(IDS, max_size=4))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(UPSERT | DELETE, min_size=1, max_size=8), metric=st.sampled_from(["cosine", "l2", "dot"]))
def test_remote_collection_matches_model(server, ops, metric):
    with Client(server.address) as c:
        col = c.create_collection(unique("p"), dim=DIM, metric=metric, schema={"n": "int64"}, id_type="int64")
        model: dict = {}
        for op, arg in ops:
            if op == "upsert":
                ids = list(arg)
                col.upsert(ids, np.array([arg[i][0] for i in ids], np.float32), [{"n": arg[i][1]} for i in ids])
                for i in ids:
                    model[i] = (np.array(arg[i][0], np.float32), {"n": arg[i][1]})
            else:
                assert col.delete(ids=arg) == len(set(arg) & set(model))
                for i in arg:
                    model.pop(i, None)
        assert_state(col, model, DIM)
        assert_exact_search(col, model, np.ones((2, DIM), np.float32) * [[1], [-1]], k=4)
