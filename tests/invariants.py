"""Invariants shared by the property and crash tests: a dict model against a Collection."""
from __future__ import annotations

import numpy as np


def model_scores(vectors: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """(q, n) scores in float64, larger is better (l2 negated)."""
    v = vectors.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "cosine":
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        return -((q[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    return q @ v.T


def assert_state(col, model: dict, dim: int) -> None:
    """count, get and ids match the model {id: (vector, payload)}."""
    assert col.count() == len(model)
    ids = list(model)
    got = {r.id: r for r in col.get(ids)}
    assert set(got) == set(ids)
    for i, (vec, payload) in model.items():
        r = got[i]
        expect = vec / np.linalg.norm(vec) if col.metric == "cosine" else vec
        np.testing.assert_allclose(r.vector, expect, rtol=1e-5, atol=1e-6)
        assert r.payload == {k: v for k, v in payload.items() if v is not None}


def assert_exact_search(col, model: dict, queries: np.ndarray, k: int, where=None) -> None:
    """col.search equals brute force over the model: same scores, same ids up to ties."""
    keep = [i for i, (_, p) in model.items() if where is None or where(p)]
    hits = col.search(queries, k=k, filter=None if where is None else where.expr)
    assert len(hits) == len(queries)
    if not keep:
        assert all(h == [] for h in hits)
        return
    vecs = np.stack([model[i][0] for i in keep])
    scores = model_scores(vecs, queries, col.metric)
    sign = -1.0 if col.metric == "l2" else 1.0
    for qi, row in enumerate(hits):
        assert len(row) == min(k, len(keep))
        order = np.argsort(-scores[qi], kind="stable")[:len(row)]
        np.testing.assert_allclose([h.score for h in row], sign * scores[qi][order], rtol=1e-4, atol=1e-4)
        got = [h.score * sign for h in row]
        assert got == sorted(got, reverse=True)
        for h in row:   # each hit's score is the true score of that id, its payload that id's
            idx = keep.index(h.id)
            assert abs(scores[qi][idx] - sign * h.score) <= 1e-4 * max(1.0, abs(scores[qi][idx]))
            assert h.payload == {f: v for f, v in model[h.id][1].items() if v is not None}
        assert len({h.id for h in row}) == len(row)
