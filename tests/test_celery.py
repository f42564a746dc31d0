"""``chroma.api.Celery`` beyond the conformance suite: workers that embed, die, or are missing.

Real parts only: a clickhouse-server, a redis-server and ``chroma worker``
processes, all started here on 127.0.0.1 (the conformance suite runs every
contract case over the same setup as the ``celery-clickhouse`` combination).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import chroma
from celery_helpers import running_redis, running_workers, start_workers, worker_settings
from chroma import errors
from chroma.bench.server_process import free_port
from clickhouse_helpers import running_clickhouse
from embedding_functions import hashed

DIM = 16


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """A ClickHouse server and a Redis server for this module, and the settings naming them."""
    directory = tmp_path_factory.mktemp("celery")
    with running_clickhouse(directory / "clickhouse") as clickhouse, running_redis(directory / "redis") as redis:
        yield directory, worker_settings(clickhouse.settings, redis, celery_visibility_timeout=3)


def client(configured, settings: dict, **more):
    """A Celery client over ``settings`` that sends writes of 100+ ids to the workers in chunks of 50."""
    api = configured(api_impl="celery", allow_reset=True, celery_write_threshold=100, celery_chunk_size=50,
                     **settings, **more)
    api.reset()
    return api


def test_workers_embed_documents_with_the_default_function(services, configured):
    directory, settings = services
    with running_workers(directory / "embed", settings, count=2):
        collection = client(configured, settings).create_collection("docs")
        texts = [f"document {i}" for i in range(230)]
        collection.add(ids=[f"d{i}" for i in range(230)], documents=texts)
        got = collection.get(ids=["d0", "d229"], include=["embeddings", "documents"])
        np.testing.assert_array_equal(got["embeddings"], hashed(["document 0", "document 229"]))
        assert got["documents"] == ["document 0", "document 229"]
        found = collection.query(query_texts=["document 17"], n_results=1, include=["distances"])
        assert found["ids"] == [["d17"]] and found["distances"][0][0] == pytest.approx(0.0, abs=1e-6)

        # Documents the workers embed with another dimension than the collection's: nothing is written.
        other = configured(embedding_function=None).create_collection("three", embedding_function=None)
        other.add(ids=["x"], embeddings=[[1.0, 2.0, 3.0]])
        configured(embedding_function=settings["embedding_function"])
        other = chroma.get_api().get_collection("three")
        with pytest.raises(errors.InvalidDimensionError, match="dimension 8 does not match"):
            other.add(ids=[f"y{i}" for i in range(150)], documents=[f"t{i}" for i in range(150)])
        assert other.count() == 1


def test_a_worker_with_another_embedding_function_refuses_and_nothing_is_written(services, configured):
    directory, settings = services
    with running_workers(directory / "mismatch", {**settings, "embedding_function": "embedding_functions:other"}):
        collection = client(configured, settings).create_collection("docs")
        with pytest.raises(errors.ConfigurationError, match="embedding_functions:other"):
            collection.add(ids=[f"d{i}" for i in range(120)], documents=[f"t{i}" for i in range(120)])
        assert collection.count() == 0


def bulk(count: int, seed: int) -> tuple[list[str], np.ndarray]:
    return [f"b{seed}-{i}" for i in range(count)], np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)


def test_a_worker_killed_mid_add_leaves_all_or_nothing(services, configured):
    # Two workers; one is SIGKILLed while the add's chunks run. Its unacknowledged
    # task goes to the other worker (after celery_visibility_timeout), so the add
    # succeeds whole; had it failed, nothing of it could be visible. A reader
    # checks throughout that the count is never between "before" and "after".
    directory, settings = services
    workers = start_workers(directory / "kill", settings, count=2)
    try:
        api = client(configured, settings, celery_timeout=30)
        collection = api.create_collection("bulk")
        collection.add(ids=["before"], embeddings=np.zeros((1, DIM)))
        ids, vectors = bulk(6000, 1)
        outcome: dict = {}
        counts: list[int] = []
        adding = threading.Event()

        def add() -> None:
            adding.set()
            try:
                collection.add(ids=ids, embeddings=vectors)
                outcome["ok"] = True
            except errors.ChromaError as exc:
                outcome["error"] = exc

        def read() -> None:
            while "ok" not in outcome and "error" not in outcome:
                counts.append(chroma.get_api().get_collection("bulk").count())

        writer = threading.Thread(target=add)
        writer.start()
        adding.wait()
        while "received" not in workers[0].output() and writer.is_alive():
            time.sleep(0.005)
        workers[0].kill()
        reader = threading.Thread(target=read)
        reader.start()
        writer.join(timeout=120)
        reader.join(timeout=120)
        assert not writer.is_alive()
        assert set(counts) <= {1, 6001}, sorted(set(counts))
        final = collection.count()
        if "ok" in outcome:
            assert final == 6001
            got = collection.get(ids=ids[::997], include=["embeddings"])
            np.testing.assert_array_equal(got["embeddings"], vectors[::997])
            assert collection.query(query_embeddings=vectors[4321:4322], n_results=1)["ids"] == [[ids[4321]]]
        else:
            assert final == 1, outcome
    finally:
        for worker in workers:
            worker.stop()


def test_every_worker_killed_mid_add_is_an_error_and_nothing_is_written(services, configured):
    directory, settings = services
    workers = start_workers(directory / "kill-all", settings, count=1)
    try:
        collection = client(configured, settings, celery_timeout=4).create_collection("bulk")
        ids, vectors = bulk(6000, 2)
        failure: list[BaseException] = []

        def add() -> None:
            try:
                collection.add(ids=ids, embeddings=vectors)
            except errors.ChromaError as exc:
                failure.append(exc)

        writer = threading.Thread(target=add)
        writer.start()
        while "received" not in workers[0].output() and writer.is_alive():
            time.sleep(0.005)
        workers[0].kill()
        writer.join(timeout=120)
        assert not writer.is_alive()
        assert len(failure) == 1 and isinstance(failure[0], errors.WorkerError), failure
        assert "no progress from the Celery workers" in str(failure[0])
        assert collection.count() == 0
        # A worker started afterwards may take the dead one's task: its rows stay invisible.
        workers.append(start_workers(directory / "kill-all-later", settings, count=1)[0])
        time.sleep(4)
        assert collection.count() == 0
        # And the collection works on, for a client with the default timeout: the new worker may
        # still be busy with the dead one's task, longer than 4 s on a loaded machine.
        patient = configured(api_impl="celery", celery_write_threshold=100, celery_chunk_size=50, celery_timeout=None,
                             **settings).get_collection("bulk")
        patient.add(ids=ids[:150], embeddings=vectors[:150])
        assert patient.count() == 150 and collection.count() == 150
    finally:
        for worker in workers:
            worker.stop()


def test_no_worker_is_a_clear_error_after_celery_timeout(services, configured):
    _, settings = services
    collection = client(configured, settings, celery_timeout=1).create_collection("idle")
    ids, vectors = bulk(120, 3)
    with pytest.raises(errors.WorkerError, match="is `chroma worker` running"):
        collection.add(ids=ids, embeddings=vectors)
    assert collection.count() == 0
    collection.add(ids=ids[:10], embeddings=vectors[:10])  # small writes never needed a worker
    assert collection.count() == 10


@pytest.mark.timeout(60)
def test_an_unreachable_broker_is_a_clear_error_not_a_hang(services, configured):
    _, settings = services
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(errors.ServerUnavailable, match="cannot reach the Celery broker at redis://127.0.0.1"):
        configured(api_impl="celery", **{**settings, "celery_broker_url": dead, "celery_result_backend": dead})


def test_celery_needs_a_shared_db(configured):
    with pytest.raises(errors.ConfigurationError, match="db_impl='clickhouse'"):
        configured(api_impl="celery", db_impl="duckdb", celery_broker_url="redis://127.0.0.1:1/0")
