"""Sources: discovery of paths, folders and globs; text, Markdown, HTML, JSONL, CSV and Parquet
reading; bad files raise SourceError."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecdb.errors import InvalidArgument
from vecdb.rag.sources import Fields, Source, SourceError, discover, documents, html_to_text


def docs(path, fields=Fields()):
    (source,) = discover([path])
    return list(documents(source, fields))


def test_discover_folder_glob_and_file(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["a.txt", "b.md", "sub/c.html", "sub/d.jsonl", "e.csv", "f.parquet", "skip.bin"]:
        (tmp_path / name).write_text("x")
    names = [s.path.name for s in discover([tmp_path])]
    assert names == ["a.txt", "b.md", "e.csv", "f.parquet", "c.html", "d.jsonl"]
    assert [s.kind for s in discover([tmp_path])] == ["text", "text", "csv", "table", "html", "jsonl"]
    assert [s.path.name for s in discover([str(tmp_path / "**" / "*.html")])] == ["c.html"]
    # a file named twice (directly and through its folder) is one source
    assert len(discover([tmp_path / "a.txt", tmp_path])) == 6
    with pytest.raises(InvalidArgument, match="unknown source type"):
        discover([tmp_path / "skip.bin"])
    with pytest.raises(InvalidArgument, match="no such file"):
        discover([tmp_path / "nope*.txt"])


def test_text_markdown_and_html(tmp_path):
    (tmp_path / "a.md").write_text("# Herons\n\nWading *birds*.\n", encoding="utf-8")
    assert docs(tmp_path / "a.md")[0].text == "# Herons\n\nWading *birds*.\n"
    (tmp_path / "p.html").write_text(
        "<html><head><title>t</title><style>p{}</style></head><body><h1>Herons</h1>"
        "<p>Wading &amp; <b>long-legged</b>   birds.</p><script>alert(1)</script><ul><li>one</li>"
        "<li>two</li></ul></body></html>")
    assert docs(tmp_path / "p.html")[0].text == "t\n\nHerons\n\nWading & long-legged birds.\n\none\n\ntwo"
    assert html_to_text("") == ""


def test_jsonl_csv_parquet_rows(tmp_path):
    rows = [{"body": f"text {i}", "key": f"k{i}", "year": 2000 + i} for i in range(3)]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "r.csv").write_text("body,key,year\n" + "".join(f"{r['body']},{r['key']},{r['year']}\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet")
    fields = Fields(text="body", id="key", payload=("year",))
    for name in ["r.jsonl", "r.csv", "r.parquet"]:
        got = docs(tmp_path / name, fields)
        assert [d.text for d in got] == ["text 0", "text 1", "text 2"]
        assert [d.doc for d in got] == ["k0", "k1", "k2"]
        assert [int(d.payload["year"]) for d in got] == [2000, 2001, 2002]
    # without an id field a row is known by its number
    assert [d.doc for d in docs(tmp_path / "r.jsonl", Fields(text="body"))] == ["0", "1", "2"]


@pytest.mark.parametrize("name,content,fields,match", [
    ("bad.txt", b"\x00\x01binary", Fields(), "binary"),
    ("bad.md", b"caf\xe9 latin-1", Fields(), "not UTF-8"),
    ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', Fields(), "bad JSON"),
    ("bad2.jsonl", b'{"text": "ok"}\n[1, 2]\n', Fields(), "JSON object"),
    ("bad3.jsonl", b'{"text": "ok"}\n{"body": "no text"}\n', Fields(), "missing or not a string"),
    ("bad.csv", b"a,b\n1,2\n", Fields(), "no column 'text'"),
    ("bad.parquet", b"PAR1 not really", Fields(), "cannot read"),
    ("bad4.jsonl", b'{"text": "ok"}\n', Fields(id="id"), "id field"),
])
def test_bad_files_raise_source_error(tmp_path, name, content, fields, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SourceError, match=match):
        docs(tmp_path / name, fields)


def test_unreadable_file_and_hash(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("hello")
    s = Source(p, "text")
    h = s.content_hash()
    assert h == s.content_hash() and len(h) == 64
    p.write_text("hello!")
    assert s.content_hash() != h
    p.unlink()
    with pytest.raises(SourceError, match="cannot read"):
        s.content_hash()
    with pytest.raises(SourceError, match="cannot read"):
        list(documents(s))
