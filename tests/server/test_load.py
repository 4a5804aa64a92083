"""Bounded load: 16 concurrent clients x 200 mixed requests against one server, zero errors, and
every answer checked against what that client wrote."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vecdb_client import Client

CLIENTS, REQUESTS, DIM = 16, 200, 16


@pytest.mark.slow
def test_sixteen_clients_mixed_requests(server):
    with Client(server.address) as c:
        c.create_collection("load", dim=DIM, metric="l2", schema={"owner": "int64"})
    errors: list[BaseException] = []
    done = [0] * CLIENTS
    deadline = time.monotonic() + 240

    def worker(w: int):
        rng = np.random.default_rng(w)
        mine: dict[str, np.ndarray] = {}
        try:
            with Client(server.address, timeout=60) as c:
                col = c.collection("load")
                for i in range(REQUESTS):
                    if time.monotonic() > deadline:
                        break
                    op = i % 4
                    if op == 0 or not mine:
                        ids = [f"w{w}-{i}-{j}" for j in range(4)]
                        X = rng.normal(size=(4, DIM)).astype(np.float32)
                        assert col.upsert(ids, X, [{"owner": w}] * 4) == 4
                        mine.update(zip(ids, X))
                    elif op == 1:
                        rid = list(mine)[int(rng.integers(len(mine)))]
                        hit = col.search(mine[rid][None], k=1, filter=f"owner = {w}")[0][0]
                        assert hit.id == rid and hit.score < 1e-4 and hit.payload == {"owner": w}
                    elif op == 2:
                        assert col.count(filter=f"owner = {w}") == len(mine)
                    else:
                        rids = list(mine)[-3:]
                        recs = col.get(rids)
                        assert [r.id for r in recs] == rids
                        np.testing.assert_array_equal(recs[0].vector, mine[rids[0]])
                    done[w] += 1
        except BaseException as e:       # collected and reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert sum(done) == CLIENTS * REQUESTS
