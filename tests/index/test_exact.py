"""Exact top-k kernel and top-k merge against a float64 numpy brute force."""
from __future__ import annotations

import threading

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vecdb.index.exact import exact_search, rescore, squared_norms
from vecdb.index.reference import knn, true_keys
from vecdb.index.topk import merge_topk

# q=1 and small q take the per-query scan; 100 queries take the batch tile (DESIGN §5).
QUERY_COUNTS = (1, 5, 100)


# --------------------------------------------------------------------------- reference


def reference(vectors, queries, k, metric, allowed=None):
    """Best-first (scores, rows) in float64, ties to the lower row, padded like the kernel."""
    return knn(vectors, queries, k, metric, allowed)


def check(vectors, queries, k, metric, allowed, result, rtol=2e-5):
    """The result is a valid best-first exact top-k (up to float32 noise in near-ties)."""
    scores, rows = result
    nq = len(queries)
    assert scores.shape == rows.shape == (nq, k)
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    n = len(vectors)
    ok = np.ones(n, bool) if allowed is None else np.asarray(allowed, bool)
    kk = min(k, int(ok.sum()))
    pad = -np.inf if metric == "ip" else np.inf
    assert (rows[:, kk:] == -1).all() and (scores[:, kk:] == pad).all()
    if kk == 0:
        return
    real = rows[:, :kk]
    assert (real >= 0).all() and ok[real].all()
    assert all(len(set(r)) == kk for r in real.tolist())
    keys = true_keys(vectors, queries, metric)
    sign = 1.0 if metric == "ip" else -1.0
    vmax = np.linalg.norm(np.asarray(vectors, np.float64), axis=1).max()
    qn = np.linalg.norm(np.asarray(queries, np.float64), axis=1)
    scale = qn * vmax if metric == "ip" else (qn + vmax) ** 2
    tol = (rtol * np.maximum(scale, 1.0))[:, None]
    got = np.take_along_axis(keys, real, 1)
    assert (np.abs(sign * scores[:, :kk] - got) <= tol).all()  # each score is that row's score
    ref_scores, _ = reference(vectors, queries, k, metric, allowed)
    assert (np.abs(scores[:, :kk] - ref_scores[:, :kk]) <= tol).all()  # no better row missed
    key32 = sign * scores[:, :kk]
    assert (np.diff(key32, axis=1) <= 0).all()  # best first
    tie = np.diff(key32, axis=1) == 0
    assert (np.diff(real, axis=1)[tie] > 0).all()  # ties to the lower row


def random_data(n, d, nq, seed=0, integer=False):
    rng = np.random.default_rng(seed)
    if integer:  # small integers: every dot product and distance is exact in float32
        return (rng.integers(-4, 5, (n, d)).astype(np.float32),
                rng.integers(-4, 5, (nq, d)).astype(np.float32))
    return (rng.standard_normal((n, d), dtype=np.float32),
            rng.standard_normal((nq, d), dtype=np.float32))


# --------------------------------------------------------------------------- exact_search


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("d", [1, 3, 97, 384])
@pytest.mark.parametrize("nq", QUERY_COUNTS)
def test_matches_brute_force(metric, d, nq):
    n = 1500 if d == 384 else 3001
    vectors, queries = random_data(n, d, nq, seed=d * 7 + nq)
    for k in (1, 10):
        check(vectors, queries, k, metric, None, exact_search(vectors, queries, k, metric))


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("nq", QUERY_COUNTS)
def test_integer_data_is_exact(metric, nq):
    """With exact arithmetic the result equals the float64 reference, ties included."""
    vectors, queries = random_data(2000, 97, nq, seed=nq, integer=True)
    scores, rows = exact_search(vectors, queries, 25, metric)
    ref_scores, ref_rows = reference(vectors, queries, 25, metric)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("nq", QUERY_COUNTS)
def test_k_larger_than_n_pads(metric, nq):
    vectors, queries = random_data(7, 3, nq, seed=1)
    result = exact_search(vectors, queries, 12, metric)
    check(vectors, queries, 12, metric, None, result)
    assert (result[1][:, 7:] == -1).all()


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("nq", [0, 1, 100])
def test_no_rows_or_no_queries(metric, nq):
    vectors = np.empty((0, 5), np.float32)
    scores, rows = exact_search(vectors, np.zeros((nq, 5), np.float32), 4, metric)
    assert scores.shape == rows.shape == (nq, 4)
    assert (rows == -1).all()
    assert (scores == (-np.inf if metric == "ip" else np.inf)).all()


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("nq", QUERY_COUNTS)
def test_nan_rows_are_never_returned(metric, nq):
    vectors, queries = random_data(6, 3, nq, seed=2)
    vectors[[1, 4]] = np.nan
    scores, rows = exact_search(vectors, queries, 6, metric)
    assert (rows[:, :4] >= 0).all() and not np.isin(rows, [1, 4]).any()
    assert (rows[:, 4:] == -1).all()
    assert (scores[:, 4:] == (-np.inf if metric == "ip" else np.inf)).all()


def test_k_zero():
    vectors, queries = random_data(10, 3, 2)
    scores, rows = exact_search(vectors, queries, 0, "ip")
    assert scores.shape == rows.shape == (2, 0)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("nq", QUERY_COUNTS)
@pytest.mark.parametrize("mask", ["none", "one", "1%", "50%", "all"])
def test_allowed_mask(metric, nq, mask):
    n = 5000
    vectors, queries = random_data(n, 97, nq, seed=3)
    rng = np.random.default_rng(4)
    allowed = {"none": np.zeros(n, bool), "one": np.arange(n) == 4321,
               "1%": rng.random(n) < 0.01, "50%": rng.random(n) < 0.5,
               "all": np.ones(n, bool)}[mask]
    before = allowed.copy()
    result = exact_search(vectors, queries, 10, metric, allowed=allowed)
    check(vectors, queries, 10, metric, allowed, result)
    np.testing.assert_array_equal(allowed, before)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("nq", QUERY_COUNTS)
@pytest.mark.parametrize("d", [3, 97])
def test_duplicates_tie_to_lower_row(metric, nq, d):
    """Equal vectors get bit-equal scores; the lowest rows among them come first."""
    unique, queries = random_data(37, d, nq, seed=d)
    copies = 60
    vectors = np.ascontiguousarray(np.tile(unique, (copies, 1)))  # row r holds unique[r % 37]
    allowed = np.random.default_rng(5).random(len(vectors)) < 0.7
    for mask in (None, allowed):
        k = 150  # several copies of the best few vectors
        scores, rows = exact_search(vectors, queries, k, metric, allowed=mask)
        ok = np.ones(len(vectors), bool) if mask is None else mask
        for qi in range(nq):
            by_vector: dict[int, list[int]] = {}
            for s, r in zip(scores[qi].tolist(), rows[qi].tolist()):
                by_vector.setdefault(r % 37, []).append((s, r))
            for u, hits in by_vector.items():
                assert len({s for s, _ in hits}) == 1  # bit-equal scores
                got = [r for _, r in hits]
                candidates = [r for r in range(u, len(vectors), 37) if ok[r]]
                assert got == candidates[:len(got)]  # the lowest rows, ascending


@pytest.mark.parametrize("nq", QUERY_COUNTS)
def test_read_only_and_memory_mapped_inputs(tmp_path, nq):
    vectors, queries = random_data(3000, 97, nq, seed=8)
    expected = {m: exact_search(vectors, queries, 10, m) for m in ("ip", "l2")}
    path = tmp_path / "v.npy"
    np.save(path, vectors)
    mapped = np.load(path, mmap_mode="r")  # read-only np.memmap
    frozen_q = queries.copy()
    frozen_q.setflags(write=False)
    frozen_v = vectors.copy()
    frozen_v.setflags(write=False)
    norms = squared_norms(mapped)
    norms.setflags(write=False)
    for m in ("ip", "l2"):
        for v in (mapped, frozen_v):
            for nrm in (None, norms):
                got = exact_search(v, frozen_q, 10, m, norms=nrm)
                np.testing.assert_array_equal(got[0], expected[m][0])
                np.testing.assert_array_equal(got[1], expected[m][1])
    np.testing.assert_array_equal(np.load(path), vectors)


def test_inputs_not_modified_and_norms_optional():
    vectors, queries = random_data(4000, 50, 100, seed=9)
    norms = squared_norms(vectors)
    copies = [a.copy() for a in (vectors, queries, norms)]
    with_norms = exact_search(vectors, queries, 10, "l2", norms=norms)
    without = exact_search(vectors, queries, 10, "l2")
    for a, b in zip((vectors, queries, norms), copies):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(with_norms[0], without[0])
    np.testing.assert_array_equal(with_norms[1], without[1])


def test_squared_norms():
    vectors, _ = random_data(1001, 97, 1)
    got = squared_norms(vectors)
    assert got.dtype == np.float32 and got.shape == (1001,)
    np.testing.assert_allclose(got, (vectors.astype(np.float64) ** 2).sum(1), rtol=1e-5)
    assert squared_norms(np.empty((0, 4), np.float32)).shape == (0,)


def test_queries_of_other_dtype_and_one_dimensional():
    vectors, queries = random_data(500, 8, 3, seed=10)
    a = exact_search(vectors, queries.astype(np.float64), 5, "ip")
    b = exact_search(vectors, queries, 5, "ip")
    np.testing.assert_array_equal(a[1], b[1])
    c = exact_search(vectors, queries[0], 5, "ip")  # one (d,) query -> (1, k)
    np.testing.assert_array_equal(c[1], b[1][:1])


def test_thread_count_does_not_change_results():
    vectors, queries = random_data(250_000, 16, 100, seed=11)  # big enough for 2 threads at q=1
    results = []
    old = numba.get_num_threads()
    try:
        for t in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(t)
            results.append([exact_search(vectors, queries[:nq], 10, m)
                            for nq in (1, 100) for m in ("ip", "l2")])
    finally:
        numba.set_num_threads(old)
    for other in results[1:]:
        for (s1, r1), (s2, r2) in zip(results[0], other):
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(s1, s2)


def test_concurrent_callers_get_the_same_answers():
    """The kernel releases the GIL and keeps no shared state: threads may search at once."""
    vectors, queries = random_data(150_000, 32, 100, seed=12)  # parallel regions at q=1 too
    expected = [exact_search(vectors, queries[:nq], 10, "l2") for nq in (1, 100)]
    errors = []

    def work():
        try:
            for _ in range(5):
                for nq, (s, r) in zip((1, 100), expected):
                    got = exact_search(vectors, queries[:nq], 10, "l2")
                    np.testing.assert_array_equal(got[1], r)
                    np.testing.assert_array_equal(got[0], s)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("bad", [
    dict(metric="cosine"),
    dict(vectors=np.zeros((4, 3), np.float64)),
    dict(vectors=np.zeros((3, 4), np.float32).T),  # not C-contiguous: would need a copy
    dict(vectors=np.zeros(4, np.float32)),
    dict(queries=np.zeros((2, 5), np.float32)),
    dict(allowed=np.ones(5, bool)),
    dict(norms=np.ones(5, np.float32), metric="l2", queries=np.zeros((40, 3), np.float32)),
    dict(k=-1),
])
def test_bad_arguments_raise_value_error(bad):
    args = dict(vectors=np.zeros((4, 3), np.float32), queries=np.zeros((1, 3), np.float32),
                k=2, metric="ip")
    args.update(bad)
    with pytest.raises(ValueError):
        exact_search(args["vectors"], args["queries"], args["k"], args["metric"],
                     allowed=args.get("allowed"), norms=args.get("norms"))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 70), d=st.integers(1, 9), nq=st.integers(1, 40), k=st.integers(0, 80),
       metric=st.sampled_from(["ip", "l2"]), density=st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]),
       seed=st.integers(0, 2**32 - 1))
def test_property_equals_reference(n, d, nq, k, metric, density, seed):
    """Any small shape, mask and k: exactly the float64 answer (integer data: exact sums)."""
    vectors, queries = random_data(n, d, nq, seed=seed, integer=True)
    allowed = None if density is None else np.random.default_rng(seed).random(n) < density
    scores, rows = exact_search(vectors, queries, k, metric, allowed=allowed)
    ref_scores, ref_rows = reference(vectors, queries, k, metric, allowed)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


# --------------------------------------------------------------------------- rescore


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 9), nq=st.integers(1, 12), c=st.integers(0, 30),
       k=st.integers(1, 40), metric=st.sampled_from(["ip", "l2"]), seed=st.integers(0, 2**32 - 1))
def test_rescore_is_exact_search_over_each_querys_candidates(n, d, nq, c, k, metric, seed):
    """Each query's candidates (unique rows, -1 holes anywhere) re-ranked exactly: the float64
    answer over just those rows, ties to the lower row, padded when fewer than k."""
    vectors, queries = random_data(n, d, nq, seed=seed, integer=True)
    rng = np.random.default_rng(seed)
    cand = np.full((nq, c), -1, np.int64)
    for i in range(nq):
        picked = rng.permutation(n)[:rng.integers(0, min(n, c) + 1)]
        cand[i, rng.permutation(c)[:len(picked)]] = picked
    scores, rows = rescore(vectors, queries, cand, k, metric)
    for i in range(nq):
        allowed = np.zeros(n, bool)
        allowed[cand[i][cand[i] >= 0]] = True
        ref_scores, ref_rows = reference(vectors, queries[i:i + 1], k, metric, allowed)
        np.testing.assert_array_equal(rows[i:i + 1], ref_rows)
        np.testing.assert_array_equal(scores[i:i + 1], ref_scores.astype(np.float32))


def test_rescore_float_data_and_bad_candidates():
    vectors, queries = random_data(500, 97, 3, seed=5)
    cand = np.tile(np.arange(0, 500, 7, dtype=np.int64), (3, 1))
    allowed = np.zeros(500, bool)
    allowed[cand[0]] = True
    for metric in ("ip", "l2"):
        check(vectors, queries, 10, metric, allowed, rescore(vectors, queries, cand, 10, metric))
    with pytest.raises(ValueError, match="out of range"):
        rescore(vectors, queries, np.full((3, 2), 500, np.int64), 10, "ip")
    with pytest.raises(ValueError, match="one row per query"):
        rescore(vectors, queries, cand[:2], 10, "ip")
    assert rescore(vectors, queries, cand, 0, "l2")[1].shape == (3, 0)


# --------------------------------------------------------------------------- merge_topk


def merge_reference(parts, k, higher_is_better):
    scores = np.concatenate([p[0] for p in parts], axis=1).astype(np.float64)
    keys = np.concatenate([p[1] for p in parts], axis=1)
    worst = -np.inf if higher_is_better else np.inf
    out_s = np.full((len(scores), k), worst)
    out_k = np.full((len(scores), k), -1, np.int64)
    for qi in range(len(scores)):
        real = [(s, key) for s, key in zip(scores[qi], keys[qi]) if key >= 0]
        real.sort(key=lambda t: (-t[0] if higher_is_better else t[0], t[1]))
        for t, (s, key) in enumerate(real[:k]):
            out_s[qi, t], out_k[qi, t] = s, key
    return out_s, out_k


def make_parts(nq, sizes, higher_is_better, seed, ties=False):
    """Per-part best-first (scores, keys) with unique keys across parts and -1 padding."""
    rng = np.random.default_rng(seed)
    worst = -np.inf if higher_is_better else np.inf
    parts, base = [], 0
    for size, fill in sizes:
        raw = rng.integers(0, 5, (nq, size)).astype(np.float32) if ties \
            else rng.standard_normal((nq, size)).astype(np.float32)
        keys = np.tile(np.arange(base, base + size, dtype=np.int64), (nq, 1))
        order = np.lexsort((keys, -raw if higher_is_better else raw), axis=1)
        s = np.take_along_axis(raw, order, 1)
        r = np.take_along_axis(keys, order, 1)
        s[:, fill:], r[:, fill:] = worst, -1
        parts.append((s, r))
        base += size
    return parts


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("nq", [1, 100])
@pytest.mark.parametrize("ties", [False, True])
def test_merge_topk_matches_reference(higher, nq, ties):
    parts = make_parts(nq, [(10, 10), (10, 4), (3, 3), (10, 0)], higher, seed=nq, ties=ties)
    copies = [(s.copy(), r.copy()) for s, r in parts]
    for k in (1, 5, 10, 40):
        s, r = merge_topk(parts, k, higher_is_better=higher)
        ref_s, ref_r = merge_reference(parts, k, higher)
        assert s.shape == r.shape == (nq, k) and r.dtype == np.int64
        np.testing.assert_array_equal(r, ref_r)
        np.testing.assert_array_equal(s, ref_s.astype(s.dtype))
    for (s, r), (s0, r0) in zip(parts, copies):  # inputs untouched
        np.testing.assert_array_equal(s, s0)
        np.testing.assert_array_equal(r, r0)


def test_merge_topk_ties_do_not_depend_on_part_order():
    a = (np.array([[1.0, 0.5]], np.float32), np.array([[9, 3]], np.int64))
    b = (np.array([[1.0, 0.5]], np.float32), np.array([[2, 7]], np.int64))
    for parts in ([a, b], [b, a]):
        s, r = merge_topk(parts, 3, higher_is_better=True)
        assert r.tolist() == [[2, 9, 3]]
        assert s.tolist() == [[1.0, 1.0, 0.5]]


def test_merge_topk_padding_whatever_its_score():
    """A -1 key is padding even with a finite score; padding stays at the end."""
    part = (np.array([[0.1, 5.0, 0.3]], np.float32), np.array([[4, -1, 6]], np.int64))
    s, r = merge_topk([part], 4, higher_is_better=False)
    assert r.tolist() == [[4, 6, -1, -1]]
    assert s[0, :2].tolist() == pytest.approx([0.1, 0.3]) and np.isinf(s[0, 2:]).all()


def test_merge_topk_edge_cases():
    with pytest.raises(ValueError):
        merge_topk([], 3, higher_is_better=True)
    empty = (np.empty((2, 0), np.float32), np.empty((2, 0), np.int64))
    s, r = merge_topk([empty], 3, higher_is_better=True)
    assert (r == -1).all() and (s == -np.inf).all() and s.shape == (2, 3)
    s, r = merge_topk([empty], 0, higher_is_better=True)
    assert s.shape == r.shape == (2, 0)
    with pytest.raises(ValueError):
        merge_topk([(np.zeros((2, 3)), np.zeros((2, 4), np.int64))], 3, higher_is_better=True)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("nq", [1, 100])
def test_segments_merged_equal_one_search(metric, nq):
    """Searching row ranges separately and merging equals one search (integer data: exact)."""
    vectors, queries = random_data(3000, 16, nq, seed=13, integer=True)
    whole = exact_search(vectors, queries, 30, metric)
    parts = []
    for lo, hi in ((0, 1000), (1000, 1010), (1010, 3000)):
        s, r = exact_search(np.ascontiguousarray(vectors[lo:hi]), queries, 30, metric)
        parts.append((s, np.where(r >= 0, r + lo, -1)))
    merged = merge_topk(parts, 30, higher_is_better=metric == "ip")
    np.testing.assert_array_equal(merged[1], whole[1])
    np.testing.assert_array_equal(merged[0], whole[0])
