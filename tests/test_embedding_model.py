"""The default embedding model (chroma.embedding): its vectors, batching and bounds, on the real weights."""

from __future__ import annotations

import numpy as np
import pytest

from chroma import _core, embedding, errors
from chroma.embedding import executor
from chroma.embedding.reference import encode_padded
from model_files import model_dir

SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
# cosine similarities by sentence-transformers (the model's published implementation)
PUBLISHED = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}


@pytest.fixture(scope="module")
def embedder():
    model_dir()
    return executor.default_embedder(download=False)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_three_sentences_match_the_published_similarities(embedder):
    vectors = embedding.embed(SENTENCES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for (i, j), expected in PUBLISHED.items():
        assert float(vectors[i] @ vectors[j]) == pytest.approx(expected, abs=1e-4)


def mixed_texts() -> list[str]:
    long = " ".join(f"word{i} of a long document about databases" for i in range(80))  # over 256 tokens
    return ["a", "Hi!", *SENTENCES, "A somewhat longer sentence with more words in it, and a clause.", long,
            "x " * 40, "Ünïcödé tëxt wïth äccents and emoji 🙂", long[:300]]


def test_each_text_of_a_mixed_length_batch_embeds_as_it_does_alone(embedder):
    texts = mixed_texts()
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([text]) for text in texts])
    assert cosines(together, alone).min() >= 0.99999


def test_texts_over_256_tokens_are_truncated_as_the_model_was_trained(embedder):
    ids = embedder.tokenize([mixed_texts()[6]])[0]
    assert len(ids) == 256


def test_every_simd_path_agrees_with_the_plain_numpy_pass(embedder):
    texts = mixed_texts()
    reference = encode_padded(embedder.weights, embedder.tokenize(texts))
    default = _core.embedding_simd_path()
    try:
        for path in ("portable", "avx2", "avx512"):
            try:
                _core.embedding_simd_path(path)
            except ValueError:
                continue  # this CPU lacks it
            assert cosines(embedder.embed(texts), reference).min() >= 0.9999, path
    finally:
        _core.embedding_simd_path(default)


def test_chunks_and_batches_give_the_vectors_of_one_pass(embedder, monkeypatch):
    texts = mixed_texts() * 3
    whole = embedder.embed(texts)
    monkeypatch.setattr(executor, "CHUNK_TEXTS", 4)  # several chunks, the next tokenized on the helper thread
    monkeypatch.setattr(executor, "BATCH_TOKENS", 16)
    assert cosines(embedder.embed(texts), whole).min() >= 0.99999


def test_a_batch_per_core_gives_the_vectors_of_batches_in_turn(embedder, monkeypatch):
    texts = mixed_texts() * 5
    monkeypatch.setattr(executor, "BATCH_TOKENS", 32)
    monkeypatch.setattr(executor, "_core_threads", lambda: 1)
    in_turn = embedder.embed(texts)
    monkeypatch.setattr(executor, "_core_threads", lambda: 3)  # more workers than this machine's cores
    per_core = embedder.embed(texts)
    assert cosines(per_core, in_turn).min() >= 0.99999


def test_numpy_blas_gets_its_threads_back_after_a_call(embedder, monkeypatch):
    from threadpoolctl import threadpool_info

    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    monkeypatch.setattr(executor, "BATCH_TOKENS", 32)
    monkeypatch.setattr(executor, "_core_threads", lambda: 2)
    embedder.embed(mixed_texts() * 3)
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before


def test_more_tokens_than_the_bound_are_refused(embedder):
    with pytest.raises(errors.PayloadTooLarge, match="max_embedding_tokens"):
        embedder.embed(SENTENCES, max_tokens=10)
    assert embedder.embed(SENTENCES, max_tokens=100).shape == (3, 384)


def test_no_texts_give_no_rows(embedder):
    assert embedder.embed([]).shape == (0, 384)


def test_kernels_refuse_arrays_they_would_misread():
    hidden = np.zeros((4, 384), np.float32)
    with pytest.raises(ValueError, match="bias"):
        _core.embedding_bias_gelu(hidden, np.zeros(3, np.float32))
    with pytest.raises(TypeError):
        _core.embedding_bias_gelu(hidden.astype(np.float64), np.zeros(384, np.float32))
    with pytest.raises(ValueError, match="offsets"):
        _core.embedding_attention(np.zeros((4, 1152), np.float32), np.zeros(1152, np.float32),
                                  np.array([0, 5], np.int64), hidden, 12)


@pytest.mark.parametrize("length", [1, 7, 8, 9, 31, 32, 33, 57, 256])
def test_attention_of_any_length_matches_a_plain_softmax(length):
    # the hand-written kernel's blocks of 8 and 32 keys, and its tails, against numpy
    rng = np.random.default_rng(length)
    qkv = rng.standard_normal((length, 1152), dtype=np.float32)
    bias = rng.standard_normal(1152, dtype=np.float32)
    context = np.empty((length, 384), np.float32)
    _core.embedding_attention(qkv, bias, np.array([0, length], np.int64), context, 12, parallel=False)
    q, k, v = ((qkv[:, i * 384:(i + 1) * 384] + bias[i * 384:(i + 1) * 384]).astype(np.float64) for i in range(3))
    for head in range(12):
        cols = slice(head * 32, (head + 1) * 32)
        scores = q[:, cols] @ k[:, cols].T / np.sqrt(32)
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        expected = (weights / weights.sum(axis=1, keepdims=True)) @ v[:, cols]
        np.testing.assert_allclose(context[:, cols], expected, atol=2e-5, rtol=1e-4)
