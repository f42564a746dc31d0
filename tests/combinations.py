"""The (API, DB) combinations the conformance suite runs against.

Every test that takes the ``client`` fixture runs once per registered
combination. A new combination (say a FastAPI server over ClickHouse) is added
by registering it here; no test is copied. Its ``setup`` context manager may
start and stop whatever the combination needs (a server process, a scratch
directory) around the yielded settings.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ContextManager

import pytest

from celery_helpers import running_redis, running_workers, worker_settings
from clickhouse_helpers import running_clickhouse
from server_helpers import running_server


@dataclass(frozen=True)
class Combination:
    """One way of running chroma: ``setup(tmp_path)`` yields ``chroma.configure`` settings."""

    name: str
    setup: Callable[[pathlib.Path], ContextManager[dict]]


COMBINATIONS: list[Combination] = []


def register(combination: Combination) -> Combination:
    """Add ``combination`` to the suite; names must be unique."""
    if any(existing.name == combination.name for existing in COMBINATIONS):
        raise ValueError(f"combination {combination.name!r} is registered already")
    COMBINATIONS.append(combination)
    return combination


@contextlib.contextmanager
def _local_duckdb(tmp_path: pathlib.Path) -> Iterator[dict]:
    yield {"api_impl": "local", "db_impl": "duckdb", "allow_reset": True}


@contextlib.contextmanager
def _local_persistent_duckdb(tmp_path: pathlib.Path) -> Iterator[dict]:
    persist_directory = tmp_path / "chroma-persist"
    persist_directory.mkdir()
    yield {
        "api_impl": "local",
        "db_impl": "persistent_duckdb",
        "persist_directory": str(persist_directory),
        "allow_reset": True,
    }


@contextlib.contextmanager
def _local_duckdb_hnswlib(tmp_path: pathlib.Path) -> Iterator[dict]:
    # The hnswlib package as the index: the same contract as the core's HNSW.
    yield {"api_impl": "local", "db_impl": "duckdb", "index_impl": "hnswlib", "allow_reset": True}


def _fastapi_settings(port: int) -> dict:
    return {"api_impl": "fastapi", "server_host": "127.0.0.1", "server_http_port": port, "allow_reset": True}


@contextlib.contextmanager
def _fastapi_duckdb(tmp_path: pathlib.Path) -> Iterator[dict]:
    # A real uvicorn server in a subprocess (``chroma run``), in memory.
    with running_server(tmp_path, allow_reset="1") as server:
        yield _fastapi_settings(server.port)


@contextlib.contextmanager
def _fastapi_persistent_duckdb(tmp_path: pathlib.Path) -> Iterator[dict]:
    persist_directory = tmp_path / "chroma-persist"
    with running_server(tmp_path, "--path", str(persist_directory), allow_reset="1") as server:
        yield _fastapi_settings(server.port)


def _flight_settings(port: int) -> dict:
    return {"api_impl": "arrowflight", "server_host": "127.0.0.1", "server_flight_port": port, "allow_reset": True}


@contextlib.contextmanager
def _flight_duckdb(tmp_path: pathlib.Path) -> Iterator[dict]:
    # A real Flight server in a subprocess (``chroma run --impl flight``), in memory.
    with running_server(tmp_path, impl="flight", allow_reset="1") as server:
        yield _flight_settings(server.flight_port)


@contextlib.contextmanager
def _flight_persistent_duckdb(tmp_path: pathlib.Path) -> Iterator[dict]:
    persist_directory = tmp_path / "chroma-persist"
    with running_server(tmp_path, "--path", str(persist_directory), impl="flight", allow_reset="1") as server:
        yield _flight_settings(server.flight_port)


@contextlib.contextmanager
def _local_clickhouse(tmp_path: pathlib.Path) -> Iterator[dict]:
    # A real clickhouse-server (the Debian package, 18.16) in a subprocess.
    with running_clickhouse(tmp_path / "clickhouse") as clickhouse:
        yield {"api_impl": "local", **clickhouse.settings, "allow_reset": True}


@contextlib.contextmanager
def _fastapi_clickhouse(tmp_path: pathlib.Path) -> Iterator[dict]:
    with running_clickhouse(tmp_path / "clickhouse") as clickhouse:
        server_settings = {key: str(value) for key, value in clickhouse.settings.items() if key != "db_impl"}
        with running_server(tmp_path, "--db", "clickhouse", allow_reset="1", **server_settings) as server:
            yield _fastapi_settings(server.port)


CELERY_EVERYTHING_TO_WORKERS = {
    # Thresholds low enough that the suite's small batches go to the workers in
    # several chunks, and every collection's index is built by a worker.
    "celery_write_threshold": 2,
    "celery_chunk_size": 2,
    "celery_query_threshold": 2,
    "celery_query_chunk_size": 1,
    "celery_timeout": 60,
}


@contextlib.contextmanager
def _celery_clickhouse(tmp_path: pathlib.Path) -> Iterator[dict]:
    # Real clickhouse-server, redis-server and two `chroma worker` processes.
    with running_clickhouse(tmp_path / "clickhouse") as clickhouse, running_redis(tmp_path / "redis") as redis:
        # Workers and clients keep the built-in default model, as in every combination
        # (tests/test_celery.py starts workers with a function of its own).
        settings = {key: value for key, value in worker_settings(clickhouse.settings, redis).items()
                    if key != "embedding_function"}
        with running_workers(tmp_path / "workers", settings, count=2):
            yield {"api_impl": "celery", **settings, **CELERY_EVERYTHING_TO_WORKERS, "allow_reset": True}


@contextlib.contextmanager
def _local_chdb(tmp_path: pathlib.Path) -> Iterator[dict]:
    # The same SQL on a current ClickHouse engine (chDB, in process).
    pytest.importorskip("chdb", reason="chdb is not installed (pip install 'chroma[chdb]')")
    persist_directory = tmp_path / "chroma-chdb"
    yield {"api_impl": "local", "db_impl": "chdb", "persist_directory": str(persist_directory), "allow_reset": True}


register(Combination("local-duckdb", _local_duckdb))
register(Combination("local-persistent_duckdb", _local_persistent_duckdb))
register(Combination("local-duckdb-hnswlib", _local_duckdb_hnswlib))
register(Combination("fastapi-duckdb", _fastapi_duckdb))
register(Combination("fastapi-persistent_duckdb", _fastapi_persistent_duckdb))
register(Combination("flight-duckdb", _flight_duckdb))
register(Combination("flight-persistent_duckdb", _flight_persistent_duckdb))
register(Combination("local-clickhouse", _local_clickhouse))
register(Combination("fastapi-clickhouse", _fastapi_clickhouse))
register(Combination("local-chdb", _local_chdb))
register(Combination("celery-clickhouse", _celery_clickhouse))
