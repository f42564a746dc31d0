"""``duckdb_memory_limit``: it reaches DuckDB, bad values are refused, and the default cap
takes the largest add a server's default bounds accept."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from chroma import errors
from chroma.config import Settings, resolve
from chroma.db import Batch
from chroma.db.duckdb import DuckDB, PersistentDuckDB


def memory_limit_of(db: DuckDB) -> str:
    return db._cursor().execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


@pytest.mark.parametrize("value, reported", [(Settings().duckdb_memory_limit, "61.0 MiB"), ("96MiB", "96.0 MiB"),
                                             (" 1GiB ", "1.0 GiB")])
def test_the_setting_reaches_duckdb(tmp_path, value, reported):
    db = PersistentDuckDB(Settings(persist_directory=str(tmp_path), duckdb_memory_limit=value))
    try:
        assert memory_limit_of(db) == reported
    finally:
        db.close()


def test_the_in_memory_db_is_not_capped():
    # its data lives in the buffer pool: a cap would send it to a temporary directory
    db = DuckDB(Settings(duckdb_memory_limit="16MB"))
    try:
        assert memory_limit_of(db) == duckdb.connect(":memory:").execute(
            "SELECT current_setting('memory_limit')").fetchall()[0][0]
    finally:
        db.close()


def test_the_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("CHROMA_DUCKDB_MEMORY_LIMIT", "128MB")
    assert resolve().duckdb_memory_limit == "128MB"


@pytest.mark.parametrize("value", ["", "abc", "64", "-5MB", "80%", "64MB; SET threads=1", "64 parsecs"])
def test_a_malformed_limit_is_a_configuration_error(tmp_path, value):
    # DuckDB itself reads "-5MB" and "80%" as its default (80% of RAM): no cap at all
    with pytest.raises(errors.ConfigurationError) as raised:
        PersistentDuckDB(Settings(persist_directory=str(tmp_path), duckdb_memory_limit=value))
    assert "duckdb_memory_limit" in str(raised.value)
    assert "CHROMA_DUCKDB_MEMORY_LIMIT" in str(raised.value)
    assert repr(value) in str(raised.value)
    assert not (tmp_path / PersistentDuckDB.FILE_NAME).exists()


def largest_add() -> Batch:
    """At least as large as any add the default bounds accept: every byte of the largest body a
    vector (as many float32s as fit), for as many rows as accepted."""
    bounds = Settings()
    rows = bounds.max_batch_size
    dimension = bounds.max_request_bytes // (4 * rows)
    return Batch(ids=[f"item-{i}" for i in range(rows)],
                 embeddings=np.random.default_rng(3).random((rows, dimension), dtype=np.float32),
                 metadatas=[{"row": i} for i in range(rows)], documents=None)


def test_the_default_cap_takes_the_largest_add_the_default_bounds_accept(tmp_path):
    batch = largest_add()
    rows, ids, vectors = len(batch.ids), batch.ids, batch.embeddings
    db = PersistentDuckDB(Settings(persist_directory=str(tmp_path)))
    try:
        assert memory_limit_of(db) == "61.0 MiB"
        collection = db.create_collection("largest", None)
        db.add(collection.id, batch)
        assert db.count(collection.id) == rows
    finally:
        db.close()
    db = PersistentDuckDB(Settings(persist_directory=str(tmp_path)))
    try:
        picked = [0, rows // 2, rows - 1]
        stored = db.get(collection.id, [ids[i] for i in picked], None, None, None, ["embeddings", "metadatas"])
        np.testing.assert_array_equal(stored.embeddings, vectors[picked])
        assert stored.metadatas == [{"row": i} for i in picked]
    finally:
        db.close()


def test_a_cap_too_small_for_an_add_names_the_setting_and_writes_nothing(tmp_path):
    db = PersistentDuckDB(Settings(persist_directory=str(tmp_path), duckdb_memory_limit="16MB"))
    try:
        collection = db.create_collection("too-small", None)
        with pytest.raises(errors.ConfigurationError) as raised:
            db.add(collection.id, largest_add())
        assert "duckdb_memory_limit='16MB'" in str(raised.value)
        assert db.count(collection.id) == 0
        db.add(collection.id, Batch(ids=["small"], embeddings=np.ones((1, 671), dtype=np.float32), metadatas=None,
                                    documents=None))
        assert db.count(collection.id) == 1
    finally:
        db.close()
