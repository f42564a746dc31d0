"""``where`` and ``where_document`` filters: validation into a small tree.

Storage backends compile the tree (:class:`Clause`) to their query language;
nothing here knows SQL. Validation names the bad part of a filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from chroma.errors import InvalidArgument
from chroma.validation import int64_or_not_int, shown, text, texts

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
MEMBERSHIP = ("$in", "$nin")
LOGICAL = ("$and", "$or")
DOCUMENT_OPS = ("$contains", "$not_contains")
MAX_DEPTH = 32
"""The deepest nesting of ``$and``/``$or`` a filter may have: the checks and the
engines recurse once per level, so an unbounded depth would end in RecursionError."""


@dataclass(frozen=True)
class Compare:
    """``key op value`` on item metadata; ``value`` is a tuple for $in/$nin."""

    key: str
    op: str
    value: Any


@dataclass(frozen=True)
class Contains:
    """Substring test on the document (a missing document is "")."""

    text: str
    negate: bool


@dataclass(frozen=True)
class Logical:
    op: str  # "$and" | "$or"
    clauses: tuple["Clause", ...]


Clause = Union[Compare, Contains, Logical]


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int, bool)) and int64_or_not_int(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and _scalar(value)


def _clauses(op: str, value: Any, parse, path: str, depth: int) -> Clause:
    if not isinstance(value, list) or not value:
        raise InvalidArgument(f"{path}: {op} takes a non-empty list of filters, got {shown(value)}")
    if depth >= MAX_DEPTH:
        raise InvalidArgument(f"{path}: $and/$or nested more than {MAX_DEPTH} levels deep (the limit)")
    return _merged(op, [parse(v, f"{path}.{op}[{i}]", depth + 1) for i, v in enumerate(value)])


_MERGEABLE = {"$or": ("$eq", "$in", "$in"), "$and": ("$ne", "$nin", "$nin")}
"""Per logical operator: the comparisons of one key it joins into one membership test
(``a = 1 OR a = 2`` is ``a IN (1, 2)``; ``a != 1 AND a != 2`` is ``a NOT IN (1, 2)``)."""


def _merged(op: str, clauses: list[Clause]) -> Clause:
    """``op`` over ``clauses``, the comparisons of one key that it joins merged into one
    ``$in``/``$nin`` at the place of the first: a list of n values costs time linear in n
    on every engine, where n separate comparisons can cost n times the items each."""
    single, listed, merged_op = _MERGEABLE[op]
    by_key: dict[str, list[Compare]] = {}
    for clause in clauses:
        if isinstance(clause, Compare) and clause.op in (single, listed):
            by_key.setdefault(clause.key, []).append(clause)
    kept: list[Clause] = []
    for clause in clauses:
        alike = by_key.get(clause.key, ()) if isinstance(clause, Compare) else ()
        if len(alike) < 2 or clause.op not in (single, listed):
            kept.append(clause)
        elif clause is alike[0]:
            values = [v for c in alike for v in (c.value if c.op == listed else (c.value,))]
            kept.append(Compare(clause.key, merged_op, tuple(values)))
    return kept[0] if len(kept) == 1 else Logical(op, tuple(kept))


def _join(clauses: list[Clause]) -> Clause:
    return clauses[0] if len(clauses) == 1 else Logical("$and", tuple(clauses))


def parse_where(where: Optional[Mapping], path: str = "where", depth: int = 0) -> Optional[Clause]:
    """Validate a metadata filter; ``None`` or ``{}`` means no filter."""
    if where is None or (isinstance(where, Mapping) and not where and path == "where"):
        return None
    if not isinstance(where, Mapping) or not where:
        raise InvalidArgument(f"{path} must be a non-empty dict, got {shown(where)}")
    clauses: list[Clause] = []
    for key, value in where.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"{path}: keys must be non-empty strings, got {shown(key)}")
        text(key, f"{path}: key")
        if key in LOGICAL:
            clauses.append(_clauses(key, value, parse_where, path, depth))
        elif key.startswith("$"):
            raise InvalidArgument(f"{path}: unknown operator {key!r}; logical operators are $and, $or")
        else:
            clauses.append(_compare(key, value, f"{path}.{key}"))
    return _join(clauses)


def _compare(key: str, value: Any, path: str) -> Compare:
    if not isinstance(value, Mapping):
        if not _scalar(value):
            raise InvalidArgument(f"{path}: expected a str, int, float or bool, or an operator dict, "
                                  f"got {shown(value)}")
        return Compare(key, "$eq", text(value, path) if isinstance(value, str) else value)
    if len(value) != 1:
        raise InvalidArgument(f"{path}: an operator dict holds exactly one operator, got {shown(dict(value))}")
    ((op, operand),) = value.items()
    if op in ("$eq", "$ne"):
        if not _scalar(operand):
            raise InvalidArgument(f"{path}.{op}: expected a str, int, float or bool, got {shown(operand)}")
        if isinstance(operand, str):
            text(operand, f"{path}.{op}")
    elif op in COMPARISONS:
        if not _number(operand):
            raise InvalidArgument(f"{path}.{op}: expected an int or float, got {shown(operand)}")
    elif op in MEMBERSHIP:
        if not isinstance(operand, list) or not all(_scalar(v) for v in operand):
            raise InvalidArgument(f"{path}.{op}: expected a list of str, int, float or bool, got {shown(operand)}")
        texts([v for v in operand if isinstance(v, str)], f"{path}.{op}")
        operand = tuple(operand)
    else:
        allowed = ", ".join(COMPARISONS + MEMBERSHIP)
        raise InvalidArgument(f"{path}: unknown operator {op!r}; allowed: {allowed}")
    return Compare(key, op, operand)


def parse_where_document(where: Optional[Mapping], path: str = "where_document", depth: int = 0) -> Optional[Clause]:
    """Validate a document filter; ``None`` or ``{}`` means no filter."""
    if where is None or (isinstance(where, Mapping) and not where and path == "where_document"):
        return None
    if not isinstance(where, Mapping) or not where:
        raise InvalidArgument(f"{path} must be a non-empty dict, got {shown(where)}")
    clauses: list[Clause] = []
    for op, value in where.items():
        if op in LOGICAL:
            clauses.append(_clauses(op, value, parse_where_document, path, depth))
        elif op in DOCUMENT_OPS:
            if not isinstance(value, str):
                raise InvalidArgument(f"{path}.{op}: expected a string, got {shown(value)}")
            clauses.append(Contains(text(value, f"{path}.{op}"), negate=op == "$not_contains"))
        else:
            allowed = ", ".join(DOCUMENT_OPS + LOGICAL)
            raise InvalidArgument(f"{path}: unknown operator {op!r}; allowed: {allowed}")
    return _join(clauses)


def combine(*clauses: Optional[Clause]) -> Optional[Clause]:
    """All given clauses joined by $and; None when none is given."""
    present = [c for c in clauses if c is not None]
    return _join(present) if present else None


def reads_document(clause: Clause) -> bool:
    """Whether ``clause`` tests the document (``$contains``/``$not_contains``)."""
    if isinstance(clause, Logical):
        return any(reads_document(child) for child in clause.clauses)
    return isinstance(clause, Contains)


def split_documents(clause: Optional[Clause]) -> tuple[Optional[Clause], Optional[Clause]]:
    """``(metadata part, document part)`` of a filter whose items must match both parts.

    A top-level ``$and`` is split by its children (``combine`` of a ``where``
    and a ``where_document`` gives one); any other clause that tests
    documents is the document part whole. Either part may be None.
    """
    if clause is None or not reads_document(clause):
        return clause, None
    if not (isinstance(clause, Logical) and clause.op == "$and"):
        return None, clause
    metadata = [child for child in clause.clauses if not reads_document(child)]
    documents = [child for child in clause.clauses if reads_document(child)]
    return (_join(metadata) if metadata else None), _join(documents)
