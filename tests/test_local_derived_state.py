"""Local answers queries for ids and distances, filtered by ``where`` or not, from
its derived state alone (index, label -> id map, metadata columns), kept
current by its writes: shown by closing the DB under it."""

from __future__ import annotations

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
