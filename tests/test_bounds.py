"""Hostile sizes in one call: every bound is checked before memory is sized by it.

In-process parts here; the same inputs against a real server (HTTP and
Flight, with the server's RSS measured) are in test_server_bounds.py.
"""

from __future__ import annotations

import json

import pytest

from chroma import errors
from python_subprocess import run_python

INDEXES = ("hnsw", "flat", "hnswlib")


@pytest.mark.parametrize("index_impl", INDEXES)
@pytest.mark.parametrize("n_results", [2**62, 10**12])
def test_query_of_four_with_huge_n_results_returns_every_item(index_impl, n_results):
    # in a child: before the fix the HNSW core died of SIGSEGV, which would take pytest with it
    out = run_python(f"""
        import json
        import numpy as np
        import chroma
        chroma.configure(index_impl={index_impl!r})
        client = chroma.get_api()
        collection = client.create_collection("huge")
        rng = np.random.default_rng(0)
        collection.add(ids=[f"id{{i}}" for i in range(10)], embeddings=rng.random((10, 8)).tolist(),
                       metadatas=[{{"even": i % 2 == 0}} for i in range(10)])
        queries = rng.random((4, 8)).tolist()
        every = collection.query(query_embeddings=queries, n_results={n_results}, include=["distances"])
        fetched = collection.query(query_embeddings=queries, n_results={n_results}, include=["metadatas"])
        even = collection.query(query_embeddings=queries, n_results={n_results}, where={{"even": True}},
                                include=[])
        none = collection.query(query_embeddings=queries, n_results={n_results}, where={{"even": 3}},
                                include=[])
        print(json.dumps([[len(row) for row in result["ids"]] for result in (every, fetched, even, none)]))
    """)
    assert json.loads(out) == [[10] * 4, [10] * 4, [5] * 4, [0] * 4]


@pytest.mark.parametrize("k", [2**62, 2**63 - 1])
def test_core_hnsw_search_with_k_far_beyond_the_index(k):
    out = run_python(f"""
        import numpy as np
        from chroma import _core
        index = _core.HnswIndex(8, "l2")
        rng = np.random.default_rng(0)
        index.add(np.arange(10), rng.random((10, 8), dtype=np.float32))
        labels, distances = index.search(rng.random((4, 8), dtype=np.float32), {k})
        allowed, _ = index.search(rng.random((4, 8), dtype=np.float32), {k}, allowed=np.arange(3))
        empty, _ = _core.HnswIndex(8, "l2").search(rng.random((4, 8), dtype=np.float32), {k})
        print(labels.shape, allowed.shape, empty.shape)
    """)
    assert out == "(4, 10) (4, 3) (4, 0)"


@pytest.mark.parametrize("metadata", [{"hnsw:search_ef": 2**63}, {"hnsw:construction_ef": 2**64},
                                      {"hnsw:construction_ef": 10**12}])
@pytest.mark.parametrize("index_impl", INDEXES)
def test_collection_created_with_an_enormous_ef(configured, index_impl, metadata):
    client = configured(index_impl=index_impl, allow_reset=True)
    client.reset()
    [(key, value)] = metadata.items()
    with pytest.raises(errors.InvalidArgument, match=rf"{key} must be an int in \[1, \d+\], got {value}"):
        client.create_collection("enormous-ef", metadata=metadata)
    collection = client.create_collection("enormous-ef")
    with pytest.raises(errors.InvalidArgument, match=key):
        collection.modify(metadata=metadata)
    collection.add(ids=["a", "b"], embeddings=[[1.0, 2.0], [3.0, 4.0]])
    assert collection.query(query_embeddings=[[1.0, 2.0]], n_results=2)["ids"] == [["a", "b"]]
    client.reset()
