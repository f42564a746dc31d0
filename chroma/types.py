"""Types of the user-facing API's values."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

MetadataValue = Union[str, int, float, bool]
Metadata = Mapping[str, MetadataValue]
Where = Dict[str, Any]
WhereDocument = Dict[str, Any]
Embeddings = Union[npt.ArrayLike, Sequence[Sequence[float]]]
EmbeddingFunction = Callable[[List[str]], Any]
"""Any callable from a list of texts to one vector per text (list of lists or 2-D array)."""

GET_INCLUDE = ("embeddings", "metadatas", "documents")
QUERY_INCLUDE = GET_INCLUDE + ("distances",)


class GetResult(TypedDict):
    ids: List[str]
    embeddings: Optional[np.ndarray]
    metadatas: Optional[List[Optional[Dict[str, MetadataValue]]]]
    documents: Optional[List[Optional[str]]]


class QueryResult(TypedDict):
    ids: List[List[str]]
    embeddings: Optional[List[np.ndarray]]
    metadatas: Optional[List[List[Optional[Dict[str, MetadataValue]]]]]
    documents: Optional[List[List[Optional[str]]]]
    distances: Optional[List[List[float]]]


class Readiness(TypedDict):
    """``client.ready()``: whether the store takes writes, and what the serving process holds."""

    writable: bool
    """False when a write would fail now (the store's disk is read-only or low on space, the
    database server does not answer or refuses writes); ``problem`` says why."""
    problem: Optional[str]
    """Why the store takes no writes, with what to do; None when it does."""
    store: str
    """The store's kind, the ``db_impl`` setting (``duckdb``, ``persistent_duckdb``, ...)."""
    collections: Optional[int]
    """How many collections the store holds; None when it cannot be read either."""
    loaded_collections: int
    """Collections whose query state (vector index, ids) is loaded in memory: their next query
    needs no load."""
    loaded_items: int
    """Items in those loaded collections."""
    version: str
    """The chroma version of the process that answers."""
