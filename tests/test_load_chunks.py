"""An index is built from the DB's vectors a chunk at a time (``DB.load_vector_chunks``)."""

from __future__ import annotations

import numpy as np
import pytest

import chroma
from chroma import errors
from chroma.config import Settings
from chroma.db import LOAD_CHUNK_ROWS, Batch
from chroma.db.duckdb import DuckDB, PersistentDuckDB


@pytest.mark.parametrize("db_class", [DuckDB, PersistentDuckDB])
def test_vectors_load_in_bounded_chunks_in_label_order(tmp_path, db_class):
    items = 2 * LOAD_CHUNK_ROWS + 3
    vectors = np.random.default_rng(5).random((items, 3), dtype=np.float32)
    db = db_class(Settings(persist_directory=str(tmp_path)))
    try:
        collection = db.create_collection("chunks", None)
        stored = db.add(collection.id, Batch(ids=[f"i{n}" for n in range(items)], embeddings=vectors,
                                             metadatas=None, documents=None))
        chunks = list(db.load_vector_chunks(collection.id))
        assert len(chunks) > 1
        assert all(len(labels) == len(rows) <= LOAD_CHUNK_ROWS for labels, rows in chunks)
        labels = np.concatenate([labels for labels, _ in chunks])
        np.testing.assert_array_equal(labels, stored.labels)
        np.testing.assert_array_equal(np.concatenate([rows for _, rows in chunks]), vectors)
        whole_labels, whole = db.load_vectors(collection.id)
        np.testing.assert_array_equal(whole_labels, labels)
        with pytest.raises(errors.CollectionNotFound):
            db.load_vector_chunks("no-such-collection")
    finally:
        db.close()


def test_a_reopened_collection_without_its_saved_index_rebuilds_it_from_chunks(tmp_path):
    items = LOAD_CHUNK_ROWS + 500
    vectors = np.random.default_rng(6).random((items, 4), dtype=np.float32)
    ids = [f"i{n}" for n in range(items)]
    chroma.configure(api_impl="local", db_impl="persistent_duckdb", persist_directory=str(tmp_path))
    try:
        client = chroma.get_api()
        client.create_collection("rebuilt").add(ids=ids, embeddings=vectors)
        client.close()
        for saved in (tmp_path / "indexes").iterdir():
            saved.unlink()  # as after a crash: the index comes from the DB again
        collection = chroma.get_api().get_collection("rebuilt")
        assert collection.count() == items
        probes = [0, LOAD_CHUNK_ROWS - 1, LOAD_CHUNK_ROWS, items - 1]  # either side of the chunk boundary
        found = collection.query(query_embeddings=vectors[probes], n_results=1, include=[])["ids"]
        assert found == [[ids[p]] for p in probes]
    finally:
        chroma.get_api().close()
        chroma.configure(api_impl=None, db_impl=None, persist_directory=None)
