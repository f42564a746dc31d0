"""``chroma.db.DuckDB`` (in memory) and ``chroma.db.PersistentDuckDB`` (a directory).

Items live in one ``embeddings`` table (vector as ``FLOAT[]``, document, and
the metadata as JSON for returning it as given); metadata is also stored typed,
one row per key in ``metadata``, which is what filters run on. Batches move in
and out as Arrow tables, the fast path DuckDB offers. Writes are serialized by
a lock and each runs in one transaction; reads use a cursor per thread. A
delete finds its rows before it takes that lock, under its collection's own
lock, so a long filter holds up no other collection's writes.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import threading
import uuid
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import duckdb
import numpy as np

from chroma import errors
from chroma.config import Settings
from chroma.db import arrow_columns as arrow
from chroma.db import (DB, DB_CLOSED, LOAD_CHUNK_ROWS, UNCHANGED, Batch, CollectionRecord, Records, StoredItems, WriteResult, add_without_vectors,
                       directory_write_problem, new_ids_without_vectors, some_ids)
from chroma.db.arrow_columns import pa
from chroma.db.sql import compile_clause, compile_label_set
from chroma.filters import Clause
from chroma.locks import KeyedLocks

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS collections (
        id VARCHAR NOT NULL, name VARCHAR NOT NULL, metadata VARCHAR, dimension INTEGER)""",
    "CREATE TABLE IF NOT EXISTS counters (name VARCHAR NOT NULL, value BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS embeddings (
        label BIGINT NOT NULL, collection_id VARCHAR NOT NULL, id VARCHAR NOT NULL,
        embedding FLOAT[] NOT NULL, document VARCHAR, metadata VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS metadata (
        label BIGINT NOT NULL, collection_id VARCHAR NOT NULL, key VARCHAR NOT NULL, string_value VARCHAR,
        int_value BIGINT, float_value DOUBLE, bool_value BOOLEAN)""",
    # Point lookups by label (query results) would otherwise scan the table.
    "CREATE INDEX IF NOT EXISTS embeddings_label ON embeddings (label)",
]


_TABLES = ("collections", "counters", "embeddings", "metadata")
_COLUMN = {"embeddings": "e.embedding", "documents": "e.document", "metadatas": "e.metadata"}
_JSON = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every row: ``json.dumps`` with separators builds a new one per call."""


_NO_SPACE = os.strerror(errno.ENOSPC)
_DURABLE = "COMMIT succeeded and is durable"
"""DuckDB's words when a commit reached the WAL and only the checkpoint after it failed."""
_INVALIDATED = "database has been invalidated"
_CORRUPT = ("Corrupt", "Could not read enough bytes", "Failure while replaying WAL", "not a valid DuckDB database")
"""DuckDB's words for a file it cannot read back (checksums, truncation, a foreign file)."""

Method = TypeVar("Method", bound=Callable[..., Any])


def _storage_errors(method: Method) -> Method:
    """Runs a DB method so that a full disk gives StorageFull and leaves the DB usable.

    A failed checkpoint invalidates DuckDB's whole database instance: every
    later statement fails until it is reopened. A method that finds it so
    reopens it and runs again (the failure came before the method changed
    anything).
    """
    @functools.wraps(method)
    def run(self: "DuckDB", *args: Any, **kwargs: Any) -> Any:
        generation = self._generation
        try:
            return method(self, *args, **kwargs)
        except duckdb.FatalException as exc:
            if _INVALIDATED not in str(exc):
                raise
            self._reopen(generation, exc)
            return method(self, *args, **kwargs)
        except duckdb.Error as exc:
            translated = self._storage_error(exc)
            if translated is None:
                raise
            raise translated from None

    return run  # type: ignore[return-value]


def _metadata_json(metadata: Optional[dict]) -> Optional[str]:
    return None if metadata is None else _JSON.encode(metadata)


def _writes_counter(collection_id: str) -> str:
    """The ``counters`` row that counts the collection's committed writes (its state marker)."""
    return f"writes:{collection_id}"


def _metadata_from_json(text: Optional[str]) -> Optional[dict]:
    return None if text is None else json.loads(text)


def _not_found(collection_id: str) -> errors.CollectionNotFound:
    return errors.CollectionNotFound(f"collection {collection_id!r} does not exist")


def _first(rows: list) -> Optional[tuple]:
    return rows[0] if rows else None


def _record(row: Sequence[Any]) -> CollectionRecord:
    return CollectionRecord(id=row[0], name=row[1], metadata=_metadata_from_json(row[2]), dimension=row[3])


def _metadata_rows(collection_id: str, labels: np.ndarray, metadatas: Sequence[Optional[dict]]) -> pa.Table:
    """The typed ``metadata`` rows of a batch: one per (item, key), the value in the column of its type."""
    # One list of (label, key, value) per type, so each value costs three
    # appends; the columns of the other types are all-null arrays.
    by_type: dict[type, tuple[list, list, list]] = {str: ([], [], []), int: ([], [], []),
                                                     float: ([], [], []), bool: ([], [], [])}
    for label, metadata in zip(labels.tolist(), metadatas):
        if not metadata:
            continue
        for key, value in metadata.items():
            # bool before int: True is an int to Python, not to the filters
            kind = bool if isinstance(value, bool) else int if isinstance(value, int) else \
                float if isinstance(value, float) else str
            rows = by_type[kind]
            rows[0].append(label)
            rows[1].append(key)
            rows[2].append(value)
    typed = (("string_value", str, pa.string(), arrow.strings), ("int_value", int, pa.int64(), arrow.int64s),
             ("float_value", float, pa.float64(), arrow.float64s), ("bool_value", bool, pa.bool_(), arrow.bools))
    parts = []
    for _, kind, _, _ in typed:
        row_labels, keys, values = by_type[kind]
        if not row_labels:
            continue
        count = len(row_labels)
        columns = {name: build(values) if column_kind is kind else arrow.nulls(count, arrow_type)
                   for name, column_kind, arrow_type, build in typed}
        parts.append(arrow.table({"label": arrow.int64s(row_labels),
                                  "collection_id": arrow.strings([collection_id] * count),
                                  "key": arrow.strings(keys), **columns}))
    if not parts:
        return arrow.table({"label": arrow.int64s([])})
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


class DuckDB(DB):
    """Everything in memory: the embedded default, gone when the process ends."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._con = self._connect()
        self._generation = 0
        """How many times the connection was reopened; a thread's cursor belongs to one generation."""
        self._write_lock = threading.RLock()
        self._collection_locks = KeyedLocks()
        """Held by every write to a collection (before ``_write_lock``): what a delete found stays found."""
        self._local = threading.local()
        self._cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
        """The cursors of the live threads, for interrupt() (a thread's cursor goes with it)."""
        self._cursors_lock = threading.Lock()
        self._closed = False
        # one transaction: a third of the time of five, on every open
        self._con.execute("BEGIN; " + "; ".join(_SCHEMA) + "; COMMIT")

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(":memory:")

    def _location(self) -> str:
        return "the in-memory DB (its temporary files)"

    def _storage_error(self, failure: duckdb.Error) -> Optional[errors.ChromaError]:
        """The chroma error for a failure of the storage under the DB; None for any other."""
        if _NO_SPACE in str(failure):
            return errors.StorageFull(f"the disk of {self._location()} is full; nothing was written. Reads keep "
                                      f"working; free some space and write again ({failure})")
        return None

    def _reopen(self, generation: int, failure: duckdb.Error) -> None:
        """A new connection in place of generation ``generation``'s, which DuckDB invalidated."""
        raise errors.ChromaError(f"the in-memory DB failed and its data is lost; call chroma.get_api() again "
                                 f"({failure})") from None

    # plumbing
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise errors.ClientClosed(DB_CLOSED)
        cursor = getattr(self._local, "cursor", None)
        if cursor is None or self._local.generation != self._generation:
            cursor = self._local.cursor = self._con.cursor()
            with self._cursors_lock:
                self._cursors.add(cursor)
            self._local.generation = self._generation
        return cursor

    def _side_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own, for a read streamed in chunks while the thread's cursor runs other
        statements in between; interrupt() reaches it too."""
        cursor = self._cursor().cursor()
        with self._cursors_lock:
            self._cursors.add(cursor)
        return cursor

    @contextmanager
    def _transaction(self, collection_id: Optional[str] = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction; one that writes to a collection names it."""
        if collection_id is not None:
            with self._collection_locks.hold(collection_id), self._transaction() as cursor:
                yield cursor
            return
        with self._write_lock:
            generation = self._generation
            cursor = self._cursor()
            cursor.begin()
            try:
                yield cursor
            except BaseException:
                try:
                    cursor.rollback()
                except duckdb.Error:
                    pass  # the connection failed: nothing of the transaction is kept
                raise
            try:
                cursor.commit()
            except duckdb.FatalException as exc:
                if _DURABLE not in str(exc):
                    raise
                # The write is in the WAL, so it stands; only the checkpoint after it failed
                # (for lack of space), which left the instance unusable until it is reopened.
                self._reopen(generation, exc)

    @contextmanager
    def _snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor whose statements all read one snapshot: a read of several statements sees no
        write land between them (a collection's first add, its deletion)."""
        cursor = self._cursor()
        cursor.begin()
        try:
            yield cursor
        finally:
            cursor.rollback()  # nothing to keep: a read-only transaction

    @contextmanager
    def _registered(self, cursor: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
        name = f"batch_{uuid.uuid4().hex}"
        cursor.register(name, table)
        try:
            yield name
        except BaseException:
            try:
                cursor.unregister(name)
            except duckdb.TransactionException:
                pass  # the failure aborted the transaction: it is the error to raise, not this one
            raise
        cursor.unregister(name)

    def _collection(self, cursor: duckdb.DuckDBPyConnection, collection_id: str) -> CollectionRecord:
        row = _first(cursor.execute(
            "SELECT id, name, metadata, dimension FROM collections WHERE id = ?", [collection_id]
        ).fetchall())
        if row is None:
            raise _not_found(collection_id)
        return _record(row)

    def _next_labels(self, cursor: duckdb.DuckDBPyConnection, count: int) -> np.ndarray:
        row = _first(cursor.execute("SELECT value FROM counters WHERE name = 'label'").fetchall())
        start = 0 if row is None else row[0]
        if row is None:
            cursor.execute("INSERT INTO counters VALUES ('label', ?)", [start + count])
        else:
            cursor.execute("UPDATE counters SET value = ? WHERE name = 'label'", [start + count])
        return np.arange(start, start + count, dtype=np.int64)

    def _fix_dimension(self, cursor: duckdb.DuckDBPyConnection, record: CollectionRecord, embeddings: Optional[np.ndarray]) -> None:
        if embeddings is None:
            return
        dimension = embeddings.shape[1]
        if record.dimension is None:
            cursor.execute("UPDATE collections SET dimension = ? WHERE id = ?", [dimension, record.id])
        elif record.dimension != dimension:
            raise errors.InvalidDimensionError(
                f"embedding dimension {dimension} does not match the collection's dimension {record.dimension}"
            )

    def _existing(self, cursor: duckdb.DuckDBPyConnection, collection_id: str, ids: list[str]) -> dict[str, int]:
        """id -> label for the ids of ``ids`` that are stored."""
        asked = arrow.table({"id": arrow.strings(ids)})
        with self._registered(cursor, asked) as name:
            rows = cursor.execute(
                f"SELECT e.id, e.label FROM embeddings e JOIN {name} a ON a.id = e.id WHERE e.collection_id = ?",
                [collection_id],
            ).fetchall()
        return dict(rows)

    def _count_write(self, cursor: duckdb.DuckDBPyConnection, collection_id: str) -> None:
        name = _writes_counter(collection_id)
        if not cursor.execute("UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", [name]).fetchall():
            cursor.execute("INSERT INTO counters VALUES (?, 1)", [name])

    # collections
    @_storage_errors
    def create_collection(self, name: str, metadata: Optional[dict]) -> CollectionRecord:
        with self._transaction() as cursor:
            if cursor.execute("SELECT 1 FROM collections WHERE name = ?", [name]).fetchall():
                raise errors.CollectionExists(f"collection {name!r} already exists")
            record = CollectionRecord(id=str(uuid.uuid4()), name=name, metadata=metadata, dimension=None)
            cursor.execute(
                "INSERT INTO collections VALUES (?, ?, ?, NULL)", [record.id, name, _metadata_json(metadata)]
            )
        return record

    @_storage_errors
    def get_collection(self, name: str) -> CollectionRecord:
        row = _first(self._cursor().execute(
            "SELECT id, name, metadata, dimension FROM collections WHERE name = ?", [name]
        ).fetchall())
        if row is None:
            raise errors.CollectionNotFound(f"collection {name!r} does not exist")
        return _record(row)

    @_storage_errors
    def get_collection_by_id(self, collection_id: str) -> CollectionRecord:
        return self._collection(self._cursor(), collection_id)

    @_storage_errors
    def list_collections(self) -> list[CollectionRecord]:
        rows = self._cursor().execute("SELECT id, name, metadata, dimension FROM collections ORDER BY name").fetchall()
        return [_record(row) for row in rows]

    @_storage_errors
    def update_collection(self, collection_id: str, name: Any = UNCHANGED, metadata: Any = UNCHANGED) -> CollectionRecord:
        with self._transaction() as cursor:
            record = self._collection(cursor, collection_id)
            if name is not UNCHANGED and name != record.name:
                if cursor.execute("SELECT 1 FROM collections WHERE name = ?", [name]).fetchall():
                    raise errors.CollectionExists(f"collection {name!r} already exists")
                cursor.execute("UPDATE collections SET name = ? WHERE id = ?", [name, collection_id])
            if metadata is not UNCHANGED:
                cursor.execute(
                    "UPDATE collections SET metadata = ? WHERE id = ?", [_metadata_json(metadata), collection_id]
                )
            return self._collection(cursor, collection_id)

    @_storage_errors
    def delete_collection(self, name: str) -> str:
        with self._transaction() as cursor:
            row = _first(cursor.execute("SELECT id FROM collections WHERE name = ?", [name]).fetchall())
            if row is None:
                raise errors.CollectionNotFound(f"collection {name!r} does not exist")
            collection_id = row[0]
            cursor.execute("DELETE FROM metadata WHERE collection_id = ?", [collection_id])
            cursor.execute("DELETE FROM embeddings WHERE collection_id = ?", [collection_id])
            cursor.execute("DELETE FROM collections WHERE id = ?", [collection_id])
            cursor.execute("DELETE FROM counters WHERE name = ?", [_writes_counter(collection_id)])
        return collection_id

    @_storage_errors
    def reset(self) -> None:
        with self._transaction() as cursor:
            for table in _TABLES:
                cursor.execute(f"DELETE FROM {table}")

    # writes
    @_storage_errors
    def add(self, collection_id: str, batch: Batch) -> WriteResult:
        if batch.without_embedding():
            raise add_without_vectors(batch.without_embedding())
        with self._transaction(collection_id) as cursor:
            record = self._collection(cursor, collection_id)
            self._fix_dimension(cursor, record, batch.embeddings)
            existing = self._existing(cursor, collection_id, batch.ids)
            if existing:
                taken = [i for i in batch.ids if i in existing]
                raise errors.DuplicateIDError(f"ids already in the collection: {some_ids(taken)}")
            labels = self._insert(cursor, collection_id, batch)
            self._count_write(cursor, collection_id)
        return WriteResult(labels=labels, embeddings=batch.embeddings,
                           items=StoredItems(labels, batch.ids, batch.metadatas, batch.documents))

    def _insert(self, cursor: duckdb.DuckDBPyConnection, collection_id: str, batch: Batch) -> np.ndarray:
        count = len(batch.ids)
        labels = self._next_labels(cursor, count)
        metadatas = batch.metadatas or [None] * count
        table = arrow.table(
            {
                "label": arrow.int64s(labels),
                "id": arrow.strings(batch.ids),
                "embedding": arrow.vectors(batch.embeddings),
                "document": arrow.strings(batch.documents or [None] * count),
                "metadata": arrow.strings([_metadata_json(m) for m in metadatas]),
            }
        )
        with self._registered(cursor, table) as name:
            cursor.execute(
                f"INSERT INTO embeddings SELECT label, ?, id, embedding::FLOAT[], document, metadata FROM {name}",
                [collection_id],
            )
        self._insert_metadata(cursor, collection_id, labels, metadatas)
        return labels

    def _insert_metadata(
        self, cursor: duckdb.DuckDBPyConnection, collection_id: str, labels: np.ndarray, metadatas: Sequence[Optional[dict]]
    ) -> None:
        rows = _metadata_rows(collection_id, labels, metadatas)
        if rows.num_rows:
            with self._registered(cursor, rows) as name:
                cursor.execute(f"INSERT INTO metadata SELECT * FROM {name}")

    @_storage_errors
    def update(self, collection_id: str, batch: Batch) -> WriteResult:
        with self._transaction(collection_id) as cursor:
            result = self._update(cursor, collection_id, batch)
            self._count_write(cursor, collection_id)
            return result

    def _update(self, cursor: duckdb.DuckDBPyConnection, collection_id: str, batch: Batch) -> WriteResult:
        record = self._collection(cursor, collection_id)
        self._fix_dimension(cursor, record, batch.embeddings)
        existing = self._existing(cursor, collection_id, batch.ids)
        missing = [i for i in batch.ids if i not in existing]
        if missing:
            raise errors.IDNotFoundError(f"ids not in the collection: {some_ids(missing)}")
        labels = np.array([existing[i] for i in batch.ids], dtype=np.int64)
        rows = batch.embedded_rows()
        if len(rows):
            table = arrow.table({"label": arrow.int64s(labels[rows]), "embedding": arrow.vectors(batch.embeddings[rows])})
            with self._registered(cursor, table) as name:
                cursor.execute(
                    f"UPDATE embeddings SET embedding = b.embedding::FLOAT[] FROM {name} b WHERE embeddings.label = b.label"
                )
        if batch.documents is not None:
            given = [(int(label), doc) for label, doc in zip(labels, batch.documents) if doc is not None]
            if given:
                table = arrow.table({"label": arrow.int64s([g[0] for g in given]),
                                     "document": arrow.strings([g[1] for g in given])})
                with self._registered(cursor, table) as name:
                    cursor.execute(f"UPDATE embeddings SET document = b.document FROM {name} b WHERE embeddings.label = b.label")
        if batch.metadatas is not None:
            given = [(int(label), md) for label, md in zip(labels, batch.metadatas) if md is not None]
            if given:
                given_labels = np.array([g[0] for g in given], dtype=np.int64)
                given_metadatas = [g[1] for g in given]
                table = arrow.table({"label": arrow.int64s(given_labels),
                                     "metadata": arrow.strings([_metadata_json(m) for m in given_metadatas])})
                with self._registered(cursor, table) as name:
                    cursor.execute(f"UPDATE embeddings SET metadata = b.metadata FROM {name} b WHERE embeddings.label = b.label")
                    cursor.execute(f"DELETE FROM metadata WHERE label IN (SELECT label FROM {name})")
                self._insert_metadata(cursor, collection_id, given_labels, given_metadatas)
        items = StoredItems(labels, batch.ids, batch.metadatas, batch.documents)
        if not len(rows):
            return WriteResult(labels=np.empty(0, dtype=np.int64), embeddings=None, items=items)
        return WriteResult(labels=labels[rows], embeddings=batch.embeddings[rows], items=items)

    @_storage_errors
    def upsert(self, collection_id: str, batch: Batch) -> WriteResult:
        with self._transaction(collection_id) as cursor:
            self._collection(cursor, collection_id)
            existing = self._existing(cursor, collection_id, batch.ids)
            old = [p for p, i in enumerate(batch.ids) if i in existing]
            new = [p for p, i in enumerate(batch.ids) if i not in existing]
            unembedded = batch.take(new).without_embedding()
            if unembedded:
                raise new_ids_without_vectors(unembedded)
            parts = []
            if old:
                parts.append(self._update(cursor, collection_id, batch.take(old)))
            if new:
                added = batch.take(new)
                self._fix_dimension(cursor, self._collection(cursor, collection_id), added.embeddings)
                labels = self._insert(cursor, collection_id, added)
                parts.append(WriteResult(labels, added.embeddings, items=StoredItems(labels, added.ids, added.metadatas,
                                                                              added.documents)))
            self._count_write(cursor, collection_id)
        items = StoredItems(
            labels=np.concatenate([p.items.labels for p in parts]),
            ids=[i for p in parts for i in p.items.ids],
            metadatas=None if batch.metadatas is None else [m for p in parts for m in p.items.metadatas],
            documents=None if batch.documents is None else [d for p in parts for d in p.items.documents],
        )
        with_vectors = [p for p in parts if p.embeddings is not None and len(p.labels)]
        if not with_vectors:
            return WriteResult(labels=np.empty(0, dtype=np.int64), embeddings=None, items=items)
        return WriteResult(
            labels=np.concatenate([p.labels for p in with_vectors]),
            embeddings=np.concatenate([p.embeddings for p in with_vectors]),
            items=items,
        )

    @_storage_errors
    def delete(self, collection_id: str, ids: Optional[list[str]], where: Optional[Clause]) -> np.ndarray:
        with self._collection_locks.hold(collection_id):
            cursor = self._cursor()
            self._collection(cursor, collection_id)
            labels = self._select(cursor, collection_id, ids, where, ["e.label"], None, None)["label"]
            labels = arrow.int64s_of(labels)
            if not len(labels):
                return labels
            with self._transaction(collection_id) as cursor:
                self._collection(cursor, collection_id)  # not deleted (or reset) meanwhile
                table = arrow.table({"label": arrow.int64s(labels)})
                with self._registered(cursor, table) as name:
                    cursor.execute(f"DELETE FROM metadata WHERE label IN (SELECT label FROM {name})")
                    cursor.execute(f"DELETE FROM embeddings WHERE label IN (SELECT label FROM {name})")
                self._count_write(cursor, collection_id)
        return labels

    # reads
    def _select(
        self,
        cursor: duckdb.DuckDBPyConnection,
        collection_id: str,
        ids: Optional[list[str]],
        where: Optional[Clause],
        columns: list[str],
        limit: Optional[int],
        offset: Optional[int],
    ) -> pa.Table:
        params: list[Any] = []
        join = ""
        order = "e.label"
        asked_name = None
        if ids is not None:
            asked_name = f"asked_{uuid.uuid4().hex}"
            cursor.register(asked_name, arrow.table({"id": arrow.strings(ids),
                                                     "pos": arrow.int64s(np.arange(len(ids), dtype=np.int64))}))
            join = f"JOIN {asked_name} a ON a.id = e.id"
            order = "a.pos"
        sql = f"SELECT {', '.join(columns)} FROM embeddings e {join} WHERE e.collection_id = ?"
        params.append(collection_id)
        if where is not None:
            condition, args = compile_clause(where)
            sql += f" AND {condition}"
            params.extend(args)
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        if offset:
            sql += " OFFSET ?"
            params.append(offset)
        try:
            return cursor.sql(sql, params=params).to_arrow_table()
        finally:
            if asked_name is not None:
                cursor.unregister(asked_name)

    def _records(self, table: pa.Table, include: Sequence[str], dimension: Optional[int]) -> Records:
        return Records(
            ids=table["id"].to_pylist(),
            labels=arrow.int64s_of(table["label"]),
            embeddings=arrow.vectors_of(table["embedding"], dimension or 0) if "embeddings" in include else None,
            metadatas=[_metadata_from_json(m) for m in table["metadata"].to_pylist()] if "metadatas" in include else None,
            documents=table["document"].to_pylist() if "documents" in include else None,
        )

    def _columns(self, include: Sequence[str]) -> list[str]:
        return ["e.label", "e.id"] + [_COLUMN[name] for name in include if name in _COLUMN]

    @_storage_errors
    def get(
        self,
        collection_id: str,
        ids: Optional[list[str]],
        where: Optional[Clause],
        limit: Optional[int],
        offset: Optional[int],
        include: Sequence[str],
    ) -> Records:
        with self._snapshot() as cursor:
            record = self._collection(cursor, collection_id)
            table = self._select(cursor, collection_id, ids, where, self._columns(include), limit, offset)
        return self._records(table, include, record.dimension)

    @_storage_errors
    def get_by_labels(self, collection_id: str, labels: np.ndarray, include: Sequence[str]) -> Records:
        cursor = self._cursor()
        asked = np.asarray(labels, dtype=np.int64)
        # Labels are unique in the whole DB, so the label index alone finds the
        # rows; filtering on collection_id or sorting in SQL doubles the time.
        table = cursor.sql(
            f"SELECT {', '.join(self._columns(include))} FROM embeddings e WHERE e.label = ANY(?::BIGINT[])",
            params=[asked.tolist()],
        ).to_arrow_table()
        row_of = {label: row for row, label in enumerate(table["label"].to_pylist())}
        table = table.take(arrow.int64s([row_of[label] for label in asked.tolist() if label in row_of]))
        dimension = len(table["embedding"][0]) if "embeddings" in include and table.num_rows else 0
        return self._records(table, include, dimension)

    @_storage_errors
    def select_labels(self, collection_id: str, where: Clause) -> np.ndarray:
        query = compile_label_set(where, collection_id)
        if query is None:
            condition, params = compile_clause(where)
            query = f"SELECT e.label FROM embeddings e WHERE e.collection_id = ? AND {condition}", [collection_id, *params]
        table = self._cursor().sql(query[0], params=query[1]).to_arrow_table()
        return arrow.int64s_of(table["label"])

    @_storage_errors
    def count(self, collection_id: str) -> int:
        # one statement: no row if the collection does not exist, at any moment of the count
        row = _first(self._cursor().execute(
            "SELECT (SELECT count(*) FROM embeddings WHERE collection_id = ?) FROM collections WHERE id = ?",
            [collection_id, collection_id]).fetchall())
        if row is None:
            raise _not_found(collection_id)
        return row[0]

    @_storage_errors
    def load_vectors(self, collection_id: str) -> tuple[np.ndarray, np.ndarray]:
        cursor = self._cursor()
        record = self._collection(cursor, collection_id)
        table = cursor.sql(
            "SELECT label, embedding FROM embeddings WHERE collection_id = ?", params=[collection_id]
        ).to_arrow_table()
        return arrow.int64s_of(table["label"]), arrow.vectors_of(table["embedding"], record.dimension or 0)

    @_storage_errors
    def load_vector_chunks(self, collection_id: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cursor = self._side_cursor()
        try:
            record = self._collection(cursor, collection_id)
            # a relation's reader streams; a DB-API result's is a copy of every row first
            reader = cursor.sql("SELECT label, embedding FROM embeddings WHERE collection_id = ?",
                                params=[collection_id]).to_arrow_reader(LOAD_CHUNK_ROWS)
        except BaseException:
            cursor.close()
            raise
        return _vector_chunks(cursor, reader, record.dimension or 0)

    # The next three run when a reopened collection answers its first query:
    # NumPy fetches, so that they need no pyarrow.
    @_storage_errors
    def load_ids(self, collection_id: str) -> tuple[np.ndarray, Sequence[str]]:
        cursor = self._cursor()
        self._collection(cursor, collection_id)
        columns = cursor.execute(  # in insertion order, i.e. ascending, without a sort
            "SELECT label, id FROM embeddings WHERE collection_id = ?", [collection_id]
        ).fetchnumpy()
        return np.asarray(columns["label"], dtype=np.int64), columns["id"]

    @_storage_errors
    def load_metadata(self, collection_id: str) -> Iterator[tuple[np.ndarray, list[dict]]]:
        cursor = self._side_cursor()
        try:
            self._collection(cursor, collection_id)
            cursor.execute(
                "SELECT label, metadata FROM embeddings WHERE collection_id = ? AND metadata IS NOT NULL",
                [collection_id])
        except BaseException:
            cursor.close()
            raise
        return _metadata_chunks(cursor)

    @_storage_errors
    def load_texts(self, collection_id: str) -> Iterator[tuple[np.ndarray, list[Optional[str]], list[Optional[str]]]]:
        cursor = self._side_cursor()
        try:
            self._collection(cursor, collection_id)
            cursor.execute("SELECT label, document, metadata FROM embeddings WHERE collection_id = ?",
                           [collection_id])
        except BaseException:
            cursor.close()
            raise
        return _text_chunks(cursor)

    @_storage_errors
    def state_marker(self, collection_id: str) -> Optional[list]:
        """``[label counter, the collection's write counter]``: every add moves the first, every write the second."""
        cursor = self._cursor()
        self._collection(cursor, collection_id)
        values = dict(cursor.execute(
            "SELECT name, value FROM counters WHERE name = 'label' OR name = ?", [_writes_counter(collection_id)]
        ).fetchall())
        return [values.get("label", 0), values.get(_writes_counter(collection_id), 0)]

    def interrupt(self) -> None:
        with self._cursors_lock:
            cursors = list(self._cursors)
        for cursor in cursors:
            cursor.interrupt()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._con.close()


def _vector_chunks(cursor: duckdb.DuckDBPyConnection, reader: Any,
                   dimension: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    with cursor:
        for batch in reader:
            if batch.num_rows:
                yield arrow.int64s_of(batch.column("label")), arrow.vectors_of(batch.column("embedding"), dimension)


def _metadata_chunks(cursor: duckdb.DuckDBPyConnection) -> Iterator[tuple[np.ndarray, list[dict]]]:
    with cursor:
        while True:
            rows = cursor.fetchmany(LOAD_CHUNK_ROWS)
            if not rows:
                return
            labels, texts = zip(*rows)
            # one parse of one JSON array: a fraction of the cost of a json.loads per item
            yield np.array(labels, dtype=np.int64), json.loads("[" + ",".join(texts) + "]")


def _text_chunks(cursor: duckdb.DuckDBPyConnection) -> Iterator[tuple[np.ndarray, list[Optional[str]],
                                                                        list[Optional[str]]]]:
    with cursor:
        while True:
            rows = cursor.fetchmany(LOAD_CHUNK_ROWS)
            if not rows:
                return
            labels, documents, metadata = zip(*rows)
            yield np.array(labels, dtype=np.int64), list(documents), list(metadata)


_MEMORY_SIZE = re.compile(r"\s*\d+(\.\d+)?\s*([KMGT]i?B|B)\s*", re.IGNORECASE)
"""A size as DuckDB reads one; DuckDB itself takes some malformed sizes (``-5MB``) for its default."""


def memory_limit(settings: Settings) -> str:
    """``duckdb_memory_limit``, checked.

    Raises:
        ConfigurationError: it is not a size DuckDB reads as one.
    """
    value = settings.duckdb_memory_limit
    if not _MEMORY_SIZE.fullmatch(value):
        raise errors.ConfigurationError(
            f"setting duckdb_memory_limit (CHROMA_DUCKDB_MEMORY_LIMIT) must be a size such as '64MB' or '1GiB' "
            f"(units B, KB, MB, GB, TB or KiB, MiB, GiB, TiB), got {value!r}")
    return value.strip()


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


class PersistentDuckDB(DuckDB):
    """A DuckDB file in ``persist_directory``: durable once a call returns.

    DuckDB writes each committed transaction to its write-ahead log before the
    commit returns, so a process killed right after a call loses nothing. One
    process at a time may open a directory.
    """

    FILE_NAME = "chroma.duckdb"

    @classmethod
    def store_key(cls, settings: Settings) -> tuple:
        return ("persistent_duckdb", os.path.realpath(settings.persist_directory))

    @classmethod
    def index_files_directory(cls, settings: Settings) -> Optional[str]:
        return settings.persist_directory

    def _location(self) -> str:
        return f"persist_directory {os.path.abspath(self._settings.persist_directory)!r}"

    def _storage_error(self, failure: duckdb.Error) -> Optional[errors.ChromaError]:
        message = str(failure)
        if isinstance(failure, duckdb.OutOfMemoryException):
            return errors.ConfigurationError(
                f"DuckDB needed more memory for this call than duckdb_memory_limit="
                f"{self._settings.duckdb_memory_limit!r} (CHROMA_DUCKDB_MEMORY_LIMIT) allows; nothing was written. "
                f"Raise the limit or send smaller batches ({message.splitlines()[0]})")
        if not any(words in message for words in _CORRUPT):
            return super()._storage_error(failure)
        path = os.path.join(os.path.abspath(self._settings.persist_directory), self.FILE_NAME)
        if "WAL" in message:
            return errors.StorageCorrupt(
                f"the write-ahead log {path + '.wal'!r} is corrupt and cannot be replayed ({message}). Move it "
                "away to open the DB as of its last checkpoint (the writes since are lost), or restore the "
                "directory from a backup")
        return errors.StorageCorrupt(
            f"the DB file {path!r} is corrupt ({message}). Restore persist_directory from a backup, or move "
            "the file (and its .wal) away to start with an empty DB")

    def _reopen(self, generation: int, failure: duckdb.Error) -> None:
        with self._write_lock:
            if generation != self._generation:
                return  # another thread reopened it already
            try:
                self._con.close()
            except duckdb.Error:
                pass
            self._con = self._connect()
            self._generation += 1

    def write_problem(self) -> Optional[str]:
        return directory_write_problem(os.path.abspath(self._settings.persist_directory),
                                       self._settings.min_free_disk_bytes)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        # Only here: the file holds the data, so the buffer pool is a cache that can be
        # bounded. The in-memory DB's data is its buffer pool; capped, it would spill to a
        # temporary directory in the working directory.
        limit = memory_limit(self._settings)
        directory = os.path.abspath(self._settings.persist_directory)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, self.FILE_NAME)
        try:
            return duckdb.connect(path, config={"memory_limit": limit})
        except duckdb.Error as exc:
            corrupt = self._storage_error(exc)
            if corrupt is not None:
                raise corrupt from None
            holder = _LOCK_HOLDER.search(str(exc))
            if not isinstance(exc, duckdb.IOException) or (holder is None and "lock" not in str(exc).lower()):
                raise
            who = f"process {holder['pid']} ({holder['program']})" if holder else "another process"
            raise errors.PersistentDirectoryLocked(
                f"persist_directory {directory!r} is in use by {who}; one process at a time can open it. "
                "To share it between processes, run a server on it (chroma run --path DIR) "
                "and connect with api_impl='fastapi'"
            ) from None
