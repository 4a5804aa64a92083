"""Streaming upsert: acks in order once durable, flow control, and a bad batch stops the stream
after the good ones with nothing of itself written."""
from __future__ import annotations

import numpy as np
import pytest

import vecdb
from tests.server.harness import InProcessServer
from vecdb_client import Client


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with InProcessServer(data=str(tmp_path_factory.mktemp("stream"))) as s, Client(s.address) as c:
        yield s, c


def test_acks_in_order_and_rows_visible_when_acked(served):
    server, c = served
    col = c.create_collection("s1", dim=4, schema={"b": "int64"})
    seen = []

    def batches():
        for b in range(6):
            yield ([f"{b}-{i}" for i in range(10)], np.ones((10, 4)) + b, [{"b": b}] * 10)

    for ack in col.upsert_stream(batches(), window=1):
        seen.append(ack.seq)
        # acknowledged means applied: the server's engine sees every row of the batch now
        assert server.database.get_collection("s1").count(filter=f"b = {ack.seq}") == 10
    assert seen == list(range(6)) and col.count() == 60


def test_bad_batch_ends_stream_after_good_ones(served):
    _, c = served
    col = c.create_collection("s2", dim=4)
    batches = [(["a", "b"], np.ones((2, 4))), (["c", "c"], np.ones((2, 4))), (["d"], np.ones((1, 4)))]
    acks = []
    with pytest.raises(vecdb.InvalidId, match="repeat"):
        for ack in col.upsert_stream(batches):
            acks.append(ack)
    assert [a.seq for a in acks] == [0]
    assert col.count() == 2 and col.get(["c", "d"]) == []


def test_batch_the_client_cannot_encode_is_reported_after_earlier_acks(served):
    _, c = served
    col = c.create_collection("s3", dim=4)
    acks = []
    with pytest.raises(vecdb.InvalidArgument, match="streamed batch"):
        for ack in col.upsert_stream([(["a"], np.ones((1, 4))), "not a batch"]):
            acks.append(ack)
    assert len(acks) == 1 and col.count() == 1
