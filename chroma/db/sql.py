"""Compile a validated filter tree to a SQL condition with bound parameters.

The schema it targets: items in ``embeddings e`` (``e.label``, ``e.document``)
and typed metadata rows in ``metadata`` (``label, collection_id, key,
string_value, int_value, float_value, bool_value``), one row per item and key. Values never
enter the SQL text: every value is a ``?`` parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from chroma.filters import Clause, Compare, Contains, Logical

_SQL_OP = {"$eq": "=", "$ne": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


@dataclass(frozen=True)
class Dialect:
    """What differs between SQL engines for filters."""

    contains: str = "contains(COALESCE(e.document, ''), ?)"
    int_as_double: str = "CAST(int_value AS DOUBLE)"
    false: str = "FALSE"
    metadata_table: str = "metadata"
    """What the metadata rows are read from: a table, or a parenthesized subquery."""
    row_key: str = "e.label"
    metadata_key: str = "label"
    """How a metadata row names its item row: ``row_key IN (SELECT metadata_key ...)``.
    A versioned store matches (label, version), so that an older version's
    metadata never matches the current row."""
    member: str = "{column} IN (SELECT unnest(?::{element}[]))"
    """``column`` is one of a list bound as one parameter: a hash semi-join, so an
    ``$in``/``$nin`` of n values costs time linear in n (one ``OR`` per value was quadratic)."""
    any_row: str = "bool_or({condition})"
    """The aggregate that is true when ``condition`` holds on any of an item's metadata rows."""


DUCKDB = Dialect()


def _value_match(op: str, value: Any, dialect: Dialect) -> tuple[str, list]:
    """A condition on one metadata row's typed columns."""
    sql_op = _SQL_OP[op]
    if isinstance(value, bool):
        return f"bool_value {sql_op} ?", [value]
    if isinstance(value, str):
        return f"string_value {sql_op} ?", [value]
    if isinstance(value, int):
        # exact on the int column; the float column compares as a double
        return f"(int_value {sql_op} ? OR float_value {sql_op} ?)", [value, float(value)]
    return f"({dialect.int_as_double} {sql_op} ? OR float_value {sql_op} ?)", [value, value]


def _any_match(values: tuple, dialect: Dialect) -> tuple[str, list]:
    """A metadata row whose value equals one of ``values``, each type's values bound as one list."""
    bools = [v for v in values if isinstance(v, bool)]
    strings = [v for v in values if isinstance(v, str)]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    floats = [v for v in values if isinstance(v, float)]
    # The union of _value_match("$eq", v) over the values: an int matches the
    # int column exactly and the float column as a double; a float matches
    # either column compared as doubles.
    tests = [("bool_value", "BOOLEAN", bools), ("string_value", "VARCHAR", strings), ("int_value", "BIGINT", ints),
             (dialect.int_as_double, "DOUBLE", floats),
             ("float_value", "DOUBLE", floats + [float(v) for v in ints])]
    parts, params = [], []
    for column, element, members in tests:
        if members:
            parts.append(dialect.member.format(column=column, element=element))
            params.append(members)
    if not parts:
        return dialect.false, []
    return "(" + " OR ".join(parts) + ")", params


def _metadata_match(clause: Compare, dialect: Dialect) -> tuple[str, list]:
    """The condition on one ``metadata`` row (key included) for ``clause``."""
    if clause.op in ("$in", "$nin"):
        match, params = _any_match(clause.value, dialect)
    else:
        match, params = _value_match(clause.op, clause.value, dialect)
    if clause.op in ("$ne", "$nin"):
        # The complement among items that have the key: a missing key never matches.
        match = f"NOT COALESCE({match}, {dialect.false})"
    return f"key = ? AND {match}", [clause.key, *params]


def _compare(clause: Compare, dialect: Dialect) -> tuple[str, list]:
    match, params = _metadata_match(clause, dialect)
    return f"{dialect.row_key} IN (SELECT {dialect.metadata_key} FROM {dialect.metadata_table} WHERE {match})", params


def _metadata_only(clause: Clause) -> bool:
    if isinstance(clause, Logical):
        return all(_metadata_only(child) for child in clause.clauses)
    return isinstance(clause, Compare)


def _only_or(clause: Clause) -> bool:
    if isinstance(clause, Logical):
        return clause.op == "$or" and all(_only_or(child) for child in clause.clauses)
    return True


def _item_test(clause: Clause, dialect: Dialect, leaves: list[tuple[str, list]]) -> str:
    """The test of one item's aggregated metadata rows for ``clause``, its leaves appended to
    ``leaves`` in the order their parameters appear."""
    if isinstance(clause, Compare):
        match, params = _metadata_match(clause, dialect)
        leaves.append((match, params))
        return dialect.any_row.format(condition=f"({match})")
    joiner = " AND " if clause.op == "$and" else " OR "
    return "(" + joiner.join(_item_test(child, dialect, leaves) for child in clause.clauses) + ")"


def _matching_keys(clause: Clause, dialect: Dialect, key: str, scope: str = "",
                   scope_params: tuple = (), distinct: bool = False) -> tuple[str, list]:
    """``SELECT key FROM`` the metadata rows of the items whose metadata matches ``clause``
    (metadata only); ``distinct``: each item once.

    One scan whatever the filter's width: the rows that match any leaf, then, for a
    tree with ``$and``, one group per item tested by an aggregate per leaf. A set
    operation or a subquery per leaf made DuckDB's planning time grow faster than the
    filter, and past 1,000 leaves fail on its expression depth.
    """
    leaves: list[tuple[str, list]] = []
    test = _item_test(clause, dialect, leaves)
    leaf_params = [p for _, params in leaves for p in params]
    any_leaf = " OR ".join(f"({match})" for match, _ in leaves)
    select = "SELECT DISTINCT" if distinct and len(leaves) > 1 else "SELECT"
    sql = f"{select} {key} FROM {dialect.metadata_table} WHERE {scope}({any_leaf})"
    if _only_or(clause):
        return sql, [*scope_params, *leaf_params]  # a row that matches a leaf is the whole test
    return f"{sql} GROUP BY {key} HAVING {test}", [*scope_params, *leaf_params, *leaf_params]


def compile_label_set(clause: Clause, collection_id: str, dialect: Dialect = DUCKDB) -> Optional[tuple[str, list]]:
    """``(sql, params)`` selecting the matching labels, each once, from ``metadata`` alone.

    Possible when the filter reads metadata only; it skips the items table. None otherwise.
    """
    if not _metadata_only(clause):
        return None
    return _matching_keys(clause, dialect, "label", "collection_id = ? AND ", (collection_id,), distinct=True)


def compile_clause(clause: Clause, dialect: Dialect = DUCKDB) -> tuple[str, list]:
    """``(sql, params)`` for a condition over ``embeddings e``."""
    if isinstance(clause, Compare):
        return _compare(clause, dialect)
    if isinstance(clause, Contains):
        sql = dialect.contains
        return (f"NOT {sql}" if clause.negate else sql), [clause.text]
    assert isinstance(clause, Logical)
    if _metadata_only(clause):
        keys, params = _matching_keys(clause, dialect, dialect.metadata_key)
        return f"{dialect.row_key} IN ({keys})", params
    parts, params = [], []
    for child in clause.clauses:
        sql, args = compile_clause(child, dialect)
        parts.append(sql)
        params.extend(args)
    joiner = " AND " if clause.op == "$and" else " OR "
    return "(" + joiner.join(parts) + ")", params
