"""The filter language: parse a SQL-WHERE-like string into an AST, check it, evaluate it.

Pure functions, no I/O. A filter is tokenised and parsed by hand (never ``eval``, never SQL)
into frozen dataclasses, checked against the collection's payload schema, and evaluated with
``pyarrow.compute`` into a numpy bool row mask (DESIGN §3).

Grammar (keywords are case-insensitive)::

    filter     := or_expr
    or_expr    := and_expr ( OR and_expr )*
    and_expr   := not_expr ( AND not_expr )*
    not_expr   := NOT not_expr | '(' or_expr ')' | predicate
    predicate  := field ( '=' | '!=' | '<>' | '<' | '<=' | '>' | '>=' ) value
                | field [NOT] IN '(' value ( ',' value )* ')'
                | field IS [NOT] NULL
                | field [NOT] LIKE 'string'
                | field [NOT] CONTAINS value
                | field [NOT] CONTAINS ANY '(' value ( ',' value )* ')'
                | field [NOT] CONTAINS ALL '(' value ( ',' value )* ')'
    field      := [A-Za-z_][A-Za-z0-9_]*  |  "any name"   (write "" for a double quote inside)
    value      := integer | float | 'string' | TRUE | FALSE | TIMESTAMP 'ISO-8601'

- Precedence: NOT binds tighter than AND, which binds tighter than OR.
- Fields: the payload fields of the schema plus the reserved field ``id``. The words AND, OR,
  NOT, IN, IS, NULL, LIKE, CONTAINS, TRUE and FALSE must be double-quoted to be field names.
- Values: integers (``42``, ``-7``; int64 range), floats (``1.5``, ``-2e3``; an integer is
  fine for a float64 field, a float is not fine for an int64 field), strings in single quotes
  with ``''`` for a quote, ``TRUE``/``FALSE`` for bool fields, ``TIMESTAMP '2020-01-01T00:00:00Z'``
  for timestamp fields (ISO-8601; a timestamp without offset is UTC).
- Types: int64, float64, string and timestamp fields take every comparison and IN; bool
  fields take ``=``, ``!=``/``<>`` and IN; only string fields (and string ids) take LIKE;
  only list fields take CONTAINS; list fields take no comparison but IS [NOT] NULL.
- LIKE supports prefix patterns only: ``'abc%'`` matches strings that start with ``abc``;
  without ``%`` it is equality; any other ``%`` or ``_`` is an error.
- CONTAINS: ``tags CONTAINS 'x'`` is true when the list holds ``'x'``; ANY needs one of the
  values, ALL needs every one. NULL elements inside a list never match.
- NULL: SQL semantics. A comparison with a NULL field is NULL (unknown), NOT of NULL is NULL,
  ``NULL AND FALSE`` is FALSE, ``NULL OR TRUE`` is TRUE; a row matches only when the whole
  filter is TRUE. ``x != 1`` does not match rows where ``x`` is NULL; use ``IS NULL``.
- Limits: 64 KiB of text, nesting (parentheses and NOT) 64 deep, 10,000 values per list.
- Every error is a ``FilterError`` that says what was expected, what was found, and the
  0-based position.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field as _field
from datetime import datetime, timedelta, timezone
from typing import NamedTuple, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FilterError, SchemaError

__all__ = ["Expr", "parse", "check", "compile", "evaluate"]

MAX_EXPRESSION_BYTES = 64 * 1024
MAX_DEPTH = 64
MAX_LIST_ITEMS = 10_000

PAYLOAD_TYPES = frozenset(
    {"int64", "float64", "bool", "string", "timestamp", "list<string>", "list<int64>"})
ID_TYPES = frozenset({"string", "int64"})
_RESERVED = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "CONTAINS", "TRUE", "FALSE"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- AST --------------------------------------------------------------------------------------
# Positions (0-based offsets into the filter text) are kept for error messages but do not take
# part in equality, so ``parse("a=1") == parse("a = 1")``.

class Expr:
    """Base of every filter AST node (all nodes are frozen dataclasses)."""

    __slots__ = ()


@dataclass(frozen=True)
class Literal:
    """A constant: ``kind`` is int, float, string, bool or timestamp (µs since epoch, UTC)."""

    kind: str
    value: int | float | str | bool
    text: str = _field(default="", compare=False)
    pos: int = _field(default=0, compare=False)


@dataclass(frozen=True)
class Compare(Expr):
    field: str
    op: str  # one of = != < <= > >=  ('<>' is parsed as '!=')
    value: Literal
    pos: int = _field(default=0, compare=False)


@dataclass(frozen=True)
class In(Expr):
    field: str
    values: tuple[Literal, ...]
    pos: int = _field(default=0, compare=False)


@dataclass(frozen=True)
class IsNull(Expr):
    field: str
    pos: int = _field(default=0, compare=False)


@dataclass(frozen=True)
class Like(Expr):
    """``prefix`` followed by anything, or exactly ``prefix`` when ``exact``."""

    field: str
    prefix: str
    exact: bool
    pos: int = _field(default=0, compare=False)


@dataclass(frozen=True)
class Contains(Expr):
    field: str
    mode: str  # "one", "any" or "all"
    values: tuple[Literal, ...]
    pos: int = _field(default=0, compare=False)


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr


@dataclass(frozen=True)
class And(Expr):
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Or(Expr):
    operands: tuple[Expr, ...]


# --- tokenizer --------------------------------------------------------------------------------

class _Tok(NamedTuple):
    kind: str  # ws number ident qident string op punct eof
    text: str
    pos: int


_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<qident>"[^"]*(?:""[^"]*)*")
  | (?P<string>'[^']*(?:''[^']*)*')
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<punct>[(),])
""", re.VERBOSE | re.ASCII)


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JUNK_RE = re.compile(r"[\w.'\"]*")


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == "'":
                raise FilterError("unterminated string: no closing quote", text, pos)
            if ch == '"':
                raise FilterError("unterminated quoted field name: no closing quote", text, pos)
            raise FilterError(f"unexpected character {ch!r}", text, pos)
        kind, end = m.lastgroup, m.end()
        if kind == "number" and end < n and (text[end].isalnum() or text[end] in "_.'\""):
            bad = _JUNK_RE.match(text, end).end()
            raise FilterError(f"invalid number {text[pos:min(bad, pos + 40)]!r}", text, pos)
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = end
    toks.append(_Tok("eof", "", n))
    return toks


def _describe(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "end of input"
    text = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
    if tok.kind == "string":
        return f"string {text}"
    if tok.kind == "number":
        return f"number {text}"
    if tok.kind == "qident":
        return f"field {text}"
    if tok.kind == "ident" and tok.text.upper() in _RESERVED:
        return f"keyword {tok.text.upper()}"
    return f"'{text}'"


# --- parser -----------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def is_kw(self, word: str) -> bool:
        tok = self.toks[self.i]
        return tok.kind == "ident" and tok.text.upper() == word

    def fail(self, message: str, tok: _Tok | None = None) -> NoReturn:
        tok = tok or self.peek()
        raise FilterError(message, self.text, tok.pos)

    def expect_punct(self, ch: str, context: str) -> _Tok:
        tok = self.peek()
        if tok.kind != "punct" or tok.text != ch:
            self.fail(f"expected '{ch}' {context} but found {_describe(tok)}")
        return self.take()

    def parse(self) -> Expr:
        if self.peek().kind == "eof":
            self.fail("empty filter: expected a condition such as year >= 2000")
        expr = self.or_expr()
        tok = self.peek()
        if tok.kind != "eof":
            extra = " with no matching '('" if tok.kind == "punct" and tok.text == ")" else ""
            self.fail(f"expected AND, OR or end of input but found {_describe(tok)}{extra}")
        return expr

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.is_kw("OR"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self.is_kw("AND"):
            self.take()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def nest(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"filter nests deeper than {MAX_DEPTH} levels of parentheses and NOT", tok)

    def not_expr(self) -> Expr:
        tok = self.peek()
        if self.is_kw("NOT"):
            self.take()
            self.nest(tok)
            inner = self.not_expr()
            self.depth -= 1
            return Not(inner)
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            self.nest(tok)
            inner = self.or_expr()
            self.expect_punct(")", f"to close the '(' at position {tok.pos}")
            self.depth -= 1
            return inner
        return self.predicate()

    def field_name(self) -> _Tok:
        tok = self.peek()
        if tok.kind == "qident":
            name = tok.text[1:-1].replace('""', '"')
            if not name:
                self.fail("empty field name")
            self.take()
            return tok._replace(text=name)
        if tok.kind == "ident":
            if tok.text.upper() in _RESERVED:
                self.fail(f"expected a field name but found keyword {tok.text.upper()} "
                          f"(write \"{tok.text}\" to use it as a field name)")
            return self.take()
        self.fail(f"expected a field name, NOT or '(' but found {_describe(tok)}")

    def predicate(self) -> Expr:
        ftok = self.field_name()
        name, pos = ftok.text, ftok.pos
        tok = self.peek()
        if tok.kind == "op":
            self.take()
            op = "!=" if tok.text == "<>" else tok.text
            return Compare(name, op, self.value(f"after '{tok.text}'"), pos)
        negate = False
        if self.is_kw("NOT"):
            self.take()
            negate = True
            if not (self.is_kw("IN") or self.is_kw("LIKE") or self.is_kw("CONTAINS")):
                found = _describe(self.peek())
                self.fail(f"expected IN, LIKE or CONTAINS after NOT but found {found}")
        if self.is_kw("IN"):
            self.take()
            node: Expr = In(name, self.value_list("IN"), pos)
        elif self.is_kw("LIKE"):
            self.take()
            node = self.like(name, pos)
        elif self.is_kw("CONTAINS"):
            self.take()
            if self.is_kw("ANY") or self.is_kw("ALL"):
                mode = self.take().text.lower()
                node = Contains(name, mode, self.value_list(f"CONTAINS {mode.upper()}"), pos)
            else:
                node = Contains(name, "one", (self.value("after CONTAINS"),), pos)
        elif self.is_kw("IS") and not negate:
            self.take()
            if self.is_kw("NOT"):
                self.take()
                negate = True
            if not self.is_kw("NULL"):
                self.fail(f"expected NULL after IS{' NOT' if negate else ''} "
                          f"but found {_describe(self.peek())}")
            self.take()
            node = IsNull(name, pos)
        else:
            self.fail(f"expected an operator (=, !=, <, <=, >, >=, IN, IS, LIKE, CONTAINS) "
                      f"after field {name!r} but found {_describe(tok)}")
        return Not(node) if negate else node

    def like(self, name: str, pos: int) -> Like:
        tok = self.peek()
        if tok.kind != "string":
            self.fail(f"expected a quoted pattern after LIKE but found {_describe(tok)}")
        self.take()
        pattern = tok.text[1:-1].replace("''", "'")
        exact = not pattern.endswith("%")
        prefix = pattern if exact else pattern[:-1]
        bad = next((i for i, ch in enumerate(prefix) if ch in "%_"), None)
        if bad is not None:
            raise FilterError(
                f"LIKE supports only prefix patterns such as 'abc%', but the pattern has "
                f"{prefix[bad]!r} at offset {bad}", self.text, tok.pos)
        return Like(name, prefix, exact, pos)

    def value_list(self, what: str) -> tuple[Literal, ...]:
        self.expect_punct("(", f"after {what}")
        if self.peek().text == ")" and self.peek().kind == "punct":
            self.fail(f"the {what} list is empty; give at least one value")
        values = [self.value(f"in the {what} list")]
        while self.peek().kind == "punct" and self.peek().text == ",":
            self.take()
            if len(values) >= MAX_LIST_ITEMS:
                self.fail(f"the {what} list has more than {MAX_LIST_ITEMS} values")
            values.append(self.value(f"in the {what} list"))
        self.expect_punct(")", f"or ',' in the {what} list")
        return tuple(values)

    def value(self, where: str) -> Literal:
        tok = self.peek()
        if tok.kind == "number":
            self.take()
            return self.number(tok)
        if tok.kind == "string":
            self.take()
            return Literal("string", tok.text[1:-1].replace("''", "'"), tok.text, tok.pos)
        if tok.kind == "ident":
            word = tok.text.upper()
            if word in ("TRUE", "FALSE"):
                self.take()
                return Literal("bool", word == "TRUE", word, tok.pos)
            if word == "TIMESTAMP":
                self.take()
                return self.timestamp(tok)
            if word == "NULL":
                self.fail("NULL is not a value to compare with; use IS NULL or IS NOT NULL")
        self.fail(f"expected a value {where} but found {_describe(tok)}")

    def number(self, tok: _Tok) -> Literal:
        text = tok.text
        if not any(c in text for c in ".eE"):
            digits = text.lstrip("+-").lstrip("0")
            value = int(text) if len(digits) <= 19 else None  # int() of huge text is slow
            if value is None or not _INT64_MIN <= value <= _INT64_MAX:
                self.fail(f"integer {text[:40]} is outside the int64 range", tok)
            return Literal("int", value, text, tok.pos)
        value = float(text)
        if not math.isfinite(value):
            self.fail(f"number {text[:40]} is too large for float64", tok)
        return Literal("float", value, text, tok.pos)

    def timestamp(self, kw: _Tok) -> Literal:
        tok = self.peek()
        if tok.kind != "string":
            self.fail(f"expected a quoted ISO-8601 time after TIMESTAMP, such as "
                      f"'2020-01-01T00:00:00Z', but found {_describe(tok)}")
        self.take()
        raw = tok.text[1:-1].replace("''", "'").strip()
        try:
            dt = datetime.fromisoformat(raw)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            micros = (dt - _EPOCH) // timedelta(microseconds=1)
        except (ValueError, OverflowError):
            self.fail(f"invalid timestamp {tok.text[:60]}: expected ISO-8601 such as "
                      f"'2020-01-01T00:00:00Z'", tok)
        return Literal("timestamp", micros, f"TIMESTAMP {tok.text}", kw.pos)


def parse(expression: str) -> Expr:
    """Parse filter text into an AST (syntax only, no schema); raises ``FilterError``."""
    if not isinstance(expression, str):
        raise FilterError(f"a filter must be a string, not {type(expression).__name__}")
    try:
        size = len(expression.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate cannot reach arrow as UTF-8
        raise FilterError("invalid character (lone surrogate)", expression, exc.start) from None
    if size > MAX_EXPRESSION_BYTES:
        raise FilterError(f"filter is {size} bytes long; the limit is {MAX_EXPRESSION_BYTES}",
                          expression[:60] + "...", None)
    return _Parser(expression).parse()


# --- schema check -----------------------------------------------------------------------------

_KIND_NAMES = {"int": "an integer", "float": "a float", "string": "a string", "bool": "a bool",
               "timestamp": "a timestamp"}
_ACCEPTS = {"int64": ("int",), "float64": ("int", "float"), "bool": ("bool",),
            "string": ("string",), "timestamp": ("timestamp",), None: ("int", "string")}
_LIST_ELEMENT = {"list<string>": "string", "list<int64>": "int64"}
_ORDERED_OPS = ("<", "<=", ">", ">=")
_UNKNOWN = object()


def check(expr: Expr, schema: dict[str, str], id_type: str | None, expression: str = "") -> None:
    """Check that fields exist and values fit their types; raises ``FilterError``.

    ``schema`` maps payload field names to payload types; the reserved field ``id`` has type
    ``id_type`` ("string" or "int64"), or ``None`` when not yet known (then integer and string
    values are both accepted). ``expression`` is the source text, quoted in error messages.
    """
    for name, ftype in schema.items():
        if ftype not in PAYLOAD_TYPES:
            raise SchemaError(f"field {name!r} has unknown payload type {ftype!r}")
    if id_type is not None and id_type not in ID_TYPES:
        raise SchemaError(f"id type must be 'string' or 'int64', not {id_type!r}")
    fields = {**schema, "id": id_type}
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, (And, Or)):
            stack.extend(reversed(node.operands))  # report the leftmost problem first
        elif isinstance(node, Not):
            stack.append(node.operand)
        else:
            _check_predicate(node, fields, expression)


def _check_predicate(node: Expr, fields: dict, text: str) -> None:
    name = node.field
    ftype = fields.get(name, _UNKNOWN)
    if ftype is _UNKNOWN:
        names = [_spell(f) for f in sorted(fields)]
        shown = ", ".join(names[:50]) + (", ..." if len(names) > 50 else "")
        raise FilterError(f"unknown field {name!r} (fields: {shown})", text, node.pos)
    shown_type = "an int64 or string id" if ftype is None else ftype
    if isinstance(node, IsNull):
        return
    if isinstance(node, Contains):
        if ftype not in _LIST_ELEMENT:
            raise FilterError(f"CONTAINS needs a list field, but field {name!r} is {shown_type}",
                              text, node.pos)
        _check_values(node.values, name, ftype, _LIST_ELEMENT[ftype], text)
        return
    if ftype in _LIST_ELEMENT:
        raise FilterError(f"field {name!r} is {ftype}; use CONTAINS, CONTAINS ANY (...), "
                          f"CONTAINS ALL (...) or IS [NOT] NULL on list fields", text, node.pos)
    if isinstance(node, Like):
        if ftype not in ("string", None):
            raise FilterError(f"LIKE needs a string field, but field {name!r} is {shown_type}",
                              text, node.pos)
        return
    if isinstance(node, Compare):
        if ftype == "bool" and node.op in _ORDERED_OPS:
            raise FilterError(f"field {name!r} is bool; use = or != (not {node.op})",
                              text, node.pos)
        _check_values((node.value,), name, ftype, ftype, text)
    elif isinstance(node, In):
        _check_values(node.values, name, ftype, ftype, text)
        if ftype is None and len({v.kind for v in node.values}) > 1:
            raise FilterError(f"the IN list for {name!r} mixes integers and strings", text,
                              node.pos)
    else:
        raise FilterError(f"not a filter node: {type(node).__name__}", text, None)


def _spell(name: str) -> str:
    """A field name as it must be written in a filter (quoted when not a plain identifier)."""
    if _IDENT_RE.fullmatch(name) and name.upper() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def _check_values(values, name: str, ftype, accepted_type, text: str) -> None:
    accepts = _ACCEPTS[accepted_type]
    shown = "an int64 or string id" if ftype is None else ftype
    for lit in values:
        if lit.kind not in accepts:
            hint = ""
            if accepted_type == "timestamp" and lit.kind == "string":
                hint = f"; write TIMESTAMP {lit.text}"
            raise FilterError(f"field {name!r} is {shown} but the value {lit.text[:60]} is "
                              f"{_KIND_NAMES[lit.kind]}{hint}", text, lit.pos)


@functools.lru_cache(maxsize=512)
def _compile_cached(expression: str, schema_items: tuple, id_type: str | None) -> Expr:
    expr = parse(expression)
    check(expr, dict(schema_items), id_type, expression)
    return expr


def compile(expression: str, schema: dict[str, str], id_type: str | None) -> Expr:
    """``parse`` then ``check``, cached on (expression, schema, id_type); raises ``FilterError``."""
    if not isinstance(expression, str):
        raise FilterError(f"a filter must be a string, not {type(expression).__name__}")
    return _compile_cached(expression, tuple(schema.items()), id_type)


# --- evaluation -------------------------------------------------------------------------------

_CMP = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
        ">": pc.greater, ">=": pc.greater_equal}
_NULL = pa.scalar(None, pa.bool_())
_ALL_BY_PASSES = 8  # CONTAINS ALL with more values than this hashes once instead
_NO_VALUE = object()  # a literal the column's type cannot hold: it never matches


def evaluate(expr: Expr, table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Rows of ``table`` where ``expr`` is TRUE, as a bool array of length ``table.num_rows``.

    NULL results count as FALSE. A field missing from ``table`` (or of arrow type null) is all
    NULL. A value the column cannot hold (e.g. ``id = 'a'`` on int64 ids, possible when the id
    type was unknown at check time) equals nothing and orders with nothing.
    """
    n = table.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    result = _eval(expr, table)
    if isinstance(result, pa.Scalar):
        return np.full(n, result.as_py() is True, dtype=bool)
    result = pc.fill_null(result, False)
    chunks = result.chunks if isinstance(result, pa.ChunkedArray) else [result]
    parts = [c.to_numpy(zero_copy_only=False) for c in chunks if len(c)]
    return np.asarray(np.concatenate(parts) if len(parts) != 1 else parts[0], dtype=bool)


def _eval(node: Expr, table):
    if isinstance(node, And):
        acc = _eval(node.operands[0], table)
        for item in node.operands[1:]:
            acc = pc.and_kleene(acc, _eval(item, table))
        return acc
    if isinstance(node, Or):
        acc = _eval(node.operands[0], table)
        for item in node.operands[1:]:
            acc = pc.or_kleene(acc, _eval(item, table))
        return acc
    if isinstance(node, Not):
        return pc.invert(_eval(node.operand, table))
    idx = table.schema.get_field_index(node.field)
    col = table.column(idx) if idx >= 0 else None
    if col is not None and pa.types.is_null(col.type):
        col = None
    elif col is not None and pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if isinstance(node, IsNull):
        return pa.scalar(True) if col is None else pc.is_null(col)
    if col is None:
        return _NULL
    if isinstance(node, Compare):
        value = _py_value(col.type, node.value)
        if value is _NO_VALUE:
            return _constant(col, node.op == "!=")
        return _CMP[node.op](col, _arrow(col.type, [value], scalar=True))
    if isinstance(node, In):
        values = [_py_value(col.type, lit) for lit in node.values]
        values = [v for v in values if v is not _NO_VALUE]
        if not values:
            return _constant(col, False)
        if pa.types.is_floating(col.type) and 0.0 in values:
            values += [0.0, -0.0]  # is_in hashes -0.0 apart from 0.0, but they are equal
        hit = pc.is_in(col, value_set=_arrow(col.type, values))
        return pc.if_else(pc.is_valid(col), hit, _NULL) if col.null_count else hit
    if isinstance(node, Like):
        if not _is_string(col.type):
            return _constant(col, False)
        if node.exact:
            return pc.equal(col, pa.scalar(node.prefix, col.type))
        return pc.starts_with(col, node.prefix)
    if isinstance(node, Contains):
        return _contains(col, node)
    raise FilterError(f"not a filter node: {type(node).__name__}")


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _py_value(t: pa.DataType, lit: Literal):
    """The literal as a Python value for a column of arrow type ``t``, or ``_NO_VALUE``."""
    kind = lit.kind
    if kind == "int" and pa.types.is_integer(t):
        return lit.value
    if kind in ("int", "float") and pa.types.is_floating(t):
        return float(lit.value)
    if kind == "string" and _is_string(t):
        return lit.value
    if kind == "bool" and pa.types.is_boolean(t):
        return lit.value
    if kind == "timestamp" and pa.types.is_timestamp(t):
        return lit.value
    return _NO_VALUE


def _arrow(t: pa.DataType, values: list, scalar: bool = False):
    """Values (from ``_py_value``) as an arrow array (or scalar) of type ``t``."""
    if pa.types.is_timestamp(t):  # values are µs since epoch
        arr = pa.array(values, pa.timestamp("us", tz=t.tz))
        arr = arr if arr.type == t else arr.cast(t, safe=False)
    else:
        try:
            arr = pa.array(values, t)
        except (pa.ArrowInvalid, OverflowError):  # e.g. a big integer for an int32 column
            arr = pa.array(values, pa.int64() if pa.types.is_integer(t) else None)
    return arr[0] if scalar else arr


def _constant(col, value: bool):
    """``value`` where ``col`` is not NULL, NULL where it is."""
    if not col.null_count:
        return pa.scalar(value)
    return pc.if_else(pc.is_valid(col), pa.scalar(value), _NULL)


def _contains(col, node: Contains):
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return _constant(col, False)
    values = [_py_value(t.value_type, lit) for lit in node.values]
    if node.mode == "all" and _NO_VALUE in values:
        return _constant(col, False)
    values = list(dict.fromkeys(v for v in values if v is not _NO_VALUE))
    if not values:
        return _constant(col, False)
    value_set = _arrow(t.value_type, values)
    need_all = node.mode == "all" and len(values) > 1
    if isinstance(col, pa.ChunkedArray):
        return pa.chunked_array([_contains_chunk(c, value_set, need_all) for c in col.chunks],
                                pa.bool_())
    return _contains_chunk(col, value_set, need_all)


def _contains_chunk(arr, value_set: pa.Array, need_all: bool) -> pa.Array:
    """Per list: does it hold any (or, with ``need_all``, every) value of ``value_set``."""
    n, m = len(arr), len(value_set)
    offsets = arr.offsets.to_numpy().astype(np.int64)  # absolute offsets into arr.values
    start = offsets[0]
    elements = arr.values.slice(start, offsets[-1] - start)
    bounds = offsets - start
    if need_all and m > _ALL_BY_PASSES:  # one hash pass, then count distinct values per list
        codes = pc.fill_null(pc.index_in(elements, value_set=value_set), -1)
        codes = codes.to_numpy(zero_copy_only=False)
        hit_pos = np.flatnonzero(codes >= 0)
        parents = np.searchsorted(bounds, hit_pos, side="right") - 1
        pairs = np.unique(parents * m + codes[hit_pos])
        hit = np.bincount(pairs // m, minlength=n) == m
    elif need_all:  # a few values: one equality pass each
        hit = np.ones(n, dtype=bool)
        for i in range(m):
            hit &= _any_per_list(pc.equal(elements, value_set[i]), bounds)
    elif m == 1:
        hit = _any_per_list(pc.equal(elements, value_set[0]), bounds)
    else:
        hit = _any_per_list(pc.is_in(elements, value_set=value_set), bounds)
    mask = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    return pa.array(hit, pa.bool_(), mask=mask)


def _any_per_list(found: pa.Array, bounds: np.ndarray) -> np.ndarray:
    """Whether each list (elements ``bounds[i]:bounds[i+1]``) has a TRUE in ``found``."""
    if found.null_count:
        found = pc.fill_null(found, False)
    counts = np.zeros(len(found) + 1, dtype=np.int64)
    np.cumsum(found.to_numpy(zero_copy_only=False), out=counts[1:])
    return counts[bounds[1:]] > counts[bounds[:-1]]
