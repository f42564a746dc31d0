"""Reads racing writes: each read sees the collection as it was at one moment.

A read that runs while a collection gets its first rows, is renamed or is
deleted answers as before or as after that write, or raises
CollectionNotFound; never a mix of both (an embedding array of the wrong
width) or an error of another class (a 500 over HTTP).
"""

from __future__ import annotations

import threading

import numpy as np

from chroma import errors

TRIES = 20
DIMENSION = 8
ROWS = 5


def _reads_until_rows(collection, answers: list, failures: list, stop: threading.Event) -> None:
    """``get(include=["embeddings"])`` over and over until the rows are there (or ``stop``)."""
    while not stop.is_set():
        try:
            result = collection.get(include=["embeddings"])
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failures.append(exc)
            return
        answers.append((len(result["ids"]), result["embeddings"].shape))
        if result["ids"]:
            return


def test_get_with_embeddings_racing_a_collections_first_add(client):
    vectors = np.random.default_rng(0).random((ROWS, DIMENSION), dtype=np.float32)
    answers: list = []
    failures: list = []
    for attempt in range(TRIES):
        collection = client.create_collection(f"first-add-{attempt}")
        stop = threading.Event()
        reader = threading.Thread(target=_reads_until_rows, args=(collection, answers, failures, stop))
        reader.start()
        collection.add(ids=[f"id{i}" for i in range(ROWS)], embeddings=vectors)
        reader.join(timeout=30)
        stop.set()
        reader.join()
    assert failures == []
    # before the add: no rows (of whatever width); after it: every row at the collection's width
    assert {shape for count, shape in answers if count} == {(ROWS, DIMENSION)}
    assert {count for count, _ in answers} <= {0, ROWS}


def _reads_until_gone(collection, failures: list, stop: threading.Event) -> None:
    """Reads of every kind until the collection is gone: only CollectionNotFound may end them."""
    queries = np.zeros((1, DIMENSION), dtype=np.float32)
    while not stop.is_set():
        try:
            result = collection.get(include=["embeddings", "metadatas"])
            if result["ids"]:
                assert result["embeddings"].shape == (len(result["ids"]), DIMENSION)
            collection.count()
            collection.query(query_embeddings=queries, n_results=2, include=["embeddings", "distances"])
        except errors.CollectionNotFound:
            return
        except Exception as exc:  # noqa: BLE001 - every other failure is the finding
            failures.append(exc)
            return


def test_collections_created_renamed_and_deleted_while_read(client):
    vectors = np.random.default_rng(1).random((ROWS, DIMENSION), dtype=np.float32)
    failures: list = []
    for attempt in range(TRIES):
        collection = client.create_collection(f"churn-{attempt}")
        stop = threading.Event()
        readers = [threading.Thread(target=_reads_until_gone, args=(collection, failures, stop)) for _ in range(2)]
        for reader in readers:
            reader.start()
        collection.add(ids=[f"id{i}" for i in range(ROWS)], embeddings=vectors)
        collection.modify(name=f"renamed-{attempt}")
        client.delete_collection(f"renamed-{attempt}")
        for reader in readers:
            reader.join(timeout=30)
        stop.set()
        for reader in readers:
            reader.join()
    assert failures == []
    assert client.list_collections() == []
