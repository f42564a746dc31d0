"""Helpers shared by the conformance test modules (not a test module itself)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import numpy as np
import pytest

import chroma

GET_INCLUDE = ("embeddings", "metadatas", "documents")
QUERY_INCLUDE = ("embeddings", "metadatas", "documents", "distances")


# --------------------------------------------------------------------------
# Snapshots: "an error leaves the store unchanged"
# --------------------------------------------------------------------------


def _is_client(target) -> bool:
    return hasattr(target, "list_collections")


def collection_snapshot(collection) -> dict:
    """Everything observable about a collection's items, copied."""
    result = collection.get(include=list(GET_INCLUDE))
    return {
        "name": collection.name,
        "count": collection.count(),
        "ids": list(result["ids"]),
        "embeddings": np.array(result["embeddings"], copy=True),
        "metadatas": copy.deepcopy(result["metadatas"]),
        "documents": list(result["documents"]),
    }


def client_snapshot(client) -> list:
    """Every collection of ``client``: name, id, metadata and items."""
    return [
        (collection.name, collection.id, copy.deepcopy(collection.metadata), collection_snapshot(collection))
        for collection in client.list_collections()
    ]


def snapshot(target):
    return client_snapshot(target) if _is_client(target) else collection_snapshot(target)


def assert_same_collection_snapshot(before: dict, after: dict) -> None:
    assert after["name"] == before["name"]
    assert after["count"] == before["count"]
    assert after["ids"] == before["ids"]
    assert after["embeddings"].dtype == before["embeddings"].dtype
    assert after["embeddings"].shape == before["embeddings"].shape
    assert np.array_equal(after["embeddings"], before["embeddings"])
    assert after["metadatas"] == before["metadatas"]
    assert after["documents"] == before["documents"]


def assert_same_snapshot(before, after) -> None:
    if isinstance(before, dict):
        assert_same_collection_snapshot(before, after)
        return
    assert [entry[:3] for entry in after] == [entry[:3] for entry in before]
    for old, new in zip(before, after):
        assert_same_collection_snapshot(old[3], new[3])


@contextlib.contextmanager
def assert_unchanged(*targets) -> Iterator[None]:
    """Assert that the block leaves each target (a collection or a client) exactly as it was."""
    before = [snapshot(target) for target in targets]
    yield
    for target, old in zip(targets, before):
        assert_same_snapshot(old, snapshot(target))


@contextlib.contextmanager
def rejected_without_change(error: type[BaseException], *targets, match: str | None = None):
    """The block must raise ``error`` and leave every target unchanged."""
    with assert_unchanged(*targets):
        with pytest.raises(error, match=match) as info:
            yield info


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@contextlib.contextmanager
def temporary_settings(client_settings: dict, **overrides) -> Iterator[None]:
    """Override some settings; afterwards put back the combination's values."""
    chroma.configure(**overrides)
    try:
        yield
    finally:
        chroma.configure(**{key: client_settings.get(key) for key in overrides})


# --------------------------------------------------------------------------
# Embedding functions defined by the tests (deterministic, hand-checkable)
# --------------------------------------------------------------------------


class CharCountEmbedding:
    """Component i is 1 + the number of characters whose code point is i modulo dim.

    "ab" in dim 4: ord('a') = 97 -> 1, ord('b') = 98 -> 2, so [1, 2, 2, 1].
    Every call is recorded in ``calls``.
    """

    def __init__(self, dim: int = 4) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> list[float]:
        vector = [1.0] * self.dim
        for character in text:
            vector[ord(character) % self.dim] += 1.0
        return vector

    def __call__(self, texts):
        texts = list(texts)
        self.calls.append(texts)
        return [self.vector(text) for text in texts]


# --------------------------------------------------------------------------
# Result checks
# --------------------------------------------------------------------------


def assert_embeddings_equal(actual, expected) -> None:
    """``actual`` is a float32 array of shape (n, dim) equal to ``expected`` (as float32)."""
    expected = np.asarray(expected, dtype=np.float32)
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    assert np.array_equal(actual, expected)


def ids_in_order(all_ids, wanted) -> list:
    """``wanted`` ids in the order they have in ``all_ids``."""
    wanted = set(wanted)
    return [item_id for item_id in all_ids if item_id in wanted]


# --------------------------------------------------------------------------
# A collection whose recall depends on hnsw:search_ef
# --------------------------------------------------------------------------


class SearchEfCase:
    """Random vectors in a sparse HNSW graph (``hnsw:M`` 4): a walk with ef 1 finds about a third
    of the true 10 nearest, ef 500 (or an exact answer) nearly all. More than 1,024 rows of 128
    dimensions, so that the core's planner walks the graph at a low ef instead of answering exactly."""

    rows, dimension, k = 1100, 128, 10
    low_ef, high_ef = 1, 500
    low_recall, high_recall = 0.6, 0.9
    """A recall below the first shows a low ef, at least the second a high one (or the default)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self.data = rng.normal(size=(self.rows, self.dimension)).astype(np.float32)
        self.queries = rng.normal(size=(20, self.dimension)).astype(np.float32)
        self.ids = [f"v{i}" for i in range(self.rows)]
        distances = ((self.queries[:, None, :] - self.data[None, :, :]) ** 2).sum(axis=-1)
        self.truth = [{self.ids[i] for i in row} for row in np.argsort(distances, axis=1)[:, :self.k]]

    @staticmethod
    def metadata(search_ef: int | None = None) -> dict:
        metadata = {"hnsw:M": 4, "hnsw:construction_ef": 8}
        return metadata if search_ef is None else {**metadata, "hnsw:search_ef": search_ef}

    def recall(self, found: list[list[str]]) -> float:
        """Mean recall@k of the ids found per query."""
        return float(np.mean([len(set(ids) & truth) / self.k for ids, truth in zip(found, self.truth)]))
