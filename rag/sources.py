"""Ingest sources: files and tables turned into documents (text plus identity), streamed.

A *source* is one file. Text, Markdown and HTML files are one document each; JSONL, CSV and
Parquet/Arrow files are one document per row (a text field, an optional id field and payload
fields). Every source carries a content hash so a re-run can skip what it already holds.
Reading is lazy: a table file is streamed in record batches, never loaded whole.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import html.parser
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from vecdb.errors import InvalidArgument

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
HTML_SUFFIXES = (".html", ".htm")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv")
TABLE_SUFFIXES = (".parquet", ".arrow", ".feather", ".ipc")
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + JSONL_SUFFIXES + CSV_SUFFIXES + TABLE_SUFFIXES
HASH_BLOCK = 1 << 20


class SourceError(Exception):
    """A file that cannot be read as a source; the run reports it and goes on."""


@dataclass(frozen=True)
class Fields:
    """Which fields of a table source hold the text, the id, the payload and a vector."""
    text: str = "text"
    id: str | None = None
    payload: tuple[str, ...] = ()
    vector: str | None = None


@dataclass
class Document:
    """One text (or one precomputed vector) from a source, with its identity within it."""
    text: str | None
    doc: str | None = None                  # the row's id (id field) or row number; None for files
    payload: dict = field(default_factory=dict)
    vector: object = None                   # a precomputed vector (vector field), else None


@dataclass(frozen=True)
class Source:
    """One input file: its name (the path as discovered), kind and content hash."""
    path: Path
    kind: str     # text | html | jsonl | csv | table

    @property
    def name(self) -> str:
        return str(self.path)

    def content_hash(self) -> str:
        """sha256 of the file's bytes, streamed (raises SourceError if unreadable)."""
        h = hashlib.sha256()
        try:
            with open(self.path, "rb") as f:
                while block := f.read(HASH_BLOCK):
                    h.update(block)
        except OSError as e:
            raise SourceError(f"cannot read {self.path}: {e.strerror or e}") from None
        return h.hexdigest()


def kind_of(path: Path) -> str | None:
    """The source kind a file name implies, or None for a file that is not a source."""
    s = path.suffix.lower()
    for kind, suffixes in (("text", TEXT_SUFFIXES), ("html", HTML_SUFFIXES), ("jsonl", JSONL_SUFFIXES),
                           ("csv", CSV_SUFFIXES), ("table", TABLE_SUFFIXES)):
        if s in suffixes:
            return kind
    return None


def discover(specs: Iterable[str | os.PathLike]) -> list[Source]:
    """Sources named by paths, folders (walked recursively, sorted) and globs, each once.

    A file named explicitly must have a known suffix; a folder or glob picks only those.
    A spec that matches nothing raises InvalidArgument (a typo should not ingest nothing).
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    found: dict[str, Source] = {}
    for spec in specs:
        text = os.fspath(spec)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and kind_of(p))
        elif path.is_file():
            if kind_of(path) is None:
                raise InvalidArgument(f"{text}: unknown source type (suffixes: {', '.join(SUFFIXES)})")
            files = [path]
        else:
            files = sorted(Path(p) for p in glob.glob(text, recursive=True)
                           if Path(p).is_file() and kind_of(Path(p)))
            if not files:
                raise InvalidArgument(f"{text}: no such file, folder or matching glob")
        for p in files:
            found.setdefault(str(p), Source(p, kind_of(p)))
    return list(found.values())


# ---- reading --------------------------------------------------------------------------------

class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page: script/style dropped, block elements on their own lines."""
    SKIP = {"script", "style", "noscript", "template"}
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header",
             "footer", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "title", "hr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML document (stdlib parser), blank runs squeezed."""
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    out, blank = [], False
    for line in lines:
        if line:
            out.append(line)
            blank = False
        elif not blank and out:
            out.append("")
            blank = True
    return "\n".join(out).strip()


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    if b"\0" in data[:8192]:
        raise SourceError(f"{path}: binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _row_document(row: dict, where: str, number: int, fields: Fields) -> Document:
    text = row.get(fields.text)
    vector = row.get(fields.vector) if fields.vector else None
    if fields.vector is None and not isinstance(text, str):
        raise SourceError(f"{where}: field {fields.text!r} is missing or not a string")
    if fields.vector is not None and vector is None:
        raise SourceError(f"{where}: field {fields.vector!r} is missing")
    if fields.id is not None:
        if row.get(fields.id) is None:
            raise SourceError(f"{where}: id field {fields.id!r} is missing")
        doc = str(row[fields.id])
    else:
        doc = str(number)
    payload = {f: row.get(f) for f in fields.payload if row.get(f) is not None}
    return Document(text if isinstance(text, str) else None, doc, payload, vector)


def _jsonl(path: Path, fields: Fields) -> Iterator[Document]:
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        number = 0
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SourceError(f"{path}:{lineno}: bad JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise SourceError(f"{path}:{lineno}: a line must be a JSON object")
                yield _row_document(row, f"{path}:{lineno}", number, fields)
                number += 1
        except UnicodeDecodeError as e:
            raise SourceError(f"{path}: not UTF-8 text ({e.reason})") from None


def _csv(path: Path, fields: Fields) -> Iterator[Document]:
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        try:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if reader.fieldnames is None or fields.text not in reader.fieldnames:
                raise SourceError(f"{path}: no column {fields.text!r} (columns: {reader.fieldnames})")
            for number, row in enumerate(reader):
                yield _row_document(row, f"{path}:{reader.line_num}", number, fields)
        except (csv.Error, UnicodeDecodeError) as e:
            raise SourceError(f"{path}: bad CSV ({e})") from None


def table_batches(path: Path, columns: Sequence[str], batch_rows: int = 4096):
    """Record batches of ``columns`` from a Parquet or Arrow IPC file, streamed."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    fmt = "parquet" if path.suffix.lower() == ".parquet" else "ipc"
    try:
        dataset = ds.dataset(str(path), format=fmt)
        missing = [c for c in columns if c not in dataset.schema.names]
        if missing:
            raise SourceError(f"{path}: no column(s) {missing} (columns: {dataset.schema.names})")
        yield from dataset.to_batches(columns=list(columns), batch_size=batch_rows)
    except (pa.ArrowException, OSError) as e:
        raise SourceError(f"{path}: cannot read as {fmt}: {e}") from None


def _table(path: Path, fields: Fields) -> Iterator[Document]:
    cols = [c for c in dict.fromkeys([fields.vector or fields.text, fields.id, *fields.payload]) if c]
    if fields.vector and fields.text:
        cols.append(fields.text)
    number = 0
    for batch in table_batches(path, [c for c in dict.fromkeys(cols)], batch_rows=1024):
        for row in batch.to_pylist():
            yield _row_document(row, f"{path}: row {number}", number, fields)
            number += 1


def documents(source: Source, fields: Fields = Fields()) -> Iterator[Document]:
    """The documents of one source, lazily; raises SourceError on a bad file (possibly after
    yielding some documents: the caller discards the source's partial output)."""
    if source.kind == "text":
        yield Document(_read_text(source.path))
    elif source.kind == "html":
        yield Document(html_to_text(_read_text(source.path)))
    elif source.kind == "jsonl":
        yield from _jsonl(source.path, fields)
    elif source.kind == "csv":
        yield from _csv(source.path, fields)
    else:
        yield from _table(source.path, fields)
