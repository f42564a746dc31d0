"""A plain-Python model of one chroma collection, written from the contract alone.

It stores items in insertion order, evaluates ``where`` / ``where_document``
filters itself and finds nearest neighbours by brute force in float64. It does
not import anything from chroma except the exception classes it predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from chroma.errors import DuplicateIDError, IDNotFoundError, InvalidArgument, InvalidDimensionError


@dataclass
class Item:
    embedding: np.ndarray  # float64, already rounded through float32
    metadata: dict | None
    document: str | None


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------


def _kind(value) -> str:
    """The comparison kind of a metadata value: bools are not numbers."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "str"


def _same_value(stored, wanted) -> bool:
    return _kind(stored) == _kind(wanted) and stored == wanted


def _matches_condition(metadata: dict | None, key: str, condition) -> bool:
    if metadata is None or key not in metadata:
        return False  # every comparison against a missing key is false
    stored = metadata[key]
    if isinstance(condition, dict):
        ((operator, operand),) = condition.items()
    else:
        operator, operand = "$eq", condition
    if operator == "$eq":
        return _same_value(stored, operand)
    if operator == "$ne":
        return not _same_value(stored, operand)
    if operator == "$in":
        return any(_same_value(stored, candidate) for candidate in operand)
    if operator == "$nin":
        return not any(_same_value(stored, candidate) for candidate in operand)
    if _kind(stored) != "number":
        return False
    return {
        "$gt": stored > operand,
        "$gte": stored >= operand,
        "$lt": stored < operand,
        "$lte": stored <= operand,
    }[operator]


def matches_where(metadata: dict | None, where: dict | None) -> bool:
    for key, condition in (where or {}).items():
        if key == "$and":
            if not all(matches_where(metadata, clause) for clause in condition):
                return False
        elif key == "$or":
            if not any(matches_where(metadata, clause) for clause in condition):
                return False
        elif not _matches_condition(metadata, key, condition):
            return False
    return True


def matches_where_document(document: str | None, where_document: dict | None) -> bool:
    text = document or ""
    for operator, operand in (where_document or {}).items():
        if operator == "$contains":
            ok = operand in text
        elif operator == "$not_contains":
            ok = operand not in text
        elif operator == "$and":
            ok = all(matches_where_document(document, clause) for clause in operand)
        elif operator == "$or":
            ok = any(matches_where_document(document, clause) for clause in operand)
        else:
            raise AssertionError(f"the model got a filter it does not know: {operator}")
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------


def distance(space: str, a: np.ndarray, b: np.ndarray) -> float:
    if space == "l2":
        return float(((a - b) ** 2).sum())
    if space == "ip":
        return float(1.0 - a @ b)
    if space == "cosine":
        return float(1.0 - (a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    raise AssertionError(space)


def as_model_embedding(row) -> np.ndarray:
    """What the store keeps of a row: float32 precision, seen as float64."""
    return np.asarray(row, dtype=np.float32).astype(np.float64)


# --------------------------------------------------------------------------
# The collection model
# --------------------------------------------------------------------------


class ReferenceCollection:
    """Expected contents of one collection.

    Each write has a ``*_errors`` method giving the exception classes a call
    may legitimately raise (empty: the call must succeed) and an apply method
    used only when it must succeed.
    """

    def __init__(self, space: str = "l2", embedding_function=None) -> None:
        self.space = space
        self.embedding_function = embedding_function
        self.items: dict[str, Item] = {}
        self.dimension: int | None = None

    # ----- validation shared by the writes ---------------------------------

    def _row_errors(self, embeddings) -> set:
        errors = set()
        dimensions = {len(row) for row in embeddings}
        if any(not math.isfinite(value) for row in embeddings for value in row):
            errors.add(InvalidArgument)
        if self.dimension is not None and dimensions - {self.dimension}:
            errors.add(InvalidDimensionError)
        if self.dimension is None and len(dimensions) > 1:
            errors.add(InvalidArgument)
        return errors

    def _embeddings_for(self, ids, embeddings, documents):
        """Rows to store per id (None: keep), computing them with the function."""
        if embeddings is not None:
            return list(embeddings)
        if documents is None or self.embedding_function is None:
            return [None] * len(ids)
        texts = [document for document in documents if document is not None]
        vectors = iter(self.embedding_function(texts)) if texts else iter(())
        return [next(vectors) if document is not None else None for document in documents]

    def _write_errors(self, ids, embeddings, documents, *, new_ids) -> set:
        errors = set()
        if len(set(ids)) != len(ids):
            errors.add(DuplicateIDError)
        rows = self._embeddings_for(ids, embeddings, documents)
        for item_id, row in zip(ids, rows):
            if row is None and item_id in new_ids:
                errors.add(InvalidArgument)  # a new item needs an embedding
        errors |= self._row_errors([row for row in rows if row is not None])
        return errors

    # ----- writes -------------------------------------------------------

    def add_errors(self, ids, embeddings=None, metadatas=None, documents=None) -> set:
        errors = self._write_errors(ids, embeddings, documents, new_ids=set(ids))
        if any(item_id in self.items for item_id in ids):
            errors.add(DuplicateIDError)
        return errors

    def add(self, ids, embeddings=None, metadatas=None, documents=None) -> None:
        rows = self._embeddings_for(ids, embeddings, documents)
        for index, item_id in enumerate(ids):
            self.items[item_id] = Item(
                as_model_embedding(rows[index]),
                _entry(metadatas, index),
                _entry(documents, index),
            )
        self._fix_dimension(rows)

    def update_errors(self, ids, embeddings=None, metadatas=None, documents=None) -> set:
        errors = self._write_errors(ids, embeddings, documents, new_ids=set())
        if any(item_id not in self.items for item_id in ids):
            errors.add(IDNotFoundError)
        return errors

    def update(self, ids, embeddings=None, metadatas=None, documents=None) -> None:
        rows = self._embeddings_for(ids, embeddings, documents)
        for index, item_id in enumerate(ids):
            item = self.items[item_id]
            if rows[index] is not None:
                item.embedding = as_model_embedding(rows[index])
            if _entry(metadatas, index) is not None:
                item.metadata = _entry(metadatas, index)
            if _entry(documents, index) is not None:
                item.document = _entry(documents, index)
        self._fix_dimension(rows)

    def upsert_errors(self, ids, embeddings=None, metadatas=None, documents=None) -> set:
        new_ids = {item_id for item_id in ids if item_id not in self.items}
        return self._write_errors(ids, embeddings, documents, new_ids=new_ids)

    def upsert(self, ids, embeddings=None, metadatas=None, documents=None) -> None:
        for index, item_id in enumerate(ids):
            one = {
                "ids": [item_id],
                "embeddings": None if embeddings is None else [embeddings[index]],
                "metadatas": None if metadatas is None else [metadatas[index]],
                "documents": None if documents is None else [documents[index]],
            }
            if item_id in self.items:
                self.update(**one)
            else:
                self.add(**one)

    def delete(self, ids=None, where=None, where_document=None) -> None:
        for item_id in self.select(ids, where, where_document):
            del self.items[item_id]

    def _fix_dimension(self, rows) -> None:
        if self.dimension is None:
            for row in rows:
                if row is not None:
                    self.dimension = len(row)
                    return

    # ----- reads --------------------------------------------------------

    def select(self, ids=None, where=None, where_document=None) -> list[str]:
        """Matching ids: in the order asked (first occurrence), else insertion order."""
        candidates = list(dict.fromkeys(ids)) if ids is not None else list(self.items)
        return [
            item_id
            for item_id in candidates
            if item_id in self.items
            and matches_where(self.items[item_id].metadata, where)
            and matches_where_document(self.items[item_id].document, where_document)
        ]

    def ranked(self, query, where=None, where_document=None) -> list[tuple[str, float]]:
        """Every matching item with its distance to ``query``, nearest first, ties in insertion order."""
        query = as_model_embedding(query)
        scored = [(item_id, distance(self.space, self.items[item_id].embedding, query))
                  for item_id in self.select(None, where, where_document)]
        return sorted(scored, key=lambda pair: pair[1])  # stable: ties keep insertion order


def _entry(values, index):
    return None if values is None else values[index]
