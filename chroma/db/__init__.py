"""``chroma.DB``: storage and persistence of collections and their items.

A DB stores each item's id, embedding, metadata and document, and gives each
item an int64 *label*, unique in the DB and increasing in insertion order, by
which the vector index knows it. Every write method is atomic: it applies the
whole batch or, on any error, nothing. Implementations (imported on first use
by ``chroma.get_db()``): ``chroma.db.DuckDB``, ``chroma.db.PersistentDuckDB``,
``chroma.db.Clickhouse``.

A DB that other processes may write to (ClickHouse) also numbers each
committed write batch with a *version*; a process that keeps a vector index
remembers the versions its index reflects and asks ``changes_since`` for the
rest, so that it catches up with other processes' writes incrementally.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import numpy as np

from chroma import errors, registry

if TYPE_CHECKING:
    from chroma.config import Settings
    from chroma.filters import Clause

DB_CLOSED = "this chroma DB was closed (every client of its store was closed)"
UNCHANGED: Any = object()
"""Marks an argument of ``update_collection`` that keeps its stored value."""

LOAD_CHUNK_ROWS = 10_000
"""Items per chunk of ``DB.load_metadata``."""


def directory_write_problem(directory: str, min_free_bytes: int) -> Optional[str]:
    """Why files cannot be written in ``directory`` now: a read-only file system or permissions
    (``access`` answers EROFS even to root), or less than ``min_free_bytes`` (or nothing) free
    on its disk; None when they can."""
    where = f"persist_directory {directory!r}"
    try:
        stats = os.statvfs(directory)
    except OSError as exc:
        return f"{where} cannot be examined: {exc.strerror or exc}"
    if stats.f_flag & os.ST_RDONLY:
        return f"{where} is on a read-only file system; remount it read-write or move the store"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{where} is not writable by this process (user id {os.geteuid()}); fix its permissions"
    free = stats.f_bavail * stats.f_frsize
    if free == 0 or free < min_free_bytes:
        return (f"the disk of {where} has {free} bytes free, below min_free_disk_bytes={min_free_bytes}; "
                "free some space (writes may fail with StorageFull)")
    return None


def some_ids(ids: Sequence[str], shown: int = 10) -> str:
    """The first ids of a list, for an error message."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(repr(i) for i in ids[:shown]) + more


def add_without_vectors(ids: Sequence[str]) -> errors.InvalidArgument:
    """The error of an add whose rows ``ids`` carry no vector."""
    return errors.InvalidArgument(f"add needs an embedding for every id; none for: {some_ids(ids)}")


def new_ids_without_vectors(ids: Sequence[str]) -> errors.InvalidArgument:
    """The error of an upsert whose new ids ``ids`` carry no vector."""
    return errors.InvalidArgument(
        f"upsert: new ids need embeddings: {some_ids(ids)}; pass embeddings=..., or give the "
        "collection an embedding_function to compute them from documents"
    )


@dataclass(frozen=True)
class CollectionRecord:
    id: str
    name: str
    metadata: Optional[dict]
    dimension: Optional[int]


@dataclass
class Records:
    """Rows of one collection; a field not asked for is ``None``."""

    ids: list[str]
    labels: np.ndarray
    embeddings: Optional[np.ndarray] = None
    metadatas: Optional[list[Optional[dict]]] = None
    documents: Optional[list[Optional[str]]] = None


@dataclass
class Batch:
    """A validated write: one entry per id; ``None`` for a field not given.

    Inside ``metadatas``/``documents`` a ``None`` entry means "no value" for a
    new item and "leave as is" for an existing one; rows of ``embeddings``
    flagged in ``missing`` likewise carry no vector.
    """

    ids: list[str]
    embeddings: Optional[np.ndarray]
    metadatas: Optional[list[Optional[dict]]]
    documents: Optional[list[Optional[str]]]
    missing: Optional[np.ndarray] = None
    """Boolean mask over ``embeddings`` rows that carry no vector; None: all carry one."""

    def take(self, positions: Sequence[int]) -> "Batch":
        pick = list(positions)
        return Batch(
            ids=[self.ids[i] for i in pick],
            embeddings=None if self.embeddings is None else self.embeddings[pick],
            metadatas=None if self.metadatas is None else [self.metadatas[i] for i in pick],
            documents=None if self.documents is None else [self.documents[i] for i in pick],
            missing=None if self.missing is None else self.missing[pick],
        )

    def without_embedding(self) -> list[str]:
        """The ids that carry no vector."""
        if self.embeddings is None:
            return list(self.ids)
        if self.missing is None:
            return []
        return [i for i, gap in zip(self.ids, self.missing) if gap]

    def embedded_rows(self) -> np.ndarray:
        """Positions of the ids that carry a vector."""
        if self.embeddings is None:
            return np.empty(0, dtype=np.int64)
        if self.missing is None:
            return np.arange(len(self.ids))
        return np.flatnonzero(~self.missing)


@dataclass
class StoredItems:
    """Items a write stored (added or changed), for the caches derived from ids and metadata."""

    labels: np.ndarray
    ids: list[str]
    """The id of each label."""
    metadatas: Optional[list[Optional[dict]]]
    """Each item's metadata now; a None entry (or None for all) means it did not change."""
    documents: Optional[list[Optional[str]]] = None
    """Each item's document now, likewise."""


@dataclass
class WriteResult:
    """What a write changed, for keeping the vector index and the other derived state current."""

    labels: np.ndarray
    """Labels whose vectors are now ``embeddings`` (added or replaced)."""
    embeddings: Optional[np.ndarray]
    version: Optional[int] = None
    """The committed batch's version, for a DB that numbers batches; else None."""
    items: Optional[StoredItems] = None
    """Every item of the batch; None: not reported (derived state is then reloaded)."""


@dataclass
class Changes:
    """What other writers changed in a collection's vectors since some versions."""

    versions: frozenset
    """Every committed batch version these changes bring an index up to."""
    labels: np.ndarray
    """Labels whose vectors are now ``embeddings`` (added or replaced)."""
    embeddings: np.ndarray
    removed: np.ndarray
    """Labels no longer in the collection."""
    items: Optional[StoredItems] = None
    """Every item the batches added or changed, with its current metadata."""
    metadata: Any = UNCHANGED
    """The collection's metadata now, when a batch changed it (``modify``); its index settings
    (``hnsw:search_ef``) take effect with these changes."""


@dataclass(frozen=True)
class StagedWrite:
    """A write batch split among processes: planned once, its rows written in
    chunks by any process (``stage_rows``), then made visible whole by one
    ``commit_staged``. Until then no reader sees any of its rows."""

    collection_id: str
    version: int
    labels: np.ndarray
    """One label per batch row (an existing id keeps its label)."""
    existing: np.ndarray
    """Per batch row: the id was stored when planned (stage_rows keeps the fields it does not replace)."""
    new_labels: Optional[tuple[int, int]]
    """The range ``[start, stop)`` of labels taken for new ids, or None."""


@dataclass(frozen=True)
class IndexSnapshot:
    """A serialized vector index kept in a shared DB, and the committed batch versions it reflects."""

    versions: frozenset
    data: bytes


class DB(abc.ABC):
    """Storage of collections and items. Thread-safe."""

    shared: bool = False
    """True for a store that several processes use at once (ClickHouse): it
    numbers batches (``versions``/``changes_since``), can split a batch among
    processes (``plan_write``/``stage_rows``/``commit_staged``) and keeps index
    snapshots (``save_index_snapshot``/``load_index_snapshot``)."""

    @classmethod
    def store_key(cls, settings: "Settings") -> Optional[Hashable]:
        """What names the store ``settings`` open, equal for every client of that store in this
        process (which then share one instance, see ``chroma.api.shared``); None for a store
        that no other client can open (in memory)."""
        return None

    @classmethod
    def index_files_directory(cls, settings: "Settings") -> Optional[str]:
        """Where a client keeps its loaded indexes on close, so that a reopen need not rebuild them
        (``chroma.index.saved``); None for a store whose indexes are not kept beside it (in memory,
        or shared by processes, which keep snapshots in the DB instead)."""
        return None

    # collections
    @abc.abstractmethod
    def create_collection(self, name: str, metadata: Optional[dict]) -> CollectionRecord:
        """Raises CollectionExists."""

    @abc.abstractmethod
    def get_collection(self, name: str) -> CollectionRecord:
        """Raises CollectionNotFound."""

    @abc.abstractmethod
    def get_collection_by_id(self, collection_id: str) -> CollectionRecord:
        """Raises CollectionNotFound."""

    @abc.abstractmethod
    def list_collections(self) -> list[CollectionRecord]:
        """Sorted by name."""

    @abc.abstractmethod
    def update_collection(self, collection_id: str, name: Any = UNCHANGED, metadata: Any = UNCHANGED) -> CollectionRecord:
        """Raises CollectionNotFound, CollectionExists (a rename onto a taken name)."""

    @abc.abstractmethod
    def delete_collection(self, name: str) -> str:
        """Deletes the collection and its items; returns its id. Raises CollectionNotFound."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Deletes everything."""

    # items
    @abc.abstractmethod
    def add(self, collection_id: str, batch: Batch) -> WriteResult:
        """Adds new items (``batch.embeddings`` required).

        Raises DuplicateIDError (an id exists), InvalidDimensionError.
        """

    @abc.abstractmethod
    def update(self, collection_id: str, batch: Batch) -> WriteResult:
        """Changes existing items. Raises IDNotFoundError, InvalidDimensionError."""

    @abc.abstractmethod
    def upsert(self, collection_id: str, batch: Batch) -> WriteResult:
        """Adds the new ids and updates the others in one transaction.

        Raises InvalidArgument (a new id without embedding), InvalidDimensionError.
        """

    @abc.abstractmethod
    def delete(self, collection_id: str, ids: Optional[list[str]], where: Optional["Clause"]) -> np.ndarray:
        """Deletes the items matching both ``ids`` and ``where``; returns their labels."""

    @abc.abstractmethod
    def get(
        self,
        collection_id: str,
        ids: Optional[list[str]],
        where: Optional["Clause"],
        limit: Optional[int],
        offset: Optional[int],
        include: Sequence[str],
    ) -> Records:
        """Items in the order of ``ids``, else in insertion order."""

    @abc.abstractmethod
    def get_by_labels(self, collection_id: str, labels: np.ndarray, include: Sequence[str]) -> Records:
        """Items with these labels, in the order given; missing labels are left out."""

    @abc.abstractmethod
    def select_labels(self, collection_id: str, where: "Clause") -> np.ndarray:
        """Labels of the items matching ``where`` (an index allow-list)."""

    @abc.abstractmethod
    def count(self, collection_id: str) -> int:
        """Number of items. Raises CollectionNotFound."""

    @abc.abstractmethod
    def load_vectors(self, collection_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, embeddings)`` of every item, to build an index from."""

    def load_vector_chunks(self, collection_id: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``load_vectors`` in chunks of about ``LOAD_CHUNK_ROWS`` items, in the same order, so that an
        index is built holding one chunk of vectors beside its own copy rather than all of them
        (twice, where the DB's answer and the array are two copies). Raises CollectionNotFound at
        once. This default reads them all in one chunk."""
        return iter([self.load_vectors(collection_id)])

    @abc.abstractmethod
    def load_ids(self, collection_id: str) -> tuple[np.ndarray, Sequence[str]]:
        """``(labels, ids)`` of every item, in any order."""

    @abc.abstractmethod
    def load_metadata(self, collection_id: str) -> Iterator[tuple[np.ndarray, list[dict]]]:
        """``(labels, metadatas)`` of every item that has metadata, in chunks of about
        ``LOAD_CHUNK_ROWS`` items: a collection's metadata as dicts costs many times its stored
        JSON, so the reader holds one chunk of them at a time. Raises CollectionNotFound at once."""

    def load_texts(self, collection_id: str) -> Iterator[tuple[np.ndarray, list[Optional[str]], list[Optional[str]]]]:
        """``(labels, documents, metadatas)`` of every item, each metadata as compact JSON (or None),
        in one or more chunks (a DB that can stream them gives about ``LOAD_CHUNK_ROWS`` items at a
        time, so the reader holds one chunk of strings at a time). Raises CollectionNotFound."""
        records = self.get(collection_id, None, None, None, None, ["documents", "metadatas"])
        encoder = json.JSONEncoder(separators=(",", ":"))
        return iter([(records.labels, records.documents or [], [None if m is None else encoder.encode(m)
                                                               for m in records.metadatas or []])])

    def state_marker(self, collection_id: str) -> Optional[list]:
        """A JSON-able value that changes with every committed write to the collection.

        A file derived from the collection (a saved index) records it and is
        trusted only while it is unchanged. None: the DB keeps no marker, and
        no such file is ever trusted. Raises CollectionNotFound.
        """
        return None

    def versions(self, collection_id: str) -> frozenset:
        """The committed batch versions of the collection now (taken before ``load_vectors``).

        A DB that only this process writes needs none and returns an empty set.
        """
        return frozenset()

    def changes_since(self, collection_id: str, versions: frozenset) -> Optional[Changes]:
        """The vector changes of batches committed besides ``versions``; None when there are none.

        Writes made through this instance are applied by the caller from their
        ``WriteResult``, so a DB that only this process writes returns None.
        Raises CollectionNotFound (another process deleted the collection).
        """
        return None

    # A shared store's batches split among processes (chroma.api.Celery) and its index snapshots.
    def plan_write(self, collection_id: str, ids: list[str], has_vector: np.ndarray, allow_new: bool,
                   allow_old: bool) -> StagedWrite:
        """Checks a batch against the stored ids and takes its version and labels; writes nothing.

        ``has_vector`` flags the rows that will carry a vector. Raises what
        ``add`` (``allow_old`` false), ``update`` (``allow_new`` false) or
        ``upsert`` would: DuplicateIDError, IDNotFoundError, InvalidArgument.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot split a batch among processes")

    def stage_rows(self, staged: StagedWrite, positions: Sequence[int], chunk: Batch) -> None:
        """Writes the rows ``positions`` of a planned batch (their values in ``chunk``), invisibly.

        Idempotent: writing a chunk again (a retried task) changes nothing.
        Raises InvalidDimensionError, IDNotFoundError (an existing id was deleted since).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot split a batch among processes")

    def commit_staged(self, staged: StagedWrite, dimension: Optional[int]) -> None:
        """Makes every staged row of the batch visible at once; ``dimension`` is its vectors'.

        Raises InvalidDimensionError (it differs from the collection's), ChromaError
        (another process took some of its labels meanwhile: nothing becomes visible).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot split a batch among processes")

    def abort_staged(self, staged: StagedWrite) -> None:
        """Discards a planned batch that will not be committed (its rows stay invisible)."""

    def save_index_snapshot(self, collection_id: str, snapshot: IndexSnapshot) -> None:
        """Keeps a serialized index of the collection for other processes (replacing older ones)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no index snapshots")

    def load_index_snapshot(self, collection_id: str) -> Optional[IndexSnapshot]:
        """The newest complete index snapshot of the collection, or None."""
        return None

    def write_problem(self) -> Optional[str]:
        """Why a write would fail now (read-only or nearly full disk, database unreachable), with
        what to do; None when writes can go. Cheap: no write is tried."""
        return None

    def interrupt(self) -> None:
        """Makes the statements running now fail soon (a server's shutdown cuts its calls off);
        a write they belong to is rolled back. Later statements run normally."""

    def close(self) -> None:
        """Releases files and connections; the instance is unusable afterwards (``ClientClosed``)."""


# chroma.db.<ClassName> imports its implementation on first access only.
__getattr__ = registry.lazy_attributes("db_impl", "chroma.db")
