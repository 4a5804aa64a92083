"""The engine's GPU path: batches of queries scan sealed segments on the device.

No GPU here: the torch backend runs on the CPU device (the same code the engine runs on
CUDA), put in place of the device probe; its answers must equal the CPU kernel's.
"""
from __future__ import annotations

import numpy as np
import pytest

import vecdb
import vecdb.collection
import vecdb.search
import vecdb.index.gpu as gpu


@pytest.fixture
def torch_on_cpu(monkeypatch):
    made = []

    def device_exact(vectors, metric):
        made.append(len(vectors))
        return gpu.TorchExact(vectors, metric, device="cpu")

    monkeypatch.setattr(vecdb.collection, "device_backend", lambda: ("torch", "torch on cpu (test)"))
    monkeypatch.setattr(vecdb.search, "device_backend", lambda: ("torch", "torch on cpu (test)"))
    monkeypatch.setattr(gpu, "device_exact", device_exact)
    return made


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_batches_scan_sealed_segments_on_the_device(tmp_path, torch_on_cpu, metric):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 12)).astype(np.float32)
    db = vecdb.connect(tmp_path / "db")
    col = db.create_collection("c", dim=12, metric=metric, schema={"b": "int64"}, index={"type": "flat"})
    col.upsert(ids=list(range(600)), vectors=x, payloads=[{"b": i % 4} for i in range(600)])
    col.flush()
    col.upsert(ids=[1000], vectors=x[:1])                   # and a memtable part
    q = rng.normal(size=(gpu.GPU_MIN_QUERIES, 12)).astype(np.float32)
    hits, plan = col.search(q, k=7, filter="b != 2", explain=True)
    assert torch_on_cpu == [600]
    assert "on the GPU" in plan[0]["reason"] and "GPU" not in plan[1]["reason"]
    assert col.stats()["segments"][0]["gpu_bytes"] >= 600 * 12 * 4
    assert col.stats()["gpu"]["backend"] == "torch"
    single = col.search(q[:1], k=7, filter="b != 2", explain=True)[1]   # one query: the CPU
    assert "GPU" not in single[0]["reason"]
    db.close()
    db = vecdb.connect(tmp_path / "db2")
    ref = db.create_collection("c", dim=12, metric=metric, schema={"b": "int64"}, index={"type": "flat"})
    ref.upsert(ids=list(range(600)), vectors=x, payloads=[{"b": i % 4} for i in range(600)])
    ref.flush()
    ref.upsert(ids=[1000], vectors=x[:1])
    want = ref.search(q[:gpu.GPU_MIN_QUERIES - 1], k=7, filter="b != 2")    # below: the CPU
    for got, exp in zip(hits, want):
        assert [h.id for h in got] == [h.id for h in exp]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in exp], rtol=1e-4, atol=1e-4)
    db.close()
