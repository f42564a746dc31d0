"""pytest-benchmark suites for the hot paths, so a regression shows up as a number.

    pytest benchmarks/test_hot_paths.py --benchmark-only          # measure (compare runs with --benchmark-compare)
    pytest benchmarks/test_hot_paths.py --benchmark-disable       # each once, as a smoke test (CI)

Each case also checks its answer, so a fast wrong result fails.
"""

from __future__ import annotations

import numpy as np
import pytest

import chroma
from chroma import _core
from chroma.db.sql import compile_clause, compile_label_set
from chroma.filters import combine, parse_where, parse_where_document
from chroma.index.flat import FlatIndex

N, DIM, K = 20_000, 128, 10


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, DIM), dtype=np.float32), rng.standard_normal((100, DIM), dtype=np.float32)


@pytest.mark.parametrize("space", ["l2", "ip", "cosine"])
def test_distance_kernel(benchmark, data, space):
    vectors, queries = data
    out = benchmark(_core.distances, space, queries[:10], vectors[:5_000])
    x, y = queries[:10].astype(np.float64), vectors[:5_000].astype(np.float64)
    if space == "l2":
        expected = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    elif space == "ip":
        expected = 1 - x @ y.T
    else:
        expected = 1 - (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (y / np.linalg.norm(y, axis=1, keepdims=True)).T
    assert np.allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_exact_search_batch(benchmark, data):
    vectors, queries = data
    ids, _ = benchmark(_core.exact_search, vectors, queries, K, "l2")
    expected = np.argsort(((vectors[None, :, :] - queries[:3, None, :]) ** 2).sum(-1), axis=1)[:, :K]
    assert np.array_equal(ids[:3], expected)


def test_flat_index_single_query(benchmark, data):
    vectors, queries = data
    index = FlatIndex(DIM, "l2", {})
    index.add(np.arange(N, dtype=np.int64), vectors)
    labels, _ = benchmark(index.search, queries[:1], K)
    assert labels.shape == (1, K)


def test_flat_index_filtered_query(benchmark, data):
    vectors, queries = data
    index = FlatIndex(DIM, "l2", {})
    index.add(np.arange(N, dtype=np.int64), vectors)
    allowed = np.arange(0, N, 100, dtype=np.int64)  # 1%
    labels, _ = benchmark(index.search, queries[:1], K, allowed)
    assert set(labels[0].tolist()) <= set(allowed.tolist())


def test_filter_compilation(benchmark):
    where = {"$and": [{"year": {"$gte": 2020}}, {"$or": [{"lang": {"$in": ["en", "de", "fr"]}},
                                                          {"score": {"$lt": 0.5}}]}]}

    def compile_both():
        clause = combine(parse_where(where), parse_where_document({"$contains": "vector"}))
        return compile_clause(clause), compile_label_set(parse_where(where), "collection-id")

    (sql, params), label_set = benchmark(compile_both)
    assert "?" in sql and 2020 in params and label_set is not None


def test_local_add_batch(benchmark, data):
    vectors, _ = data
    chroma.configure(api_impl="local", db_impl="duckdb", allow_reset=True)
    client = chroma.get_api()
    batch = 1_000
    ids = [f"id{i}" for i in range(batch)]
    metadatas = [{"bucket": i % 100, "lang": "en"} for i in range(batch)]

    def add_into_fresh_collection():
        client.reset()
        collection = client.create_collection("hot")
        collection.add(ids=ids, embeddings=vectors[:batch], metadatas=metadatas)
        return collection

    try:
        collection = benchmark(add_into_fresh_collection)
        assert collection.count() == batch
    finally:
        client.reset()
        chroma.configure(api_impl=None, db_impl=None, allow_reset=None)
