"""Conformance: embedding functions (documents without embeddings, query_texts, re-embedding)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chroma.errors import InvalidArgument, InvalidDimensionError
from conformance_helpers import (
    CharCountEmbedding,
    assert_embeddings_equal,
    assert_unchanged,
    rejected_without_change,
)


@pytest.fixture
def embed():
    return CharCountEmbedding(dim=4)


@pytest.fixture
def embedded(client, embed):
    """A collection with an embedding function holding two documents."""
    collection = client.create_collection("embedded", embedding_function=embed)
    collection.add(ids=["a", "b"], documents=["ab", "hello"])
    return collection


@pytest.fixture
def plain(client):
    """A collection without an embedding function holding one item."""
    collection = client.create_collection("plain")
    collection.add(ids=["x"], embeddings=[[1.0, 1.0, 1.0, 1.0]], documents=["x doc"])
    return collection


def embeddings_of(collection, ids):
    return collection.get(ids=ids, include=["embeddings"])["embeddings"]


def test_char_count_embedding_is_what_the_tests_assume(embed):
    assert embed(["ab", ""]) == [[1.0, 2.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]]


def test_add_documents_embeds_them_with_the_collection_function(embedded, embed):
    assert_embeddings_equal(embeddings_of(embedded, ["a", "b"]), [embed.vector("ab"), embed.vector("hello")])
    assert embedded.get(ids=["a", "b"])["documents"] == ["ab", "hello"]
    assert ["ab", "hello"] in embed.calls  # ran in this (the caller's) process


def test_given_embeddings_win_over_the_function(embedded, embed):
    embedded.add(ids=["c"], embeddings=[[9.0, 9.0, 9.0, 9.0]], documents=["cc"])
    assert_embeddings_equal(embeddings_of(embedded, ["c"]), [[9.0, 9.0, 9.0, 9.0]])


def test_function_may_return_a_numpy_array(client, embed):
    collection = client.create_collection("array-function", embedding_function=lambda texts: np.array(embed(texts)))
    collection.add(ids=["a"], documents=["ab"])
    assert_embeddings_equal(embeddings_of(collection, ["a"]), [embed.vector("ab")])


def test_query_texts_are_embedded_with_the_collection_function(embedded, embed):
    by_text = embedded.query(query_texts=["hello", "ab"], n_results=2, include=["distances"])
    by_embedding = embedded.query(query_embeddings=embed(["hello", "ab"]), n_results=2, include=["distances"])
    assert by_text["ids"] == by_embedding["ids"] == [["b", "a"], ["a", "b"]]
    assert by_text["distances"] == by_embedding["distances"]
    assert by_text["distances"][0][0] == pytest.approx(0.0, abs=1e-6)


def test_update_of_documents_re_embeds_them(embedded, embed):
    embedded.update(ids=["a"], documents=["zzzz"])
    assert_embeddings_equal(embeddings_of(embedded, ["a", "b"]), [embed.vector("zzzz"), embed.vector("hello")])
    assert embedded.get(ids=["a"])["documents"] == ["zzzz"]


def test_none_document_entries_leave_embedding_and_document_alone(embedded, embed):
    embedded.update(ids=["a", "b"], documents=["zzzz", None])
    embedded.upsert(ids=["a", "b"], documents=[None, None], metadatas=[{"m": 1}, {"m": 2}])
    result = embedded.get(ids=["a", "b"], include=["embeddings", "documents", "metadatas"])
    assert_embeddings_equal(result["embeddings"], [embed.vector("zzzz"), embed.vector("hello")])
    assert result["documents"] == ["zzzz", "hello"]
    assert result["metadatas"] == [{"m": 1}, {"m": 2}]


def test_update_with_documents_and_embeddings_keeps_the_given_embeddings(embedded):
    embedded.update(ids=["a"], documents=["zzzz"], embeddings=[[7.0, 7.0, 7.0, 7.0]])
    assert_embeddings_equal(embeddings_of(embedded, ["a"]), [[7.0, 7.0, 7.0, 7.0]])


def test_update_of_metadata_only_keeps_embedding_and_document(embedded, embed):
    embedded.update(ids=["a"], metadatas=[{"m": 1}])
    result = embedded.get(ids=["a"], include=["embeddings", "documents", "metadatas"])
    assert_embeddings_equal(result["embeddings"], [embed.vector("ab")])
    assert (result["documents"], result["metadatas"]) == (["ab"], [{"m": 1}])


def test_upsert_of_documents_embeds_new_and_re_embeds_existing(embedded, embed):
    embedded.upsert(ids=["b", "c"], documents=["bye", "new doc"])
    assert embedded.get()["ids"] == ["a", "b", "c"]
    assert_embeddings_equal(
        embeddings_of(embedded, ["a", "b", "c"]), [embed.vector("ab"), embed.vector("bye"), embed.vector("new doc")]
    )


def test_collection_fetched_with_a_function_uses_it(client, plain):
    other = CharCountEmbedding(dim=4)
    fetched = client.get_collection("plain", embedding_function=other)
    fetched.add(ids=["y"], documents=["yy"])
    assert_embeddings_equal(embeddings_of(fetched, ["y"]), [other.vector("yy")])
    assert other.calls == [["yy"]]
    again = client.get_or_create_collection("plain", embedding_function=other)
    again.upsert(ids=["z"], documents=["zz"])
    assert_embeddings_equal(embeddings_of(again, ["z"]), [other.vector("zz")])


NO_FUNCTION_CALLS = {
    "add": lambda c: c.add(ids=["new"], documents=["some text"]),
    "add-with-metadata": lambda c: c.add(ids=["new", "new2"], documents=["t1", "t2"], metadatas=[{"a": 1}, {"a": 2}]),
    "upsert-new": lambda c: c.upsert(ids=["x", "new"], documents=["x2", "text"]),
    "query_texts": lambda c: c.query(query_texts=["some text"]),
}


@pytest.mark.parametrize("call", NO_FUNCTION_CALLS.values(), ids=NO_FUNCTION_CALLS.keys())
def test_documents_without_embeddings_or_function_are_rejected_with_advice(plain, call):
    with rejected_without_change(InvalidArgument, plain) as info:
        call(plain)
    assert "embedding_function" in str(info.value)


def test_query_needs_exactly_one_of_texts_and_embeddings(embedded, embed):
    with pytest.raises(InvalidArgument):
        embedded.query(query_texts=["ab"], query_embeddings=embed(["ab"]))
    with pytest.raises(InvalidArgument):
        embedded.query()


BAD_FUNCTIONS = {
    "too-few-vectors": (lambda texts: [[1.0, 1.0, 1.0, 1.0]] * (len(texts) - 1), InvalidArgument),
    "too-many-vectors": (lambda texts: [[1.0, 1.0, 1.0, 1.0]] * (len(texts) + 1), InvalidArgument),
    "nan-vector": (lambda texts: [[1.0, math.nan, 1.0, 1.0]] * len(texts), InvalidArgument),
    "other-dimension": (lambda texts: [[1.0, 1.0, 1.0]] * len(texts), InvalidDimensionError),
}


@pytest.mark.parametrize("bad_function, error", BAD_FUNCTIONS.values(), ids=BAD_FUNCTIONS.keys())
def test_bad_function_output_is_rejected_and_writes_nothing(client, plain, bad_function, error):
    collection = client.get_collection("plain", embedding_function=bad_function)
    with rejected_without_change(error, collection):
        collection.add(ids=["n1", "n2"], documents=["one", "two"])
    with rejected_without_change(error, collection):
        collection.upsert(ids=["x", "n1"], documents=["one", "two"])
    with rejected_without_change(error, collection):
        collection.update(ids=["x"], documents=["changed"])
    with assert_unchanged(collection), pytest.raises(error):
        collection.query(query_texts=["q1", "q2"])
