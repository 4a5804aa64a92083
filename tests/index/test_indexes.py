"""One suite for every index type (STYLE habit 6): each is checked against exact search.

The reference is a float64 numpy brute force, independent of the Numba kernel. Recall counts a
returned row as correct when its true score is at least as good as the true k-th best (so ties
between equal vectors are not penalised). Indexes are built once per (type, data) and cached.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os

import numpy as np
import pytest

from vecdb.errors import Corruption, DimensionMismatch, InvalidArgument
from vecdb.index import base
from vecdb.index.base import (DEFAULTS, INDEX_TYPES, PARAMS, check_index_config, load_index, make_index,
                              read_footer)

KINDS = ["flat", "hnsw", "hnsw_sq8", "ivf_flat", "ivf_pq", "sq_fp16"]
METRICS = {"cosine": "ip", "dot": "ip", "l2": "l2"}   # vecdb metric -> index metric
N = 2000
K = 10
SELECTIVITIES = [0.001, 0.01, 0.1, 0.5, 0.99]
# How far a returned score may be from the true score of its row, relative to the norms
# involved (see check_results): float32 rounding where the index stores float32 or rescores on
# the original vectors, fp16 rounding for sq_fp16.
SCORE_RTOL = {"flat": 1e-4, "hnsw": 1e-4, "ivf_flat": 1e-4, "ivf_pq": 1e-4, "sq_fp16": 5e-3,
              "hnsw_sq8": 1e-4}


def test_suite_covers_every_type():
    assert sorted(KINDS) == sorted(INDEX_TYPES) == sorted(DEFAULTS) == sorted(PARAMS)


# --------------------------------------------------------------------------- data and reference


def clustered(n: int, dim: int, metric: str, seed: int, clusters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, cluster of each row): Gaussian blobs; unit vectors for cosine."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)) * 3.0
    labels = rng.integers(0, clusters, n)
    v = (centers[labels] + rng.standard_normal((n, dim))).astype(np.float32)
    if metric == "cosine":
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, labels


def true_scores(vectors: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """(q, n) float64 scores in the index's convention (ip: similarity, l2: squared distance)."""
    v = vectors.astype(np.float64)
    q = queries.astype(np.float64)
    if METRICS[metric] == "ip":
        return q @ v.T
    return (q * q).sum(1)[:, None] + (v * v).sum(1)[None, :] - 2 * q @ v.T


def better(metric: str):
    """Sign that turns scores into 'higher is better'."""
    return 1.0 if METRICS[metric] == "ip" else -1.0


def check_results(kind, metric, scores, rows, vectors, queries, k, allowed=None, min_recall=0.95):
    """Shape, padding, allow-list, best-first order, exact hit count, scores and recall.

    Scores may differ from the float64 truth by rounding relative to the norms involved
    (float32 kernels, fp16 codes): the tolerance scales with |q||v| (ip) or |q|^2+|v|^2 (l2).
    """
    truth = true_scores(vectors, queries, metric)
    vn = np.linalg.norm(vectors.astype(np.float64), axis=1)
    qn = np.linalg.norm(queries.astype(np.float64), axis=1)
    nq, n = truth.shape
    sign = better(metric)
    assert scores.shape == rows.shape == (nq, k)
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    mask = np.ones(n, bool) if allowed is None else allowed
    count = int(mask.sum())
    want = min(k, count)
    pad_score = -np.inf if sign > 0 else np.inf
    hits = 0
    for i in range(nq):
        r, s = rows[i], scores[i]
        got = r[r >= 0]
        assert len(got) == want, f"query {i}: {len(got)} hits, expected {want}"
        assert (r[:want] >= 0).all() and (r[want:] == -1).all() and (s[want:] == pad_score).all()
        assert len(set(got.tolist())) == want, "a row came back twice"
        assert mask[got].all(), "a disallowed row came back"
        assert (np.diff(sign * s[:want]) <= 1e-6 * np.maximum(1, np.abs(s[:want][1:]))).all(), "not best first"
        t = truth[i, got]
        scale = qn[i] * vn[got] if sign > 0 else qn[i] ** 2 + vn[got] ** 2
        tol = SCORE_RTOL[kind] * (1.0 + scale)
        assert np.all(np.abs(s[:want] - t) <= tol), f"scores off: {s[:want]} vs {t}"
        if want:
            ok = np.sort(sign * truth[i, mask])[::-1][want - 1]
            hits += int(np.sum(sign * t >= ok - 1e-6 * (1.0 + scale.max())))
    if want:
        recall = hits / (nq * want)
        assert recall >= min_recall, f"{kind}: recall {recall:.3f} < {min_recall}"


@functools.lru_cache(maxsize=None)
def dataset(dim: int, metric: str, n: int = N, seed: int = 0):
    v, labels = clustered(n + 50, dim, metric, seed)
    v.flags.writeable = False            # like a segment's read-only map: must never be written
    return v[:n], v[n:], labels[:n], labels[n:]


def built(kind: str, dim: int, metric: str, n: int = N, config: tuple = ()):
    """The index of ``kind`` over ``dataset(dim, metric, n)``, built once per session."""
    return _built(kind, dim, metric, n, config)


@functools.lru_cache(maxsize=None)
def _built(kind, dim, metric, n, config):
    vectors, queries, _, _ = dataset(dim, metric, n)
    index = make_index({"type": kind, **dict(config)}, dim, METRICS[metric])
    index.build(vectors)
    return index


# --------------------------------------------------------------------------- against exact


@pytest.mark.parametrize("metric", list(METRICS))
@pytest.mark.parametrize("dim", [3, 97])
@pytest.mark.parametrize("kind", KINDS)
def test_recall_against_exact(kind, dim, metric):
    vectors, queries, _, _ = dataset(dim, metric)
    index = built(kind, dim, metric)
    assert index.ntotal == N and index.kind == kind and index.memory_bytes() >= 0
    scores, rows = index.search(queries, K)
    check_results(kind, metric, scores, rows, vectors, queries, K)


@pytest.mark.parametrize("kind", KINDS)
def test_flat_is_the_exact_reference(kind):
    """Every index's hits are scored like the flat index's (same row -> same true score)."""
    vectors, queries, _, _ = dataset(97, "l2")
    s0, r0 = built("flat", 97, "l2").search(queries, K)
    s1, r1 = built(kind, 97, "l2").search(queries, K)
    overlap = np.mean([len(set(a) & set(b)) / K for a, b in zip(r0, r1)])
    assert overlap >= 0.95
    if SCORE_RTOL[kind] <= 1e-4:      # exact scores: a row both return scores the same
        for i in range(len(queries)):
            a = dict(zip(r0[i].tolist(), s0[i].tolist()))
            b = dict(zip(r1[i].tolist(), s1[i].tolist()))
            for row in a.keys() & b.keys():
                assert abs(a[row] - b[row]) <= 1e-4 * max(1.0, abs(a[row]))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("kind", KINDS)
def test_k_greater_than_n(kind, metric):
    vectors, queries, _, _ = dataset(3, metric, n=30)
    index = make_index({"type": kind}, 3, METRICS[metric])
    index.build(vectors)
    scores, rows = index.search(queries, 50)
    check_results(kind, metric, scores, rows, vectors, queries, 50, min_recall=1.0)
    assert sorted(rows[0][:30].tolist()) == list(range(30))


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index(kind, tmp_path):
    index = make_index({"type": kind}, 16, "l2")
    index.build(np.empty((0, 16), np.float32))
    assert index.ntotal == 0
    q = np.ones((3, 16), np.float32)
    for allowed in (None, np.zeros(0, bool)):
        scores, rows = index.search(q, 5, allowed)
        assert (rows == -1).all() and (scores == np.inf).all() and rows.shape == (3, 5)
    index.save(tmp_path / "empty.idx")
    loaded = load_index(tmp_path / "empty.idx", {"type": kind}, np.empty((0, 16), np.float32), 16, "l2")
    assert loaded.ntotal == 0 and (loaded.search(q, 5)[1] == -1).all()
    # and an empty index can still grow
    vectors, queries, _, _ = dataset(16, "l2")
    loaded.add(vectors[:300])
    assert loaded.ntotal == 300
    s, r = loaded.search(queries[:5], K)
    check_results(kind, "l2", s, r, vectors[:300], queries[:5], K, min_recall=0.9)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("kind", KINDS)
def test_duplicate_vectors(kind, metric):
    """400 distinct vectors, each stored 5 times: hits are distinct rows, recall holds with ties."""
    base, _ = clustered(400, 16, metric, seed=3)
    rng = np.random.default_rng(3)
    vectors = np.ascontiguousarray(np.repeat(base, 5, axis=0)[rng.permutation(2000)])
    index = make_index({"type": kind}, 16, METRICS[metric])
    index.build(vectors)
    queries = vectors[:20] + np.float32(0.01)
    scores, rows = index.search(queries, K)
    check_results(kind, metric, scores, rows, vectors, queries, K)


@pytest.mark.parametrize("kind", KINDS)
def test_all_vectors_identical(kind):
    vectors = np.ones((200, 3), np.float32)
    index = make_index({"type": kind}, 3, "l2")
    index.build(vectors)
    scores, rows = index.search(np.zeros((2, 3), np.float32), K)
    assert all(len(set(r)) == K and (r >= 0).all() for r in rows)
    np.testing.assert_allclose(scores, 3.0, rtol=SCORE_RTOL[kind])


# --------------------------------------------------------------------------- filters


def allow_list(n: int, selectivity: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    allowed = np.zeros(n, bool)
    allowed[rng.choice(n, max(1, round(n * selectivity)), replace=False)] = True
    return allowed


@pytest.mark.parametrize("selectivity", SELECTIVITIES)
@pytest.mark.parametrize("kind", KINDS)
def test_filtered_search(kind, selectivity):
    vectors, queries, _, _ = dataset(97, "cosine")
    index = built(kind, 97, "cosine")
    allowed = allow_list(N, selectivity, seed=int(selectivity * 1000))
    scores, rows = index.search(queries, K, allowed)
    check_results(kind, "cosine", scores, rows, vectors, queries, K, allowed)


@pytest.mark.parametrize("kind", KINDS)
def test_filter_excluding_the_query_cluster(kind):
    """A filter correlated with the data: only rows of other clusters than the query's."""
    vectors, queries, labels, qlabels = dataset(97, "l2")
    index = built(kind, 97, "l2")
    for qi in range(0, 20, 4):
        allowed = labels != qlabels[qi]
        scores, rows = index.search(queries[qi:qi + 1], K, allowed)
        check_results(kind, "l2", scores, rows, vectors, queries[qi:qi + 1], K, allowed)


@pytest.mark.parametrize("selectivity", [0.3, 0.7])
@pytest.mark.parametrize("kind, config, params, path", [
    ("hnsw", (("m", 8),), {"ef": 16}, "_graph"),
    ("hnsw_sq8", (("m", 8),), {"ef": 16}, "_graph"),
    ("ivf_flat", (), {"nprobe": 4}, "_preassigned"),
    ("ivf_pq", (), {"nprobe": 4}, "_preassigned"),
])
def test_filtered_search_through_the_index(kind, config, params, path, selectivity, monkeypatch):
    """Small beams, so the filter goes through FAISS (widened HNSW beam, per-query IVF lists)
    rather than the exact scan: still min(k, matches) allowed hits at the recall bound."""
    vectors, queries, _, _ = dataset(97, "cosine")
    index = built(kind, 97, "cosine", config=config)
    allowed = allow_list(N, selectivity, seed=11)
    calls = []
    inner = getattr(index, path)
    monkeypatch.setattr(index, path, lambda q, kk, a, *rest: calls.append(rest[-1] is not None) or
                        inner(q, kk, a, *rest))
    scores, rows = index.search(queries, K, allowed, params=params)
    assert any(calls), "the filtered FAISS path did not run"
    check_results(kind, "cosine", scores, rows, vectors, queries, K, allowed)


@pytest.mark.parametrize("kind", KINDS)
def test_raw_index_never_returns_a_disallowed_row(kind):
    """Without widening and fallback (the planner's raw access) the allow-list still holds."""
    vectors, queries, _, _ = dataset(97, "l2")
    index = built(kind, 97, "l2")
    raw = {"filter_widen": False, "exact_fallback": False}
    for selectivity in SELECTIVITIES:
        allowed = allow_list(N, selectivity, seed=7)
        scores, rows = index.search(queries, K, allowed, params=raw)
        got = rows[rows >= 0]
        assert allowed[got].all()
        assert ((rows >= 0).sum(1) <= min(K, allowed.sum())).all()
        assert all(len(set(r[r >= 0].tolist())) == (r >= 0).sum() for r in rows)


def test_empty_allow_list():
    index = built("hnsw", 97, "l2")
    scores, rows = index.search(np.zeros((2, 97), np.float32), K, np.zeros(N, bool))
    assert (rows == -1).all() and (scores == np.inf).all()


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("kind", KINDS)
def test_save_load_identical(kind, metric, tmp_path):
    vectors, queries, _, _ = dataset(97, metric)
    index = built(kind, 97, metric)
    path = tmp_path / f"seg.{kind}.idx"
    index.save(path)
    np.save(tmp_path / "vectors.npy", vectors)
    mapped = np.load(tmp_path / "vectors.npy", mmap_mode="r")     # the segment's mapped vectors
    allowed = allow_list(N, 0.5, seed=1)
    expect = [index.search(queries, K), index.search(queries, K, allowed),
              index.search(queries, 3 * K, params={"filter_widen": False})]
    for mmap in (True, False):
        loaded = load_index(path, {"type": kind}, mapped, 97, METRICS[metric], mmap=mmap)
        assert loaded.ntotal == N and (loaded.memory_bytes() > 0 or kind == "flat")
        got = [loaded.search(queries, K), loaded.search(queries, K, allowed),
               loaded.search(queries, 3 * K, params={"filter_widen": False})]
        for (s0, r0), (s1, r1) in zip(expect, got):
            np.testing.assert_array_equal(r0, r1)
            np.testing.assert_array_equal(s0, s1)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]      # temp file renamed away
    footer = read_footer(path)
    assert footer["kind"] == kind and footer["ntotal"] == N and footer["dim"] == 97


@pytest.mark.parametrize("kind", KINDS)
def test_loaded_index_can_grow(kind, tmp_path):
    vectors, queries, _, _ = dataset(16, "l2")
    index = make_index({"type": kind}, 16, "l2")
    index.build(vectors[:1500])
    index.save(tmp_path / "a.idx")
    loaded = load_index(tmp_path / "a.idx", {"type": kind}, vectors[:1500], 16, "l2")
    loaded.add(vectors[1500:])
    assert loaded.ntotal == N
    s, r = loaded.search(queries, K)
    check_results(kind, "l2", s, r, vectors, queries, K)
    assert vectors.flags.writeable is False     # the caller's array is untouched


@pytest.mark.parametrize("kind", KINDS)
def test_load_rejects_a_mismatched_file(kind, tmp_path):
    vectors, _, _, _ = dataset(97, "l2")
    path = tmp_path / "x.idx"
    built(kind, 97, "l2").save(path)
    with pytest.raises(Corruption):
        load_index(path, {"type": kind}, vectors[:100], 97, "l2")         # other row count
    with pytest.raises(Corruption):
        load_index(path, {"type": kind}, vectors, 97, "ip")               # other metric
    other = next(t for t in KINDS if t != kind)
    with pytest.raises(Corruption):
        load_index(path, {"type": other}, vectors, 97, "l2")              # other kind
    data = path.read_bytes()
    (tmp_path / "torn.idx").write_bytes(data[:-5])
    with pytest.raises(Corruption):
        load_index(tmp_path / "torn.idx", {"type": kind}, vectors, 97, "l2")
    (tmp_path / "cut.idx").write_bytes(data[: len(data) // 2] + data[-200:])
    with pytest.raises(Corruption):
        load_index(tmp_path / "cut.idx", {"type": kind}, vectors, 97, "l2")
    with pytest.raises(Corruption):
        load_index(tmp_path / "missing.idx", {"type": kind}, vectors, 97, "l2")


@pytest.mark.parametrize("kind", KINDS)
def test_build_reports_progress_and_can_be_stopped(kind, monkeypatch):
    monkeypatch.setattr(base, "ADD_BATCH", 512)
    vectors = dataset(16, "l2")[0]
    seen = []
    make_index({"type": kind}, 16, "l2").build(vectors, progress=seen.append)
    assert seen == [0, 512, 1024, 1536, N]

    class Stop(Exception):
        pass

    def stop(done):
        if done >= 1024:
            raise Stop
    with pytest.raises(Stop):
        make_index({"type": kind}, 16, "l2").build(vectors, progress=stop)


# --------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_searches_agree(kind):
    _, queries, _, _ = dataset(97, "cosine")
    index = built(kind, 97, "cosine")
    allowed = allow_list(N, 0.5, seed=2)
    expect = [index.search(queries[i:i + 1], K, allowed) for i in range(len(queries))]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: index.search(queries[i:i + 1], K, allowed), range(len(queries))))
    for (s0, r0), (s1, r1) in zip(expect, got):
        np.testing.assert_array_equal(r0, r1)
        np.testing.assert_array_equal(s0, s1)


# --------------------------------------------------------------------------- config validation


def test_defaults_are_documented_values():
    assert DEFAULTS["hnsw"]["m"] == 32 and DEFAULTS["hnsw"]["ef_construction"] == 200
    assert DEFAULTS["ivf_pq"]["rescore"] >= 1
    for kind in KINDS:
        index = make_index({"type": kind}, 8, "l2")
        assert index.params == DEFAULTS[kind]


@pytest.mark.parametrize("config, needle", [
    ({"type": "hnsw_pq"}, "hnsw_pq"),
    ({}, "None"),
    ({"type": "hnsw", "M": 16}, "'M'"),
    ({"type": "hnsw", "nprobe": 16}, "'nprobe'"),
    ({"type": "flat", "ef": 10}, "'ef'"),
    ({"type": "ivf_flat", "nlist": 0}, "'nlist'"),
    ({"type": "hnsw", "m": "32"}, "'m'"),
    ({"type": "hnsw", "ef": True}, "'ef'"),
    ({"type": "hnsw", "ef": 1.5}, "'ef'"),
    ({"type": "ivf_pq", "m": 9}, "'m'"),            # more sub-quantizers than dimensions
    ({"type": "ivf_pq", "nbits": 17}, "'nbits'"),
    ({"type": "sq_fp16", "filter_widen": 1}, "'filter_widen'"),
])
def test_bad_config_is_rejected_by_name(config, needle):
    with pytest.raises(InvalidArgument, match=needle):
        make_index(config, 8, "l2")


def test_check_index_config():
    assert check_index_config(None) == {"type": "auto"}
    assert check_index_config({"type": "auto"}) == {"type": "auto"}
    assert check_index_config({"type": "ivf_pq", "nprobe": 8}) == {"type": "ivf_pq", "nprobe": 8}
    with pytest.raises(InvalidArgument, match="'m'"):
        check_index_config({"type": "auto", "m": 8})
    with pytest.raises(InvalidArgument, match="'bogus'"):
        check_index_config({"type": "hnsw", "bogus": 1})
    with pytest.raises(InvalidArgument, match="'hnswlib'"):
        check_index_config({"type": "hnswlib"})


def test_config_is_not_mutated_and_bad_dim_or_metric_rejected():
    config = {"type": "hnsw", "m": 16}
    make_index(config, 8, "ip")
    assert config == {"type": "hnsw", "m": 16}
    with pytest.raises(InvalidArgument, match="metric"):
        make_index(config, 8, "cosine")
    with pytest.raises(InvalidArgument, match="dim"):
        make_index(config, 0, "l2")
    with pytest.raises(InvalidArgument, match="config"):
        make_index("hnsw", 8, "l2")


def test_bad_search_arguments():
    index = built("hnsw", 97, "l2")
    q = np.zeros((1, 97), np.float32)
    with pytest.raises(InvalidArgument, match="'eff'"):
        index.search(q, K, params={"eff": 10})
    with pytest.raises(InvalidArgument, match="'ef'"):
        index.search(q, K, params={"ef": 0})
    index.search(q, K, params={"nprobe": 4, "rescore": 2})   # known, not for hnsw: ignored
    with pytest.raises(DimensionMismatch):
        index.search(np.zeros((1, 96), np.float32), K)
    with pytest.raises(InvalidArgument, match="k"):
        index.search(q, 0)
    with pytest.raises(InvalidArgument, match="allowed"):
        index.search(q, K, np.ones(N - 1, bool))
    with pytest.raises(InvalidArgument, match="allowed"):
        index.search(q, K, np.ones(N, np.uint8))
    with pytest.raises(InvalidArgument, match="already"):
        index.build(np.zeros((3, 97), np.float32))
