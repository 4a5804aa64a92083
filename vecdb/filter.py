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

# the language lives in three modules by noun: syntax (filter_parse), schema check and
# compile (filter_check), evaluation (filter_eval); this module is their one front
from vecdb.filter_check import check, compile
from vecdb.filter_eval import evaluate
from vecdb.filter_parse import (ID_TYPES, MAX_DEPTH, MAX_EXPRESSION_BYTES, MAX_LIST_ITEMS,
                                PAYLOAD_TYPES, And, Compare, Contains, Expr, In, IsNull, Like,
                                Literal, Not, Or, parse)

__all__ = ["Expr", "parse", "check", "compile", "evaluate", "Literal", "Compare", "In", "IsNull",
           "Like", "Contains", "Not", "And", "Or", "PAYLOAD_TYPES", "ID_TYPES",
           "MAX_EXPRESSION_BYTES", "MAX_DEPTH", "MAX_LIST_ITEMS"]
