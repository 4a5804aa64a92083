"""A server child process killed (SIGKILL) during a streaming upsert keeps every acknowledged
batch and no half batch; SIGTERM under load drains, loses nothing acknowledged and exits 0."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import vecdb
from tests.server.harness import SubprocessServer
from vecdb_client import Client

DIM, ROWS = 16, 50


def _batches(n: int):
    rng = np.random.default_rng(0)
    for b in range(n):
        yield ([f"b{b}-{i}" for i in range(ROWS)], rng.normal(size=(ROWS, DIM)).astype(np.float32),
               [{"batch": b} for _ in range(ROWS)])


@pytest.mark.slow
def test_sigkill_during_stream_keeps_acked_batches_whole(tmp_path):
    acked: list[int] = []
    with SubprocessServer(tmp_path / "db") as server:
        with Client(server.address, retries=0) as c:
            col = c.create_collection("bulk", dim=DIM, metric="l2", schema={"batch": "int64"})
            with pytest.raises(vecdb.VecdbError):
                for ack in col.upsert_stream(_batches(10_000)):
                    assert ack.seq == len(acked) and ack.rows == ROWS
                    acked.append(ack.seq)
                    if len(acked) == 25:
                        assert server.kill() == -9
    assert len(acked) == 25
    with SubprocessServer(tmp_path / "db") as server, Client(server.address) as c:
        col = c.get_collection("bulk")
        total = col.count()
        assert total % ROWS == 0                         # whole batches only
        for b in range(total // ROWS + 3):
            n = col.count(filter=f"batch = {b}")
            assert n in (0, ROWS), f"batch {b} is half visible: {n} rows"
            if b in acked:
                assert n == ROWS, f"acknowledged batch {b} lost"
        assert total >= len(acked) * ROWS
        assert server.terminate() == 0


@pytest.mark.slow
def test_sigterm_under_load_drains_and_loses_nothing(tmp_path):
    acknowledged: list[list[str]] = [[] for _ in range(4)]
    stop = threading.Event()
    errors: list[BaseException] = []
    with SubprocessServer(tmp_path / "db") as server:
        with Client(server.address) as c:
            c.create_collection("live", dim=DIM)

        def writer(w: int):
            rng = np.random.default_rng(w)
            with Client(server.address, retries=0) as c:
                col = c.collection("live")
                i = 0
                while not stop.is_set():
                    ids = [f"w{w}-{i}-{j}" for j in range(5)]
                    try:
                        col.upsert(ids, rng.normal(size=(5, DIM)))
                        col.search(rng.normal(size=(1, DIM)), k=3)
                    except vecdb.Unavailable:
                        return                           # the server is draining or gone
                    except vecdb.VecdbError as e:
                        errors.append(e)
                        return
                    acknowledged[w].extend(ids)
                    i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        assert server.terminate() == 0
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    done = [i for ids in acknowledged for i in ids]
    assert len(done) >= 20
    with vecdb.connect(tmp_path / "db") as db:
        col = db.get_collection("live")
        found = {r.id for r in col.get(done)}
        assert found == set(done)
        assert col.count() >= len(done)
        assert col.stats()["memtable_rows"] == 0         # the drain sealed what was in memory
