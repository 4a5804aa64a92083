"""The codec round-trips values exactly (int64, timestamps, lists, null) and maps statuses back
to the error tree's classes."""
from __future__ import annotations

import datetime as dt

import grpc
import numpy as np
import pytest
from hypothesis import given, strategies as st

import vecdb_client as vc
from vecdb_client import channel, codec

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
VALUES = st.one_of(
    st.none(), st.booleans(), INT64, st.floats(allow_nan=False), st.text(max_size=20),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                 timezones=st.just(dt.timezone.utc)),
    st.lists(st.text(max_size=5), min_size=1, max_size=4), st.lists(INT64, min_size=1, max_size=4))


@given(VALUES)
def test_value_round_trip(v):
    out = codec.value_from_pb(codec.value_to_pb(v))
    assert out == v and type(out) is type(v)


def test_naive_timestamp_is_utc_and_bad_values_named():
    naive = dt.datetime(2020, 5, 6, 7, 8, 9, 123456)
    assert codec.value_from_pb(codec.value_to_pb(naive)) == naive.replace(tzinfo=dt.timezone.utc)
    with pytest.raises(vc.SchemaError, match=r"payloads\[0\]\.f"):
        codec.payload_to_pb({"f": object()})
    with pytest.raises(vc.SchemaError, match="64 bits"):
        codec.value_to_pb(1 << 64)


@given(st.integers(0, 5), st.integers(1, 9))
def test_vectors_round_trip(rows, dim):
    x = np.random.default_rng(rows).normal(size=(rows, dim)).astype(np.float32)
    assert np.array_equal(codec.vectors_from_pb(codec.vectors_to_pb(x)), x)


def test_ids():
    assert codec.ids_from_pb(codec.ids_to_pb(["a", "b"])) == ["a", "b"]
    assert codec.ids_from_pb(codec.ids_to_pb(np.arange(3))) == [0, 1, 2]
    assert codec.ids_from_pb(codec.ids_to_pb([])) == []
    with pytest.raises(vc.InvalidId):
        codec.ids_to_pb(["a", 1])
    with pytest.raises(vc.InvalidId):
        codec.ids_to_pb("abc")


class _Err(grpc.RpcError):
    def __init__(self, code, details, trailing=()):
        self._c, self._d, self._t = code, details, trailing

    def code(self):
        return self._c

    def details(self):
        return self._d

    def trailing_metadata(self):
        return self._t


def test_status_to_error_class():
    e = channel.to_error(_Err(grpc.StatusCode.INVALID_ARGUMENT, "bad", (("vecdb-error", "DimensionMismatch"),)))
    assert type(e) is vc.DimensionMismatch and str(e) == "bad"
    e = channel.to_error(_Err(grpc.StatusCode.INVALID_ARGUMENT, "f", (("vecdb-error", "FilterError"),
                                                                      ("vecdb-filter-position", "4"))))
    assert type(e) is vc.FilterError and e.position == 4
    assert type(channel.to_error(_Err(grpc.StatusCode.NOT_FOUND, "x"))) is vc.NotFound
    assert type(channel.to_error(_Err(grpc.StatusCode.UNAVAILABLE, "x"))) is vc.Unavailable
    assert type(channel.to_error(_Err(grpc.StatusCode.DEADLINE_EXCEEDED, "x"))) is vc.DeadlineExceeded
    # a class name that does not match the code is not trusted
    assert type(channel.to_error(_Err(grpc.StatusCode.NOT_FOUND, "x", (("vecdb-error", "SchemaError"),)))) is vc.NotFound
