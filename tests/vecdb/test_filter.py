"""Tests for vecdb.filter: parsing, schema checks, evaluation, limits, fuzzing and properties."""
from __future__ import annotations

import math
import operator
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecdb import filter as flt, filter_eval
from vecdb.errors import FilterError, InvalidArgument, SchemaError

UTC = timezone.utc
EST = timezone(timedelta(hours=-5))
SCHEMA = {
    "year": "int64", "price": "float64", "ok": "bool", "tag": "string", "ts": "timestamp",
    "tags": "list<string>", "nums": "list<int64>", "odd name": "string",
}
ARROW_TYPES = {
    "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"), "list<string>": pa.list_(pa.string()),
    "list<int64>": pa.list_(pa.int64()),
}


def ts(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


ROWS = {  # 8 rows, a NULL in every column
    "year": [1999, 2000, 2001, None, 2020, 2000, None, 1999],
    "price": [9.5, 10.0, None, -1.0, math.nan, 0.0, None, 2.5],
    "ok": [True, False, None, True, False, True, None, False],
    "tag": ["apple", "apricot", "banana", None, "it's", "apple pie", "", "ab%c"],
    "ts": [ts("2019-06-01"), ts("2020-01-01T00:00:00"), None, ts("2021-03-04T05:06:07.123456"),
           ts("1969-12-31T23:59:59"), ts("2020-01-01T00:00:01"), None, ts("2030-01-01")],
    "tags": [["x", "y"], ["y"], [], None, ["x", None], ["z", "x", "y"], [None], ["x", "x"]],
    "nums": [[1, 2], [3], [], None, [None, 2], [2, 2, 5], [], [-3]],
    "odd name": ["q", None, "r", "q", "q", None, None, "s"],
}
INT_IDS = [1, 2, 3, 4, 5, 6, 7, 8]
STR_IDS = ["a1", "a2", "b1", "b2", "it's", "c", "ab%", "a_"]


def make_table(ids, rows=ROWS, schema=SCHEMA) -> pa.Table:
    id_type = pa.int64() if isinstance(ids[0], int) else pa.string()
    cols = {"id": pa.array(ids, id_type)}
    cols.update({name: pa.array(rows[name], ARROW_TYPES[t]) for name, t in schema.items()})
    return pa.table(cols)


def layouts(table: pa.Table):
    """The same rows as a RecordBatch, a one-chunk Table and a Table of uneven chunks."""
    n = table.num_rows
    cuts = [0, 1, max(1, n // 2), n]
    chunked = pa.concat_tables([table.slice(a, b - a) for a, b in zip(cuts, cuts[1:])])
    return [table.combine_chunks().to_batches()[0], table.combine_chunks(), chunked]


INT_TABLE = make_table(INT_IDS)
STR_TABLE = make_table(STR_IDS)


# --- a plain-Python reference evaluator over the AST (Kleene logic, None = NULL) -----------------

def k_and(a, b):
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def k_or(a, b):
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def k_not(a):
    return None if a is None else not a


CMP = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
       ">": operator.gt, ">=": operator.ge}


def lit_value(lit):
    if lit.kind == "timestamp":
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=lit.value)
    return lit.value


def same_kind(v, w) -> bool:
    return isinstance(v, str) == isinstance(w, str)


def ref_eval(node, row):
    if isinstance(node, flt.And):
        out = True
        for item in node.operands:
            out = k_and(out, ref_eval(item, row))
        return out
    if isinstance(node, flt.Or):
        out = False
        for item in node.operands:
            out = k_or(out, ref_eval(item, row))
        return out
    if isinstance(node, flt.Not):
        return k_not(ref_eval(node.operand, row))
    v = row.get(node.field)
    if isinstance(node, flt.IsNull):
        return v is None
    if v is None:
        return None
    if isinstance(node, flt.Compare):
        w = lit_value(node.value)
        return CMP[node.op](v, w) if same_kind(v, w) else node.op == "!="
    if isinstance(node, flt.In):
        return any(same_kind(v, w) and v == w for w in map(lit_value, node.values))
    if isinstance(node, flt.Like):
        if not isinstance(v, str):
            return False
        return v == node.prefix if node.exact else v.startswith(node.prefix)
    if isinstance(node, flt.Contains):
        present = {x for x in v if x is not None}
        wanted = [lit_value(x) for x in node.values]
        return (all if node.mode == "all" else any)(w in present for w in wanted)
    raise AssertionError(node)


_PYLISTS: dict[int, list[dict]] = {}


def pylist(table) -> list[dict]:
    """Rows of ``table`` as dicts, cached (the tables here are module constants)."""
    if id(table) not in _PYLISTS:
        _PYLISTS[id(table)] = table.to_pylist()
    return _PYLISTS[id(table)]


def ref_mask(expr, table) -> list[int]:
    return [i for i, row in enumerate(pylist(table)) if ref_eval(expr, row) is True]


def rows_of(mask: np.ndarray) -> list[int]:
    assert mask.dtype == np.bool_
    return np.flatnonzero(mask).tolist()


# --- valid expressions ------------------------------------------------------------------------

VALID_INT = [
    ("year = 2000", [1, 5]),
    ("year != 2000", [0, 2, 4, 7]),
    ("year <> 2000", [0, 2, 4, 7]),
    ("year < 2000", [0, 7]),
    ("year <= 2000", [0, 1, 5, 7]),
    ("year > 2000", [2, 4]),
    ("year>=2001", [2, 4]),
    ("year is null", [3, 6]),
    ("year IS NOT NULL", [0, 1, 2, 4, 5, 7]),
    ("year IN (1999, 2020)", [0, 4, 7]),
    ("year NOT IN (1999, 2020)", [1, 2, 5]),
    ("NOT year = 2000", [0, 2, 4, 7]),
    ("year = 2000 OR year IS NULL", [1, 3, 5, 6]),
    ("NOT (year = 2000 OR year IS NULL)", [0, 2, 4, 7]),
    ("year >= -5 AND year <= +3000", [0, 1, 2, 4, 5, 7]),
    ("year = 9223372036854775807 OR year = -9223372036854775808", []),
    ("price > 2", [0, 1, 7]),
    ("price >= -1.0", [0, 1, 3, 5, 7]),
    ("price < 1e1", [0, 3, 5, 7]),
    ("price != 0", [0, 1, 3, 4, 7]),
    ("price IN (9.5, 0)", [0, 5]),
    ("price = -1", [3]),
    ("price < .5E+1", [3, 5, 7]),
    ("ok = TRUE", [0, 3, 5]),
    ("ok = false", [1, 4, 7]),
    ("ok != true", [1, 4, 7]),
    ("ok IN (TRUE)", [0, 3, 5]),
    ("NOT ok = TRUE", [1, 4, 7]),
    ("ok = TRUE OR year IS NULL", [0, 3, 5, 6]),
    ("ok = TRUE OR year = 2001", [0, 2, 3, 5]),
    ("NOT (ok = TRUE AND year = 1999)", [1, 2, 4, 5, 7]),
    ("tag = 'apple'", [0]),
    ("tag LIKE 'ap%'", [0, 1, 5]),
    ("tag LIKE 'apple%'", [0, 5]),
    ("tag LIKE 'apple'", [0]),
    ("tag NOT LIKE 'ap%'", [2, 4, 6, 7]),
    ("tag LIKE '%'", [0, 1, 2, 4, 5, 6, 7]),
    ("tag like 'AP%'", []),
    ("tag = 'it''s'", [4]),
    ("tag = ''", [6]),
    ("tag = 'ab%c'", [7]),
    ("tag < 'b'", [0, 1, 5, 6, 7]),
    ("tag IN ('banana', 'nope')", [2]),
    ("ts >= TIMESTAMP '2020-01-01T00:00:00Z'", [1, 3, 5, 7]),
    ("ts > timestamp '2020-01-01'", [3, 5, 7]),
    ("ts = TIMESTAMP '2020-01-01T01:00:00+01:00'", [1]),
    ("ts < TIMESTAMP '1970-01-01'", [4]),
    ("ts = TIMESTAMP '2021-03-04T05:06:07.123456Z'", [3]),
    ("ts IN (TIMESTAMP '2030-01-01', TIMESTAMP '2019-06-01T00:00:00')", [0, 7]),
    ("ts IS NULL", [2, 6]),
    ("tags CONTAINS 'x'", [0, 4, 5, 7]),
    ("tags NOT CONTAINS 'x'", [1, 2, 6]),
    ("tags CONTAINS ANY ('y', 'z')", [0, 1, 5]),
    ("tags CONTAINS ALL ('x', 'y')", [0, 5]),
    ("tags contains all ('x', 'x')", [0, 4, 5, 7]),
    ("tags CONTAINS ALL ('x')", [0, 4, 5, 7]),
    ("tags CONTAINS ALL ('x', 'y', 'z')", [5]),
    ("tags IS NULL", [3]),
    ("NOT tags CONTAINS ANY ('x','y','z')", [2, 6]),
    ("nums CONTAINS 2", [0, 4, 5]),
    ("nums CONTAINS ALL (2, 5)", [5]),
    ("nums CONTAINS ANY (-3, 3)", [1, 7]),
    ("nums IS NOT NULL AND NOT nums CONTAINS 2", [1, 2, 6, 7]),
    ('"odd name" = \'q\'', [0, 3, 4]),
    ('"year" = 2000', [1, 5]),
    ("id = 3", [2]),
    ("id IN (1, 8, 100)", [0, 7]),
    ("id > 6", [6, 7]),
    ("year = 1999 OR year = 2000 AND ok = TRUE", [0, 5, 7]),
    ("(year = 1999 OR year = 2000) AND ok = TRUE", [0, 5]),
    ("NOT year = 1999 AND ok = TRUE", [5]),
    ("((((year = 2000))))", [1, 5]),
    ("year In (2000) aNd tag lIkE 'ap%'", [1, 5]),
    ("NOT NOT year = 2000", [1, 5]),
    ("year = 1999 OR tag = 'banana' OR ts IS NULL", [0, 2, 6, 7]),
    ("\tyear\n=\r\n2000 ", [1, 5]),
]

VALID_STR = [
    ("id = 'b1'", [2]),
    ("id LIKE 'a%'", [0, 1, 6, 7]),
    ("id LIKE 'ab%'", [6]),
    ("id IN ('c', 'zz')", [5]),
    ("id > 'b'", [2, 3, 4, 5]),
    ("id = 'it''s' OR year = 2000", [1, 4, 5]),
]


@pytest.mark.parametrize("id_type", ["int64", None])
@pytest.mark.parametrize("text,expected", VALID_INT)
def test_valid_int_ids(text, expected, id_type):
    expr = flt.compile(text, SCHEMA, id_type)
    assert isinstance(expr, flt.Expr)
    assert ref_mask(expr, INT_TABLE) == expected
    for table in layouts(INT_TABLE):
        assert rows_of(flt.evaluate(expr, table)) == expected


@pytest.mark.parametrize("id_type", ["string", None])
@pytest.mark.parametrize("text,expected", VALID_STR)
def test_valid_string_ids(text, expected, id_type):
    expr = flt.compile(text, SCHEMA, id_type)
    assert ref_mask(expr, STR_TABLE) == expected
    for table in layouts(STR_TABLE):
        assert rows_of(flt.evaluate(expr, table)) == expected


@pytest.mark.parametrize("text,expected", [
    ("id = 'a1'", []), ("id != 'a1'", list(range(8))), ("id NOT IN ('a1')", list(range(8))),
    ("id LIKE 'a%'", []), ("id < 'z'", []),
])
def test_unknown_id_type_value_of_other_kind_never_matches(text, expected):
    expr = flt.compile(text, SCHEMA, None)  # id type unknown: a string is accepted...
    for table in layouts(INT_TABLE):  # ...but int ids are never equal to it
        assert rows_of(flt.evaluate(expr, table)) == expected


def test_parse_ignores_positions_and_spelling():
    assert flt.parse("a=1") == flt.parse("  a  =  1 ")
    assert flt.parse("a <> 1") == flt.parse("a != 1")
    assert flt.parse("a NOT IN (1)") == flt.Not(flt.In("a", (flt.Literal("int", 1),)))
    assert flt.parse("a = 1 AND b = 2 AND c = 3") == flt.And(tuple(
        flt.Compare(f, "=", flt.Literal("int", v)) for f, v in [("a", 1), ("b", 2), ("c", 3)]))
    assert flt.parse('"we""ird" IS NULL') == flt.IsNull('we"ird')


def test_compile_is_cached_and_does_not_touch_schema():
    schema = dict(SCHEMA)
    assert flt.compile("year = 1", schema, None) is flt.compile("year = 1", schema, None)
    assert schema == SCHEMA


def test_evaluate_edge_tables():
    expr = flt.compile("year >= 2000 OR tags CONTAINS 'x'", SCHEMA, "int64")
    empty = INT_TABLE.slice(0, 0)
    for table in (empty, empty.combine_chunks(), pa.table({"id": pa.array([], pa.int64())})):
        out = flt.evaluate(expr, table)
        assert out.dtype == np.bool_ and out.shape == (0,)
    # a field absent from the table (e.g. an older segment) is all NULL
    only_id = pa.table({"id": pa.array([1, 2, 3])})
    assert rows_of(flt.evaluate(expr, only_id)) == []
    assert rows_of(flt.evaluate(flt.parse("year IS NULL"), only_id)) == [0, 1, 2]
    assert rows_of(flt.evaluate(flt.parse("NOT year = 1"), only_id)) == []
    nulls = pa.table({"id": [1, 2], "year": pa.nulls(2)})
    assert rows_of(flt.evaluate(flt.parse("year IS NULL OR year = 1"), nulls)) == [0, 1]
    # columns chunked differently from each other
    t = pa.table({"id": pa.chunked_array([[1], [2, 3]]),
                  "tags": pa.chunked_array([[["x"], None], [["y", "x"]]], pa.list_(pa.string()))})
    assert rows_of(flt.evaluate(flt.parse("id >= 2 AND tags CONTAINS 'x'"), t)) == [2]
    # sliced list arrays (non-zero offsets)
    sliced = INT_TABLE.combine_chunks().slice(3, 4)
    assert rows_of(flt.evaluate(flt.parse("tags CONTAINS ALL ('x', 'y')"), sliced)) == [2]


def test_dictionary_encoded_columns():
    t = pa.table({"id": [1, 2, 3], "tag": pa.array(["a", "b", None]).dictionary_encode()})
    assert rows_of(flt.evaluate(flt.parse("tag = 'b' OR tag LIKE 'a%'"), t)) == [0, 1]
    assert rows_of(flt.evaluate(flt.parse("tag NOT IN ('a')"), t)) == [1]


@pytest.mark.parametrize("seed", range(5))
def test_contains_all_paths_agree(seed, monkeypatch):
    """CONTAINS ALL uses one equality pass per value for few values, one hash pass for many."""
    rng = np.random.default_rng(seed)
    lists = [None if rng.random() < 0.1 else [None if rng.random() < 0.05 else int(x)
             for x in rng.integers(0, 12, rng.integers(0, 15))] for _ in range(300)]
    t = pa.table({"id": np.arange(300), "nums": pa.array(lists, pa.list_(pa.int64()))})
    t = pa.concat_tables([t.slice(0, 100), t.slice(100)])
    for values in ([1, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8], list(range(12)), [3, 3, 99]):
        expr = flt.compile(f"nums CONTAINS ALL ({', '.join(map(str, values))})",
                           {"nums": "list<int64>"}, "int64")
        expected = [i for i, v in enumerate(lists) if v is not None and set(values) <= set(v)]
        for passes in (0, 100):
            monkeypatch.setattr(filter_eval, "_ALL_BY_PASSES", passes)
            assert rows_of(flt.evaluate(expr, t)) == expected


def test_evaluate_does_not_mutate_input():
    before = INT_TABLE.to_pydict()
    flt.evaluate(flt.compile("tags CONTAINS ANY ('x') AND year > 1", SCHEMA, None), INT_TABLE)
    assert INT_TABLE.to_pydict().keys() == before.keys()


# --- invalid expressions ----------------------------------------------------------------------

DEEP_OK = "(" * 64 + "year = 1" + ")" * 64
INVALID = [
    ("", 0, "empty filter"),
    ("   ", 3, "empty filter"),
    ("year >= ", 8, "expected a value after '>=' but found end of input"),
    ("year = 'x'", 7, "field 'year' is int64 but the value 'x' is a string"),
    ("yeer = 1", 0, 'unknown field \'yeer\' (fields: id, nums, "odd name", ok, price, tag, tags,'),
    ("year = 1 AND", 12, "expected a field name"),
    ("year = 1 year = 2", 9, "expected AND, OR or end of input but found 'year'"),
    ("(year = 1", 9, "expected ')' to close the '(' at position 0"),
    ("year = 1)", 8, "no matching '('"),
    ("year IN ()", 9, "list is empty"),
    ("year IN (1,)", 11, "expected a value in the IN list but found ')'"),
    ("year IN 1", 8, "expected '(' after IN"),
    ("year IN (1 2)", 11, "expected ')' or ','"),
    ("year IS 1", 8, "expected NULL after IS"),
    ("year IS NOT 1", 12, "expected NULL after IS NOT"),
    ("year NOT = 1", 9, "expected IN, LIKE or CONTAINS after NOT"),
    ("year == 1", 6, "expected a value after '=' but found '='"),
    ("= 1", 0, "expected a field name"),
    ("1 = year", 0, "expected a field name"),
    ("year = NULL", 7, "use IS NULL"),
    ("year", 4, "expected an operator"),
    ("tag LIKE 'a%b'", 9, "prefix patterns"),
    ("tag LIKE 'a_%'", 9, "prefix patterns"),
    ("tag LIKE '%%'", 9, "prefix patterns"),
    ("tag LIKE 5", 9, "expected a quoted pattern after LIKE"),
    ("year LIKE 'a%'", 0, "LIKE needs a string field"),
    ("tags = 'x'", 0, "use CONTAINS"),
    ("tags IN ('x')", 0, "use CONTAINS"),
    ("tags LIKE 'x%'", 0, "use CONTAINS"),
    ("year CONTAINS 1", 0, "CONTAINS needs a list field"),
    ("tags CONTAINS 1", 14, "field 'tags' is list<string> but the value 1 is an integer"),
    ("nums CONTAINS ANY (1, 'x')", 22, "is list<int64> but the value 'x' is a string"),
    ("tags CONTAINS ALL 'x'", 18, "expected '(' after CONTAINS ALL"),
    ("tags CONTAINS ANY ()", 19, "list is empty"),
    ("year > 1.5", 7, "field 'year' is int64 but the value 1.5 is a float"),
    ("year = 9223372036854775808", 7, "outside the int64 range"),
    ("year = -9223372036854775809", 7, "outside the int64 range"),
    ("year = " + "9" * 5000, 7, "outside the int64 range"),
    ("price = 1e400", 8, "too large"),
    ("ts > '2020-01-01'", 5, "write TIMESTAMP '2020-01-01'"),
    ("ts > TIMESTAMP 'yesterday'", 15, "invalid timestamp"),
    ("ts > TIMESTAMP 5", 15, "expected a quoted ISO-8601 time after TIMESTAMP"),
    ("ts > 5", 5, "field 'ts' is timestamp but the value 5 is an integer"),
    ("ok < TRUE", 0, "field 'ok' is bool"),
    ("ok = 1", 5, "field 'ok' is bool but the value 1 is an integer"),
    ("tag = TRUE", 6, "the value TRUE is a bool"),
    ("tag = 'abc", 6, "unterminated string"),
    ('"odd name = 1', 0, "unterminated quoted field name"),
    ('"" = 1', 0, "empty field name"),
    ("year = 1 & tag = 'a'", 9, "unexpected character '&'"),
    ("year = 1 -- comment", 9, "unexpected character '-'"),
    ("\u00fc = 1", 0, "unexpected character"),
    ("tag = '\ud800'", 7, "lone surrogate"),
    ("and = 1", 0, "keyword AND"),
    ("year = 1 AND OR tag = 'a'", 13, "found keyword OR"),
    ("NOT", 3, "expected a field name"),
    ("year = 1x", 7, "invalid number '1x'"),
    ("year = 1.2.3", 7, "invalid number '1.2.3'"),
    ("id = 1.5", 5, "field 'id' is an int64 or string id but the value 1.5 is a float"),
    ("id IN (1, 'a')", 0, "mixes integers and strings"),
    ("id CONTAINS 1", 0, "CONTAINS needs a list field"),
    ("year = 1 OR (tag = 5)", 19, "field 'tag' is string but the value 5"),
    ("yeer = 1 OR tag = 5", 0, "unknown field 'yeer'"),
    ("(" * 65 + "year = 1" + ")" * 65, 64, "deeper than 64"),
    ("NOT " * 65 + "year = 1", 256, "deeper than 64"),
    ("(" * 10000, 64, "deeper than 64"),
    ("NOT " * 10000 + "x = 1", 256, "deeper than 64"),
    ("year IN (" + ",".join(["1"] * 10001) + ")", 9 + 2 * 10000, "more than 10000 values"),
]


@pytest.mark.parametrize("text,position,message", INVALID, ids=lambda v: repr(v)[:40])
def test_invalid(text, position, message):
    with pytest.raises(FilterError) as info:
        flt.compile(text, SCHEMA, None)
    err = info.value
    assert err.position == position
    assert message in err.message
    assert err.expression == text
    assert isinstance(err, InvalidArgument) and err.http_status == 400


@pytest.mark.parametrize("text,id_type,position,message", [
    ("id = 'a'", "int64", 5, "field 'id' is int64 but the value 'a' is a string"),
    ("id IN (1, 'a')", "int64", 10, "the value 'a' is a string"),
    ("id LIKE 'a%'", "int64", 0, "LIKE needs a string field"),
    ("id > 3", "string", 5, "field 'id' is string but the value 3 is an integer"),
])
def test_invalid_for_id_type(text, id_type, position, message):
    with pytest.raises(FilterError) as info:
        flt.compile(text, SCHEMA, id_type)
    assert info.value.position == position and message in info.value.message


def test_limits_at_the_edge():
    assert flt.compile(DEEP_OK, SCHEMA, None) == flt.parse("year = 1")
    expr = flt.compile("NOT " * 64 + "year = 1", SCHEMA, None)
    for _ in range(64):
        expr = expr.operand
    assert expr == flt.parse("year = 1")
    expr = flt.compile("year IN (" + ",".join(map(str, range(10000))) + ")", SCHEMA, None)
    assert rows_of(flt.evaluate(expr, INT_TABLE)) == [0, 1, 2, 4, 5, 7]
    fits = "tag = '" + "a" * (64 * 1024 - 8) + "'"
    assert len(fits) == 64 * 1024 and flt.compile(fits, SCHEMA, None)
    with pytest.raises(FilterError, match="bytes long; the limit is 65536"):
        flt.compile("tag = '" + "\u00e9" * 40000 + "'", SCHEMA, None)
    chain = " AND ".join(["year = 1"] * 5000)  # long flat chains are not nesting
    assert len(flt.compile(chain, SCHEMA, None).operands) == 5000


def test_bad_arguments():
    with pytest.raises(FilterError, match="must be a string"):
        flt.compile(None, SCHEMA, None)
    with pytest.raises(FilterError, match="must be a string"):
        flt.parse(b"year = 1")
    with pytest.raises(SchemaError):
        flt.check(flt.parse("a = 1"), {"a": "int32"}, None)
    with pytest.raises(SchemaError):
        flt.check(flt.parse("a = 1"), {"a": "int64"}, "uuid")


# --- fuzzing: compile returns an Expr or raises FilterError, and Exprs evaluate ---------------

TOKENS = [
    "year", "price", "ok", "tag", "ts", "tags", "nums", "id", '"odd name"', "nope", "AND", "or",
    "NOT", "IN", "IS", "NULL", "LIKE", "CONTAINS", "ANY", "ALL", "TRUE", "false", "TIMESTAMP",
    "=", "!=", "<>", "<", "<=", ">", ">=", "(", ")", ",", "1", "-2", "+3", "1.5", "-2e3", "1e999",
    "99999999999999999999", "'x'", "'it''s'", "'ab%'", "'a_b%'", "'%'", "'2020-01-01'",
    "'2020-01-01T00:00:00Z'", "''", "'", '"', "%", "-", ".", "\u00e9", "\x00",
]
VALID_TEXTS = [t for t, _ in VALID_INT + VALID_STR]
TABLES = {"int64": [INT_TABLE], "string": [STR_TABLE], None: [INT_TABLE, STR_TABLE]}


def compile_and_run(text: str) -> None:
    for id_type, tables in TABLES.items():
        try:
            expr = flt.compile(text, SCHEMA, id_type)
        except FilterError as err:
            assert err.position is None or 0 <= err.position <= len(text)
            continue
        assert isinstance(expr, flt.Expr)
        for table in tables:
            out = flt.evaluate(expr, table)
            assert out.dtype == np.bool_ and out.shape == (table.num_rows,)


@st.composite
def mutations(draw):
    text = draw(st.sampled_from(VALID_TEXTS))
    chars = st.sampled_from(list("()',\"%_=<>!-+.eE0123456789 aAnNdDoOrRtT\\\u00e9\x00"))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        c = draw(chars)
        if op == "insert":
            text = text[:i] + c + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + c + text[i + 1:]
    return text


soups = st.builds(lambda toks, sep: sep.join(toks), st.lists(st.sampled_from(TOKENS), max_size=25),
                  st.sampled_from([" ", "", "  "]))
fuzz_settings = settings(max_examples=500, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


@fuzz_settings
@given(st.text(max_size=120))
def test_fuzz_random_text(text):
    compile_and_run(text)


@fuzz_settings
@given(soups)
def test_fuzz_token_soup(text):
    compile_and_run(text)


@fuzz_settings
@given(mutations())
def test_fuzz_mutations(text):
    compile_and_run(text)


@pytest.mark.parametrize("text", [
    "(" * 10000, ")" * 10000, "NOT " * 10000 + "x = 1", "(" * 64 + "year = 1" + ")" * 63,
    "year IN (" + "1," * 20000 + "1)", "tags CONTAINS ALL (" + "'x'," * 9999 + "'y')",
    "year = 1 OR " * 8000 + "year = 2", "'" * 10001, '"' * 10001, "-" * 70000,
    "tag = '" + "''" * 30000 + "'", "NOT (" * 40 + "year = 1" + ")" * 40,
])
def test_fuzz_extremes(text):
    compile_and_run(text)


# --- property: generated filters agree with a reference that never sees the parser ---------------

def quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def kw(draw, word: str) -> str:
    return draw(st.sampled_from([word, word.lower(), word.capitalize()]))


def null_guard(field, fn):
    return lambda row: None if row[field] is None else fn(row[field])


@st.composite
def predicates(draw):
    """(filter text, row -> True/False/None) for one predicate."""
    field = draw(st.sampled_from(["year", "price", "ok", "tag", "ts", "tags", "nums", "odd name",
                                  "id"]))
    name = '"odd name"' if field == "odd name" else field
    if draw(st.integers(0, 9)) == 0:
        negate = draw(st.booleans())
        words = [kw(draw, "IS")] + ([kw(draw, "NOT")] if negate else []) + [kw(draw, "NULL")]
        text = f"{name} {' '.join(words)}"
        return text, lambda row: (row[field] is not None) if negate else (row[field] is None)
    if field in ("tags", "nums"):
        pool = st.sampled_from(["x", "y", "z", "w", "it's"]) if field == "tags" else \
            st.integers(-3, 6)
        fmt = quote if field == "tags" else str
        mode = draw(st.sampled_from(["one", "any", "all"]))
        values = [draw(pool)] if mode == "one" else draw(st.lists(pool, min_size=1, max_size=4))
        neg = draw(st.booleans())
        words = kw(draw, "CONTAINS") + ("" if mode == "one" else " " + kw(draw, mode.upper()))
        args = fmt(values[0]) if mode == "one" else "(" + ", ".join(map(fmt, values)) + ")"
        text = f"{name} {kw(draw, 'NOT') + ' ' if neg else ''}{words} {args}"
        agg = all if mode == "all" else any
        fn = null_guard(field, lambda v: agg(w in v for w in values) != neg)
        return text, fn
    if field in ("year", "id"):
        pool, fmt = st.one_of(st.sampled_from([1999, 2000, 2001, 2020, 3, 7]),
                              st.integers(-(2**63), 2**63 - 1)), str
    elif field == "price":
        pool, fmt = st.one_of(st.sampled_from([9.5, 10.0, -1.0, 0.0, 2.5, 2]),
                              st.floats(allow_nan=False, allow_infinity=False)), repr
    elif field == "ok":
        pool, fmt = st.booleans(), lambda b: kw(draw, "TRUE" if b else "FALSE")
    elif field == "ts":
        pool = st.one_of(st.sampled_from([ts("2020-01-01"), ts("2019-06-01"), ts("2030-01-01")]),
                         st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1),
                                      timezones=st.sampled_from([None, UTC, EST])))
        fmt = lambda d: f"{kw(draw, 'TIMESTAMP')} '{d.isoformat()}'"  # noqa: E731
    else:
        pool = st.one_of(st.sampled_from(["apple", "apricot", "banana", "it's", "", "q", "r"]),
                         st.text(st.characters(blacklist_categories=["Cs"]), max_size=5))
        fmt = quote

    def norm(v):
        return v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v

    kinds = ["cmp", "in"] + (["like"] if field in ("tag", "odd name") else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "cmp":
        ops = ["=", "!=", "<>"] if field == "ok" else ["=", "!=", "<>", "<", "<=", ">", ">="]
        op = draw(st.sampled_from(ops))
        v = draw(pool)
        py = CMP["!=" if op == "<>" else op]
        return f"{name} {op} {fmt(v)}", null_guard(field, lambda x: py(x, norm(v)))
    if kind == "in":
        values = draw(st.lists(pool, min_size=1, max_size=5))
        neg = draw(st.booleans())
        text = f"{name} {kw(draw, 'NOT') + ' ' if neg else ''}{kw(draw, 'IN')} (" + \
            ", ".join(map(fmt, values)) + ")"
        return text, null_guard(field, lambda x: any(x == norm(w) for w in values) != neg)
    prefix = draw(st.sampled_from(["ap", "apple", "", "b", "it'", "q"]))
    exact = draw(st.booleans())
    neg = draw(st.booleans())
    text = f"{name} {kw(draw, 'NOT') + ' ' if neg else ''}{kw(draw, 'LIKE')} " + \
        quote(prefix + ("" if exact else "%"))
    return text, null_guard(field, lambda x: (x.startswith(prefix) and (not exact or x == prefix))
                            != neg)


def combine(children):
    def nots(inner):
        return st.builds(lambda t: (f"NOT ({t[0]})", lambda r: k_not(t[1](r))), inner)

    def binary(inner):
        def make(a, b, word):
            fn = k_and if word == "AND" else k_or
            return f"({a[0]}) {word} ({b[0]})", lambda r: fn(a[1](r), b[1](r))
        return st.builds(make, inner, inner, st.sampled_from(["AND", "OR"]))

    def flat(inner):  # no parentheses: exercises precedence NOT > AND > OR
        def make(items, words):
            terms = [(f"NOT {t}", lambda r, f=f: k_not(f(r))) if neg else (t, f)
                     for (t, f), neg in items]
            text = terms[0][0] + "".join(f" {w} {t}" for w, (t, _) in zip(words, terms[1:]))

            def fn(row):
                groups, cur = [], [terms[0][1]]
                for w, (_, f) in zip(words, terms[1:]):
                    if w == "OR":
                        groups.append(cur)
                        cur = [f]
                    else:
                        cur.append(f)
                groups.append(cur)
                out = False
                for g in groups:
                    acc = True
                    for f in g:
                        acc = k_and(acc, f(row))
                    out = k_or(out, acc)
                return out
            return text, fn
        return st.integers(1, 5).flatmap(lambda n: st.builds(
            make, st.lists(st.tuples(predicates(), st.booleans()), min_size=n, max_size=n),
            st.lists(st.sampled_from(["AND", "OR"]), min_size=n - 1, max_size=n - 1)))

    return st.one_of(nots(children), binary(children), flat(children))


filters = st.recursive(predicates(), combine, max_leaves=8)


def random_table(seed: int, n: int = 240) -> pa.Table:
    rnd = random.Random(seed)

    def pick(pool, p_null=0.15):
        return [None if rnd.random() < p_null else rnd.choice(pool) for _ in range(n)]

    rows = {
        "year": pick([1999, 2000, 2001, 2020, -5, 2**63 - 1, -(2**63)]),
        "price": pick([9.5, 10.0, -1.0, 0.0, -0.0, 2.5, 2.0, math.nan, 1e300]),
        "ok": pick([True, False]),
        "tag": pick(["apple", "apricot", "apple pie", "banana", "it's", "", "q", "\u00e9"]),
        "ts": pick([ts("2020-01-01"), ts("2019-06-01"), ts("2030-01-01"), ts("1969-12-31T23:59:59"),
                    ts("2020-01-01T00:00:00.000001")]),
        "tags": pick([[], ["x"], ["x", "y"], ["y", None], ["z", "x", "x"], [None], ["w", "it's"]]),
        "nums": pick([[], [1], [2, 2], [3, None, -3], [6, 5, 4], [None]]),
        "odd name": pick(["q", "r", "apple"]),
    }
    table = make_table(list(range(1, n + 1)), rows)
    return pa.concat_tables([table.slice(0, 17), table.slice(17, 100), table.slice(117)])


PROPERTY_TABLES = [random_table(1), random_table(2).combine_chunks().to_batches()[0]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters)
def test_property_matches_reference(case):
    text, fn = case
    expr = flt.compile(text, SCHEMA, "int64")
    for table in PROPERTY_TABLES + [INT_TABLE]:
        expected = [i for i, row in enumerate(pylist(table)) if fn(row) is True]
        assert rows_of(flt.evaluate(expr, table)) == expected, text
        assert ref_mask(expr, table) == expected, text
