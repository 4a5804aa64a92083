"""RAG benchmark: ``python -m bench.rag [--section retrieval] [--queries 1000]``.

Sections (each writes its part of bench/results/rag.json, a table in rag.md and rag.png):

* ``retrieval``: quality and latency of dense, sparse (BM25F) and hybrid (RRF) search on the
  WordNet corpus (``wordnet-3.0-glosses/minilm`` from ../shared/data, 116,659 glosses with
  their MiniLM vectors already computed; only the queries are embedded). 1,000 seeded base
  synsets are each queried by one of its lemmas (the plain lemma text); a query is answered
  when the synset's own row comes back. hit@1, hit@10 and MRR@10 per mode, beside the
  ceiling: a lemma naming n synsets cannot be told apart from its namesakes, so hit@10 is at
  most min(1, 10/n), hit@1 at most 1/n. Latency p50/p99 of single queries per mode,
  query embedding included.

* ``ingest``: end-to-end ``vecdb.rag.ingest`` rows/s against raw ``SentenceTransformer.encode``
  on the same first ``--rows`` glosses in the same run (target >= 0.9x) and peak memory
  (bench/ingest.py; also runnable alone as ``python -m bench.ingest``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench.datasets import SHARED, cache_dir, load

RESULTS = Path(__file__).resolve().parent / "results"
DATASET = "wordnet-3.0-glosses/minilm"
SEED = 20261204
LEMMA_WEIGHT = 10.0         # BM25F weight of the lemma field against the gloss (1.0): see the study
TUNED_FUSION = (1.0, 5.0)   # (dense, sparse) RRF weights of the extra 'hybrid 1:5' row


def wordnet_rows() -> tuple[list[dict], np.ndarray | None]:
    """The base rows (id, lemmas, gloss) in base order and their vectors: from the prepared
    dataset when present, else rebuilt from WordNet (Debian wordnet-base) with no vectors."""
    folder = cache_dir() / DATASET
    if (folder / "texts.jsonl").exists() and (folder / "base.npy").exists():
        rows = []
        with open(folder / "texts.jsonl") as f:
            for line in f:
                r = json.loads(line)
                head = ", ".join(r["lemmas"]) + ": "
                gloss = r["text"][len(head):] if r["text"].startswith(head) else r["text"]
                rows.append({"id": r["id"], "lemmas": r["lemmas"], "gloss": gloss})
        return rows, load(DATASET).base
    spec = importlib.util.spec_from_file_location("vecdb_prepare", SHARED / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    everything = list(prepare.wordnet_rows())
    base_rows, _ = prepare.split(len(everything), 1000)      # the dataset's base, same order
    return [{"id": everything[i][0], "lemmas": everything[i][2], "gloss": everything[i][3]}
            for i in base_rows], None


def _ranks(hits_per_query, targets) -> np.ndarray:
    """1-based rank of each query's target among its hits; 0 when absent."""
    out = np.zeros(len(targets), np.int64)
    for i, (hits, t) in enumerate(zip(hits_per_query, targets)):
        for r, h in enumerate(hits, start=1):
            if h.id == t:
                out[i] = r
                break
    return out


def _quality(ranks: np.ndarray) -> dict:
    return {"hit@1": float(np.mean(ranks == 1)), "hit@10": float(np.mean((ranks >= 1) & (ranks <= 10))),
            "mrr@10": float(np.mean(np.where((ranks >= 1) & (ranks <= 10), 1.0 / np.maximum(ranks, 1), 0.0)))}


def _ceiling(namesakes: np.ndarray) -> dict:
    """Best achievable when a lemma's n namesakes are indistinguishable (random order among them)."""
    n = namesakes.astype(np.float64)
    mrr = [sum(1.0 / r for r in range(1, min(int(m), 10) + 1)) / m for m in n]
    return {"hit@1": float(np.mean(1.0 / n)), "hit@10": float(np.mean(np.minimum(1.0, 10.0 / n))),
            "mrr@10": float(np.mean(mrr))}


def retrieval(n_queries: int = 1000, latency_queries: int = 200, subset: int = 20_000) -> dict:
    """Dense, sparse and hybrid quality and latency on WordNet (see the module docstring).

    When the dataset's vectors are not prepared, runs on a subset that it embeds itself: the
    queried synsets, every synset sharing a lemma with one of them (the hard distractors) and
    seeded random others up to ``subset`` rows."""
    import vecdb
    from vecdb.rag.embedding import get_embedder

    rows, vectors = wordnet_rows()
    rng = np.random.default_rng(SEED)
    picked = rng.choice(len(rows), n_queries, replace=False)
    queries = [rows[i]["lemmas"][rng.integers(len(rows[i]["lemmas"]))] for i in picked]
    embedder = get_embedder("all-MiniLM-L6-v2")
    out = {"dataset": DATASET, "queries": n_queries, "seed": SEED, "k": 10,
           "text_fields": {"lemmas": LEMMA_WEIGHT, "gloss": 1.0}, "modes": {}}
    if vectors is None:
        wanted = {q.lower() for q in queries}
        keep = set(picked.tolist()) | {i for i, r in enumerate(rows) if wanted & {x.lower() for x in r["lemmas"]}}
        others = np.setdiff1d(np.arange(len(rows)), np.fromiter(keep, np.int64))
        fill = rng.choice(others, max(0, subset - len(keep)), replace=False)
        chosen = np.sort(np.concatenate([np.fromiter(keep, np.int64), fill]))
        t0 = time.perf_counter()
        cached = cache_dir() / DATASET / f"subset-{len(chosen)}-{n_queries}-{SEED}.npy"
        if cached.exists():              # embedded by an earlier run (same rows, same model)
            vectors = np.load(cached)
        else:
            vectors = embedder.encode([f"{', '.join(rows[i]['lemmas'])}: {rows[i]['gloss']}" for i in chosen],
                                      batch_size=128)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, vectors)
        out["corpus"] = (f"subset of {len(chosen):,} of {len(rows):,} base rows (the {n_queries} queried "
                         f"synsets, all {len(keep) - n_queries:,} other synsets sharing a queried lemma, "
                         "random others), embedded here: the dataset's vectors were not prepared")
        out["subset_embed_s"] = round(time.perf_counter() - t0, 1)
        row_ids = chosen
    else:
        out["corpus"] = f"all {len(rows):,} base rows, the dataset's vectors"
        row_ids = np.arange(len(rows))
    lemma_count = Counter(x for i in row_ids.tolist() for x in {l.lower() for l in rows[i]["lemmas"]})
    out["rows"] = len(row_ids)
    out["ceiling"] = _ceiling(np.array([lemma_count[q.lower()] for q in queries]))
    with tempfile.TemporaryDirectory(prefix="vecdb-bench-rag-") as d, \
            vecdb.connect(d, durability="batch") as db:
        col = db.create_collection("wordnet", embedding="all-MiniLM-L6-v2", metric="cosine",
                                   text_fields={"lemmas": LEMMA_WEIGHT, "gloss": 1.0},
                                   index={"type": "flat"})

        def load_rows(target):
            for lo in range(0, len(row_ids), 20_000):
                ids = row_ids[lo:lo + 20_000]
                target.upsert(ids.tolist(), vectors[lo:lo + len(ids)],
                              [{"lemmas": ", ".join(rows[i]["lemmas"]), "gloss": rows[i]["gloss"]} for i in ids.tolist()])
            target.flush()
        t0 = time.perf_counter()
        load_rows(col)
        out["load_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        col.search(queries[0], k=10, mode="sparse")        # builds the segment's postings once
        out["postings_build_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        qvec = embedder.encode(queries, batch_size=256)
        out["query_embed_ms_per_query_batched"] = round((time.perf_counter() - t0) * 1000 / n_queries, 3)
        targets = picked.tolist()
        results = {
            "dense": col.search(qvec, k=10, output_fields=[]),
            "sparse": col.search(queries, k=10, mode="sparse", output_fields=[]),
            "hybrid": col.search(queries, k=10, mode="hybrid", output_fields=[]),
            "hybrid 1:5": col.search(queries, k=10, mode="hybrid", weights=TUNED_FUSION, output_fields=[]),
        }
        for mode, hits in results.items():
            out["modes"][mode] = _quality(_ranks(hits, targets))
        # latency: single queries, the text embedded per query (as an application would)
        for mode in ("dense", "sparse", "hybrid"):
            times = []
            for q in queries[:latency_queries]:
                t0 = time.perf_counter()
                col.search(q, k=10, mode=mode, output_fields=[])
                times.append(time.perf_counter() - t0)
            ms = np.array(times) * 1000
            out["modes"][mode].update(p50_ms=round(float(np.percentile(ms, 50)), 3),
                                      p99_ms=round(float(np.percentile(ms, 99)), 3))
        out["latency_queries"] = latency_queries
        out["weight_study"] = _weight_study(db, load_rows, queries, qvec, targets)
    out["sparse_full_corpus"] = _sparse_full_corpus(rows, queries, targets)
    return out


def _sparse_full_corpus(rows, queries, targets) -> dict:
    """BM25 alone needs no vectors, so it always runs on all base rows: the whole text as one
    field (the plain-bm25s reference point) and the lemma/gloss BM25F fields."""
    from vecdb.index.sparse import bm25_search, build_postings
    from vecdb.index.text import tokenize
    tokens = [tokenize(q) for q in queries]
    out = {"rows": len(rows)}
    t0 = time.perf_counter()
    fields = build_postings([[", ".join(r["lemmas"]) for r in rows], [r["gloss"] for r in rows]])
    out["postings_build_s"] = round(time.perf_counter() - t0, 2)
    out["postings_mb"] = round(fields.nbytes / 1e6, 1)
    whole = build_postings([[", ".join(r["lemmas"]) + ": " + r["gloss"] for r in rows]])
    for name, postings, w in (("whole text", whole, [1.0]), ("lemmas 1 + gloss 1", fields, [1.0, 1.0]),
                              ("lemmas 3 + gloss 1", fields, [3.0, 1.0]),
                              (f"lemmas {LEMMA_WEIGHT:g} + gloss 1", fields, [LEMMA_WEIGHT, 1.0])):
        t0 = time.perf_counter()
        [(_, found)] = bm25_search([(postings, None, None)], tokens, 10, w)
        ms = (time.perf_counter() - t0) * 1000 / len(tokens)
        ranks = np.array([next((j + 1 for j, x in enumerate(row) if x == t), 0) for row, t in zip(found, targets)])
        out[name] = {**_quality(ranks), "ms_per_query": round(ms, 3)}
    return out


def _weight_study(db, load_rows, queries, qvec, targets) -> list[dict]:
    """Sparse and hybrid quality for other lemma-field and fusion weights: one collection per
    lemma weight (the same rows), searched through the public API."""
    study = []
    for lemma_w in (1.0, 3.0, 10.0):
        col = db.create_collection(f"study-{lemma_w:g}", embedding="all-MiniLM-L6-v2", metric="cosine",
                                   text_fields={"lemmas": lemma_w, "gloss": 1.0}, index={"type": "flat"})
        load_rows(col)
        sparse = _quality(_ranks(col.search(queries, k=10, mode="sparse", output_fields=[]), targets))
        for weights in ((1.0, 1.0), (1.0, 2.0), (1.0, 3.0), (1.0, 5.0), (2.0, 1.0)):
            hits = col.search(queries, k=10, mode="hybrid", weights=weights, output_fields=[])
            study.append({"lemma_weight": lemma_w, "fusion_weights": list(weights), "sparse": sparse,
                          "hybrid": _quality(_ranks(hits, targets))})
        db.drop_collection(col.name)
    return study


def _table(r: dict) -> str:
    lines = [f"Retrieval on {r['dataset']}: {r['corpus']}; {r['queries']:,} lemma queries, "
             f"seed {r['seed']}, BM25F fields {r['text_fields']}, RRF k=60", "",
             "| mode | hit@1 | hit@10 | MRR@10 | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- | --- |"]
    for mode, m in r["modes"].items():
        lat = f"{m['p50_ms']:.2f} | {m['p99_ms']:.2f}" if "p50_ms" in m else "as hybrid | "
        lines.append(f"| {mode} | {m['hit@1']:.3f} | {m['hit@10']:.3f} | {m['mrr@10']:.3f} | {lat} |")
    c = r["ceiling"]
    lines.append(f"| ceiling | {c['hit@1']:.3f} | {c['hit@10']:.3f} | {c['mrr@10']:.3f} | | |")
    lines += ["", f"Latency: single queries ({r['latency_queries']}), query embedding included "
              "(dense, hybrid); exact dense scan (flat index).", "",
              f"'hybrid 1:5' is RRF with (dense, sparse) weights {TUNED_FUSION}, chosen on these same "
              "queries (see the study below): an upper estimate, not held-out.", ""]
    full = r.get("sparse_full_corpus")
    if full:
        lines += [f"BM25 alone on all {full['rows']:,} base rows (postings {full['postings_mb']} MB, "
                  f"built in {full['postings_build_s']} s):", "",
                  "| fields | hit@1 | hit@10 | MRR@10 | ms/query |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {k} | {v['hit@1']:.3f} | {v['hit@10']:.3f} | {v['mrr@10']:.3f} | {v['ms_per_query']:.3f} |"
                  for k, v in full.items() if isinstance(v, dict)]
        lines.append("")
    lines += ["Weight study (lemma-field weight; hybrid fusion weights dense, sparse):", "",
              "| lemma w | fusion w | sparse hit@1 | sparse hit@10 | hybrid hit@1 | hybrid hit@10 | hybrid MRR |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in r.get("weight_study", []):
        lines.append(f"| {s['lemma_weight']:g} | {s['fusion_weights']} | {s['sparse']['hit@1']:.3f} | "
                     f"{s['sparse']['hit@10']:.3f} | {s['hybrid']['hit@1']:.3f} | {s['hybrid']['hit@10']:.3f} | "
                     f"{s['hybrid']['mrr@10']:.3f} |")
    return "\n".join(lines) + "\n"


def _plot(r: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [*r["modes"], "ceiling"]
    vals = [*r["modes"].values(), r["ceiling"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.25
    for j, metric in enumerate(("hit@1", "hit@10", "mrr@10")):
        ax.bar(np.arange(len(names)) + (j - 1) * width, [v[metric] for v in vals], width, label=metric)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_title(f"WordNet lemma -> own gloss ({r['queries']} queries)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def ingest(rows: int = 5000) -> dict:
    from bench.ingest import run
    return run(rows, batch_size=64, device="auto")


SECTIONS = {"retrieval": retrieval, "ingest": ingest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", choices=sorted(SECTIONS), action="append",
                    help="run only these sections (default: all)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--subset", type=int, default=20_000,
                    help="rows to embed when the dataset's vectors are not prepared")
    ap.add_argument("--rows", type=int, default=5000, help="glosses the ingest section ingests")
    a = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "rag.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    for name in a.section or list(SECTIONS):
        kwargs = ({"n_queries": a.queries, "subset": a.subset} if name == "retrieval"
                  else {"rows": a.rows} if name == "ingest" else {})
        report[name] = SECTIONS[name](**kwargs)
        path.write_text(json.dumps(report, indent=1))
    if "retrieval" in report:
        table = _table(report["retrieval"])
        print(table)
        (RESULTS / "rag.md").write_text(table)
        _plot(report["retrieval"], RESULTS / "rag.png")
    if "ingest" in report:
        from bench.ingest import table as ingest_table
        print(ingest_table(report["ingest"]))


if __name__ == "__main__":
    main()
