"""What every client of a chroma server shares, whatever its wire.

The base class checks the whole configuration as every mode does, loads the
embedding function the settings name (it runs in the caller's process; with
none named, the server's default model embeds documents and query texts, so
a thin client needs no model) and runs Local's checks of collection-level
arguments before a request leaves; per-collection arguments are checked by
``chroma.api.arguments``. Every operation is written here once, after the table of
:mod:`chroma.protocol.operations`: its checks, then one :meth:`Remote._call`, which a
subclass implements for its wire (and the result's decoding, by the table's kind).
"""

from __future__ import annotations

import abc
import json
from typing import Any, Optional, Sequence

import numpy as np

from chroma import embedding, errors, registry, validation, wire
from chroma.api import API, CLIENT_CLOSED, RESET_DISABLED, arguments
from chroma.collection import Collection
from chroma.config import Settings
from chroma.protocol import operations as ops
from chroma.types import EmbeddingFunction, GetResult, QueryResult, Readiness


def to_json(value: Any) -> bytes:
    """``value`` as compact JSON; numpy arrays and scalars become lists and numbers.

    Raises:
        InvalidArgument: something JSON cannot carry.
    """
    try:
        return json.dumps(value, default=numpy_to_json, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise errors.InvalidArgument(str(exc)) from None


def numpy_to_json(value: Any) -> Any:
    """``json.dumps``' fallback: numpy arrays and scalars as lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} cannot be sent as JSON")


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Remote(API):
    """The parts of a server's client that do not depend on the wire."""

    def __init__(self, settings: Settings) -> None:
        # The whole configuration is checked as in every mode, even the parts
        # only the server uses.
        registry.check("db_impl", settings.db_impl)
        registry.check("index_impl", settings.index_impl)
        self._settings = settings
        self._closed = False
        self._default_embedding_function: Optional[EmbeddingFunction] = None
        # Unset: the server's default model embeds documents and query texts, so this
        # process needs no model.
        self._server_default_model = settings.embedding_function is None
        if settings.embedding_function and settings.embedding_function != embedding.DISABLED:
            from chroma.api.local import load_embedding_function

            self._default_embedding_function = load_embedding_function(settings.embedding_function)

    def _collection(self, data: dict, embedding_function: Optional[EmbeddingFunction]) -> Collection:
        """A handle on the collection a server described as ``{"id", "name", "metadata"}``."""
        if embedding_function == embedding.DISABLED:
            return Collection(self, data["id"], data["name"], data["metadata"], None)
        function = embedding_function or self._default_embedding_function
        return Collection(self, data["id"], data["name"], data["metadata"], function,
                          default_model=function is None and self._server_default_model)

    @staticmethod
    def _creation(name: Any, metadata: Any) -> Optional[dict]:
        """Local's checks of ``create_collection``'s arguments; the metadata to send."""
        validation.collection_name(name)
        return validation.collection_metadata(metadata)

    @staticmethod
    def _modification(name: Any, metadata: Any) -> Optional[dict]:
        """Local's checks of ``modify``'s arguments; the metadata to send."""
        if name is not None:
            validation.collection_name(name)
        return None if metadata is None else validation.collection_metadata(metadata)

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        """Raises ClientClosed once :meth:`close` was called."""
        if self._closed:
            raise errors.ClientClosed(CLIENT_CLOSED)

    def _check_reset(self) -> None:
        """Both sides must allow ``reset()``: this client's setting first, then the server's."""
        if not self._settings.allow_reset:
            raise errors.ResetDisabled(RESET_DISABLED)

    @abc.abstractmethod
    def _call(self, operation: ops.Operation, values: dict) -> Any:
        """Sends ``operation`` with ``values`` (by the names of its arguments) over this client's
        wire; returns its result, decoded as the operation's ``result`` says. Raises the error
        the server answered (:mod:`chroma.protocol.error_map`), or ServerUnavailable /
        OutcomeUnknown for a call that got no answer (by the operation's ``idempotent``)."""

    # server
    def heartbeat(self) -> int:
        return int(self._call(ops.HEARTBEAT, {})["heartbeat"])

    def version(self) -> str:
        return self._call(ops.VERSION, {})["version"]

    def limits(self) -> dict:
        """The server's bounds: ``max_request_bytes``, ``max_json_request_bytes``, ``max_batch_size``,
        ``max_n_results``, ``max_response_rows``, ``max_embedding_tokens`` (0: none)."""
        return self._call(ops.LIMITS, {})

    def ready(self) -> Readiness:
        return self._call(ops.READY, {})

    # collections
    def list_collections(self) -> list[Collection]:
        return [self._collection(data, None) for data in self._call(ops.LIST_COLLECTIONS, {})]

    def create_collection(self, name: str, metadata: Optional[dict] = None, get_or_create: bool = False,
                          embedding_function: Optional[EmbeddingFunction] = None) -> Collection:
        metadata = self._creation(name, metadata)
        get_or_create = validation.flag(get_or_create, "get_or_create")
        data = self._call(ops.CREATE_COLLECTION, {"name": name, "metadata": metadata, "get_or_create": get_or_create})
        return self._collection(data, embedding_function)

    def get_collection(self, name: str, embedding_function: Optional[EmbeddingFunction] = None) -> Collection:
        validation.name_argument(name)
        return self._collection(self._call(ops.GET_COLLECTION, {"name": name}), embedding_function)

    def delete_collection(self, name: str) -> None:
        validation.name_argument(name)
        self._call(ops.DELETE_COLLECTION, {"name": name})

    def reset(self) -> bool:
        self._check_reset()
        self._call(ops.RESET, {})
        return True

    # per collection
    def _modify(self, collection_id: str, name: Optional[str], metadata: Optional[dict]) -> tuple[str, Optional[dict]]:
        metadata = self._modification(name, metadata)
        data = self._call(ops.MODIFY, {"collection_id": collection_id, "name": name, "metadata": metadata})
        return data["name"], data["metadata"]

    def _count(self, collection_id: str) -> int:
        return int(self._call(ops.COUNT, {"collection_id": collection_id})["count"])

    def _write(self, operation: ops.Operation, collection_id: str, ids: Any, embeddings: Any, metadatas: Any,
               documents: Any, embed_missing: bool) -> None:
        # Local's checks; the checked values are sent.
        batch = arguments.batch(ids, embeddings, metadatas, documents)
        vectors: Any = batch.embeddings
        if vectors is not None and batch.missing is not None:
            vectors = wire.Gapped(vectors, batch.missing)
        self._call(operation, {"collection_id": collection_id, "ids": batch.ids, "embeddings": vectors,
                               "metadatas": batch.metadatas, "documents": batch.documents,
                               "embed_missing": embed_missing})

    def _add(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
             embed_missing: bool = False) -> None:
        self._write(ops.ADD, collection_id, ids, embeddings, metadatas, documents, embed_missing)

    def _update(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
                embed_missing: bool = False) -> None:
        self._write(ops.UPDATE, collection_id, ids, embeddings, metadatas, documents, embed_missing)

    def _upsert(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
                embed_missing: bool = False) -> None:
        self._write(ops.UPSERT, collection_id, ids, embeddings, metadatas, documents, embed_missing)

    def _delete(self, collection_id: str, ids: Any, where: Any, where_document: Any) -> None:
        ids, _ = arguments.delete_arguments(ids, where, where_document)
        self._call(ops.DELETE, {"collection_id": collection_id, "ids": ids, "where": where,
                                "where_document": where_document})

    def _get(self, collection_id: str, ids: Any, where: Any, where_document: Any, limit: Any, offset: Any,
             include: Sequence[str]) -> GetResult:
        checked = arguments.get_arguments(ids, where, where_document, limit, offset, include)
        return self._call(ops.GET, {"collection_id": collection_id, "ids": checked.ids, "where": where,
                                    "where_document": where_document, "limit": checked.limit,
                                    "offset": checked.offset, "include": list(checked.include)})

    def _query(self, collection_id: str, query_embeddings: Any, n_results: Any, where: Any, where_document: Any,
               include: Sequence[str]) -> QueryResult:
        checked = arguments.query_arguments(query_embeddings, n_results, where, where_document, include)
        return self._call(ops.QUERY, {"collection_id": collection_id, "query_embeddings": checked.queries,
                                      "query_texts": None, "n_results": checked.n_results, "where": where,
                                      "where_document": where_document, "include": list(checked.include)})

    def _query_texts(self, collection_id: str, query_texts: list[str], n_results: Any, where: Any,
                     where_document: Any, include: Sequence[str]) -> QueryResult:
        # The server's default model embeds the texts (its checks run there).
        return self._call(ops.QUERY, {"collection_id": collection_id, "query_embeddings": None,
                                      "query_texts": query_texts, "n_results": n_results, "where": where,
                                      "where_document": where_document, "include": list(include)})
