"""AsyncClient mirrors Client: same calls, same answers, same errors, streaming acks."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

import vecdb
from tests.server.harness import InProcessServer
from vecdb_client import AsyncClient


def test_async_client(tmp_path):
    async def scenario(address):
        async with AsyncClient(address) as c:
            col = await c.create_collection("a", dim=3, metric="l2", schema={"n": "int64"})
            assert col.dim == 3 and col.metric == "l2"
            assert await col.upsert([1, 2], np.eye(3)[:2], [{"n": 1}, {"n": 2}]) == 2
            acks = [a async for a in col.upsert_stream([([3], np.eye(3)[2:]), ([4, 5], np.ones((2, 3)))])]
            assert [(a.seq, a.rows) for a in acks] == [(0, 1), (1, 2)]
            assert await col.count() == 5
            hits = await col.search(np.eye(3)[:1], k=2, output_fields=["n"])
            assert hits[0][0].id == 1 and hits[0][0].payload == {"n": 1}
            with pytest.raises(vecdb.DimensionMismatch):
                await col.search(np.ones((1, 4)), k=1)
            with pytest.raises(vecdb.CollectionNotFound):
                await c.get_collection("missing")
            handle = c.collection("a")
            assert (await handle.describe())["dim"] == 3
            assert await c.list_collections() == ["a"]
    with InProcessServer(data=str(tmp_path)) as s:
        asyncio.run(scenario(s.address))
