"""The filter language's syntax: the AST (frozen dataclasses), the tokeniser and the
hand-written parser (never ``eval``, never SQL). The grammar is in ``vecdb/filter.py``."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field as _field
from datetime import datetime, timedelta, timezone
from typing import NamedTuple, NoReturn

from vecdb.errors import FilterError


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
