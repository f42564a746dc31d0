"""The worker side of ``chroma.api.Celery``: the Celery app, its tasks, ``chroma worker``.

A worker is configured by the same settings as its clients (``CHROMA_*``
environment variables): the broker (``celery_broker_url``), the result
backend, and the shared DB the clients use (``db_impl="clickhouse"`` with its
host and port), plus ``embedding_function`` if workers are to embed
documents. Start one per machine (or several) with::

    chroma worker                      # or: celery -A chroma.worker worker

Each task runs its work through a ``chroma.api.Local`` of the worker process
over that DB, so a worker checks input and raises exactly as Local does; a
``chroma.errors`` exception travels back as its class name and message (no
pickled objects cross the broker: messages are msgpack).

Failures: tasks are acknowledged only after they finish (``acks_late``), so a
task whose worker dies is given to another worker (over Redis, after
``celery_visibility_timeout`` seconds). Every task is idempotent: a staged
chunk written twice is the same rows, and staged rows stay invisible until
the client commits the batch, which it does only after every chunk reported
success.
"""

from __future__ import annotations

import dataclasses
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import celery
import numpy as np

from chroma import errors
from chroma.config import Settings, current_settings
from chroma.db import Batch, StagedWrite
from chroma.protocol import error_map

STAGE_ROWS = "chroma.stage_rows"
QUERY = "chroma.query"
BUILD_INDEX = "chroma.build_index"
HEARTBEAT_SECONDS = 2.0
"""A running task refreshes its state this often, so a client can tell a long task from a dead worker."""


def make_app(settings: Settings) -> celery.Celery:
    """The Celery app of these settings, with chroma's tasks registered.

    Raises:
        ConfigurationError: ``celery_broker_url`` is not set.
    """
    if not settings.celery_broker_url:
        raise errors.ConfigurationError(
            "api_impl='celery' needs setting celery_broker_url (e.g. CHROMA_CELERY_BROKER_URL=redis://127.0.0.1:6379/0)"
        )
    app = celery.Celery("chroma", broker=settings.celery_broker_url,
                        backend=settings.celery_result_backend or settings.celery_broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=["msgpack"],
        result_accept_content=["msgpack"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=3600,
        broker_transport_options={"visibility_timeout": settings.celery_visibility_timeout},
        # A missing broker is an error within seconds, not a hang.
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.task(name=STAGE_ROWS, bind=True)(_stage_rows)
    app.task(name=QUERY, bind=True)(_query)
    app.task(name=BUILD_INDEX, bind=True)(_build_index)
    return app


# --- the worker process's own Local ---------------------------------------------------------------

_local_lock = threading.Lock()
_local: Optional[Any] = None


def worker_api():
    """This worker process's ``chroma.api.Local`` over the configured DB (one per process)."""
    global _local
    with _local_lock:
        if _local is None:
            from chroma.api.local import Local

            settings = dataclasses.replace(current_settings(), api_impl="local")
            _local = Local(settings)
        return _local


@contextmanager
def _heartbeat(task: Any) -> Iterator[None]:
    """Refreshes the task's state while it runs (a long index build is not a stalled worker)."""
    stop = threading.Event()

    def beat() -> None:
        count = 0
        while not stop.wait(HEARTBEAT_SECONDS):
            count += 1
            task.update_state(state="PROGRESS", meta={"beat": count})

    thread = threading.Thread(target=beat, daemon=True, name="chroma-task-heartbeat")
    if task.request.id is not None:
        thread.start()
    try:
        yield
    finally:
        stop.set()


def _reported(task: Any, work: Callable[[], dict]) -> dict:
    """``work()`` under the task's heartbeat, or the chroma error it raised as the body of
    :mod:`chroma.protocol.error_map` (``{"error": class name, "message": text}``)."""
    with _heartbeat(task):
        try:
            return work()
        except errors.ChromaError as exc:
            return error_map.body(exc)


# --- tasks ------------------------------------------------------------------------------------------

def _stage_rows(task: Any, payload: dict) -> dict:
    """Writes one chunk of a planned batch (invisible until the client commits it); embeds its
    documents first when asked to. Returns ``{"dimension": d}`` (None: the chunk carries no vector)."""

    def work() -> dict:
        from chroma.api import arguments

        local = worker_api()
        if payload["embed"]:
            # The default embedding function of the worker's own settings (a message never names
            # code for a worker to import), applied as a Collection does.
            wanted, own = payload["embedding_function"], local.settings.embedding_function
            if wanted != own:
                raise errors.ConfigurationError(
                    f"the client embeds documents with embedding_function={wanted!r}, this worker has "
                    f"{own!r}; start workers with the same CHROMA_EMBEDDING_FUNCTION as the clients"
                )
            embeddings = local.embed_for_write(payload["collection_id"], payload["ids"], payload["documents"],
                                               payload["required"])
            chunk = arguments.batch(payload["ids"], embeddings, payload["metadatas"], payload["documents"])
        else:  # checked by the client already
            missing = payload["missing"]
            chunk = Batch(ids=payload["ids"], embeddings=unpack_matrix(payload["embeddings"]),
                          metadatas=payload["metadatas"], documents=payload["documents"],
                          missing=None if missing is None else np.frombuffer(missing, dtype=bool))
        staged = StagedWrite(
            collection_id=payload["collection_id"],
            version=payload["version"],
            labels=np.frombuffer(payload["labels"], dtype="<i8"),
            existing=np.frombuffer(payload["existing"], dtype=bool),
            new_labels=tuple(payload["new_labels"]) if payload["new_labels"] else None,
        )
        local.stage_rows(staged, chunk)
        dimension = None if chunk.embeddings is None else int(chunk.embeddings.shape[1])
        return {"dimension": dimension}

    return _reported(task, work)


def _query(task: Any, payload: dict) -> dict:
    """One chunk of a large query batch, answered by this worker's Local; the result as plain values."""

    def work() -> dict:
        local = worker_api()
        result = local._query(payload["collection_id"], unpack_matrix(payload["queries"]), payload["n_results"],
                              payload["where"], payload["where_document"], payload["include"])
        if result.get("embeddings") is not None:
            result["embeddings"] = [pack_matrix(rows) for rows in result["embeddings"]]
        return {"result": result}

    return _reported(task, work)


def _build_index(task: Any, payload: dict) -> dict:
    """Builds (or brings up to date) the collection's index and keeps a snapshot of it in the DB."""

    def work() -> dict:
        local = worker_api()
        versions = local.save_index_snapshot(payload["collection_id"])
        if versions is None:
            return {"saved": False}
        return {"saved": True, "versions": versions}

    return _reported(task, work)


# --- vectors in messages ----------------------------------------------------------------------------

def pack_matrix(matrix: Optional[np.ndarray]) -> Optional[dict]:
    """A float32 matrix as msgpack-ready ``{"shape": [n, d], "data": little-endian bytes}``."""
    if matrix is None:
        return None
    array = np.ascontiguousarray(matrix, dtype="<f4")
    return {"shape": list(array.shape), "data": array.tobytes()}


def unpack_matrix(packed: Optional[dict]) -> Optional[np.ndarray]:
    if packed is None:
        return None
    return np.frombuffer(packed["data"], dtype="<f4").astype(np.float32).reshape(packed["shape"])


# ``celery -A chroma.worker worker`` finds the app here, configured from the environment.
def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        return _module_app()
    raise AttributeError(f"module 'chroma.worker' has no attribute {name!r}")


_module_app_instance: Optional[celery.Celery] = None


def _module_app() -> celery.Celery:
    global _module_app_instance
    if _module_app_instance is None:
        _module_app_instance = make_app(current_settings())
    return _module_app_instance
