"""Conformance: hostile values (lone surrogates, integers past int64, filters
nested past the limit, zero queries) get a chroma.errors class, or a plain answer,
in every combination, and leave the store as it was."""

from __future__ import annotations

import numpy as np
import pytest

from chroma.errors import InvalidArgument
from chroma.filters import MAX_DEPTH
from conformance_helpers import rejected_without_change

LONE_SURROGATE = "\ud800"


@pytest.fixture
def stored(client):
    collection = client.create_collection("hostile")
    collection.add(ids=["a", "b"], embeddings=[[0.0, 1.0], [1.0, 0.0]], metadatas=[{"k": 1}, {"k": "x"}],
                   documents=["first", "second"])
    return client, collection


def nested(depth: int, leaf: dict, op: str) -> dict:
    for _ in range(depth):
        leaf = {op: [leaf]}
    return leaf


SURROGATE_CALLS = {
    "add id": lambda c: c.add(ids=[LONE_SURROGATE], embeddings=[[0.0, 0.0]]),
    "add document": lambda c: c.add(ids=["z"], embeddings=[[0.0, 0.0]], documents=[f"a{LONE_SURROGATE}b"]),
    "add metadata key": lambda c: c.add(ids=["z"], embeddings=[[0.0, 0.0]], metadatas=[{LONE_SURROGATE: 1}]),
    "add metadata value": lambda c: c.add(ids=["z"], embeddings=[[0.0, 0.0]], metadatas=[{"k": LONE_SURROGATE}]),
    "update document": lambda c: c.update(ids=["a"], documents=[LONE_SURROGATE]),
    "upsert metadata": lambda c: c.upsert(ids=["a"], metadatas=[{"k": LONE_SURROGATE}]),
    "get ids": lambda c: c.get(ids=[LONE_SURROGATE]),
    "get where": lambda c: c.get(where={"k": LONE_SURROGATE}),
    "get where key": lambda c: c.get(where={LONE_SURROGATE: 1}),
    "get where $in": lambda c: c.get(where={"k": {"$in": ["x", LONE_SURROGATE]}}),
    "get where_document": lambda c: c.get(where_document={"$contains": LONE_SURROGATE}),
    "query where": lambda c: c.query(query_embeddings=[[0.0, 0.0]], where={"k": {"$ne": LONE_SURROGATE}}),
    "query where_document": lambda c: c.query(query_embeddings=[[0.0, 0.0]],
                                              where_document={"$not_contains": LONE_SURROGATE}),
    "delete ids": lambda c: c.delete(ids=["a", LONE_SURROGATE]),
    "delete where": lambda c: c.delete(where={"k": {"$nin": [LONE_SURROGATE]}}),
}


@pytest.mark.parametrize("call", SURROGATE_CALLS.values(), ids=SURROGATE_CALLS.keys())
def test_a_lone_surrogate_in_any_string(stored, call):
    client, collection = stored
    with rejected_without_change(InvalidArgument, client, match="lone surrogate"):
        call(collection)


def test_a_lone_surrogate_in_a_collection_name_or_metadata(stored):
    client, _ = stored
    with rejected_without_change(InvalidArgument, client, match="lone surrogate"):
        client.create_collection("fine-name", metadata={"k": LONE_SURROGATE})
    with rejected_without_change(InvalidArgument, client, match="lone surrogate"):
        client.get_collection(f"ab{LONE_SURROGATE}c")


@pytest.mark.parametrize("argument", ["limit", "offset"])
@pytest.mark.parametrize("value", [2**63, 2**64, 10**30])
def test_limit_or_offset_past_int64(stored, argument, value):
    client, collection = stored
    with rejected_without_change(InvalidArgument, client, match=rf"{argument} must be an int in \[0, 2\*\*63 - 1\]"):
        collection.get(**{argument: value})


def test_limit_and_offset_at_int64_max(stored):
    _, collection = stored
    assert collection.get(offset=2**63 - 1)["ids"] == []
    assert collection.get(limit=2**63 - 1, offset=1)["ids"] == ["b"]


def test_a_query_of_zero_rows(stored):
    _, collection = stored
    result = collection.query(query_embeddings=np.zeros((0, 2), np.float32), include=["documents", "distances"])
    assert result["ids"] == [] and result["documents"] == [] and result["distances"] == []


@pytest.mark.parametrize("op", ["$and", "$or"])
def test_where_nested_past_the_depth_limit(stored, op):
    client, collection = stored
    at_limit = nested(MAX_DEPTH, {"k": 1}, op)
    assert collection.get(where=at_limit)["ids"] == ["a"]
    for depth in (MAX_DEPTH + 1, 400, 5000):
        deep = nested(depth, {"k": 1}, op)
        with rejected_without_change(InvalidArgument, client, match=f"nested more than {MAX_DEPTH} levels deep"):
            collection.get(where=deep)
        with rejected_without_change(InvalidArgument, client, match=f"nested more than {MAX_DEPTH} levels deep"):
            collection.delete(where=deep)
        with rejected_without_change(InvalidArgument, client, match=f"nested more than {MAX_DEPTH} levels deep"):
            collection.query(query_embeddings=[[0.0, 0.0]], where=deep)


def test_where_document_nested_past_the_depth_limit(stored):
    client, collection = stored
    assert collection.get(where_document=nested(MAX_DEPTH, {"$contains": "sec"}, "$or"))["ids"] == ["b"]
    with rejected_without_change(InvalidArgument, client, match=f"nested more than {MAX_DEPTH} levels deep"):
        collection.get(where_document=nested(400, {"$contains": "sec"}, "$or"))
