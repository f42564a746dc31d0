"""A real Redis broker and real ``chroma worker`` processes for tests (not a test module itself).

Redis and the workers are started by ``chroma.bench.celery_processes``. When
``redis-server`` is missing, tests skip, except under ``CI=true``, where
``.ci/run`` installs the Debian package and a missing server is a failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from chroma.bench.celery_processes import REDIS_BINARY, RedisServer, WorkerProcess, redis_available, start_redis
from required_services import require_service

TESTS = Path(__file__).resolve().parent
DEFAULT_EMBEDDING_FUNCTION = "embedding_functions:hashed"
"""What the workers of the tests load as their default embedding function (tests/embedding_functions.py)."""


def require_redis() -> None:
    """Skips the calling test without redis-server; fails instead under CI=true."""
    require_service(redis_available(), f"{REDIS_BINARY} is not installed (apt-get install redis-server)")


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    require_redis()
    server = start_redis(directory)
    try:
        yield server
    finally:
        server.stop()


def worker_settings(db_settings: dict, redis: RedisServer, **more) -> dict:
    """Settings shared by the workers and clients of a test: the DB, the broker, the default embedding function."""
    return {**db_settings, "celery_broker_url": redis.url, "celery_result_backend": redis.url,
            "embedding_function": DEFAULT_EMBEDDING_FUNCTION, **more}


def start_workers(directory: Path, settings: dict, count: int) -> list[WorkerProcess]:
    """``count`` worker processes that can import tests/embedding_functions.py."""
    workers = []
    try:
        for number in range(count):
            workers.append(WorkerProcess(directory, settings, name=f"worker{number}",
                                         python_path=[str(TESTS)]).start())
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


@contextlib.contextmanager
def running_workers(directory: Path, settings: dict, count: int = 2) -> Iterator[list[WorkerProcess]]:
    workers = start_workers(directory, settings, count)
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()
