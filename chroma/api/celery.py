"""``chroma.api.Celery``: a Local that hands long-running work to Celery workers.

Chosen by ``api_impl="celery"`` with ``celery_broker_url`` (and
``celery_result_backend``, the broker by default) over a DB that the workers
share (``db_impl="clickhouse"``); workers run ``chroma worker`` with the same
settings (``chroma.worker``). What goes to the workers:

- adds, upserts and updates of at least ``celery_write_threshold`` ids. The
  batch is checked and planned here (ids against the store, labels, one
  version), written by the workers in chunks of ``celery_chunk_size`` ids in
  parallel, each chunk invisible until this process commits the whole batch
  after every chunk succeeded. When the collection uses the configured default
  embedding function (``embedding_function``, which workers load too), the
  workers also compute the embeddings of documents;
- building the index of a collection of at least ``celery_write_threshold``
  items that this process has not loaded yet: a worker builds (or brings up to
  date) its index and keeps a snapshot of it in the DB, which this process
  then loads and catches up from, instead of building it here;
- query batches of at least ``celery_query_threshold`` queries, in chunks of
  ``celery_query_chunk_size``, each answered by a worker's own index.

Everything else runs in this process, exactly as in Local. A call blocks until
its work is done and returns what Local returns; an error a worker raised is
raised here with the same ``chroma.errors`` class and message. A batch whose
chunks did not all succeed is never committed, so none of it becomes visible.
The waiting has no overall limit, but a call fails with ``WorkerError`` when
none of its tasks made progress for ``celery_timeout`` seconds (no worker
running, or a worker died and no other took its task again within that
time); an unreachable broker raises ``ServerUnavailable`` within seconds.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np
from kombu.utils.url import maybe_sanitize_url

from chroma import embedding, errors, worker
from chroma.api import arguments
from chroma.api.local import Local
from chroma.engine import check_query_dimension
from chroma.index import Persistent
from chroma.collection import NO_EMBEDDING_FUNCTION
from chroma.config import Settings
from chroma.db import DB, Batch, CollectionRecord, StoredItems, WriteResult, add_without_vectors
from chroma.protocol import error_map
from chroma.types import EmbeddingFunction, QueryResult

BROKER_CONNECT_SECONDS = 3.0
_POLL_SECONDS = (0.002, 0.05)
"""First and longest pause between looks at the tasks' states (it doubles in between)."""


def _count(ids: Any) -> int:
    return len(ids) if isinstance(ids, Sequence) and not isinstance(ids, str) else 1


class Celery(Local):
    """Local, with bulk writes, index builds and large query batches done by Celery workers."""

    def __init__(self, settings: Settings, db: Optional[DB] = None) -> None:
        super().__init__(settings, db)
        if not self._db.shared:
            raise errors.ConfigurationError(
                f"api_impl='celery' needs a DB that its workers share: db_impl='clickhouse' "
                f"(got db_impl={settings.db_impl!r})"
            )
        self._app = worker.make_app(settings)
        self._broker = maybe_sanitize_url(settings.celery_broker_url)
        self._check_broker()

    def _check_broker(self) -> None:
        try:
            with self._app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=BROKER_CONNECT_SECONDS)
        except Exception as exc:  # kombu raises the transport's own errors
            raise errors.ServerUnavailable(
                f"cannot reach the Celery broker at {self._broker} (setting celery_broker_url): {exc}"
            ) from None

    def close(self) -> None:
        super().close()
        self._app.close()

    # --- running tasks ------------------------------------------------------------------------------
    def _run(self, task: str, payloads: list[dict]) -> list[dict]:
        """Sends one task per payload and waits for all; their results in payload order.

        Raises:
            ServerUnavailable: the broker cannot be reached.
            WorkerError: no task made progress for ``celery_timeout`` seconds, or a task failed
                outside chroma's errors (its worker's traceback is in the message).
            ChromaError: the first (in payload order) chroma error a task reported.
        """
        try:
            # Task ids only: a result object alive later talks to the result backend when freed.
            task_ids = [self._app.send_task(task, args=(payload,)).id for payload in payloads]
        except Exception as exc:
            raise errors.ServerUnavailable(
                f"cannot send work to the Celery broker at {self._broker} (setting celery_broker_url): {exc}"
            ) from None
        try:
            results = self._wait(task, task_ids)
        except BaseException:
            try:  # best effort: what still runs is discarded, and a batch is not committed anyway
                self._app.control.revoke(task_ids)
            except Exception:  # noqa: BLE001 - the broker may be what failed
                pass
            raise
        for task_id, result in zip(task_ids, results):
            error = error_map.rebuilt(result, error_map.Origin(f"{self._broker} task {task} {task_id}", "reported"))
            if error is not None:
                raise error
        return results

    def _wait(self, task: str, task_ids: list[str]) -> list[dict]:
        backend = self._app.backend
        done: dict[int, dict] = {}
        seen: dict[int, tuple] = {}
        last_progress = time.monotonic()
        pause = _POLL_SECONDS[0]
        while len(done) < len(task_ids):
            for position, task_id in enumerate(task_ids):
                if position in done:
                    continue
                meta = backend.get_task_meta(task_id)
                state, info = meta["status"], meta.get("result")
                if state == "SUCCESS":
                    done[position] = info
                elif state in ("FAILURE", "REVOKED"):
                    raise errors.WorkerError(f"a {task} task failed on its worker: {meta.get('traceback') or info!r}")
                if seen.get(position) != (state, repr(info)):
                    seen[position] = (state, repr(info))
                    last_progress = time.monotonic()
            if len(done) == len(task_ids):
                break
            if time.monotonic() - last_progress > self._settings.celery_timeout:
                started = sum(1 for state, _ in seen.values() if state != "PENDING")
                raise errors.WorkerError(
                    f"no progress from the Celery workers for {self._settings.celery_timeout:g} s "
                    f"({len(done)} of {len(task_ids)} {task} tasks done, {started} taken): is `chroma worker` "
                    f"running against the broker {self._broker}? (setting celery_timeout)"
                )
            time.sleep(pause)
            pause = min(pause * 2, _POLL_SECONDS[1])
        return [done[position] for position in range(len(task_ids))]

    # --- bulk writes --------------------------------------------------------------------------------
    def _embeds_documents(self, embedding_function: Optional[EmbeddingFunction], count: int) -> bool:
        # Workers load the default function from their own settings; a function given to
        # one collection in this process cannot be shipped to them.
        return (embedding_function is not None and embedding_function is self._default_embedding_function
                and count >= self._settings.celery_write_threshold)

    def _add(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
             embed_missing: bool = False) -> None:
        self._routed("add", collection_id, ids, embeddings, metadatas, documents, embed_missing)

    def _upsert(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
                embed_missing: bool = False) -> None:
        self._routed("upsert", collection_id, ids, embeddings, metadatas, documents, embed_missing)

    def _update(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
                embed_missing: bool = False) -> None:
        self._routed("update", collection_id, ids, embeddings, metadatas, documents, embed_missing)

    def _routed(self, operation: str, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any,
                embed_missing: bool) -> None:
        """A small write in this process (as Local), a large one on the workers."""
        if _count(ids) < self._settings.celery_write_threshold:
            getattr(super(), f"_{operation}")(collection_id, ids, embeddings, metadatas, documents,
                                              embed_missing=embed_missing)
            return
        if embed_missing:
            embeddings = self._embedded_here(collection_id, ids, embeddings, documents, required=operation == "add")
        self._bulk_write(collection_id, arguments.batch(ids, embeddings, metadatas, documents), operation)

    def _bulk_write(self, collection_id: str, batch: Batch, operation: str) -> None:
        """Plans the batch here, has the workers write its chunks, then commits it whole."""
        embed = batch.embeddings is None and batch.documents is not None and self._embeds_documents(
            self._default_embedding_function, len(batch.ids))
        if (embed and isinstance(self._default_embedding_function, embedding.DefaultEmbeddingFunction)
                and any(document is not None for document in batch.documents)):
            try:
                self._check_default_model(collection_id, "documents")  # before any worker runs
            except errors.EmbeddingFunctionMismatch:
                if operation == "add":
                    raise
                # documents alone on a collection of given vectors: its items keep their vectors
                # (as Collection._write_embeddings decides in process)
                embed = False
        if embed:
            has_vector = np.array([document is not None for document in batch.documents], dtype=bool)
        else:
            has_vector = np.zeros(len(batch.ids), dtype=bool)
            has_vector[batch.embedded_rows()] = True
        if operation == "add":
            if batch.embeddings is None and not embed:
                raise errors.InvalidArgument(NO_EMBEDDING_FUNCTION if batch.documents else "add needs embeddings")
            if not has_vector.all():
                raise add_without_vectors([i for i, present in zip(batch.ids, has_vector) if not present])
        engine = self._engine
        with engine.exclusive(collection_id):
            staged = self._db.plan_write(collection_id, batch.ids, has_vector, allow_new=operation != "update",
                                         allow_old=operation != "add")
            size = self._settings.celery_chunk_size
            payloads = []
            for start in range(0, len(batch.ids), size):
                rows = range(start, min(start + size, len(batch.ids)))
                chunk = batch.take(rows)
                payloads.append({
                    "collection_id": collection_id,
                    "version": staged.version,
                    "labels": np.ascontiguousarray(staged.labels[start:rows.stop], dtype="<i8").tobytes(),
                    "existing": np.ascontiguousarray(staged.existing[start:rows.stop]).tobytes(),
                    "new_labels": list(staged.new_labels) if staged.new_labels else None,
                    "ids": chunk.ids,
                    "embeddings": worker.pack_matrix(chunk.embeddings),
                    "missing": None if chunk.missing is None else np.ascontiguousarray(chunk.missing).tobytes(),
                    "metadatas": chunk.metadatas,
                    "documents": chunk.documents,
                    "embed": embed,
                    "embedding_function": self._settings.embedding_function,
                    "required": operation == "add",
                })
            try:
                dimensions = {r["dimension"] for r in self._run(worker.STAGE_ROWS, payloads)} - {None}
                if len(dimensions) > 1:
                    raise errors.InvalidDimensionError(
                        f"the embedding function returned vectors of dimensions {sorted(dimensions)} in one batch")
                self._db.commit_staged(staged, dimensions.pop() if dimensions else None)
            except BaseException:
                self._db.abort_staged(staged)
                raise
            if not embed:
                # The vectors are at hand: keep loaded derived state current as Local does. A batch
                # the workers embedded reaches it with the next query's catch-up instead. Unlike
                # Local, an unloaded collection stays so: a worker builds its index when first needed.
                embedded = np.flatnonzero(has_vector)
                engine.committed(collection_id, WriteResult(
                    labels=staged.labels[embedded],
                    embeddings=batch.embeddings[embedded] if len(embedded) else None,
                    version=staged.version,
                    items=StoredItems(staged.labels, batch.ids, batch.metadatas, batch.documents),
                ), load_if_absent=False)

    # --- index builds -------------------------------------------------------------------------------
    def _build_on_worker(self, record: CollectionRecord) -> None:
        """Before a collection's state loads here (``chroma.engine.PrepareLoad``): a worker builds a
        large collection's index and leaves a snapshot in the DB, which the load then takes."""
        if (issubclass(self._index_class, Persistent)
                and self._db.count(record.id) >= self._settings.celery_write_threshold):
            self._run(worker.BUILD_INDEX, [{"collection_id": record.id}])

    # --- large query batches ------------------------------------------------------------------------
    def _query(
        self,
        collection_id: str,
        query_embeddings: Any,
        n_results: Any,
        where: Any,
        where_document: Any,
        include: Sequence[str],
    ) -> QueryResult:
        checked = arguments.query_arguments(query_embeddings, n_results, where, where_document, include)
        if len(checked.queries) < self._settings.celery_query_threshold:
            return self._query_checked(collection_id, checked, self._build_on_worker)
        check_query_dimension(checked.queries, self._db.get_collection_by_id(collection_id).dimension)
        size = self._settings.celery_query_chunk_size
        payloads = [{
            "collection_id": collection_id,
            "queries": worker.pack_matrix(checked.queries[start:start + size]),
            "n_results": checked.n_results,
            "where": where,
            "where_document": where_document,
            "include": list(checked.include),
        } for start in range(0, len(checked.queries), size)]
        parts = [r["result"] for r in self._run(worker.QUERY, payloads)]
        merged: QueryResult = {key: None for key in ("ids", "embeddings", "metadatas", "documents", "distances")}
        for key in merged:
            if key == "ids" or parts[0].get(key) is not None:
                merged[key] = [row for part in parts for row in part[key]]
        if merged["embeddings"] is not None:
            merged["embeddings"] = [worker.unpack_matrix(rows) for rows in merged["embeddings"]]
        return merged
