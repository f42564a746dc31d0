"""``chroma.api.Local``: the API by direct calls into the DB and the index.

Local validates, writes to the DB (the truth), and tells the store's engine
what it committed; the engine (``chroma.engine``) owns everything derived from
the DB per collection (the vector index, the label -> id map, the metadata and
text columns) and answers from it. So once a collection's state is loaded, a
query with any ``include``, ``count`` and ``get`` (unless it has a
``where_document``) make no DB statement, except to fetch embeddings exactly
as stored. Clients of one store in one process share its DB and its engine
(``chroma.api.shared``).
"""

from __future__ import annotations

import importlib
import time
import weakref
from typing import Any, Optional, Sequence

import numpy as np

import chroma
from chroma import embedding, errors, validation
from chroma.api import API, CLIENT_CLOSED, RESET_DISABLED, arguments, shared
from chroma.collection import NO_EMBEDDING_FUNCTION, Collection
from chroma.config import Settings
from chroma.db import DB, UNCHANGED, Batch, CollectionRecord, IndexSnapshot, StagedWrite
from chroma.engine import Engine, PrepareLoad
from chroma.types import EmbeddingFunction, GetResult, QueryResult, Readiness


def default_embedding_function(setting: Optional[str]) -> Optional[EmbeddingFunction]:
    """The function of the ``embedding_function`` setting: the default model when unset,
    none for ``"none"``, else the callable it names."""
    if setting is None:
        return embedding.DefaultEmbeddingFunction()
    if setting == embedding.DISABLED:
        return None
    return load_embedding_function(setting)


def load_embedding_function(path: str) -> EmbeddingFunction:
    """The callable named by ``module:name`` (a class is instantiated with no arguments)."""
    module_name, _, attr = path.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise errors.ConfigurationError(f"setting embedding_function={path!r} cannot be loaded: {exc}") from None
    return target() if isinstance(target, type) else target


class Local(API):
    """The whole API in this process, over the configured ``chroma.DB``."""

    def __init__(self, settings: Settings, db: Optional[DB] = None) -> None:
        """A client of the store ``settings`` name, shared with the other clients of that store in
        this process (see ``chroma.api.shared``); over ``db`` instead, one of its own (``db`` stays
        the caller's to close)."""
        self._settings = settings
        self._default_embedding_function = default_embedding_function(settings.embedding_function)
        store = shared.acquire(settings) if db is None else shared.private(settings, db)
        self._store: Optional[shared.SharedStore] = store
        self._index_class = store.index_class
        # A client dropped without close() gives its reference back when it is collected.
        self._release = weakref.finalize(self, shared.release, store)

    # The parts of the shared store this client works with; each raises ClientClosed once closed.
    def _open_store(self) -> shared.SharedStore:
        store = self._store
        if store is None or store.closed:
            raise errors.ClientClosed(CLIENT_CLOSED)
        return store

    @property
    def _db(self) -> DB:
        return self._open_store().db

    @property
    def _engine(self) -> Engine:
        return self._open_store().engine

    @property
    def closed(self) -> bool:
        return self._store is None or self._store.closed

    # collections
    def _collection(self, record: CollectionRecord, embedding_function: Optional[EmbeddingFunction]) -> Collection:
        if embedding_function == embedding.DISABLED:
            return Collection(self, record.id, record.name, record.metadata, None)
        return Collection(self, record.id, record.name, record.metadata,
                          embedding_function or self._default_embedding_function)

    def heartbeat(self) -> int:
        self._open_store()
        return time.time_ns()

    def version(self) -> str:
        self._open_store()
        return chroma.__version__

    def ready(self) -> Readiness:
        store = self._open_store()
        problem = store.db.write_problem()
        try:
            collections: Optional[int] = len(store.db.list_collections())
        except errors.ClientClosed:
            raise
        except Exception:  # a database server down fails with its driver's own errors
            if problem is None:
                raise
            collections = None  # the failure problem names already
        loaded_collections, loaded_items = store.engine.loaded_sizes()
        return Readiness(writable=problem is None, problem=problem, store=self._settings.db_impl,
                         collections=collections, loaded_collections=loaded_collections,
                         loaded_items=loaded_items, version=chroma.__version__)

    def list_collections(self) -> list[Collection]:
        return [self._collection(record, None) for record in self._db.list_collections()]

    def create_collection(
        self,
        name: str,
        metadata: Optional[dict] = None,
        get_or_create: bool = False,
        embedding_function: Optional[EmbeddingFunction] = None,
    ) -> Collection:
        validation.collection_name(name)
        metadata = validation.collection_metadata(metadata)
        get_or_create = validation.flag(get_or_create, "get_or_create")
        try:
            record = self._db.create_collection(name, metadata)
        except errors.CollectionExists:
            if not get_or_create:
                raise
            record = self._db.get_collection(name)
        return self._collection(record, embedding_function)

    def get_collection(self, name: str, embedding_function: Optional[EmbeddingFunction] = None) -> Collection:
        validation.name_argument(name)
        return self._collection(self._db.get_collection(name), embedding_function)

    def delete_collection(self, name: str) -> None:
        validation.name_argument(name)
        self._engine.dropped(lambda: self._db.delete_collection(name))

    def reset(self) -> bool:
        if not self._settings.allow_reset:
            raise errors.ResetDisabled(RESET_DISABLED)
        self._engine.cleared(self._db.reset)
        return True

    def _modify(self, collection_id: str, name: Optional[str], metadata: Optional[dict]) -> tuple[str, Optional[dict]]:
        new_name = UNCHANGED if name is None else validation.collection_name(name)
        new_metadata = UNCHANGED
        if metadata is not None:
            new_metadata = validation.collection_metadata(metadata)
            stored = self._db.get_collection_by_id(collection_id).metadata or {}
            space = validation.space_of(stored)
            if new_metadata.get("hnsw:space", space) != space:
                raise errors.InvalidArgument(
                    f"hnsw:space cannot change after creation (it is {space!r}, got {new_metadata['hnsw:space']!r})"
                )
            if "hnsw:space" in stored:
                new_metadata.setdefault("hnsw:space", space)
            if embedding.MODEL_METADATA_KEY in stored:  # the vectors' model stays recorded
                new_metadata.setdefault(embedding.MODEL_METADATA_KEY, stored[embedding.MODEL_METADATA_KEY])
        record = self._engine.settings_changed(
            lambda: self._db.update_collection(collection_id, name=new_name, metadata=new_metadata))
        return record.name, record.metadata

    def _count(self, collection_id: str) -> int:
        count = self._engine.count(collection_id)
        return self._db.count(collection_id) if count is None else count

    def interrupt(self) -> None:
        """Makes the DB statements running now fail soon (see ``chroma.DB.interrupt``)."""
        self._db.interrupt()

    def close(self) -> None:
        """Gives back this client's reference on its store; the last client of a store closes it
        (saving the loaded indexes of a persistent DB, see chroma.index.saved, and releasing
        the directory)."""
        if self._store is not None:
            self._store = None
            self._release()

    @property
    def settings(self) -> Settings:
        """The settings this client was made with."""
        return self._settings

    # what Celery's workers do for a client (chroma.worker)
    def embed_for_write(self, collection_id: str, ids: Any, documents: Any, required: bool) -> Any:
        """The vectors this client's own embedding function gives a write's documents, computed as
        a Collection of it would (None where it gives none)."""
        collection = Collection(self, collection_id, "", None, self._default_embedding_function)
        return collection._write_embeddings(ids, None, documents, required)

    def stage_rows(self, staged: StagedWrite, chunk: Batch) -> None:
        """Writes one chunk of a batch planned by another process (``DB.stage_rows``)."""
        self._db.stage_rows(staged, range(len(chunk.ids)), chunk)

    def save_index_snapshot(self, collection_id: str) -> Optional[int]:
        """Keeps this process's index of the collection, brought up to date, as a snapshot in the
        shared DB; the number of batch versions it reflects, or None when there is nothing to keep."""
        snapshot = self.index_snapshot(collection_id)
        if snapshot is None:
            return None
        self._db.save_index_snapshot(collection_id, snapshot)
        return len(snapshot.versions)

    def index_snapshot(self, collection_id: str) -> Optional[IndexSnapshot]:
        """This process's index of the collection, brought up to date, as an IndexSnapshot for a shared
        DB; None for an empty collection or an index that cannot serialize itself.

        Raises:
            CollectionNotFound: the collection does not exist.
        """
        return self._engine.snapshot(collection_id)

    def _write(self, operation: str, collection_id: str, batch: Batch) -> None:
        engine = self._engine
        with engine.writing(collection_id):
            engine.committed(collection_id, getattr(self._db, operation)(collection_id, batch))

    # writes
    def _add(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
             embed_missing: bool = False) -> None:
        if embed_missing:
            embeddings = self._embedded_here(collection_id, ids, embeddings, documents, required=True)
        batch = arguments.batch(ids, embeddings, metadatas, documents)
        if batch.embeddings is None:
            raise errors.InvalidArgument(NO_EMBEDDING_FUNCTION if batch.documents else "add needs embeddings")
        self._write("add", collection_id, batch)

    def _update(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
                embed_missing: bool = False) -> None:
        if embed_missing:
            embeddings = self._embedded_here(collection_id, ids, embeddings, documents, required=False)
        self._write("update", collection_id, arguments.batch(ids, embeddings, metadatas, documents))

    def _upsert(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
                embed_missing: bool = False) -> None:
        if embed_missing:
            embeddings = self._embedded_here(collection_id, ids, embeddings, documents, required=False)
        self._write("upsert", collection_id, arguments.batch(ids, embeddings, metadatas, documents))

    # the default model, where it runs in this process
    def write_from_remote(self, operation: str, collection_id: str, ids: Any, embeddings: Any, metadatas: Any,
                          documents: Any, embed_missing: Any = True) -> None:
        """``operation`` (add, update or upsert) as a server received it. Documents that came
        without embeddings are embedded here by the default model when it is on, unless the client
        said ``embed_missing=false`` (its collection's ``embedding_function="none"``). A body
        without the field (curl) asks for the model. In-process callers embed in their Collection."""
        embed_missing = validation.flag(embed_missing, "embed_missing")
        getattr(self, f"_{operation}")(collection_id, ids, embeddings, metadatas, documents,
                                       embed_missing=embed_missing)

    def _embedded_here(self, collection_id: str, ids: Any, embeddings: Any, documents: Any, required: bool) -> Any:
        """The embeddings of a write that arrived with documents and no embeddings (from a server's
        client without a function, or curl): computed by the default model when it is on, bounded
        by ``max_embedding_tokens``; else as given."""
        if (embeddings is not None or documents is None
                or not isinstance(self._default_embedding_function, embedding.DefaultEmbeddingFunction)):
            return embeddings
        collection = Collection(self, collection_id, "", None, self._default_embedding_function)
        return collection._write_embeddings(ids, None, documents, required,
                                            max_tokens=self._settings.max_embedding_tokens or None)

    def _embed_default(self, collection_id: str, texts: list[str], write: bool,
                       max_tokens: Optional[int] = None) -> np.ndarray:
        """The default model's vectors of ``texts``, refused on a collection whose vectors came from
        elsewhere; the first documents it embeds record the model in the collection's metadata."""
        record = self._check_default_model(collection_id, "documents" if write else "query_texts")
        metadata = record.metadata or {}
        vectors = embedding.embed(texts, max_tokens=max_tokens)
        if write and embedding.MODEL_METADATA_KEY not in metadata:
            self._engine.settings_changed(lambda: self._db.update_collection(
                collection_id, name=UNCHANGED, metadata={**metadata, embedding.MODEL_METADATA_KEY: embedding.MODEL_ID}))
        return vectors

    def _check_default_model(self, collection_id: str, what: str) -> CollectionRecord:
        """The collection's record, if the default model may embed its ``what``.

        Raises:
            EmbeddingFunctionMismatch: its vectors came from another model, or were given.
        """
        record = self._db.get_collection_by_id(collection_id)
        recorded = (record.metadata or {}).get(embedding.MODEL_METADATA_KEY)
        if recorded is None and record.dimension is not None or recorded not in (None, embedding.MODEL_ID):
            source = f"the model {recorded}" if recorded else "embeddings given or another embedding function"
            raise errors.EmbeddingFunctionMismatch(
                f"collection {record.name!r} holds vectors from {source}, so the default model "
                f"({embedding.MODEL_ID}) cannot embed its {what}: a mix would give wrong answers; pass "
                "embeddings=... or query_embeddings=..., or the collection's own embedding_function")
        return record

    def _query_texts(self, collection_id: str, query_texts: list[str], n_results: Any, where: Any,
                     where_document: Any, include: Sequence[str]) -> QueryResult:
        if not isinstance(self._default_embedding_function, embedding.DefaultEmbeddingFunction):
            return super()._query_texts(collection_id, query_texts, n_results, where, where_document, include)
        queries = self._embed_default(collection_id, query_texts, write=False,
                                      max_tokens=self._settings.max_embedding_tokens or None)
        return self._query(collection_id, queries, n_results, where, where_document, include)

    def _delete(self, collection_id: str, ids: Any, where: Any, where_document: Any) -> None:
        ids, clause = arguments.delete_arguments(ids, where, where_document)
        if ids == []:
            self._db.count(collection_id)  # still report a missing collection
            return
        engine = self._engine
        with engine.writing(collection_id):
            engine.deleted(collection_id, self._db.delete(collection_id, ids, clause))

    # reads
    def _get(
        self,
        collection_id: str,
        ids: Any,
        where: Any,
        where_document: Any,
        limit: Any,
        offset: Any,
        include: Sequence[str],
    ) -> GetResult:
        checked = arguments.get_arguments(ids, where, where_document, limit, offset, include)
        records = self._engine.get(collection_id, checked.ids, checked.where, checked.limit, checked.offset,
                                   checked.include)
        if records is None:
            records = self._db.get(collection_id, checked.ids, checked.where, checked.limit, checked.offset,
                                   checked.include)
        return GetResult(
            ids=records.ids,
            embeddings=records.embeddings,
            metadatas=records.metadatas,
            documents=records.documents,
        )

    def _query(
        self,
        collection_id: str,
        query_embeddings: Any,
        n_results: Any,
        where: Any,
        where_document: Any,
        include: Sequence[str],
    ) -> QueryResult:
        return self._query_checked(
            collection_id, arguments.query_arguments(query_embeddings, n_results, where, where_document, include))

    def _query_checked(self, collection_id: str, checked: arguments.QueryArguments,
                       prepare_load: Optional[PrepareLoad] = None) -> QueryResult:
        """``_query`` with its arguments checked (``prepare_load``: see ``chroma.engine.PrepareLoad``)."""
        answer = self._engine.query(collection_id, checked.queries, checked.n_results, checked.where,
                                    checked.include, self._settings.num_threads, prepare_load)
        if answer.ids is None:
            return _query_result(answer.labels.tolist(), answer.distances.tolist(), answer.records, checked.include,
                                 answer.dimension)
        return _ids_result(answer.labels.tolist(), answer.distances.tolist(), answer.ids, checked.include)



def _ids_result(labels: list, distances: list, ids: list, include: Sequence[str]) -> QueryResult:
    """Per query lists from ``(labels, distances)`` rows and the id of every label, row after row
    (``None`` for an item a delete removed after the last attempt, which is dropped)."""
    result: QueryResult = {"ids": [], "embeddings": None, "metadatas": None, "documents": None,
                           "distances": [] if "distances" in include else None}
    width = len(labels[0]) if labels else 0
    for row, (row_labels, row_distances) in enumerate(zip(labels, distances)):
        row_ids = ids[row * width : (row + 1) * width]
        if _has_ties(row_distances):
            row_distances, row_labels, row_ids = zip(*sorted(zip(row_distances, row_labels, row_ids)))
        if None in row_ids:
            kept = [(i, d) for i, d in zip(row_ids, row_distances) if i is not None]
            row_ids, row_distances = [i for i, _ in kept], [d for _, d in kept]
        result["ids"].append(list(row_ids))
        if result["distances"] is not None:
            result["distances"].append(list(row_distances))
    return result


def _has_ties(distances: Sequence[float]) -> bool:
    """Whether a row (sorted ascending) holds equal distances, which must come back in insertion
    order, i.e. by label."""
    return any(a == b for a, b in zip(distances, distances[1:]))


def _query_result(labels: list, distances: list, records: Any, include: Sequence[str], dimension: int) -> QueryResult:
    """Per query lists from ``(labels, distances)`` rows (lists of ints and floats) and the fetched records."""
    position = {} if records is None else {label: i for i, label in enumerate(records.labels.tolist())}
    result: QueryResult = {"ids": [], "embeddings": None, "metadatas": None, "documents": None, "distances": None}
    for name in include:
        result[name] = []
    for row_labels, row_distances in zip(labels, distances):
        if _has_ties(row_distances):
            row_distances, row_labels = zip(*sorted(zip(row_distances, row_labels)))
        # a label whose row a delete removed after the last attempt is dropped
        keep = [(position[l], d) for l, d in zip(row_labels, row_distances) if l in position]
        rows = [k for k, _ in keep]
        result["ids"].append([records.ids[r] for r in rows])
        if "embeddings" in include:
            result["embeddings"].append(records.embeddings[rows] if rows else np.empty((0, dimension), np.float32))
        if "metadatas" in include:
            result["metadatas"].append([records.metadatas[r] for r in rows])
        if "documents" in include:
            result["documents"].append([records.documents[r] for r in rows])
        if "distances" in include:
            result["distances"].append([d for _, d in keep])
    return result
