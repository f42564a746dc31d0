"""``chroma.db.Clickhouse``: collections in a ClickHouse server, shared by processes.

ClickHouse has no transactions and deletes rows only by asynchronous
mutations, so the tables are append-only logs of versioned rows:

- every write batch gets one *version* (a nanosecond clock, strictly
  increasing in this process) and is written as one INSERT of full item rows
  (an update copies the fields it keeps; a delete writes tombstones);
- the batch becomes visible only when its version is inserted into
  ``commits`` afterwards, so a batch that fails half way is never seen;
- readers take, per item label, the row of the highest committed version and
  drop tombstones. So a call sees every batch committed before it started,
  from any process, with no waiting for mutations.

Collections are versioned rows of ``collections`` the same way. Metadata is
stored typed (parallel arrays of key and per-type values) so filters compile
to plain comparisons (``chroma.db.sql`` with a ClickHouse dialect), plus the
JSON as given for returning it. Vectors are stored as raw float32 bytes,
which moves them in and out without per-float conversion.

SQL that runs on ClickHouse 18.16 and on current releases: no boolean
literals, no INTERSECT, no ``DELETE FROM``, no server-side parameters (values
are bound by clickhouse-connect's client-side binder, which quotes them);
inserts name their column types and go uncompressed.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from typing import Any, Iterator, Optional, Sequence

import clickhouse_connect
import numpy as np

from chroma import errors
from chroma.config import Settings
from chroma.db import (DB, DB_CLOSED, LOAD_CHUNK_ROWS, UNCHANGED, Batch, Changes, CollectionRecord, IndexSnapshot, Records, StagedWrite, StoredItems,
                       WriteResult, add_without_vectors, new_ids_without_vectors, some_ids)
from chroma.db.sql import Dialect, compile_clause
from chroma.filters import Clause, reads_document
from chroma.locks import KeyedLocks

_ITEM_COLUMNS = {
    "collection_id": "String",
    "label": "Int64",
    "version": "UInt64",
    "deleted": "UInt8",
    "vector_changed": "UInt8",
    "id": "String",
    "embedding": "String",
    "document": "Nullable(String)",
    "metadata": "Nullable(String)",
    "meta_keys": "Array(String)",
    "meta_strings": "Array(Nullable(String))",
    "meta_ints": "Array(Nullable(Int64))",
    "meta_floats": "Array(Nullable(Float64))",
    "meta_bools": "Array(Nullable(UInt8))",
}
_COLLECTION_COLUMNS = {
    "id": "String",
    "name": "String",
    "metadata": "Nullable(String)",
    "dimension": "Nullable(UInt32)",
    "version": "UInt64",
    "deleted": "UInt8",
}
_COMMIT_COLUMNS = {"collection_id": "String", "version": "UInt64"}
_SNAPSHOT_COLUMNS = {
    "collection_id": "String",
    "snapshot": "UInt64",
    "part": "UInt32",
    "parts": "UInt32",
    "versions": "Array(UInt64)",
    "data": "String",
}
_SNAPSHOT_PART_BYTES = 8 << 20
"""Index snapshots travel in parts of this size (one INSERT each)."""


def _schema(db: str) -> list[str]:
    items = ", ".join(f"{name} {kind}" for name, kind in _ITEM_COLUMNS.items())
    collections = ", ".join(f"{name} {kind}" for name, kind in _COLLECTION_COLUMNS.items())
    snapshots = ", ".join(f"{name} {kind}" for name, kind in _SNAPSHOT_COLUMNS.items())
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"CREATE TABLE IF NOT EXISTS {db}.items ({items}) ENGINE = MergeTree ORDER BY (collection_id, label, version)",
        f"CREATE TABLE IF NOT EXISTS {db}.collections ({collections}) ENGINE = MergeTree ORDER BY (id, version)",
        f"CREATE TABLE IF NOT EXISTS {db}.commits (collection_id String, version UInt64) "
        "ENGINE = MergeTree ORDER BY (collection_id, version)",
        f"CREATE TABLE IF NOT EXISTS {db}.index_snapshots ({snapshots}) "
        "ENGINE = MergeTree ORDER BY (collection_id, snapshot, part)",
    ]


_TABLES = ("items", "collections", "commits", "index_snapshots")
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_QUERY_BYTES = 1 << 30
QUERY_SETTINGS = {
    "max_query_size": MAX_QUERY_BYTES,
    "max_ast_elements": 1 << 26,
    "max_expanded_ast_elements": 1 << 26,
}
"""A write, get or delete of 200,000 ids binds them into the query text as one IN list: lift
the 256 KiB text and 50,000-element syntax tree defaults (18.16 refused "AST is too big")."""
_LABEL_ATTEMPTS = 5


def _metadata_json(metadata: Optional[dict]) -> Optional[str]:
    return None if metadata is None else json.dumps(metadata, separators=(",", ":"))


def _typed_metadata(metadata: Optional[dict]) -> tuple[list, list, list, list, list]:
    """Keys and per-type value arrays (None where a value has another type)."""
    keys, strings, ints, floats, bools = [], [], [], [], []
    for key, value in (metadata or {}).items():
        keys.append(key)
        strings.append(value if isinstance(value, str) else None)
        bools.append(int(value) if isinstance(value, bool) else None)
        ints.append(value if isinstance(value, int) and not isinstance(value, bool) else None)
        floats.append(value if isinstance(value, float) else None)
    return keys, strings, ints, floats, bools


def _vector_bytes(vectors: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    return [row.tobytes() for row in rows]


def _vectors(blobs: Sequence[bytes], dimension: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, dimension), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32).reshape(len(blobs), -1)


def _parameter(value: Any) -> Any:
    """A filter's value as clickhouse-connect binds it: a list as a tuple (``IN (...)``, a set
    built once), and bools as 0/1, since 18.16 has no boolean literals and the bool column holds 0/1."""
    if isinstance(value, list):
        return tuple(_parameter(v) for v in value)
    return int(value) if isinstance(value, bool) else value


def _bind(sql: str, params: Sequence[Any], named: dict) -> tuple[str, dict]:
    """Turns the ``?`` placeholders of compiled filters into named ones beside ``named``."""
    pieces = sql.split("?")
    bound = dict(named)
    text = pieces[0]
    for position, (piece, value) in enumerate(zip(pieces[1:], params)):
        name = f"p{position}"
        text += f"%({name})s" + piece
        bound[name] = _parameter(value)
    return text, bound


class _Clock:
    """Nanosecond timestamps, strictly increasing in this process: versions and labels."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, count: int = 1) -> int:
        """The first of ``count`` consecutive values none of which was handed out before."""
        with self._lock:
            start = max(time.time_ns(), self._last + 1)
            self._last = start + count - 1
            return start


class Clickhouse(DB):
    """Collections in a ClickHouse server (``clickhouse_host``/``clickhouse_port``, HTTP)."""

    shared = True

    @classmethod
    def store_key(cls, settings: Settings) -> tuple:
        return ("clickhouse", settings.clickhouse_host, settings.clickhouse_port, settings.clickhouse_user,
                settings.clickhouse_database)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        database = settings.clickhouse_database
        if not _DATABASE_NAME.fullmatch(database):
            raise errors.ConfigurationError(
                f"setting clickhouse_database={database!r} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"
            )
        self._db = database
        self._local = threading.local()
        self._write_lock = threading.RLock()
        """Held by writes to the collections table as a whole (create, rename, drop, reset)."""
        self._collection_locks = KeyedLocks()
        """Held by every write to one collection (before ``_write_lock``), so that a long write to one
        collection holds up no write to another."""
        self._clock = _Clock()
        self._closed = False
        self._clients: list = []
        self._clients_lock = threading.Lock()
        self._dialect = Dialect(
            contains="(position(ifNull(e.document, ''), ?) > 0)",
            int_as_double="toFloat64(int_value)",
            false="0",
            # Every stored row's metadata, current or not: matching on (label,
            # version) against the current rows ``e`` keeps only current ones, and
            # spares computing the current metadata of the whole collection.
            metadata_table=(
                "(SELECT label, version, key, string_value, int_value, float_value, bool_value "
                f"FROM {database}.items ARRAY JOIN meta_keys AS key, meta_strings AS string_value, "
                "meta_ints AS int_value, meta_floats AS float_value, meta_bools AS bool_value "
                "WHERE collection_id = %(cid)s)"
            ),
            row_key="(e.label, e.version)",
            metadata_key="label, version",
            member="{column} IN ?",
            any_row="max({condition})",
        )
        for statement in _schema(database):
            self._client().command(statement)

    # plumbing
    def _client(self):
        if self._closed:
            raise errors.ClientClosed(DB_CLOSED)
        client = getattr(self._local, "client", None)
        if client is None:
            # One client per thread: a clickhouse-connect client runs one query at a time.
            client = self._connect()
            with self._clients_lock:
                if self._closed:  # closed while connecting: close() has already closed the others
                    client.close()
                    raise errors.ClientClosed(DB_CLOSED)
                self._clients.append(client)
            self._local.client = client
        return client

    def _connect(self):
        """A new clickhouse-connect client."""
        try:
            return clickhouse_connect.get_client(
                host=self._settings.clickhouse_host,
                port=self._settings.clickhouse_port,
                username=self._settings.clickhouse_user,
                password=self._settings.clickhouse_password or "",
                compress=False,  # 18.16 rejects lz4/zstd request bodies
                autogenerate_session_id=False,
                query_limit=0,
                settings=QUERY_SETTINGS,
            )
        except Exception as exc:
            raise errors.ChromaError(
                f"cannot connect to ClickHouse at {self._settings.clickhouse_host}:"
                f"{self._settings.clickhouse_port} (settings clickhouse_host/clickhouse_port): {exc}"
            ) from None

    def _rows(self, sql: str, params: Optional[dict] = None, **kwargs: Any) -> list[tuple]:
        return self._client().query(sql, parameters=params or {}, **kwargs).result_rows

    def write_problem(self) -> Optional[str]:
        where = f"ClickHouse at {self._settings.clickhouse_host}:{self._settings.clickhouse_port}"
        try:
            rows = self._rows("SELECT value FROM system.settings WHERE name = 'readonly'")
        except errors.ClientClosed:
            raise
        except Exception as exc:  # whatever the driver raises for a server that does not answer
            return f"{where} does not answer ({exc}); is it running (settings clickhouse_host/clickhouse_port)?"
        if rows and str(rows[0][0]) != "0":
            return (f"{where} lets user {self._settings.clickhouse_user!r} read only (readonly={rows[0][0]}); "
                    "give that user write access")
        return None

    def _insert(self, table: str, columns: dict[str, str], data: list[list]) -> None:
        self._client().insert(
            f"{self._db}.{table}", data, column_names=list(columns), column_type_names=list(columns.values()),
            column_oriented=True,
        )

    def _live(self, columns: Sequence[str], narrow: str = "") -> str:
        """The current items of collection ``%(cid)s`` as a subquery with ``columns``.

        Per label, each column's value in the newest committed row (argMax
        over committed versions, one pass with no join); labels whose newest
        row is a tombstone are left out. ``narrow`` (``AND ...``) restricts
        the rows looked at, e.g. to some labels or ids, which the sorting key
        finds without reading the whole collection.
        """
        db = self._db
        # Inner names differ from the columns: ClickHouse aliases are query-wide,
        # and argMax(x, version) AS x would refer to itself.
        newest = "".join(f"argMax({c}, version) AS _{c}, " for c in columns if c != "label")
        renamed = ", ".join("label" if c == "label" else f"_{c} AS {c}" for c in columns)
        return (
            f"(SELECT {renamed} FROM (SELECT label, {newest}argMax(deleted, version) AS _gone FROM {db}.items "
            f"WHERE collection_id = %(cid)s {narrow} "
            f"AND version IN (SELECT version FROM {db}.commits WHERE collection_id = %(cid)s) "
            "GROUP BY label HAVING _gone = 0))"
        )

    def _live_collections(self) -> str:
        return (
            "(SELECT id, argMax(name, version) AS cname, argMax(metadata, version) AS cmetadata, "
            f"max(dimension) AS cdimension, argMax(deleted, version) AS gone FROM {self._db}.collections "
            "GROUP BY id HAVING gone = 0)"
        )

    def _collections(self, condition: str, params: dict) -> list[CollectionRecord]:
        rows = self._rows(
            f"SELECT id, cname, cmetadata, cdimension FROM {self._live_collections()} WHERE {condition} ORDER BY cname",
            params,
        )
        return [
            CollectionRecord(id=r[0], name=r[1], metadata=None if r[2] is None else json.loads(r[2]),
                             dimension=None if r[3] is None else int(r[3]))
            for r in rows
        ]

    def _collection(self, collection_id: str) -> CollectionRecord:
        found = self._collections("id = %(id)s", {"id": collection_id})
        if not found:
            raise errors.CollectionNotFound(f"collection {collection_id!r} does not exist")
        return found[0]

    def _write_collection(self, record: CollectionRecord, deleted: bool = False) -> None:
        self._insert("collections", _COLLECTION_COLUMNS, [
            [record.id], [record.name], [_metadata_json(record.metadata)], [record.dimension],
            [self._clock.take()], [int(deleted)],
        ])

    # collections
    def create_collection(self, name: str, metadata: Optional[dict]) -> CollectionRecord:
        with self._write_lock:
            if self._collections("cname = %(name)s", {"name": name}):
                raise errors.CollectionExists(f"collection {name!r} already exists")
            record = CollectionRecord(id=str(uuid.uuid4()), name=name, metadata=metadata, dimension=None)
            self._write_collection(record)
        return record

    def get_collection(self, name: str) -> CollectionRecord:
        found = self._collections("cname = %(name)s", {"name": name})
        if not found:
            raise errors.CollectionNotFound(f"collection {name!r} does not exist")
        return found[0]

    def get_collection_by_id(self, collection_id: str) -> CollectionRecord:
        return self._collection(collection_id)

    def list_collections(self) -> list[CollectionRecord]:
        return self._collections("1", {})

    def update_collection(self, collection_id: str, name: Any = UNCHANGED, metadata: Any = UNCHANGED) -> CollectionRecord:
        # The collection's lock too: a write fixing its dimension rewrites the same record.
        with self._collection_locks.hold(collection_id), self._write_lock:
            record = self._collection(collection_id)
            if name is not UNCHANGED and name != record.name:
                if self._collections("cname = %(name)s", {"name": name}):
                    raise errors.CollectionExists(f"collection {name!r} already exists")
            record = CollectionRecord(
                id=record.id,
                name=record.name if name is UNCHANGED else name,
                metadata=record.metadata if metadata is UNCHANGED else metadata,
                dimension=record.dimension,
            )
            self._write_collection(record)
            if metadata is not UNCHANGED:
                # A batch of no items in the change feed, so that other processes apply the
                # metadata's index settings (hnsw:search_ef) with their next catch-up.
                self._insert("commits", _COMMIT_COLUMNS, [[collection_id], [self._clock.take()]])
            return record

    def delete_collection(self, name: str) -> str:
        while True:
            found = self.get_collection(name)
            with self._collection_locks.hold(found.id), self._write_lock:
                record = self.get_collection(name)
                if record.id != found.id:
                    continue  # replaced under that name meanwhile: lock the new one
                self._write_collection(record, deleted=True)
                # Its rows are unreachable now; reclaim the space in the background.
                for table in ("items", "commits", "index_snapshots"):
                    self._client().command(
                        f"ALTER TABLE {self._db}.{table} DELETE WHERE collection_id = %(cid)s", {"cid": record.id}
                    )
                return record.id

    def reset(self) -> None:
        with self._write_lock:
            for table in _TABLES:
                self._client().command(f"TRUNCATE TABLE {self._db}.{table}")

    # writes
    def _fix_dimension(self, record: CollectionRecord, embeddings: Optional[np.ndarray]) -> Optional[CollectionRecord]:
        """The record with its dimension fixed by ``embeddings`` if it had none (to write); raises on a mismatch."""
        if embeddings is None:
            return None
        dimension = int(embeddings.shape[1])
        if record.dimension is None:
            return CollectionRecord(record.id, record.name, record.metadata, dimension)
        if record.dimension != dimension:
            raise errors.InvalidDimensionError(
                f"embedding dimension {dimension} does not match the collection's dimension {record.dimension}"
            )
        return None

    def _current(self, collection_id: str, ids: Sequence[str]) -> dict[str, tuple]:
        """id -> (label, embedding bytes, document, metadata JSON) of the stored ids among ``ids``."""
        rows = self._rows(
            f"SELECT id, label, embedding, document, metadata FROM "
            f"{self._live(['id', 'label', 'embedding', 'document', 'metadata'], 'AND id IN %(ids)s')}",
            {"cid": collection_id, "ids": tuple(ids)},
            column_formats={"embedding": "bytes"},
        )
        return {r[0]: r[1:] for r in rows}

    def _insert_rows(self, rows: list[list]) -> None:
        self._insert("items", _ITEM_COLUMNS, [list(column) for column in zip(*rows)])

    def _publish(self, collection_id: str, version: int, new_labels: Optional[tuple[int, int]],
                 record: Optional[CollectionRecord]) -> None:
        """Makes the rows of batch ``version`` visible (``record``: the collection with its dimension fixed).

        Raises _LabelClash (another process took some of ``new_labels``: the
        rows stay invisible, try again with new labels).
        """
        if new_labels is not None:
            clash = self._rows(
                f"SELECT count() FROM {self._db}.items WHERE collection_id = %(cid)s AND label >= %(lo)s "
                "AND label < %(hi)s AND version != %(v)s",
                {"cid": collection_id, "lo": new_labels[0], "hi": new_labels[1], "v": version},
            )[0][0]
            if clash:
                raise _LabelClash()
        if record is not None:
            self._write_collection(record)
        self._insert("commits", _COMMIT_COLUMNS, [[collection_id], [version]])

    @staticmethod
    def _row(collection_id: str, label: int, version: int, item_id: str, vector: bytes, vector_changed: bool,
             document: Optional[str], metadata: Optional[dict], deleted: bool = False) -> list:
        return [collection_id, label, version, int(deleted), int(vector_changed), item_id, vector, document,
                _metadata_json(metadata), *_typed_metadata(metadata)]

    @staticmethod
    def _vector_mask(batch: Batch) -> np.ndarray:
        has_vector = np.zeros(len(batch.ids), dtype=bool)
        has_vector[batch.embedded_rows()] = True
        return has_vector

    def _plan(self, collection_id: str, ids: Sequence[str], has_vector: np.ndarray, stored: dict,
              allow_new: bool, allow_old: bool) -> StagedWrite:
        """The batch's version and labels, after checking ``ids`` against ``stored`` (id -> label, ...)."""
        new = [p for p, i in enumerate(ids) if i not in stored]
        old = [p for p, i in enumerate(ids) if i in stored]
        if old and not allow_old:
            raise errors.DuplicateIDError(f"ids already in the collection: {some_ids([ids[p] for p in old])}")
        if new and not allow_new:
            raise errors.IDNotFoundError(f"ids not in the collection: {some_ids([ids[p] for p in new])}")
        unembedded = [ids[p] for p in new if not has_vector[p]]
        if unembedded:
            raise new_ids_without_vectors(unembedded)
        version = self._clock.take()
        first_label = self._clock.take(len(new)) if new else 0
        labels = np.empty(len(ids), dtype=np.int64)
        labels[new] = first_label + np.arange(len(new))
        labels[old] = [stored[ids[p]][0] for p in old]
        existing = np.zeros(len(ids), dtype=bool)
        existing[old] = True
        return StagedWrite(collection_id, version, labels, existing,
                           (first_label, first_label + len(new)) if new else None)

    def _item_rows(self, staged: StagedWrite, positions: Sequence[int], chunk: Batch, current: dict) -> list[list]:
        """Full item rows of batch rows ``positions`` (values in ``chunk``; ``current``: the stored rows of
        its existing ids, whose fields not given are kept)."""
        has_vector = self._vector_mask(chunk)
        blobs = _vector_bytes(chunk.embeddings) if chunk.embeddings is not None else None
        rows = []
        for offset, position in enumerate(positions):
            item_id = chunk.ids[offset]
            document = chunk.documents[offset] if chunk.documents is not None else None
            metadata = chunk.metadatas[offset] if chunk.metadatas is not None else None
            if staged.existing[position]:
                if item_id not in current:
                    raise errors.IDNotFoundError(f"ids not in the collection (deleted meanwhile): {item_id!r}")
                _, old_vector, old_document, old_metadata = current[item_id]
                vector = blobs[offset] if has_vector[offset] else old_vector
                if document is None:
                    document = old_document
                if metadata is None:
                    metadata = None if old_metadata is None else json.loads(old_metadata)
            else:
                vector = blobs[offset]
            rows.append(self._row(staged.collection_id, int(staged.labels[position]), staged.version, item_id,
                                  vector, bool(has_vector[offset]), document, metadata))
        return rows

    def _write(self, collection_id: str, batch: Batch, allow_new: bool, allow_old: bool) -> WriteResult:
        """Adds the new ids and rewrites the existing ones of ``batch`` as one committed batch."""
        for _ in range(_LABEL_ATTEMPTS):
            try:
                return self._write_once(collection_id, batch, allow_new, allow_old)
            except _LabelClash:
                continue
        raise errors.ChromaError(f"could not allocate labels after {_LABEL_ATTEMPTS} attempts (concurrent writers)")

    def _write_once(self, collection_id: str, batch: Batch, allow_new: bool, allow_old: bool) -> WriteResult:
        record = self._collection(collection_id)
        fixed = self._fix_dimension(record, batch.embeddings)
        current = self._current(collection_id, batch.ids)
        has_vector = self._vector_mask(batch)
        staged = self._plan(collection_id, batch.ids, has_vector, current, allow_new, allow_old)
        self._insert_rows(self._item_rows(staged, range(len(batch.ids)), batch, current))
        self._publish(collection_id, staged.version, staged.new_labels, fixed)
        items = StoredItems(staged.labels, batch.ids, batch.metadatas, batch.documents)
        embedded = np.flatnonzero(has_vector)
        if not len(embedded):
            return WriteResult(labels=np.empty(0, dtype=np.int64), embeddings=None, version=staged.version,
                               items=items)
        return WriteResult(labels=staged.labels[embedded], embeddings=batch.embeddings[embedded],
                           version=staged.version, items=items)

    # a batch split among processes (chroma.api.Celery)
    def plan_write(self, collection_id: str, ids: list[str], has_vector: np.ndarray, allow_new: bool,
                   allow_old: bool) -> StagedWrite:
        self._collection(collection_id)
        stored = {item_id: (label,) for item_id, label in self._select(collection_id, ids, None, ["id", "label"],
                                                                        None, None)}
        return self._plan(collection_id, ids, has_vector, stored, allow_new, allow_old)

    def stage_rows(self, staged: StagedWrite, positions: Sequence[int], chunk: Batch) -> None:
        record = self._collection(staged.collection_id)
        self._fix_dimension(record, chunk.embeddings)
        kept = [item_id for offset, item_id in enumerate(chunk.ids) if staged.existing[positions[offset]]]
        current = self._current(staged.collection_id, kept) if kept else {}
        # Rows equal in (label, version) are the same row to every reader, so a retried chunk changes nothing.
        self._insert_rows(self._item_rows(staged, positions, chunk, current))

    def commit_staged(self, staged: StagedWrite, dimension: Optional[int]) -> None:
        with self._collection_locks.hold(staged.collection_id):
            record = self._collection(staged.collection_id)
            probe = None if dimension is None else np.empty((0, dimension), dtype=np.float32)
            fixed = self._fix_dimension(record, probe)
            try:
                self._publish(staged.collection_id, staged.version, staged.new_labels, fixed)
            except _LabelClash:
                self.abort_staged(staged)
                raise errors.ChromaError("another process took labels of this batch while it was written; "
                                         "nothing of it was written, write it again") from None

    def abort_staged(self, staged: StagedWrite) -> None:
        # Its rows are invisible without a commit; reclaim their space in the background.
        self._client().command(
            f"ALTER TABLE {self._db}.items DELETE WHERE collection_id = %(cid)s AND version = %(v)s",
            {"cid": staged.collection_id, "v": staged.version},
        )

    def add(self, collection_id: str, batch: Batch) -> WriteResult:
        if batch.without_embedding():
            raise add_without_vectors(batch.without_embedding())
        with self._collection_locks.hold(collection_id):
            return self._write(collection_id, batch, allow_new=True, allow_old=False)

    def update(self, collection_id: str, batch: Batch) -> WriteResult:
        with self._collection_locks.hold(collection_id):
            return self._write(collection_id, batch, allow_new=False, allow_old=True)

    def upsert(self, collection_id: str, batch: Batch) -> WriteResult:
        with self._collection_locks.hold(collection_id):
            return self._write(collection_id, batch, allow_new=True, allow_old=True)

    def delete(self, collection_id: str, ids: Optional[list[str]], where: Optional[Clause]) -> np.ndarray:
        with self._collection_locks.hold(collection_id):
            self._collection(collection_id)
            rows = self._select(collection_id, ids, where, ["label", "id"], None, None)
            if not rows:
                return np.empty(0, dtype=np.int64)
            version = self._clock.take()
            self._insert_rows([self._row(collection_id, label, version, item_id, b"", False, None, None, deleted=True)
                               for label, item_id in rows])
            self._publish(collection_id, version, None, None)
        return np.array([r[0] for r in rows], dtype=np.int64)

    # reads
    def _select(
        self,
        collection_id: str,
        ids: Optional[list[str]],
        where: Optional[Clause],
        columns: list[str],
        limit: Optional[int],
        offset: Optional[int],
    ) -> list[tuple]:
        """Rows of ``columns`` of the current items matching ``ids`` and ``where``, in the order asked."""
        params: dict = {"cid": collection_id}
        narrow = ""
        if ids is not None:
            if not ids:
                return []
            narrow = "AND id IN %(ids)s"
            params["ids"] = tuple(ids)
        extra = ["id"] if ids is not None else []
        if where is not None:
            extra += ["version", *(["document"] if reads_document(where) else [])]
        fetched = list(dict.fromkeys([*columns, *extra]))
        selected = ", ".join("e." + c for c in columns) + (", e.id AS item_id" if ids is not None else "")
        sql = f"SELECT {selected} FROM {self._live(fetched, narrow)} AS e WHERE 1"
        if where is not None:
            condition, args = compile_clause(where, self._dialect)
            condition, params = _bind(condition, args, params)
            sql += f" AND {condition}"
        sql += " ORDER BY e.label"
        if ids is None and (limit is not None or offset):
            sql += " LIMIT %(offset)s, %(limit)s"
            # 18.16 overflows on offset + limit past int64; no collection holds 2**62 items
            params.update(offset=min(offset or 0, 2**62), limit=min(limit if limit is not None else 2**62, 2**62))
        rows = self._rows(sql, params, column_formats={"embedding": "bytes"})
        if ids is None:
            return rows
        by_id = {r[-1]: r[:-1] for r in rows}
        ordered = [by_id[i] for i in ids if i in by_id]
        start = offset or 0
        return ordered[start: None if limit is None else start + limit]

    def _records(self, rows: list[tuple], include: Sequence[str], dimension: Optional[int] = None) -> Records:
        """Records from rows of ``_columns(include)``; ``dimension`` None: taken from the vectors."""
        names = self._columns(include)
        values = dict(zip(names, zip(*rows))) if rows else {name: () for name in names}
        if "embeddings" in include and dimension is None:
            dimension = len(values["embedding"][0]) // 4 if rows else 0
        return Records(
            ids=list(values["id"]),
            labels=np.array(values["label"], dtype=np.int64),
            embeddings=_vectors(values["embedding"], dimension) if "embeddings" in include else None,
            metadatas=[None if m is None else json.loads(m) for m in values["metadata"]] if "metadatas" in include else None,
            documents=list(values["document"]) if "documents" in include else None,
        )

    @staticmethod
    def _columns(include: Sequence[str]) -> list[str]:
        named = {"embeddings": "embedding", "documents": "document", "metadatas": "metadata"}
        return ["label", "id"] + [named[name] for name in include if name in named]

    def get(
        self,
        collection_id: str,
        ids: Optional[list[str]],
        where: Optional[Clause],
        limit: Optional[int],
        offset: Optional[int],
        include: Sequence[str],
    ) -> Records:
        record = self._collection(collection_id)
        rows = self._select(collection_id, ids, where, self._columns(include), limit, offset)
        return self._records(rows, include, record.dimension or 0)

    def get_by_labels(self, collection_id: str, labels: np.ndarray, include: Sequence[str]) -> Records:
        asked = np.asarray(labels, dtype=np.int64).tolist()
        if not asked:
            return self._records([], include)
        columns = self._columns(include)
        rows = self._rows(
            f"SELECT {', '.join(columns)} FROM {self._live(columns, 'AND label IN %(labels)s')}",
            {"cid": collection_id, "labels": tuple(asked)},
            column_formats={"embedding": "bytes"},
        )
        by_label = {r[0]: r for r in rows}
        return self._records([by_label[label] for label in asked if label in by_label], include)

    def select_labels(self, collection_id: str, where: Clause) -> np.ndarray:
        rows = self._select(collection_id, None, where, ["label"], None, None)
        return np.array([r[0] for r in rows], dtype=np.int64)

    def count(self, collection_id: str) -> int:
        self._collection(collection_id)
        return int(self._rows(f"SELECT count() FROM {self._live(['label'])}", {"cid": collection_id})[0][0])

    def load_vectors(self, collection_id: str) -> tuple[np.ndarray, np.ndarray]:
        record = self._collection(collection_id)
        # in insertion order, as the index breaks ties by position
        rows = self._rows(f"SELECT label, embedding FROM {self._live(['label', 'embedding'])} ORDER BY label",
                          {"cid": collection_id},
                          column_formats={"embedding": "bytes"})
        labels = np.array([r[0] for r in rows], dtype=np.int64)
        return labels, _vectors([r[1] for r in rows], record.dimension or 0)

    def load_ids(self, collection_id: str) -> tuple[np.ndarray, Sequence[str]]:
        self._collection(collection_id)
        rows = self._rows(f"SELECT label, id FROM {self._live(['label', 'id'])} ORDER BY label", {"cid": collection_id})
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def load_metadata(self, collection_id: str) -> Iterator[tuple[np.ndarray, list[dict]]]:
        self._collection(collection_id)
        rows = self._rows(f"SELECT label, metadata FROM {self._live(['label', 'metadata'])} WHERE metadata IS NOT NULL",
                          {"cid": collection_id})
        # the rows come in one answer; the dicts, many times their size, a chunk at a time
        return ((np.array([r[0] for r in rows[start:start + LOAD_CHUNK_ROWS]], dtype=np.int64),
                 [json.loads(r[1]) for r in rows[start:start + LOAD_CHUNK_ROWS]])
                for start in range(0, len(rows), LOAD_CHUNK_ROWS))

    # other writers
    def versions(self, collection_id: str) -> frozenset:
        rows = self._rows(f"SELECT version FROM {self._db}.commits WHERE collection_id = %(cid)s", {"cid": collection_id})
        return frozenset(r[0] for r in rows)

    def changes_since(self, collection_id: str, versions: frozenset) -> Optional[Changes]:
        db = self._db
        # The collection's metadata as [] (no such collection), [''] (None) or [JSON].
        committed, metadata = self._rows(
            f"SELECT (SELECT groupArray(version) FROM {db}.commits WHERE collection_id = %(cid)s), "
            f"(SELECT groupArray(ifNull(cmetadata, '')) FROM {self._live_collections()} WHERE id = %(cid)s)",
            {"cid": collection_id},
        )[0]
        if not metadata:
            raise errors.CollectionNotFound(f"collection {collection_id!r} does not exist")
        committed = frozenset(committed)
        unseen = committed - versions
        if not unseen:
            return None
        # The newest committed state of every label an unseen batch touched,
        # right whatever order the batches committed in; its vector only if
        # an unseen batch changed it (a metadata update keeps the vector).
        rows = self._rows(
            f"SELECT label, argMax(deleted, version), argMax(id, version), argMax(metadata, version), "
            "max(vector_changed = 1 AND version IN %(unseen)s) AS moved, "
            "argMax(document, version), "
            f"if(moved, argMax(embedding, version), '') AS vector FROM {db}.items "
            f"WHERE collection_id = %(cid)s AND version IN (SELECT version FROM {db}.commits WHERE collection_id = %(cid)s) "
            f"AND label IN (SELECT label FROM {db}.items WHERE collection_id = %(cid)s AND version IN %(unseen)s) "
            "GROUP BY label ORDER BY label",
            {"cid": collection_id, "unseen": tuple(unseen)},
            column_formats={"vector": "bytes"},
        )
        kept = [r for r in rows if not r[1]]
        moved = [r for r in kept if r[4]]
        dimension = len(moved[0][6]) // 4 if moved else 0
        return Changes(
            versions=committed,
            labels=np.array([r[0] for r in moved], dtype=np.int64),
            embeddings=_vectors([r[6] for r in moved], dimension),
            removed=np.array([r[0] for r in rows if r[1]], dtype=np.int64),
            items=StoredItems(
                labels=np.array([r[0] for r in kept], dtype=np.int64),
                ids=[r[2] for r in kept],
                metadatas=[None if r[3] is None else json.loads(r[3]) for r in kept],
                documents=[r[5] for r in kept],
            ),
            metadata=json.loads(metadata[0]) if metadata[0] else None,
        )

    # index snapshots
    def save_index_snapshot(self, collection_id: str, snapshot: IndexSnapshot) -> None:
        number = self._clock.take()
        data = memoryview(snapshot.data)
        parts = max(1, -(-len(data) // _SNAPSHOT_PART_BYTES))
        for part in range(parts):
            piece = bytes(data[part * _SNAPSHOT_PART_BYTES:(part + 1) * _SNAPSHOT_PART_BYTES])
            versions = sorted(snapshot.versions) if part == 0 else []
            self._insert("index_snapshots", _SNAPSHOT_COLUMNS,
                         [[collection_id], [number], [part], [parts], [versions], [piece]])
        # Readers take the newest complete snapshot; older ones go in the background.
        self._client().command(
            f"ALTER TABLE {self._db}.index_snapshots DELETE WHERE collection_id = %(cid)s AND snapshot < %(n)s",
            {"cid": collection_id, "n": number},
        )

    def load_index_snapshot(self, collection_id: str) -> Optional[IndexSnapshot]:
        table = f"{self._db}.index_snapshots"
        newest = self._rows(
            f"SELECT snapshot FROM {table} WHERE collection_id = %(cid)s GROUP BY snapshot "
            "HAVING uniqExact(part) = max(parts) ORDER BY snapshot DESC LIMIT 1",
            {"cid": collection_id},
        )
        if not newest:
            return None
        rows = self._rows(
            f"SELECT part, versions, data FROM {table} WHERE collection_id = %(cid)s AND snapshot = %(n)s "
            "ORDER BY part",
            {"cid": collection_id, "n": newest[0][0]},
            column_formats={"data": "bytes"},
        )
        parts = {part: (versions, data) for part, versions, data in rows}  # a part inserted twice is the same part
        return IndexSnapshot(versions=frozenset(parts[0][0]), data=b"".join(parts[p][1] for p in sorted(parts)))

    def close(self) -> None:
        with self._clients_lock:
            if not self._closed:
                self._closed = True
                for client in self._clients:
                    client.close()
                self._clients.clear()


class _LabelClash(Exception):
    """Another process wrote rows with some of the labels this batch took."""
