"""The filter language's schema check: fields exist and values fit their types; and
``compile`` (parse then check, cached)."""
from __future__ import annotations

import functools

from vecdb.errors import FilterError, SchemaError

from vecdb.filter_parse import (And, Compare, Contains, Expr, ID_TYPES, In, IsNull, Like, Not, Or,
                                PAYLOAD_TYPES, _IDENT_RE, _RESERVED, parse)

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
