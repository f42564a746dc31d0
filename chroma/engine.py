"""The one owner of a store's derived state: what is built from the DB per collection.

For each collection: the vector index, the label -> id map, the metadata columns
that ``where`` runs on and the documents and metadatas that reads return
(``chroma.index.cached``). The DB is the truth: this state is loaded from it on
a collection's first query, kept current by the writes committed through this
process (applied behind them, in commit order, on a thread of their own:
``chroma.api.behind``), brought up to other processes' writes through
``DB.changes_since``, and dropped, to be loaded again, whenever an update of it
fails. A read waits for the updates of every write that has returned, so it
sees them all.

Callers (``chroma.api.Local`` and its subclasses) validate, write to the DB
inside :meth:`Engine.writing`, and tell the engine what they committed; they
never reach into the state itself.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from chroma import errors, heap, validation
from chroma.db import DB, CollectionRecord, IndexSnapshot, Records, WriteResult
from chroma.filters import Clause, Contains, Logical, reads_document, split_documents
from chroma.index import Index, Persistent
from chroma.index.cached import CachedCollection
from chroma.index.item_texts import ItemTexts
from chroma.index.label_ids import LabelIds
from chroma.index.metadata_columns import MetadataColumns
from chroma.index.saved import SavedIndexes
from chroma.locks import KeyedLocks
from chroma.api.behind import Behind

PrepareLoad = Callable[[CollectionRecord], None]
"""Called before a collection's state is loaded for a query, with its record (``Celery`` has a
worker build the index then, and leave a snapshot in the DB that the load takes)."""

QUERY_ATTEMPTS = 5
"""Searches a query may make while concurrent deletes keep removing its hits."""


class Engine:
    """The derived state of every collection of one store (see the module's docstring)."""

    def __init__(self, db: DB, index_class: type, saved_indexes_directory: Optional[str]) -> None:
        self._db = db
        self._index_class = index_class
        self._states: dict[str, CachedCollection] = {}
        self._write_lock = threading.RLock()
        """Orders the queuing of derived updates (commit order) against loads and drops."""
        self._collection_locks = KeyedLocks()
        """Held (before ``_write_lock``) by a collection's writes and the loads of its state."""
        self._behind = Behind()
        self._saved = SavedIndexes(saved_indexes_directory)

    # --- writes -----------------------------------------------------------------------------------
    @contextmanager
    def writing(self, collection_id: str) -> Iterator[None]:
        """Held around a write's DB statement and its report (``committed``/``deleted``), so that
        writes to one collection reach its state in the order they committed. A saved index file
        is forgotten first: a crash during the write then leaves no stale file behind."""
        with self._collection_locks.hold(collection_id):
            self._saved.forget(collection_id)
            yield

    @contextmanager
    def exclusive(self, collection_id: str) -> Iterator[None]:
        """Held by a write that must not interleave with any derived update or load of the
        collection (a batch planned here and written by other processes)."""
        with self._collection_locks.hold(collection_id), self._write_lock:
            yield

    def committed(self, collection_id: str, result: WriteResult, load_if_absent: bool = True) -> None:
        """Applies a write committed through this process (call inside ``writing``). An unloaded
        collection is loaded now, the new batch included, which spares the first query the wait
        (unless ``load_if_absent`` is False: it then loads when first needed)."""
        with self._write_lock:
            state = self._states.get(collection_id)
            if state is not None:
                self._behind_step(collection_id, state, lambda: state.apply_write(result), len(result.labels))
            elif load_if_absent:
                self._step(collection_id, lambda: self._load(self._db.get_collection_by_id(collection_id)))

    def deleted(self, collection_id: str, labels: np.ndarray) -> None:
        """Applies a delete committed through this process (call inside ``writing``)."""
        with self._write_lock:
            state = self._states.get(collection_id)
            if state is not None:
                self._behind_step(collection_id, state, lambda: state.apply_delete(labels), len(labels))

    def dropped(self, drop: Callable[[], str]) -> None:
        """Runs ``drop`` (a collection's deletion in the DB, returning its id) and forgets the
        collection's state."""
        with self._write_lock:
            collection_id = drop()
            self._states.pop(collection_id, None)
            self._saved.forget(collection_id)

    def cleared(self, clear: Callable[[], None]) -> None:
        """Runs ``clear`` (the DB's reset) and forgets every collection's state."""
        with self._write_lock:
            clear()
            self._states.clear()
            self._saved.clear()

    def settings_changed(self, update: Callable[[], CollectionRecord]) -> CollectionRecord:
        """Runs ``update`` (a change of a collection's metadata in the DB) and applies the record's
        index settings (``hnsw:search_ef``) to a loaded index, from the next query on."""
        with self._write_lock:
            record = update()
            state = self._states.get(record.id)
            if state is not None:
                state.apply_settings(record.metadata)
            return record

    # --- reads --------------------------------------------------------------------------------------
    def count(self, collection_id: str) -> Optional[int]:
        """The collection's item count from its state; None if it is not loaded (ask the DB)."""
        state = self._current(collection_id)
        return None if state is None else len(state.ids)

    def get(self, collection_id: str, ids: Optional[list[str]], where: Optional[Clause], limit: Optional[int],
            offset: Optional[int], include: Sequence[str]) -> Optional[Records]:
        """``get`` from the state; None when the DB must answer (the state is not loaded)."""
        state = self._current(collection_id)
        if state is None:
            return None
        allowed = None if where is None else self._matching(collection_id, state, where)
        labels = state.select(ids, allowed, limit, offset)
        return self._records(collection_id, state, labels, include)

    def query(self, collection_id: str, queries: np.ndarray, n_results: int, where: Optional[Clause],
              include: Sequence[str], num_threads: int, prepare_load: Optional[PrepareLoad] = None) -> "Answer":
        """The nearest items of each query (``include`` as checked by ``chroma.api.arguments``).

        Raises:
            InvalidDimensionError: the queries' width is not the collection's dimension.
            CollectionNotFound: the collection does not exist.
        """
        state = self._current(collection_id)
        record = self._db.get_collection_by_id(collection_id) if state is None else None
        dimension = state.index.dim if state is not None else record.dimension
        check_query_dimension(queries, dimension)
        if state is None and dimension is not None:
            if prepare_load is not None and collection_id not in self._states:
                prepare_load(record)
            state = self._load(record)
        if state is None:
            return Answer(np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0), np.float32),
                          None, None, dimension or 0)
        fetch = [name for name in include if name != "distances"]
        metadata_clause, document_clause = split_documents(where)
        for _ in range(QUERY_ATTEMPTS):
            allowed = self._allowed(collection_id, state, metadata_clause, document_clause)
            labels, distances = _search(state.index, queries, n_results, allowed, num_threads)
            ids: Optional[list] = None
            records = None
            if fetch:
                wanted = labels[0] if len(labels) == 1 else np.unique(labels)  # one query's labels are distinct
                records = self._records(collection_id, state, wanted, fetch)
                complete = len(records.labels) == len(wanted)
            else:
                # ids and distances only: the label -> id map answers, without a DB statement
                ids = state.ids.ids_of(labels.ravel())
                complete = None not in ids
            if complete:
                break
            # A delete committed between the search and the fetch: wait until it has also
            # left the index, then search again, so that a concurrent delete never makes an
            # answer shorter than the collection allows.
            with self._collection_locks.hold(collection_id):
                pass
            self._settle()
        return Answer(labels, distances, ids, records, dimension)

    def snapshot(self, collection_id: str) -> Optional[IndexSnapshot]:
        """The collection's index, brought up to date, as an IndexSnapshot for a shared DB; None
        for an empty collection or an index that cannot serialize itself.

        Raises:
            CollectionNotFound: the collection does not exist.
        """
        record = self._db.get_collection_by_id(collection_id)
        with self._collection_locks.hold(collection_id), self._write_lock:
            self._load(record)
            self._catch_up(collection_id)
            state = self._states.get(collection_id)
            if state is None or not isinstance(state.index, Persistent):
                return None
            return IndexSnapshot(versions=state.versions, data=state.index.to_bytes())

    def loaded(self, collection_id: str) -> Optional[CachedCollection]:
        """The collection's state as it is now, without waiting for queued updates or catching up;
        None if it is not loaded. For diagnostics and tests: readers go through the methods above."""
        return self._states.get(collection_id)

    def loaded_sizes(self) -> tuple[int, int]:
        """How many collections have their state loaded, and how many items those hold."""
        states = list(self._states.values())
        return len(states), sum(len(state.ids) for state in states)

    def close(self) -> None:
        """Applies the queued updates, stops their thread and saves the loaded indexes of a
        persistent DB (see chroma.index.saved) while the DB is still open."""
        with self._write_lock:
            try:
                self._settle()
            finally:
                self._behind.close()
            try:
                saved = {cid: (state.index, self._db.state_marker(cid)) for cid, state in self._states.items()}
            except errors.ChromaError:
                saved = None  # the DB is closed or a collection gone: nothing can be saved against it
            if saved is not None:
                self._saved.save_all(saved)
            self._states.clear()

    # --- upkeep -------------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Waits for the derived updates of the writes that have returned."""
        if not self._behind.settle():
            self._states.clear()  # a fork lost the parent's queued updates: reload from the DB

    def _step(self, collection_id: str, step: Callable[[], None]) -> None:
        """Runs ``step`` on the state of a collection whose DB change is committed. If it fails,
        the state is dropped (the next query reloads it from the DB) rather than a failure
        reported for a committed change."""
        try:
            step()
        except errors.CollectionNotFound:
            self._states.pop(collection_id, None)  # deleted (or reset) since: nothing to keep current
        except Exception as exc:
            self._states.pop(collection_id, None)
            warnings.warn(f"derived state (vector index) of collection {collection_id} dropped, rebuilt on next use: "
                          f"{exc!r}", RuntimeWarning, stacklevel=5)

    def _behind_step(self, collection_id: str, state: CachedCollection, step: Callable[[], None],
                     items: int) -> None:
        """Queues ``step`` over ``items`` items on ``state`` (call under the write lock). A state
        dropped meanwhile is skipped: it is reloaded from the DB, this change included."""
        def run() -> None:
            if self._states.get(collection_id) is state:
                self._step(collection_id, step)
                heap.give_back(items)

        self._behind.submit(run)

    def _current(self, collection_id: str) -> Optional[CachedCollection]:
        """The collection's state if it is loaded, brought up to every write that returned (other
        processes' too); None if it is not loaded."""
        self._settle()
        self._catch_up(collection_id)
        return self._states.get(collection_id)

    def _load(self, record: CollectionRecord) -> Optional[CachedCollection]:
        """The collection's state, loaded if it is not; None while it has no items."""
        state = self._states.get(record.id)
        if state is not None or record.dimension is None:
            return state
        # no write may land between the load and the caching
        with self._collection_locks.hold(record.id), self._write_lock:
            self._settle()
            state = self._states.get(record.id)
            if state is not None:
                return state
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
                index = self._built(record, params)
            state = self._states[record.id] = CachedCollection(index, label_ids, versions)
            state.apply_settings(metadata)  # a saved file or snapshot may predate a modify()
            if snapshot is not None:
                self._catch_up(record.id)  # the batches committed after the snapshot was taken
        heap.give_back(len(labels))
        return state

    def _built(self, record: CollectionRecord, params: dict) -> Index:
        """A new index of the collection's vectors, read from the DB a chunk at a time."""
        space = validation.space_of(record.metadata or {})
        index = None
        for labels, vectors in self._db.load_vector_chunks(record.id):
            if index is None:  # as wide as the stored vectors, whatever the record says
                index = self._index_class(vectors.shape[1], space, params)
            index.add(labels, vectors)
        return self._index_class(record.dimension, space, params) if index is None else index

    def _load_snapshot(self, record: CollectionRecord) -> Optional[tuple[Index, frozenset]]:
        """The index snapshot a worker kept in the shared DB, and the versions it reflects; None if
        there is none, or it does not fit the collection (it is then rebuilt here)."""
        if not issubclass(self._index_class, Persistent):
            return None
        snapshot = self._db.load_index_snapshot(record.id)
        if snapshot is None:
            return None
        try:
            index = self._index_class.from_bytes(snapshot.data)
        except errors.IndexFileError as exc:
            warnings.warn(f"index snapshot of collection {record.id} ignored, rebuilding: {exc}", RuntimeWarning,
                          stacklevel=3)
            return None
        if index.dim != record.dimension or index.space != validation.space_of(record.metadata or {}):
            return None
        return index, snapshot.versions

    def _catch_up(self, collection_id: str) -> None:
        """Applies to the loaded state the batches other processes committed since it was current."""
        state = self._states.get(collection_id)
        if state is None or self._db.changes_since(collection_id, state.versions) is None:
            return
        # again under the locks, so no write of ours interleaves
        with self._collection_locks.hold(collection_id), self._write_lock:
            self._settle()
            state = self._states.get(collection_id)
            if state is None:
                return
            try:
                changes = self._db.changes_since(collection_id, state.versions)
            except errors.CollectionNotFound:
                self._states.pop(collection_id, None)
                raise
            if changes is not None:
                self._step(collection_id, lambda: state.apply_changes(changes))

    def _metadata(self, collection_id: str, state: CachedCollection) -> MetadataColumns:
        """The collection's metadata columns, loaded on first use."""
        if state.metadata is None:
            with self._collection_locks.hold(collection_id), self._write_lock:
                self._settle()  # the columns load what the DB holds: no queued update may apply again
                if state.metadata is None:
                    state.metadata = MetadataColumns.from_chunks(self._db.load_metadata(collection_id),
                                                                 rows=len(state.ids))
                    heap.give_back(len(state.ids))  # the chunks' dicts are gone
        return state.metadata

    def _texts(self, collection_id: str, state: CachedCollection) -> ItemTexts:
        """The collection's documents and metadatas, loaded on first use."""
        if state.texts is None:
            with self._collection_locks.hold(collection_id), self._write_lock:
                self._settle()  # the texts load what the DB holds: no queued update may apply again
                if state.texts is None:
                    state.texts = ItemTexts.from_chunks(self._db.load_texts(collection_id), rows=len(state.ids))
                    heap.give_back(len(state.ids))  # the chunks' strings are gone
        return state.texts

    def _records(self, collection_id: str, state: CachedCollection, labels: np.ndarray,
                 include: Sequence[str]) -> Records:
        """The items of ``labels`` that are stored, in that order, with the fields of ``include``:
        documents and metadatas from the state, embeddings (as stored) from the DB."""
        if "documents" in include or "metadatas" in include:
            self._texts(collection_id, state)
        return state.records(labels, include,
                             lambda found: self._db.get_by_labels(collection_id, found, ["embeddings"]))

    def _allowed(self, collection_id: str, state: CachedCollection, metadata_clause: Optional[Clause],
                 document_clause: Optional[Clause]) -> Optional[np.ndarray]:
        """The labels a filtered query may return (None: no filter): ``where`` runs over the
        metadata columns, ``where_document`` over the texts as well."""
        allowed = None
        if metadata_clause is not None:
            allowed = self._metadata(collection_id, state).matching(metadata_clause)
        if document_clause is not None:
            with_documents = self._matching(collection_id, state, document_clause)
            allowed = with_documents if allowed is None else np.intersect1d(allowed, with_documents)
        return allowed

    def _matching(self, collection_id: str, state: CachedCollection, clause: Clause) -> np.ndarray:
        """Labels of the items that match ``clause``: metadata comparisons over the metadata
        columns, document substrings over the texts (no DB statement)."""
        if isinstance(clause, Contains):
            labels, hit = self._texts(collection_id, state).containing(clause.text)
            return labels[~hit if clause.negate else hit]
        if isinstance(clause, Logical) and reads_document(clause):
            parts = [self._matching(collection_id, state, child) for child in clause.clauses]
            combined = parts[0]
            for part in parts[1:]:
                combined = np.intersect1d(combined, part) if clause.op == "$and" else np.union1d(combined, part)
            return combined
        return self._metadata(collection_id, state).matching(clause)


class Answer:
    """What ``Engine.query`` found: per query rows of labels and distances, and either the ids of
    every label, row after row (ids and distances only), or the fetched records (None: nothing
    fetched, the collection has no items)."""

    def __init__(self, labels: np.ndarray, distances: np.ndarray, ids: Optional[list], records: Optional[Records],
                 dimension: int) -> None:
        self.labels = labels
        self.distances = distances
        self.ids = ids
        self.records = records
        self.dimension = dimension


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
