"""Conformance: the default embedding model (all-MiniLM-L6-v2) for documents and query texts given
without an embedding function, in every combination: in process (Local), on the workers (Celery),
on the server (HTTP, Flight and a curl-style JSON body)."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from chroma import embedding, errors
from conformance_helpers import CharCountEmbedding, rejected_without_change
from model_files import model_dir

TEXTS = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
IDS = ["weather", "sunny", "stadium"]


@pytest.fixture
def texts(client):
    """A collection (cosine, no embedding function) holding TEXTS, embedded by the default model."""
    model_dir()
    collection = client.create_collection("texts", metadata={"hnsw:space": "cosine"})
    collection.add(ids=IDS, documents=TEXTS, metadatas=[{"n": i} for i in range(3)])
    return collection


def test_documents_without_embeddings_get_the_default_models_vectors(texts):
    stored = texts.get(ids=IDS, include=["embeddings", "documents"])
    assert stored["documents"] == TEXTS
    expected = embedding.embed(TEXTS)  # this process's own run of the model
    assert stored["embeddings"].shape == (3, 384)
    np.testing.assert_allclose(np.sum(stored["embeddings"] * expected, axis=1), 1.0, atol=1e-5)


def test_query_texts_find_the_nearest_documents(texts):
    found = texts.query(query_texts=["Is it sunny?", "a car trip to a football match"], n_results=2,
                        include=["distances", "documents"])
    assert [ids[0] for ids in found["ids"]] == ["sunny", "stadium"]
    assert found["documents"][0][0] == TEXTS[1]
    assert 0.0 < found["distances"][0][0] < found["distances"][0][1]


def test_the_collection_records_its_model(client, texts):
    assert client.get_collection("texts").metadata[embedding.MODEL_METADATA_KEY] == embedding.MODEL_ID
    reopened = client.get_collection("texts")
    reopened.modify(metadata={"topic": "weather"})  # the record survives a metadata change
    assert client.get_collection("texts").metadata == {
        "topic": "weather", "hnsw:space": "cosine", embedding.MODEL_METADATA_KEY: embedding.MODEL_ID}


def test_upsert_and_update_of_documents_re_embed_them(texts):
    texts.update(ids=["weather"], documents=["He drove to the stadium."])
    texts.upsert(ids=["new"], documents=["It's so sunny outside!"])
    vectors = texts.get(ids=["weather", "stadium", "new", "sunny"], include=["embeddings"])["embeddings"]
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(vectors[2] @ vectors[3]) == pytest.approx(1.0, abs=1e-5)


def test_another_function_is_refused_on_a_collection_of_the_default_model(client, texts):
    other = client.get_collection("texts", embedding_function=CharCountEmbedding(dim=384))
    with rejected_without_change(errors.EmbeddingFunctionMismatch, other, match="default model"):
        other.add(ids=["x"], documents=["some text"])
    with pytest.raises(errors.EmbeddingFunctionMismatch):
        other.query(query_texts=["some text"])


def test_the_default_model_is_refused_on_a_collection_of_given_vectors(client):
    collection = client.create_collection("given")
    collection.add(ids=["v"], embeddings=[[0.1] * 384])
    with rejected_without_change(errors.EmbeddingFunctionMismatch, collection, match="embeddings given"):
        collection.add(ids=["d"], documents=["a text"])
    with pytest.raises(errors.EmbeddingFunctionMismatch, match="query_texts"):
        collection.query(query_texts=["a text"])


def test_embedding_function_none_turns_the_default_off(client):
    collection = client.create_collection("off", embedding_function="none")
    with rejected_without_change(errors.InvalidArgument, collection, match="embedding_function"):
        collection.add(ids=["d"], documents=["a text"])
    with pytest.raises(errors.InvalidArgument, match="embedding_function"):
        collection.query(query_texts=["a text"])


def test_documents_alone_on_a_collection_with_embedding_function_none(client):
    """With the default model off, documents without embeddings are stored as documents only: a
    new id needs a vector, even in an empty collection, and existing items keep theirs."""
    collection = client.create_collection("off-writes", embedding_function="none")
    with rejected_without_change(errors.InvalidArgument, collection):
        collection.upsert(ids=["a"], documents=["a new text"])
    assert embedding.MODEL_METADATA_KEY not in (client.get_collection("off-writes").metadata or {})
    collection.add(ids=["a", "b"], embeddings=[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    collection.update(ids=["a"], documents=["first text"])
    collection.upsert(ids=["b"], documents=["second text"])
    stored = collection.get(ids=["a", "b"], include=["embeddings", "documents"])
    assert stored["documents"] == ["first text", "second text"]
    np.testing.assert_array_equal(stored["embeddings"], [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])


def test_curl_json_add_of_documents_only(client, client_settings):
    """What a thin client sends: plain JSON, no vectors; the server embeds."""
    if client_settings["api_impl"] != "fastapi":
        pytest.skip("an HTTP server's JSON routes")
    model_dir()
    url = f"http://127.0.0.1:{client_settings['server_http_port']}/api/v1"
    collection = requests.post(f"{url}/collections", json={"name": "curl", "metadata": {"hnsw:space": "cosine"}},
                               timeout=60).json()
    added = requests.post(f"{url}/collections/{collection['id']}/add", json={"ids": IDS, "documents": TEXTS},
                          timeout=60)
    assert added.status_code == 200, added.text
    found = requests.post(f"{url}/collections/{collection['id']}/query",
                          json={"query_texts": ["Is it sunny?"], "n_results": 1}, timeout=60)
    assert found.status_code == 200, found.text
    assert found.json()["ids"] == [["sunny"]]
    limits = requests.get(f"{url}/limits", timeout=60).json()
    assert limits["max_embedding_tokens"] > 0
