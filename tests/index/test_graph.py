"""The Numba beam search over FAISS-built HNSW graphs (index/graph.py)."""
from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vecdb.index.exact import exact_search
from vecdb.index.graph import GraphSearcher, graph_of


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(1, n // 50), d)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    return np.ascontiguousarray(x, np.float32)


def _hnsw(x: np.ndarray, metric: str, sq8: bool = False):
    fm = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    d = x.shape[1]
    if sq8:
        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, 8, fm)
        index.train(x)
    else:
        index = faiss.IndexHNSWFlat(d, 8, fm)
    index.hnsw.efConstruction = 40
    index.add(x)
    return index


def _sq8_searcher(index, metric: str) -> GraphSearcher:
    sq = faiss.downcast_index(index.storage)
    codes = faiss.rev_swig_ptr(sq.codes.data(), sq.codes.size()).reshape(index.ntotal, sq.code_size)
    trained = faiss.vector_to_array(sq.sq.trained)
    d = index.d
    return GraphSearcher(graph_of(index), codes, metric, trained[:d], trained[d:])


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_same_answers_as_faiss_on_the_same_graph(metric):
    x = _clustered(3000, 24, 1)
    q = _clustered(60, 24, 2)
    index = _hnsw(x, metric)
    searcher = GraphSearcher(graph_of(index), x, metric)
    for ef in (10, 40, 200):
        sp = faiss.SearchParametersHNSW()
        sp.efSearch = ef
        D, I = index.search(q, 10, params=sp)
        d, i = searcher.search(q, 10, ef)
        assert (i == I).mean() > 0.99          # ties may order differently
        np.testing.assert_allclose(np.sort(d, 1), np.sort(D, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_sq8_codes_decode_like_faiss(metric):
    x = _clustered(2000, 13, 3)                    # odd d: FAISS's own d, no padding here
    q = _clustered(40, 13, 4)
    index = _hnsw(x, metric, sq8=True)
    searcher = _sq8_searcher(index, metric)
    sp = faiss.SearchParametersHNSW()
    sp.efSearch = 64
    D, I = index.search(q, 10, params=sp)
    d, i = searcher.search(q, 10, 64)
    assert (i == I).mean() > 0.95
    np.testing.assert_allclose(np.sort(d, 1), np.sort(D, 1), rtol=1e-3, atol=1e-3)


def test_queries_narrower_than_the_codes_are_zero_padded():
    x = np.zeros((500, 16), np.float32)
    x[:, :13] = _clustered(500, 13, 5)
    index = _hnsw(x, "l2", sq8=True)
    searcher = _sq8_searcher(index, "l2")
    q = _clustered(8, 13, 6)
    qp = np.zeros((8, 16), np.float32)
    qp[:, :13] = q
    a = searcher.search(q, 5, 32)
    b = searcher.search(qp, 5, 32)
    np.testing.assert_array_equal(a[1], b[1])


def test_visited_tags_wrap_without_changing_answers():
    """uint8 tags are cleared every 254 queries; answers must not depend on the tag."""
    x = _clustered(1500, 16, 7)
    q = _clustered(30, 16, 8)
    index = _hnsw(x, "ip")
    searcher = GraphSearcher(graph_of(index), x, "ip")
    want = searcher.search(q, 10, 50)[1]
    for _ in range(20):                              # 600 single queries: the tags wrap twice
        for j in range(len(q)):
            np.testing.assert_array_equal(searcher.search(q[j:j + 1], 10, 50)[1][0], want[j])


def test_parallel_batch_equals_one_at_a_time():
    import numba
    x = _clustered(2000, 16, 9)
    q = _clustered(50, 16, 10)
    searcher = GraphSearcher(graph_of(_hnsw(x, "l2")), x, "l2")
    one = np.vstack([searcher.search(q[j:j + 1], 10, 40)[1] for j in range(len(q))])
    before = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        np.testing.assert_array_equal(searcher.search(q, 10, 40)[1], one)
    finally:
        numba.set_num_threads(before)


def test_concurrent_searches_from_threads_agree():
    x = _clustered(2000, 16, 11)
    q = _clustered(40, 16, 12)
    searcher = GraphSearcher(graph_of(_hnsw(x, "ip")), x, "ip")
    want = [searcher.search(q[j:j + 1], 10, 40)[1] for j in range(len(q))]
    errors = []

    def work():
        for _ in range(5):
            for j in range(len(q)):
                if not np.array_equal(searcher.search(q[j:j + 1], 10, 40)[1], want[j]):
                    errors.append(j)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_padding_when_the_graph_has_fewer_rows_than_k():
    x = _clustered(5, 8, 13)
    searcher = GraphSearcher(graph_of(_hnsw(x, "ip")), x, "ip")
    d, i = searcher.search(x[:2], 10, 16)
    assert (i[:, :5] >= 0).all() and (i[:, 5:] == -1).all()
    assert np.isneginf(d[:, 5:]).all()
    assert sorted(i[0, :5]) == list(range(5))


_GRAPH = {}


def _small(metric: str):
    if metric not in _GRAPH:
        x = _clustered(800, 8, 14)
        if metric == "ip":         # cosine, as the engine uses it (raw IP graphs can strand rows)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        _GRAPH[metric] = (x, GraphSearcher(graph_of(_hnsw(x, metric)), x, metric))
    return _GRAPH[metric]


@settings(max_examples=40, deadline=None)
@given(metric=st.sampled_from(["ip", "l2"]), seed=st.integers(0, 10_000),
       selectivity=st.sampled_from([0.002, 0.01, 0.1, 0.5, 0.99]), k=st.integers(1, 20))
def test_filtered_search_keeps_to_the_allow_list(metric, seed, selectivity, k):
    """Only allowed rows come back, best first; a beam as wide as the graph finds them all."""
    x, searcher = _small(metric)
    rng = np.random.default_rng(seed)
    allowed = rng.random(len(x)) < selectivity
    q = rng.normal(size=(3, x.shape[1])).astype(np.float32)
    d, i = searcher.search(q, k, len(x), allowed)
    got = i[i >= 0]
    assert allowed[got].all()
    want_d, want_i = exact_search(x, q, k, metric, allowed)
    for j in range(len(q)):
        assert np.count_nonzero(i[j] >= 0) == min(k, int(allowed.sum()))
        ok = i[j] >= 0
        np.testing.assert_allclose(d[j][ok], want_d[j][ok], rtol=1e-4, atol=1e-4)
        step = np.diff(d[j][ok])
        assert (step <= 0).all() if metric == "ip" else (step >= 0).all()


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_two_hop_walk_visits_allowed_rows_only_and_finds_the_nearest(metric):
    """ACORN-1: distances for allowed rows only; at 20 % selectivity recall stays high."""
    x = _clustered(4000, 16, 15)
    if metric == "ip":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    searcher = GraphSearcher(graph_of(_hnsw(x, metric)), x, metric)
    rng = np.random.default_rng(16)
    allowed = rng.random(len(x)) < 0.2
    q = x[rng.integers(0, len(x), 50)] + 0.05 * rng.normal(size=(50, 16)).astype(np.float32)
    d, i = searcher.search(q, 10, 64, allowed, two_hop=True)
    assert allowed[i[i >= 0]].all()
    _, want = exact_search(x, q, 10, metric, allowed)
    recall = np.mean([len(set(i[j]) & set(want[j])) / 10 for j in range(len(q))])
    assert recall >= 0.9
