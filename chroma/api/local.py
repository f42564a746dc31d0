"""``chroma.api.Local``: the API by direct calls into the DB and the index.

The DB is the truth; what a query needs besides it is derived from it per
collection (``chroma.index.cached``: the vector index, the label -> id map,
the metadata columns that ``where`` runs on), loaded on the first query and
kept current by every write made through this client afterwards. So a query
that asks for ids and distances only, with or without ``where``, makes no DB
statement; nor, once a collection's state is loaded, does ``count``, ``get``
(unless it has a ``where_document``) or a query's fetch of documents and
metadatas (their texts load on the first such read). Embeddings still come
from the DB, exactly as stored. A write holds its collection's lock across its DB
transaction and the queuing of its derived update, which runs behind it on a thread of its own
(``chroma.api.behind``) in commit order, while the caller's next batch goes to
the DB; whatever reads the derived state waits for the queued updates first,
so a query sees every write that has returned. Writes to other collections do
not wait for it: only the queuing takes the client-wide lock. Over a DB that other processes
write to (ClickHouse), a query first applies the batches they committed since
(``DB.changes_since``).
"""

from __future__ import annotations

import importlib
import threading
import time
import warnings
import weakref
from typing import Any, Optional, Sequence

import numpy as np

import chroma
from chroma import embedding, errors, validation
from chroma.api import API, CLIENT_CLOSED, RESET_DISABLED, arguments, shared
from chroma.api.behind import Behind
from chroma.collection import NO_EMBEDDING_FUNCTION, Collection
from chroma.config import Settings
from chroma.db import DB, UNCHANGED, Batch, CollectionRecord, IndexSnapshot, Records, WriteResult
from chroma.filters import Clause, split_documents
from chroma.index import Index
from chroma.index.cached import CachedCollection
from chroma.index.item_texts import ItemTexts
from chroma.index.label_ids import LabelIds
from chroma.index.metadata_columns import MetadataColumns
from chroma.index.saved import SavedIndexes
from chroma.locks import KeyedLocks
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
    def _cached(self) -> dict[str, CachedCollection]:
        return self._open_store().cached

    @property
    def _write_lock(self) -> threading.RLock:
        return self._open_store().write_lock

    @property
    def _collection_locks(self) -> KeyedLocks:
        """Held (before ``_write_lock``) by a collection's writes and the loads of its derived state."""
        return self._open_store().collection_locks

    @property
    def _behind(self) -> Behind:
        return self._open_store().behind

    @property
    def _saved(self) -> SavedIndexes:
        return self._open_store().saved

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
        loaded = list(store.cached.values())
        return Readiness(writable=problem is None, problem=problem, store=self._settings.db_impl,
                         collections=collections, loaded_collections=len(loaded),
                         loaded_items=sum(len(cached.ids) for cached in loaded), version=chroma.__version__)

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
        with self._write_lock:
            collection_id = self._db.delete_collection(name)
            self._cached.pop(collection_id, None)
            self._saved.forget(collection_id)

    def reset(self) -> bool:
        if not self._settings.allow_reset:
            raise errors.ResetDisabled(RESET_DISABLED)
        with self._write_lock:
            self._db.reset()
            self._cached.clear()
            self._saved.clear()
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
        with self._write_lock:
            record = self._db.update_collection(collection_id, name=new_name, metadata=new_metadata)
            cached = self._cached.get(collection_id)
            if cached is not None and new_metadata is not UNCHANGED:
                cached.apply_settings(record.metadata)  # hnsw:search_ef: from the next query on
        return record.name, record.metadata

    def _count(self, collection_id: str) -> int:
        cached = self._current(collection_id)  # derived-state reads (issue 15)
        return self._db.count(collection_id) if cached is None else len(cached.ids)

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

    # upkeep of the derived state
    def _load(self, record: CollectionRecord) -> Optional[CachedCollection]:
        """The collection's derived state, loaded if not cached; None while it has no items."""
        cached = self._cached.get(record.id)
        if cached is not None or record.dimension is None:
            return cached
        # no write may land between the load and the caching
        with self._collection_locks.hold(record.id), self._write_lock:
            self._settle()
            cached = self._cached.get(record.id)
            if cached is None:
                pending = self._saved.start_load(self._index_class, record.id)
                versions = self._db.versions(record.id)  # first: catching up from them covers what loads after
                labels, ids = self._db.load_ids(record.id)
                if not len(labels):
                    return None
                metadata = record.metadata or {}
                params = {k: v for k, v in metadata.items() if k.startswith("hnsw:")}
                label_ids = LabelIds(labels, ids)
                index = self._saved.finish_load(pending, record.id, params, self._db.state_marker(record.id),
                                                label_ids.labels())
                snapshot = None if index is not None or not self._db.shared else self._load_snapshot(record)
                if snapshot is not None:
                    index, versions = snapshot
                if index is None:
                    vector_labels, vectors = self._db.load_vectors(record.id)
                    index = self._index_class(vectors.shape[1], validation.space_of(metadata), params)
                    index.add(vector_labels, vectors)
                cached = self._cached[record.id] = CachedCollection(index, label_ids, versions)
                cached.apply_settings(metadata)  # a saved file or snapshot may predate a modify()
                if snapshot is not None:
                    self._catch_up(record.id)  # the batches committed after the snapshot was taken
        return cached

    def _load_snapshot(self, record: CollectionRecord) -> Optional[tuple[Index, frozenset]]:
        """The index snapshot a worker kept in the shared DB, and the versions it reflects; None if
        there is none, or it does not fit the collection (it is then rebuilt here)."""
        from_bytes = getattr(self._index_class, "from_bytes", None)
        snapshot = None if from_bytes is None else self._db.load_index_snapshot(record.id)
        if snapshot is None:
            return None
        try:
            index = from_bytes(snapshot.data)
        except errors.IndexFileError as exc:
            warnings.warn(f"index snapshot of collection {record.id} ignored, rebuilding: {exc}", RuntimeWarning,
                          stacklevel=3)
            return None
        if index.dim != record.dimension or index.space != validation.space_of(record.metadata or {}):
            return None
        return index, snapshot.versions

    def index_snapshot(self, collection_id: str) -> Optional[IndexSnapshot]:
        """This process's index of the collection, brought up to date, as an IndexSnapshot for a shared
        DB; None for an empty collection or an index that cannot serialize itself.

        Raises:
            CollectionNotFound: the collection does not exist.
        """
        record = self._db.get_collection_by_id(collection_id)
        with self._collection_locks.hold(collection_id), self._write_lock:
            self._load(record)
            self._catch_up(collection_id)
            cached = self._cached.get(collection_id)
            if cached is None or not hasattr(cached.index, "to_bytes"):
                return None
            return IndexSnapshot(versions=cached.versions, data=cached.index.to_bytes())

    def _metadata(self, collection_id: str, cached: CachedCollection) -> MetadataColumns:
        """The collection's metadata columns, loaded on first use."""
        if cached.metadata is None:
            with self._collection_locks.hold(collection_id), self._write_lock:
                self._settle()  # the columns load what the DB holds: no queued update may apply again
                if cached.metadata is None:
                    cached.metadata = MetadataColumns(*self._db.load_metadata(collection_id))
        return cached.metadata

    def _catch_up(self, collection_id: str) -> None:
        """Applies to the cached state the batches other processes committed since it was current."""
        cached = self._cached.get(collection_id)
        if cached is None or self._db.changes_since(collection_id, cached.versions) is None:
            return
        # again under the locks, so no write of ours interleaves
        with self._collection_locks.hold(collection_id), self._write_lock:
            self._settle()
            cached = self._cached.get(collection_id)
            if cached is None:
                return
            try:
                changes = self._db.changes_since(collection_id, cached.versions)
            except errors.CollectionNotFound:
                self._cached.pop(collection_id, None)
                raise
            if changes is not None:
                self._derived_step(collection_id, lambda: cached.apply_changes(changes))

    def _derived_step(self, collection_id: str, step: Any) -> None:
        """Runs ``step`` on the derived state of a collection whose DB change is committed (see
        ``SharedStore.derived_step``)."""
        self._open_store().derived_step(collection_id, step)

    def _settle(self) -> None:
        """Waits for the derived updates of the writes that have returned (see chroma.api.behind)."""
        self._open_store().settle()

    def _behind_write(self, collection_id: str, cached: CachedCollection, step: Any) -> None:
        """Queues ``step`` on ``cached``, the derived state of a collection whose DB change is
        committed (call under the write lock). A state dropped meanwhile is skipped: it is
        reloaded from the DB, this change included."""
        store = self._open_store()  # the step runs on the store whether or not this client is closed by then

        def run() -> None:
            if store.cached.get(collection_id) is cached:
                store.derived_step(collection_id, step)

        store.behind.submit(run)

    def _apply_to_loaded(self, collection_id: str, result: WriteResult) -> bool:
        """Queues a committed write for the collection's derived state if it is loaded (call under
        the write lock); False if it is not."""
        cached = self._cached.get(collection_id)
        if cached is None:
            return False
        self._behind_write(collection_id, cached, lambda: cached.apply_write(result))
        return True

    def _write(self, operation: str, collection_id: str, batch: Batch) -> None:
        with self._collection_locks.hold(collection_id):
            self._saved.forget(collection_id)  # before the write: a crash then leaves no stale file
            result = getattr(self._db, operation)(collection_id, batch)
            with self._write_lock:
                if not self._apply_to_loaded(collection_id, result):
                    # Loading now (the new batch included) spares the first query the wait.
                    self._derived_step(collection_id,
                                       lambda: self._load(self._db.get_collection_by_id(collection_id)))

    # writes
    def _add(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any) -> None:
        batch = arguments.batch(ids, embeddings, metadatas, documents)
        if batch.embeddings is None:
            raise errors.InvalidArgument(NO_EMBEDDING_FUNCTION if batch.documents else "add needs embeddings")
        self._write("add", collection_id, batch)

    def _update(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any) -> None:
        self._write("update", collection_id, arguments.batch(ids, embeddings, metadatas, documents))

    def _upsert(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any) -> None:
        self._write("upsert", collection_id, arguments.batch(ids, embeddings, metadatas, documents))

    # the default model, where it runs in this process
    def write_from_remote(self, operation: str, collection_id: str, ids: Any, embeddings: Any, metadatas: Any,
                          documents: Any) -> None:
        """``operation`` (add, update or upsert) as a server received it: documents that came
        without embeddings (from a client with no function of its own, or curl) are embedded here
        by the default model when it is on. In-process callers embed in their Collection, whose
        ``embedding_function="none"`` then leaves documents alone."""
        embeddings = self._embedded_here(collection_id, ids, embeddings, documents, required=operation == "add")
        getattr(self, f"_{operation}")(collection_id, ids, embeddings, metadatas, documents)

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
            with self._write_lock:
                self._db.update_collection(collection_id, name=UNCHANGED,
                                           metadata={**metadata, embedding.MODEL_METADATA_KEY: embedding.MODEL_ID})
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
        with self._collection_locks.hold(collection_id):
            if ids == []:
                self._db.count(collection_id)  # still report a missing collection
                return
            self._saved.forget(collection_id)
            labels = self._db.delete(collection_id, ids, clause)
            with self._write_lock:
                cached = self._cached.get(collection_id)
                if cached is not None:
                    self._behind_write(collection_id, cached, lambda: cached.apply_delete(labels))

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
        records = self._derived_get(collection_id, checked)  # derived-state reads (issue 15)
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

    def _query_checked(self, collection_id: str, checked: arguments.QueryArguments) -> QueryResult:
        """``_query`` with its arguments checked."""
        queries, include = checked.queries, checked.include
        self._settle()
        self._catch_up(collection_id)
        # A cached state answers for its collection: this client's writes keep
        # it current, and _catch_up applies other processes' writes.
        cached = self._cached.get(collection_id)
        record = self._db.get_collection_by_id(collection_id) if cached is None else None
        dimension = cached.index.dim if cached is not None else record.dimension
        check_query_dimension(queries, dimension)
        if cached is None and dimension is not None:
            cached = self._load(record)
        if cached is None:
            empty: list = [[]] * len(queries)
            return _query_result(empty, empty, None, include, dimension or 0)
        fetch = [name for name in include if name != "distances"]
        metadata_clause, document_clause = split_documents(checked.where)
        for _ in range(_QUERY_ATTEMPTS):
            allowed = self._allowed(collection_id, cached, metadata_clause, document_clause)
            labels, distances = _search(cached.index, queries, checked.n_results, allowed, self._settings.num_threads)
            if fetch:
                wanted = labels[0] if len(labels) == 1 else np.unique(labels)  # one query's labels are distinct
                records = self._records(collection_id, cached, wanted, fetch)
                complete = len(records.labels) == len(wanted)
            else:
                # ids and distances only: the label -> id map answers, without a DB statement
                ids = cached.ids.ids_of(labels.ravel())
                complete = None not in ids
            if complete:
                break
            # A delete committed between the search and the fetch: wait until it
            # has also left the index, then search again, so that a concurrent
            # delete never makes an answer shorter than the collection allows.
            with self._collection_locks.hold(collection_id):
                pass
            self._settle()
        if fetch:
            return _query_result(labels.tolist(), distances.tolist(), records, include, dimension)
        return _ids_result(labels.tolist(), distances.tolist(), ids, include)

    # --- derived-state reads (issue 15): get, count and query's fetch answered without a DB statement
    def _current(self, collection_id: str) -> Optional[CachedCollection]:
        """The collection's derived state if it is loaded, brought up to every write that returned
        (other processes' too); None if it is not loaded (the DB answers then)."""
        self._settle()
        self._catch_up(collection_id)
        return self._cached.get(collection_id)

    def _texts(self, collection_id: str, cached: CachedCollection) -> ItemTexts:
        """The collection's documents and metadatas, loaded on first use."""
        if cached.texts is None:
            with self._collection_locks.hold(collection_id), self._write_lock:
                self._settle()  # the texts load what the DB holds: no queued update may apply again
                if cached.texts is None:
                    cached.texts = ItemTexts.from_columns(*self._db.load_texts(collection_id))
        return cached.texts

    def _records(self, collection_id: str, cached: CachedCollection, labels: np.ndarray,
                 include: Sequence[str]) -> Records:
        """The items of ``labels`` that are stored, in that order, with the fields of ``include``:
        documents and metadatas from the derived state, embeddings (as stored) from the DB."""
        if "documents" in include or "metadatas" in include:
            self._texts(collection_id, cached)
        return cached.records(labels, include,
                              lambda found: self._db.get_by_labels(collection_id, found, ["embeddings"]))

    def _derived_get(self, collection_id: str, checked: arguments.GetArguments) -> Optional[Records]:
        """``get`` from the derived state; None when the DB answers (the state is not loaded, or
        ``where_document`` needs the documents' SQL)."""
        metadata_clause, document_clause = split_documents(checked.where)
        cached = self._current(collection_id) if document_clause is None else None
        if cached is None:
            return None
        allowed = None if metadata_clause is None else self._metadata(collection_id, cached).matching(metadata_clause)
        labels = cached.select(checked.ids, allowed, checked.limit, checked.offset)
        return self._records(collection_id, cached, labels, checked.include)
    # --- end of derived-state reads

    def _allowed(self, collection_id: str, cached: CachedCollection, metadata_clause: Optional[Clause],
                 document_clause: Optional[Clause]) -> Optional[np.ndarray]:
        """The labels a filtered query may return (None: no filter).

        ``where`` runs over the metadata columns, ``where_document`` in the DB.
        """
        allowed = None
        if metadata_clause is not None:
            allowed = self._metadata(collection_id, cached).matching(metadata_clause)
        if document_clause is not None:
            with_documents = self._db.select_labels(collection_id, document_clause)
            allowed = with_documents if allowed is None else np.intersect1d(allowed, with_documents)
        return allowed


def _search(index: Index, queries: np.ndarray, n_results: int, allowed: Optional[np.ndarray],
            num_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` with ``n_results`` first capped at the candidates' count, so no index
    sizes its results by what was asked (``n_results`` may be near 2**63): fewer matches give
    fewer results, and none give empty rows."""
    k = min(n_results, len(index) if allowed is None else len(allowed))
    if k == 0:
        return np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0), np.float32)
    return index.search(queries, k, allowed, num_threads)


def check_query_dimension(queries: np.ndarray, dimension: Optional[int]) -> None:
    """Raises InvalidDimensionError if the queries' rows do not have the collection's dimension
    (None: the collection has no vectors yet, anything goes)."""
    if dimension is not None and queries.shape[1] != dimension:
        raise errors.InvalidDimensionError(
            f"query dimension {queries.shape[1]} does not match the collection's dimension {dimension}"
        )


_QUERY_ATTEMPTS = 5
"""Searches a query may make while concurrent deletes keep removing its hits."""


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
