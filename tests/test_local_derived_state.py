"""Local answers queries for ids and distances, filtered by ``where`` or not, from
its derived state alone (index, label -> id map, metadata columns), kept
current by its writes: shown by closing the DB under it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from chroma import errors
from chroma.api.local import Local
from chroma.config import Settings
from chroma.db.duckdb import DuckDB


@pytest.fixture
def local():
    client = Local(Settings(), db=DuckDB(Settings()))
    yield client
    client._db.close()


def test_ids_and_where_queries_need_no_db_statement(local):
    collection = local.create_collection("derived")
    collection.add(ids=[f"p{i}" for i in range(6)], embeddings=[[float(i), 0.0] for i in range(6)],
                   metadatas=[{"even": i % 2 == 0, "i": i} for i in range(6)])
    # writes after the columns are loaded (by the first filtered query) keep everything current
    collection.query(query_embeddings=[[0.0, 0.0]], n_results=1, where={"even": True}, include=[])
    collection.upsert(ids=["p1", "new"], embeddings=[[0.5, 0.0], [0.2, 0.0]],
                      metadatas=[{"even": True, "i": 1}, {"even": False, "i": 6}])
    collection.update(ids=["p4"], metadatas=[{"i": 4}])  # no "even" any more
    collection.delete(ids=["p2"])
    expected = {
        "all": [["p0", "new", "p1", "p3"]],
        "even": [["p0", "p1"]],
        "odd": [["new", "p3", "p5"]],
    }
    distances = [[0.0, 0.04000000283122063, 0.25, 9.0]]

    local._db.close()
    with pytest.raises(errors.ChromaError, match="closed"):
        collection.query(query_embeddings=[[0.0, 0.0]], n_results=4, include=["metadatas"])
    got = collection.query(query_embeddings=[[0.0, 0.0]], n_results=4, include=["distances"])
    assert got["ids"] == expected["all"] and got["distances"] == distances
    assert collection.query(query_embeddings=[[0.0, 0.0]], n_results=4, where={"even": True},
                            include=[])["ids"] == expected["even"]
    assert collection.query(query_embeddings=[[0.0, 0.0]], n_results=4, where={"even": {"$ne": True}},
                            include=[])["ids"] == expected["odd"]


def test_get_count_and_query_with_texts_need_no_db_statement_after_every_write_kind(local):
    collection = local.create_collection("texts", metadata={"hnsw:space": "cosine"})
    collection.add(ids=["a", "b", "c"], embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
                   metadatas=[{"k": 1}, None, {"k": 3}], documents=["doc a", None, "doc c"])
    collection.get(ids=["a"], where={"k": 1})  # the first reads load the texts and the columns
    collection.update(ids=["a"], documents=["doc a2"])
    collection.update(ids=["c"], metadatas=[{"k": 4, "s": "é"}])
    collection.upsert(ids=["b", "d"], embeddings=[[0.0, 2.0], [2.0, 0.2]], documents=["doc b", "doc d"],
                      metadatas=[{"k": 2}, {"k": 5}])
    collection.add(ids=["e"], embeddings=[[-1.0, 0.0]])
    collection.delete(ids=["c"])

    local._db.close()
    assert collection.count() == 4
    got = collection.get(ids=["d", "zz", "a", "b", "e"])
    assert got["ids"] == ["d", "a", "b", "e"]
    assert got["documents"] == ["doc d", "doc a2", "doc b", None]
    assert got["metadatas"] == [{"k": 5}, {"k": 1}, {"k": 2}, None]
    assert collection.get(include=[])["ids"] == ["a", "b", "d", "e"]  # insertion order
    assert collection.get(where={"k": {"$gte": 2}}, limit=1, offset=1, include=["documents"])["documents"] == ["doc d"]
    got = collection.query(query_embeddings=[[1.0, 0.0]], n_results=2)
    assert got["ids"] == [["a", "d"]]
    assert got["documents"] == [["doc a2", "doc d"]]
    assert got["metadatas"] == [[{"k": 1}, {"k": 5}]]


def test_get_and_query_with_where_document_need_no_db_statement(local):
    collection = local.create_collection("documents")
    collection.add(ids=["a", "b", "c", "d"], embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]],
                   metadatas=[{"k": 1}, {"k": 2}, None, {"k": 4}],
                   documents=["apple pie", "banana", None, "pineapple, é"])
    collection.get(ids=["a"], where={"k": 1})  # the first read loads the texts and the columns
    collection.update(ids=["b"], documents=["apple crumble"])  # the old text stays behind in the arena
    collection.add(ids=["e"], embeddings=[[0.0, 2.0]], documents=["aaa"])
    collection.delete(ids=["d"])

    local._db.close()
    def ids(where_document, where=None):
        return collection.get(where_document=where_document, where=where, include=[])["ids"]

    assert ids({"$contains": "apple"}) == ["a", "b"]
    assert ids({"$contains": "banana"}) == []  # replaced
    assert ids({"$not_contains": "apple"}) == ["c", "e"]  # a missing document is ""
    assert ids({"$contains": "aa"}) == ["e"]  # overlapping occurrences
    assert ids({"$contains": "pie a"}) == []  # not across two documents
    assert ids({"$contains": ""}) == ["a", "b", "c", "e"]
    assert ids({"$or": [{"$contains": "pie"}, {"$contains": "aaa"}]}) == ["a", "e"]
    assert ids({"$and": [{"$contains": "apple"}, {"$not_contains": "pie"}]}) == ["b"]
    assert ids({"$contains": "apple"}, where={"k": 2}) == ["b"]
    assert collection.get(where_document={"$contains": "apple"}, limit=1, offset=1,
                          include=["documents"])["documents"] == ["apple crumble"]
    got = collection.query(query_embeddings=[[1.0, 0.0]], n_results=3, where_document={"$contains": "a"},
                           include=[])
    assert got["ids"] == [["a", "b", "e"]]


def test_a_failed_write_leaves_the_derived_state_as_it_was(local):
    collection = local.create_collection("atomic")
    collection.add(ids=["a", "b"], embeddings=[[0.0, 0.0], [1.0, 0.0]], metadatas=[{"k": 1}, {"k": 2}])
    collection.query(query_embeddings=[[0.0, 0.0]], n_results=1, where={"k": 1}, include=[])
    with pytest.raises(errors.DuplicateIDError):
        collection.add(ids=["c", "a"], embeddings=[[0.1, 0.0], [0.2, 0.0]], metadatas=[{"k": 1}, {"k": 1}])
    with pytest.raises(errors.IDNotFoundError):
        collection.update(ids=["b", "zz"], metadatas=[{"k": 1}, {"k": 1}])
    local._db.close()
    assert collection.query(query_embeddings=[[0.0, 0.0]], n_results=3, include=[])["ids"] == [["a", "b"]]
    assert collection.query(query_embeddings=[[0.0, 0.0]], n_results=3, where={"k": 1}, include=[])["ids"] == [["a"]]


def test_a_hit_whose_item_left_the_map_is_dropped_and_ties_come_by_insertion(local):
    collection = local.create_collection("ties")
    collection.add(ids=["far", "tie-1", "tie-2", "near"],
                   embeddings=[[3.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.1, 0.0]])
    got = collection.query(query_embeddings=[[0.0, 0.0], [3.0, 0.0]], n_results=3, include=["distances"])
    assert got["ids"] == [["near", "tie-1", "tie-2"], ["far", "tie-2", "near"]]
    # what a delete committed between the search and the lookup looks like: the map no longer
    # holds the item the index still returns; the answer leaves it out instead of failing
    cached = local._engine.loaded(collection.id)
    cached.ids.remove(np.asarray(cached.ids.labels()[1:2]))  # "tie-1"
    got = collection.query(query_embeddings=[[0.0, 0.0]], n_results=3, include=["distances"])
    assert got["ids"] == [["near", "tie-2"]]
    assert got["distances"] == [[pytest.approx(0.01), 1.0]]


def test_an_add_returns_before_its_index_update_and_a_query_waits_for_it(local):
    collection = local.create_collection("behind")
    collection.add(ids=["a"], embeddings=[[0.0, 0.0]])
    cached = local._engine.loaded(collection.id)
    gate, index_add = threading.Event(), cached.index.add

    def gated_add(labels, vectors):
        gate.wait()
        index_add(labels, vectors)

    cached.index.add = gated_add
    collection.add(ids=["b"], embeddings=[[1.0, 0.0]])  # returns with its index update queued
    answers = []
    reader = threading.Thread(target=lambda: answers.append(
        collection.query(query_embeddings=[[1.0, 0.0]], n_results=1, include=[])["ids"]))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and answers == []  # the query waits for the update of the write that returned
    gate.set()
    reader.join(5)
    assert answers == [[["b"]]]


def test_a_failed_index_update_drops_the_derived_state_and_the_next_query_reloads_it(local):
    collection = local.create_collection("reload")
    collection.add(ids=["a"], embeddings=[[0.0, 0.0]])
    cached = local._engine.loaded(collection.id)

    def failing_add(labels, vectors):
        raise MemoryError("no room for the graph")

    cached.index.add = failing_add
    with pytest.warns(RuntimeWarning, match="dropped, rebuilt on next use"):
        collection.add(ids=["b"], embeddings=[[1.0, 0.0]])
        collection.count()  # a read waits for the queued update
    assert local._engine.loaded(collection.id) is None
    assert collection.query(query_embeddings=[[1.0, 0.0]], n_results=2, include=[])["ids"] == [["b", "a"]]


def test_batches_of_thousands_with_reads_between_them(local):
    # big enough that each derived update and each load hands memory back
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(6000, 128)).astype(np.float32)
    collection = local.create_collection("bulk")
    for first in range(0, 6000, 2000):
        rows = range(first, first + 2000)
        collection.add(ids=[f"b{i}" for i in rows], embeddings=vectors[first : first + 2000],
                       metadatas=[{"odd": i % 2} for i in rows], documents=[f"doc {i}" for i in rows])
        got = collection.query(query_embeddings=vectors[first + 1 : first + 2] + 0.001, n_results=5,
                               where={"odd": 1})
        assert got["ids"][0][0] == f"b{first + 1}" and len(got["ids"][0]) == 5
        assert got["documents"] == [[f"doc {item[1:]}" for item in got["ids"][0]]]
        assert got["metadatas"] == [[{"odd": 1}] * 5]
    collection.delete(ids=[f"b{i}" for i in range(0, 6000, 2)])
    assert collection.count() == 3000
    assert collection.get(ids=["b2", "b3"])["ids"] == ["b3"]
    assert collection.get(ids=["b5999"], include=["metadatas"])["metadatas"] == [{"odd": 1}]
