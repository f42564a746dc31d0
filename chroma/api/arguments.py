"""Checks of per-collection call arguments, shared by every API implementation.

Local runs them before touching the store; a remote client runs the same ones
before a request leaves, so both raise the same error for the same input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from chroma import errors, validation
from chroma.db import Batch
from chroma.filters import Clause, combine, parse_where, parse_where_document
from chroma.types import GET_INCLUDE, QUERY_INCLUDE


@dataclass(frozen=True)
class GetArguments:
    ids: Optional[list[str]]
    where: Optional[Clause]
    limit: Optional[int]
    offset: Optional[int]
    include: tuple[str, ...]


@dataclass(frozen=True)
class QueryArguments:
    queries: np.ndarray
    n_results: int
    where: Optional[Clause]
    include: tuple[str, ...]


def batch(ids: Any, embeddings: Any, metadatas: Any, documents: Any) -> Batch:
    """A write's arguments (add, upsert, update), checked."""
    ids = validation.ids(ids)
    vectors, missing = validation.embeddings_with_gaps(embeddings, len(ids))
    return Batch(
        ids=ids,
        embeddings=vectors,
        metadatas=validation.per_item(metadatas, len(ids), "metadatas", validation.item_metadata),
        documents=validation.per_item(documents, len(ids), "documents", validation.document),
        missing=missing,
    )


def filters(where: Any, where_document: Any) -> Optional[Clause]:
    return combine(parse_where(where), parse_where_document(where_document))


def delete_arguments(ids: Any, where: Any, where_document: Any) -> tuple[Optional[list[str]], Optional[Clause]]:
    ids = validation.id_filter(ids)
    clause = filters(where, where_document)
    if ids is None and clause is None:
        raise errors.InvalidArgument("delete needs ids, where or where_document (refusing to delete everything)")
    return ids, clause


def get_arguments(ids: Any, where: Any, where_document: Any, limit: Any, offset: Any, include: Sequence[str]) -> GetArguments:
    include = validation.include(include, GET_INCLUDE)
    ids = validation.id_filter(ids)
    clause = filters(where, where_document)
    limit = validation.count_argument(limit, "limit", 0, optional=True)
    offset = validation.count_argument(offset, "offset", 0, optional=True)
    return GetArguments(ids, clause, limit, offset, include)


def query_arguments(query_embeddings: Any, n_results: Any, where: Any, where_document: Any,
                    include: Sequence[str]) -> QueryArguments:
    include = validation.include(include, QUERY_INCLUDE)
    n_results = validation.count_argument(n_results, "n_results", 1, optional=False)
    queries = validation.embeddings(query_embeddings, what="query_embeddings")
    return QueryArguments(queries, n_results, filters(where, where_document), include)
