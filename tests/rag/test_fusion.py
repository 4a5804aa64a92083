"""Reciprocal rank fusion: the arithmetic, weights, ties, and typed errors."""
import pytest
from hypothesis import given, strategies as st

from vecdb.errors import InvalidArgument
from vecdb.rag.fusion import rrf


def test_arithmetic():
    fused = dict(rrf([["a", "b", "c"], ["c", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert [d for d, _ in rrf([["a", "b", "c"], ["c", "a"]])] == ["a", "c", "b"]


def test_weights_and_limit():
    fused = rrf([["a", "b"], ["b", "a"]], k=1, weights=[2.0, 1.0], limit=1)
    assert fused == [("a", pytest.approx(2 / 2 + 1 / 3))]
    assert rrf([["a"], ["b"]], weights=[0.0, 1.0])[0][0] == "b"


def test_ties_go_to_the_better_rank_then_the_earlier_list():
    assert [d for d, _ in rrf([["a", "b"], ["b", "a"]])] == ["a", "b"]
    assert [d for d, _ in rrf([["x"], ["y"]])] == ["x", "y"]


def test_repeats_within_a_list_count_once():
    assert dict(rrf([["a", "a"]], k=0))["a"] == pytest.approx(1.0)


def test_typed_errors():
    with pytest.raises(InvalidArgument):
        rrf([["a"]], weights=[1.0, 2.0])
    with pytest.raises(InvalidArgument):
        rrf([["a"]], weights=[-1.0])
    with pytest.raises(InvalidArgument):
        rrf([["a"]], k=-1)


@given(st.lists(st.lists(st.integers(0, 30), unique=True, max_size=15), min_size=1, max_size=4))
def test_fused_set_and_order(rankings):
    fused = rrf(rankings)
    assert {d for d, _ in fused} == {d for r in rankings for d in r}
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)
    single = rrf([rankings[0]])
    assert [d for d, _ in single] == list(rankings[0])
