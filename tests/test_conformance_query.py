"""Conformance: query (nearest first, distance spaces, n_results, filtered queries)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chroma.errors import InvalidArgument, InvalidDimensionError
from conformance_helpers import assert_embeddings_equal, assert_unchanged

ONE_HALF_MINUS_INV_SQRT2 = 1.0 - 1.0 / math.sqrt(2.0)

# space metadata, stored points (in insertion order), query, expected ids, expected distances (hand computed)
SPACE_CASES = {
    "default-is-squared-l2": (
        None,
        {"origin": [0, 0], "east": [1, 0], "north2": [0, 2], "far": [3, 4]},
        [1, 1],
        ["east", "origin", "north2", "far"],
        [1.0, 2.0, 2.0, 13.0],
    ),
    "l2-is-squared": (
        {"hnsw:space": "l2"},
        {"origin": [0, 0], "east": [1, 0], "north2": [0, 2], "far": [3, 4]},
        [0, 0],
        ["origin", "east", "north2", "far"],
        [0.0, 1.0, 4.0, 25.0],
    ),
    "cosine-is-one-minus-cos": (
        {"hnsw:space": "cosine"},
        {"x": [1, 0], "x3": [3, 0], "y": [0, 1], "diag": [1, 1], "neg": [-1, 0]},
        [2, 0],
        ["x", "x3", "diag", "y", "neg"],
        [0.0, 0.0, ONE_HALF_MINUS_INV_SQRT2, 1.0, 2.0],
    ),
    "ip-is-one-minus-dot": (
        {"hnsw:space": "ip"},
        {"x": [1, 0], "y2": [0, 2], "half": [0.5, 0.5], "neg": [-1, -1]},
        [1, 1],
        ["y2", "x", "half", "neg"],
        [-1.0, 0.0, 0.0, 3.0],
    ),
}


def add_points(collection, points: dict) -> None:
    collection.add(ids=list(points), embeddings=[list(map(float, p)) for p in points.values()])


@pytest.mark.parametrize(
    "metadata, points, query, expected_ids, expected_distances", SPACE_CASES.values(), ids=SPACE_CASES.keys()
)
def test_distance_spaces_give_hand_checked_distances_nearest_first(
    client, metadata, points, query, expected_ids, expected_distances
):
    collection = client.create_collection("spaces", metadata=metadata)
    add_points(collection, points)
    result = collection.query(query_embeddings=[query], n_results=len(points), include=["distances"])
    assert result["ids"] == [expected_ids]  # equal distances come back in insertion order
    assert result["distances"][0] == pytest.approx(expected_distances, rel=1e-5, abs=1e-6)
    top_two = collection.query(query_embeddings=[query], n_results=2, include=["distances"])
    assert top_two["ids"] == [expected_ids[:2]]
    assert top_two["distances"][0] == pytest.approx(expected_distances[:2], rel=1e-5, abs=1e-6)


@pytest.fixture
def grid(client):
    """Points (i, 0) for i in 0..9, metadata parity and value, documents 'item i'."""
    collection = client.create_collection("grid")
    collection.add(
        ids=[f"p{i}" for i in range(10)],
        embeddings=[[float(i), 0.0] for i in range(10)],
        metadatas=[{"even": i % 2 == 0, "i": i} for i in range(10)],
        documents=[f"item {i}" + (" special" if i in (3, 8) else "") for i in range(10)],
    )
    return collection


def test_several_queries_get_one_result_list_each(grid):
    result = grid.query(query_embeddings=[[0.0, 0.0], [9.2, 0.0], [4.4, 0.0]], n_results=3, include=["distances"])
    assert result["ids"] == [["p0", "p1", "p2"], ["p9", "p8", "p7"], ["p4", "p5", "p3"]]
    assert result["distances"][1] == pytest.approx([0.04, 1.44, 4.84], rel=1e-4)


def test_n_results_defaults_to_ten(grid):
    grid.add(ids=["p10", "p11"], embeddings=[[10.0, 0.0], [11.0, 0.0]])
    assert grid.query(query_embeddings=[[0.0, 0.0]])["ids"] == [[f"p{i}" for i in range(10)]]


def test_n_results_larger_than_the_collection_gives_everything(grid):
    result = grid.query(query_embeddings=[[10.0, 0.0]], n_results=50)
    assert result["ids"] == [[f"p{i}" for i in reversed(range(10))]]


def test_bad_n_results_is_rejected(grid, subtests):
    for n_results in [0, -1, 1.5, True, "3", None]:
        with subtests.test(n_results=n_results), pytest.raises(InvalidArgument):
            grid.query(query_embeddings=[[0.0, 0.0]], n_results=n_results)


QUERY_FORMATS = {
    "list_of_lists": [[2.0, 0.0]],
    "float64_array": np.array([[2.0, 0.0]], dtype=np.float64),
    "float32_array": np.array([[2.0, 0.0]], dtype=np.float32),
    "one_dimensional_list": [2.0, 0.0],
    "one_dimensional_array": np.array([2.0, 0.0]),
}


def test_query_embeddings_formats(grid, subtests):
    for name, query in QUERY_FORMATS.items():
        with subtests.test(format=name):
            assert grid.query(query_embeddings=query, n_results=1)["ids"] == [["p2"]]


BAD_QUERIES = {
    "nan": ([[math.nan, 0.0]], InvalidArgument),
    "inf": ([[0.0, math.inf]], InvalidArgument),
    "one-nan-of-two": ([[0.0, 0.0], [-math.inf, 0.0]], InvalidArgument),
    "short": ([[0.0]], InvalidDimensionError),
    "long": ([[0.0, 0.0, 0.0]], InvalidDimensionError),
    "one-long-of-two": ([[0.0, 0.0], [0.0, 0.0, 0.0]], InvalidDimensionError),
    "strings": ([["a", "b"]], InvalidArgument),
}


def test_bad_query_embeddings_are_rejected(grid, subtests):
    for name, (query, error) in BAD_QUERIES.items():
        with subtests.test(query=name), assert_unchanged(grid), pytest.raises(error):
            grid.query(query_embeddings=query)


def test_query_on_an_empty_collection_gives_empty_lists(client):
    collection = client.create_collection("empty")
    result = collection.query(query_embeddings=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], include=["metadatas", "documents", "distances"])
    assert result["ids"] == [[], []]
    assert result["metadatas"] == [[], []]
    assert result["documents"] == [[], []]
    assert result["distances"] == [[], []]
    collection.add(ids=["a"], embeddings=[[1.0, 2.0]])  # the failed-looking query fixed no dimension
    assert collection.count() == 1


def test_query_returns_stored_embeddings_metadata_and_documents(grid):
    result = grid.query(query_embeddings=[[7.1, 0.0]], n_results=2, include=["embeddings", "metadatas", "documents"])
    assert result["ids"] == [["p7", "p8"]]
    assert_embeddings_equal(result["embeddings"][0], [[7.0, 0.0], [8.0, 0.0]])
    assert result["metadatas"] == [[{"even": False, "i": 7}, {"even": True, "i": 8}]]
    assert result["documents"] == [["item 7", "item 8 special"]]


def test_query_with_where_returns_nearest_matching_items(grid):
    result = grid.query(query_embeddings=[[0.0, 0.0], [9.0, 0.0]], n_results=3, where={"even": False}, include=["distances"])
    assert result["ids"] == [["p1", "p3", "p5"], ["p9", "p7", "p5"]]
    assert result["distances"] == [pytest.approx([1.0, 9.0, 25.0]), pytest.approx([0.0, 4.0, 16.0])]


def test_query_with_where_document_and_both_filters(grid):
    assert grid.query(query_embeddings=[[0.0, 0.0]], where_document={"$contains": "special"})["ids"] == [["p3", "p8"]]
    both = grid.query(query_embeddings=[[0.0, 0.0]], where={"even": True}, where_document={"$contains": "special"})
    assert both["ids"] == [["p8"]]


def test_query_with_filter_matching_nothing_gives_empty_lists(grid):
    result = grid.query(query_embeddings=[[0.0, 0.0], [1.0, 0.0]], where={"i": {"$gt": 100}}, include=["embeddings", "distances"])
    assert result["ids"] == [[], []]
    assert result["distances"] == [[], []]
    assert [array.shape for array in result["embeddings"]] == [(0, 2), (0, 2)]


def test_query_sees_updates_upserts_and_deletes(grid):
    grid.update(ids=["p9"], embeddings=[[-1.0, 0.0]])
    grid.upsert(ids=["p5", "new"], embeddings=[[-0.5, 0.0], [-2.0, 0.0]])
    grid.delete(ids=["p0"])
    assert grid.query(query_embeddings=[[-3.0, 0.0]], n_results=5)["ids"] == [["new", "p9", "p5", "p1", "p2"]]


def brute_force_nearest(embeddings: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    distances = ((embeddings.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1)
    order = np.argsort(distances, kind="stable")[:k]
    return [ids[i] for i in order]


def test_filtered_query_is_exact_when_few_items_match(client):
    rng = np.random.default_rng(7)
    embeddings = rng.standard_normal((600, 8)).astype(np.float32)
    ids = [f"v{i}" for i in range(600)]
    rare = set(rng.choice(600, size=20, replace=False).tolist())
    collection = client.create_collection("filtered")
    collection.add(ids=ids, embeddings=embeddings, metadatas=[{"rare": i in rare} for i in range(600)])
    rare_rows = sorted(rare)
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    result = collection.query(query_embeddings=queries, n_results=10, where={"rare": True})
    for query, got in zip(queries, result["ids"]):
        assert got == brute_force_nearest(embeddings[rare_rows], [ids[i] for i in rare_rows], query, 10)


def test_default_search_gives_recall_of_at_least_095(client):
    rng = np.random.default_rng(11)
    embeddings = rng.standard_normal((3000, 16)).astype(np.float32)
    ids = [f"v{i}" for i in range(3000)]
    collection = client.create_collection("recall")
    collection.add(ids=ids, embeddings=embeddings)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    result = collection.query(query_embeddings=queries, n_results=10, include=[])
    found = sum(
        len(set(got) & set(brute_force_nearest(embeddings, ids, query, 10))) for query, got in zip(queries, result["ids"])
    )
    assert found / (10 * len(queries)) >= 0.95
