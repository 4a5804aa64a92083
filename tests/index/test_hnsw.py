"""HNSW index files: HNSW-Flat's hold the graph alone in its compact layout (the rows stay in
the segment), HNSW+SQ8's the codes too; FAISS-format files and padded graph-only files from
before still load, and a damaged graph is Corruption, never a walk out of bounds."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecdb.errors import Corruption
from vecdb.index.base import load_index, make_index, read_footer
from vecdb.index.faiss_base import FaissIndex
from vecdb.index.graph import graph_of
from vecdb.index.hnsw import _COMPACT_ARRAYS, _PADDED_ARRAYS, _SQ8_ARRAYS

N, D = 600, 24


def _data(metric="l2", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D)).astype(np.float32)
    if metric == "ip":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    x.setflags(write=False)
    return x, np.ascontiguousarray(x[:20] + 0.05 * rng.standard_normal((20, D)).astype(np.float32))


def _built(metric="l2", m=8, kind="hnsw"):
    x, q = _data(metric)
    index = make_index({"type": kind, "m": m, "ef_construction": 40}, D, metric)
    index.build(x)
    return index, x, q


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_file_holds_the_graph_not_the_rows(metric, tmp_path):
    index, x, q = _built(metric)
    expect = index.search(q, 10)
    index.save(tmp_path / "g.idx")
    FaissIndex.save(index, tmp_path / "faiss.idx")          # FAISS's format: graph + a copy of the rows
    footer = read_footer(tmp_path / "g.idx")
    assert set(footer["graph"]["arrays"]) == {name for name, _ in _COMPACT_ARRAYS}
    saved = (tmp_path / "faiss.idx").stat().st_size - (tmp_path / "g.idx").stat().st_size
    assert saved > x.nbytes - 1024                           # the copy of the rows is gone
    loaded = load_index(tmp_path / "g.idx", {"type": "hnsw"}, x, D, metric)
    assert loaded.mapped and loaded._index is None           # no FAISS index behind it
    assert loaded._graph_arrays().compact
    got = loaded.search(q, 10)
    np.testing.assert_array_equal(got[1], expect[1])
    np.testing.assert_array_equal(got[0], expect[0])
    assert loaded.memory_bytes() < index.memory_bytes() - x.nbytes + 4096
    loaded.save(tmp_path / "again.idx")                      # a loaded graph saves the same bytes
    assert (tmp_path / "again.idx").read_bytes() == (tmp_path / "g.idx").read_bytes()


def test_faiss_format_file_still_loads_and_grows(tmp_path):
    index, x, q = _built()
    FaissIndex.save(index, tmp_path / "old.idx")             # as written before graph-only files
    loaded = load_index(tmp_path / "old.idx", {"type": "hnsw"}, x, D, "l2")
    assert loaded._index is not None
    np.testing.assert_array_equal(loaded.search(q, 10)[1], index.search(q, 10)[1])


def test_loaded_graph_grows_like_the_built_one(tmp_path):
    """Adding to a loaded graph rebuilds the FAISS index from the file and the segment rows;
    searches then agree with the index that was never saved (the new rows' levels are drawn
    afresh, so the graphs need not be identical)."""
    index, x, q = _built()
    index.save(tmp_path / "g.idx")
    loaded = load_index(tmp_path / "g.idx", {"type": "hnsw"}, x, D, "l2")
    more = np.random.default_rng(5).standard_normal((50, D)).astype(np.float32)
    index.add(more)
    loaded.add(more)
    assert loaded.ntotal == index.ntotal == N + 50 and not loaded.mapped
    np.testing.assert_array_equal(loaded.search(more[:10], 5)[1], index.search(more[:10], 5)[1])
    np.testing.assert_array_equal(loaded.search(q, 10)[1], index.search(q, 10)[1])


def _payload(path):
    footer = read_footer(path)
    return footer, bytearray(path.read_bytes())


def _save_padded(index, path):
    """The graph-only file as written before the compact layout: FAISS's padded arrays."""
    f = __import__("faiss")
    h, g = index._index.hnsw, graph_of(index._index)
    arrays = {"neighbors": g.neighbors, "offsets": g.offsets, "levels": f.vector_to_array(h.levels),
              "cum": g.cum, "assign_probas": f.vector_to_array(h.assign_probas)}
    index._write_arrays(path, arrays, _PADDED_ARRAYS, g.entry, g.max_level)


def _poke(tmp_path, name, value, at=0, kind="hnsw", padded=False):
    """The saved file with element ``at`` of graph array ``name`` set to ``value``."""
    index, x, _ = _built(kind=kind)
    path = tmp_path / "g.idx"
    _save_padded(index, path) if padded else index.save(path)
    footer, data = _payload(path)
    start, count, dtype = footer["graph"]["arrays"][name]
    dtype = np.dtype(dtype)
    at = at % count                            # negative: from the end
    data[start + at * dtype.itemsize:start + (at + 1) * dtype.itemsize] = np.array([value], dtype).tobytes()
    bad = tmp_path / f"bad-{name}.idx"
    bad.write_bytes(bytes(data))
    return bad, x


@pytest.mark.parametrize("name, value, at", [
    ("neighbors", N, 3),            # a neighbour id past the last row
    ("neighbors", -7, 0),           # below the -1 padding
    ("offsets", 5, 1),              # a list that does not match its node's levels
    ("offsets", 1, 0),              # not starting at 0
    ("levels", 0, 4),               # a node on no level
    ("levels", 99, 4),              # a node above the top level
    ("cum", 3, 0),
])
def test_damaged_padded_graph_is_corruption(name, value, at, tmp_path):
    bad, x = _poke(tmp_path, name, value, at, padded=True)
    with pytest.raises(Corruption):
        load_index(bad, {"type": "hnsw", "m": 8, "ef_construction": 40}, x, D, "l2")


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_padded_graph_only_file_still_loads(metric, tmp_path):
    """Graph-only files written before the compact layout: FAISS's padded arrays, searched as
    they are; saving again writes the compact layout, with the same answers."""
    index, x, q = _built(metric)
    allowed = np.arange(N) % 5 == 0
    expect = [index.search(q, 10, a) for a in (None, allowed)]
    _save_padded(index, tmp_path / "p.idx")
    loaded = load_index(tmp_path / "p.idx", {"type": "hnsw"}, x, D, metric)
    assert loaded.mapped and not loaded._graph_arrays().compact
    loaded.save(tmp_path / "c.idx")
    again = load_index(tmp_path / "c.idx", {"type": "hnsw"}, x, D, metric)
    assert again._graph_arrays().compact and again.memory_bytes() < loaded.memory_bytes()
    for idx in (loaded, again):
        for (es, er), (gs, gr) in zip(expect, [idx.search(q, 10, a) for a in (None, allowed)]):
            np.testing.assert_array_equal(gr, er)
            np.testing.assert_array_equal(gs, es)


_COMPACT_DAMAGE = [
    ("adj_hi", 1, 5),               # a level-0 neighbour id past the last row (N < 2**16)
    ("adj_off", 10_000, 7),         # lists that overlap
    ("adj_off", 0, N),              # ids left over after the last list
    ("up_nodes", N + 1, 0),         # upper nodes out of range / unsorted
    ("up_levels", 1, 0),            # an upper node on level 0 alone
    ("up_levels", 99, 0),
    ("up_off", 3, 1),               # an upper list that does not match its node's levels
    ("up_nb", N, 0),
    ("cum", 3, 0),
]


@pytest.mark.parametrize("kind, name, value, at",
                         [(kind, *case) for kind in ("hnsw", "hnsw_sq8") for case in _COMPACT_DAMAGE]
                         + [("hnsw_sq8", "codes", 0, N * D)])   # fewer code bytes than rows
def test_damaged_compact_graph_is_corruption(kind, name, value, at, tmp_path):
    if name == "codes":             # cut the codes short: the footer's count says one less row
        index, x, _ = _built(kind="hnsw_sq8")
        index.save(tmp_path / "s.idx")
        footer, data = _payload(tmp_path / "s.idx")
        from vecdb.index.base import write_index_file
        meta = {k: v for k, v in footer.items() if k not in ("format", "version", "payload_bytes")}
        meta["graph"]["arrays"]["codes"][1] -= D
        bad = tmp_path / "bad.idx"
        write_index_file(bad, meta, lambda tmp: open(tmp, "wb").write(bytes(data[:footer["payload_bytes"]])))
    else:
        bad, x = _poke(tmp_path, name, value, at, kind=kind)
    with pytest.raises(Corruption):
        load_index(bad, {"type": kind, "m": 8, "ef_construction": 40}, x, D, "l2")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
       kind=st.sampled_from(["hnsw", "hnsw_sq8"]))
def test_random_damage_never_crashes_a_search(flips, kind, tmp_path_factory):
    """Bytes of the graph (and codes) overwritten at random: the file either loads and every
    search stays in bounds (valid row numbers), or it is Corruption."""
    tmp = tmp_path_factory.mktemp("fuzz")
    index, x, q = _built(kind=kind)
    path = tmp / "g.idx"
    index.save(path)
    footer, data = _payload(path)
    for where, byte in flips:
        data[int(where * footer["payload_bytes"])] = byte
    path.write_bytes(bytes(data))
    try:
        loaded = load_index(path, {"type": kind, "m": 8, "ef_construction": 40}, x, D, "l2")
    except Corruption:
        return
    allowed = np.arange(N) % 3 == 0
    for a in (None, allowed):
        for batch in (q, q[:1], q[1:2]):          # parallel and serial kernels
            s, rows = loaded.search(batch, 10, a, params={"exact_fallback": False})
            assert ((rows >= -1) & (rows < N)).all()
            if a is not None:
                assert allowed[rows[rows >= 0]].all()


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_sq8_file_holds_codes_and_the_compact_graph(metric, tmp_path):
    """The loaded compact graph walks exactly like FAISS's padded one (same ids, same code
    scores, filtered or not), in less memory; a legacy FAISS-format file still loads."""
    index, x, q = _built(metric, kind="hnsw_sq8")
    allowed = np.arange(N) % 4 == 0
    expect = [index.search(q, 10, a, params={"rescore": r}) for a in (None, allowed) for r in (0, 2)]
    index.save(tmp_path / "s.idx")
    FaissIndex.save(index, tmp_path / "faiss.idx")
    footer = read_footer(tmp_path / "s.idx")
    assert set(footer["graph"]["arrays"]) == {name for name, _ in _SQ8_ARRAYS}
    for path in (tmp_path / "s.idx", tmp_path / "faiss.idx"):
        loaded = load_index(path, {"type": "hnsw_sq8"}, x, D, metric)
        got = [loaded.search(q, 10, a, params={"rescore": r}) for a in (None, allowed) for r in (0, 2)]
        for (es, er), (gs, gr) in zip(expect, got):
            np.testing.assert_array_equal(gr, er)
            np.testing.assert_array_equal(gs, es)
    loaded = load_index(tmp_path / "s.idx", {"type": "hnsw_sq8"}, x, D, metric)
    assert loaded.mapped and loaded._index is None and loaded._graph_arrays().compact
    assert loaded.memory_bytes() < 0.8 * index.memory_bytes()
    loaded.save(tmp_path / "again.idx")                      # a loaded graph saves the same bytes
    assert (tmp_path / "again.idx").read_bytes() == (tmp_path / "s.idx").read_bytes()


def test_loaded_sq8_graph_grows_like_the_built_one(tmp_path):
    index, x, q = _built(kind="hnsw_sq8")
    index.save(tmp_path / "s.idx")
    loaded = load_index(tmp_path / "s.idx", {"type": "hnsw_sq8"}, x, D, "l2")   # defaults: m=32
    more = np.random.default_rng(5).standard_normal((50, D)).astype(np.float32)
    index.add(more)
    loaded.add(more)
    assert loaded.ntotal == index.ntotal == N + 50 and not loaded.mapped
    assert loaded._build == {"m": 8, "ef_construction": 40}          # the file's, not the defaults
    assert loaded._index.hnsw.efConstruction == 40
    for rescore in (0, 2):
        p = {"rescore": rescore}
        np.testing.assert_array_equal(loaded.search(more[:10], 5, params=p)[1], index.search(more[:10], 5, params=p)[1])
        np.testing.assert_array_equal(loaded.search(q, 10, params=p)[1], index.search(q, 10, params=p)[1])


@pytest.mark.parametrize("kind", ["hnsw", "hnsw_sq8"])
def test_wide_id_and_offset_types_search_alike(kind, tmp_path):
    """Segments past 16.7M rows store the ids' high bits as uint16, and past 4G links the
    offsets as int64: a small graph written that way searches exactly like the narrow one,
    and a uint16 high half that makes an id past the rows is Corruption (not a wrapped -1)."""
    index, x, q = _built(kind=kind)
    index.save(tmp_path / "n.idx")
    narrow = load_index(tmp_path / "n.idx", {"type": kind}, x, D, "l2")
    arrays = dict(narrow._stored.owner)
    arrays["adj_hi"], arrays["adj_off"] = arrays["adj_hi"].astype(np.uint16), arrays["adj_off"].astype(np.int64)
    g = narrow._stored
    narrow._write_arrays(tmp_path / "w.idx", arrays, narrow.file_arrays, g.entry, g.max_level)
    wide = load_index(tmp_path / "w.idx", {"type": kind}, x, D, "l2")
    assert wide._stored.hi.dtype == np.uint16 and wide._stored.offsets.dtype == np.int64
    allowed = np.arange(N) % 4 == 0
    for a in (None, allowed):
        for batch in (q, q[:1]):
            np.testing.assert_array_equal(wide.search(batch, 10, a)[1], narrow.search(batch, 10, a)[1])
    arrays["adj_hi"] = arrays["adj_hi"].copy()
    arrays["adj_lo"] = arrays["adj_lo"].copy()
    arrays["adj_hi"][3], arrays["adj_lo"][3] = 0xFFFF, 0xFFFF      # int32 arithmetic would read -1
    narrow._write_arrays(tmp_path / "bad.idx", arrays, narrow.file_arrays, g.entry, g.max_level)
    with pytest.raises(Corruption):
        load_index(tmp_path / "bad.idx", {"type": kind}, x, D, "l2")


@pytest.mark.parametrize("padded", [False, True])
def test_unused_top_level_wider_than_level_0_is_corruption(padded, tmp_path):
    """A level's list is never longer than level 0's (the kernel sizes its buffers by it)."""
    bad, x = _poke(tmp_path, "cum", 2**31 - 1, -1, padded=padded)
    with pytest.raises(Corruption):
        load_index(bad, {"type": "hnsw", "m": 8, "ef_construction": 40}, x, D, "l2")


def test_upper_level_neighbour_below_its_level_is_corruption(tmp_path):
    """The descent reads a neighbour's list on the level it was reached at: a neighbour that
    does not live on that level would send it past the node's lists."""
    index, x, _ = _built()
    path = tmp_path / "g.idx"
    index.save(path)
    footer, data = _payload(path)
    arrays = footer["graph"]["arrays"]

    def read(name):
        start, count, dtype = arrays[name]
        return np.frombuffer(bytes(data[start:start + count * np.dtype(dtype).itemsize]), dtype)
    up_nodes, up_off = read("up_nodes"), read("up_off")
    low = int(np.setdiff1d(np.arange(N), up_nodes)[0])        # a node on level 0 alone
    at = arrays["up_nb"][0] + 4 * int(up_off[0])                 # the first upper node's first level-1 neighbour
    data[at:at + 4] = np.array([low], np.int32).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(Corruption):
        load_index(path, {"type": "hnsw", "m": 8, "ef_construction": 40}, x, D, "l2")


def test_damaged_footer_and_wrong_kind_are_corruption(tmp_path):
    import json

    from vecdb.index.base import write_index_file
    index, x, _ = _built()
    path = tmp_path / "g.idx"
    index.save(path)
    footer, data = _payload(path)
    payload = bytes(data[:footer["payload_bytes"]])
    meta = {k: v for k, v in footer.items() if k not in ("format", "version", "payload_bytes")}
    for graph in (5, {**footer["graph"], "entry": True}, {**footer["graph"], "max_level": 1.0},
                  {**footer["graph"], "arrays": {}}):
        bad = tmp_path / "bad.idx"
        write_index_file(bad, {**meta, "graph": json.loads(json.dumps(graph))},
                         lambda tmp: open(tmp, "wb").write(payload))
        with pytest.raises(Corruption):
            load_index(bad, {"type": "hnsw", "m": 8, "ef_construction": 40}, x, D, "l2")
    sq8 = tmp_path / "sq8.idx"                       # a graph-only file read as hnsw_sq8
    write_index_file(sq8, {**meta, "kind": "hnsw_sq8"}, lambda tmp: open(tmp, "wb").write(payload))
    with pytest.raises(Corruption):
        load_index(sq8, {"type": "hnsw_sq8"}, x, D, "l2")


def test_empty_add_keeps_a_loaded_graph_mapped(tmp_path):
    index, x, q = _built()
    index.save(tmp_path / "g.idx")
    loaded = load_index(tmp_path / "g.idx", {"type": "hnsw"}, x, D, "l2")
    before = loaded.memory_bytes()
    loaded.add(np.empty((0, D), np.float32))
    assert loaded.mapped and loaded.memory_bytes() == before and loaded.ntotal == N


@pytest.mark.parametrize("selectivity", [0.05, 0.08, 0.7])
def test_filtered_walks_keep_recall_with_the_widened_beam(selectivity, monkeypatch):
    """Below 10 % a two-hop walk widens its beam (ef x 0.1 / s); above k / ef the nearest
    ef / sqrt(s) are post-filtered: recall against the exact filtered answer stays high."""
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((64, 16)).astype(np.float32) * 3
    x = (centers[rng.integers(0, 64, 20_000)] + rng.standard_normal((20_000, 16))).astype(np.float32)
    q = (centers[rng.integers(0, 64, 40)] + rng.standard_normal((40, 16))).astype(np.float32)
    index = make_index({"type": "hnsw", "m": 8, "ef_construction": 40}, 16, "l2")
    index.build(x)
    allowed = rng.random(20_000) < selectivity
    calls = []
    inner = index._graph
    monkeypatch.setattr(index, "_graph", lambda q_, kk, ef, a, two_hop=False:
                        calls.append((ef, a is not None, two_hop)) or inner(q_, kk, ef, a, two_hop))
    _, rows = index.search(q, 10, allowed, params={"ef": 16})
    ids = np.flatnonzero(allowed)
    truth = ids[np.argsort(((q[:, None] - x[ids][None]) ** 2).sum(-1), axis=1)[:, :10]]
    recall = np.mean([len(set(r) & set(t)) / 10 for r, t in zip(rows.tolist(), truth.tolist())])
    assert recall >= 0.9 and allowed[rows].all()
    if selectivity < 0.1:
        assert calls == [(int(np.ceil(16 * 0.1 / (allowed.sum() / 20_000))), True, True)]
    else:
        assert calls[0] == (int(np.ceil(16 / np.sqrt(allowed.sum() / 20_000))), False, False)
