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


def test_the_default_cap_takes_the_largest_add_the_default_bounds_accept(tmp_path):
    bounds = Settings()
    rows = bounds.max_batch_size
    # every byte of the largest body a vector: as many float32s as fit, for as many rows as
    # accepted (so at least as large as any add those bounds let through)
    dimension = bounds.max_request_bytes // (4 * rows)
    vectors = np.random.default_rng(3).random((rows, dimension), dtype=np.float32)
    ids = [f"item-{i}" for i in range(rows)]
    db = PersistentDuckDB(Settings(persist_directory=str(tmp_path)))
    try:
        assert memory_limit_of(db) == "61.0 MiB"
        collection = db.create_collection("largest", None)
        db.add(collection.id, Batch(ids=ids, embeddings=vectors, metadatas=[{"row": i} for i in range(rows)],
                                    documents=None))
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
