"""Ingest benchmark (issue 15, item 7, first bullet): end-to-end ``vecdb.rag.ingest`` rows/s
against raw ``SentenceTransformer.encode`` on the same texts in the same run, and peak memory.

    python -m bench.ingest [--rows 5000] [--batch-size 64] [--device auto]

On the first ``--rows`` WordNet glosses (``texts.jsonl`` of ../shared/data's
wordnet-3.0-glosses/minilm, from the dataset cache; when it is not prepared the same
``"lemma, lemma: gloss"`` texts are read straight from the Debian ``wordnet-base`` files the
way prepare.py does, without embedding the corpus). The raw encode runs before and after the
ingest and the mean is the reference. Prints a table and writes bench/results/ingest.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

from bench.datasets import SHARED, cache_dir

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "wordnet-3.0-glosses/minilm"


def wordnet_texts(rows: int) -> list[dict]:
    """The first ``rows`` glosses as {"id", "text"}: from the prepared texts.jsonl, else WordNet."""
    for folder in (cache_dir() / NAME, SHARED / NAME):
        path = folder / "texts.jsonl"
        if path.exists():
            out = []
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if len(out) == rows:
                        break
                    r = json.loads(line)
                    out.append({"id": r["id"], "text": r["text"]})
            return out
    spec = importlib.util.spec_from_file_location("vecdb_prepare", SHARED / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    out = []
    for sid, _pos, lemmas, gloss in prepare.wordnet_rows():
        if len(out) == rows:
            break
        out.append({"id": sid, "text": f"{', '.join(lemmas)}: {gloss}"})
    return out


def _cpu_s() -> float:
    """CPU seconds of this process, all threads (less sensitive than wall time to a busy machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(rows: int, batch_size: int, device: str) -> dict:
    import vecdb
    from vecdb import rag
    from vecdb.rag.embedding import get_embedder
    docs = wordnet_texts(rows)
    texts = [d["text"] for d in docs]
    embedder = get_embedder("all-MiniLM-L6-v2", device=device)
    model = embedder.model
    model.encode(texts[:batch_size], batch_size=batch_size)   # warm up

    def raw() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), _cpu_s()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return time.perf_counter() - t0, _cpu_s() - c0

    raw_before, raw_cpu_before = raw()
    rss_before = _rss_mib()
    with tempfile.TemporaryDirectory(prefix="vecdb-bench-ingest-") as tmp:
        source = Path(tmp) / "glosses.jsonl"
        source.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        with vecdb.connect(Path(tmp) / "db") as db:
            col = rag.open_collection(db, "glosses")
            t0, c0 = time.perf_counter(), _cpu_s()
            summary = rag.ingest(col, [source], id_field="id", embedder=embedder,
                                 batch_size=batch_size, progress=False)
            ingest_s, ingest_cpu = time.perf_counter() - t0, _cpu_s() - c0
            assert col.count() == summary.rows, (col.count(), summary.rows)
            t0 = time.perf_counter()
            again = rag.ingest(col, [source], id_field="id", embedder=embedder, progress=False)
            rerun_s = time.perf_counter() - t0
            assert again.unchanged == 1 and col.count() == summary.rows
    rss_after = _rss_mib()
    raw_after, raw_cpu_after = raw()
    raw_s, raw_cpu = (raw_before + raw_after) / 2, (raw_cpu_before + raw_cpu_after) / 2
    return {
        "rows": len(docs), "chunks": summary.rows, "batch_size": batch_size,
        "device": getattr(embedder, "device", device), "cpu": platform.processor() or platform.machine(),
        "raw_encode_rows_per_s": len(texts) / raw_s,
        "raw_encode_s": [round(raw_before, 3), round(raw_after, 3)],
        "ingest_rows_per_s": summary.rows / ingest_s, "ingest_s": round(ingest_s, 3),
        "ratio": (summary.rows / ingest_s) / (len(texts) / raw_s),
        "raw_cpu_ms_per_row": 1000 * raw_cpu / len(texts),
        "ingest_cpu_ms_per_row": 1000 * ingest_cpu / summary.rows,
        "rerun_unchanged_s": round(rerun_s, 3),
        "peak_rss_mib": round(rss_after, 1), "peak_rss_growth_during_ingest_mib": round(rss_after - rss_before, 1),
    }


def table(r: dict) -> str:
    return "\n".join([
        f"ingest benchmark: {r['rows']} WordNet glosses -> {r['chunks']} chunks, batch {r['batch_size']}, "
        f"device {r['device']}",
        "| measure | value |", "| --- | --- |",
        f"| raw SentenceTransformer.encode | {r['raw_encode_rows_per_s']:.0f} rows/s |",
        f"| vecdb.rag.ingest end to end | {r['ingest_rows_per_s']:.0f} rows/s |",
        f"| ratio (target >= 0.9) | {r['ratio']:.2f} |",
        f"| CPU per row: raw / ingest | {r['raw_cpu_ms_per_row']:.2f} / {r['ingest_cpu_ms_per_row']:.2f} ms |",
        f"| re-run, all unchanged | {r['rerun_unchanged_s']:.2f} s |",
        f"| peak RSS (growth during ingest) | {r['peak_rss_mib']:.0f} MiB (+{r['peak_rss_growth_during_ingest_mib']:.0f}) |",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5000, help="glosses to ingest (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    args = p.parse_args(argv)
    result = run(args.rows, args.batch_size, args.device)
    print(table(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
