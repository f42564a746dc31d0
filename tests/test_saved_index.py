"""Local over persistent_duckdb saves its HNSW indexes on close and loads them on reopen."""

from __future__ import annotations

import numpy as np
import pytest

import chroma
from test_durability import open_persistent


@pytest.fixture(autouse=True)
def restore_configuration():
    yield
    chroma.get_api().close()  # the persistent client, releasing its directory
    chroma.configure(api_impl=None, db_impl=None, persist_directory=None)


def close() -> None:
    """Closes the persistent client as a process's end would: its loaded indexes are saved."""
    chroma.get_api().close()


def slots(client: chroma.API, collection_id: str) -> int:
    """Node slots of the collection's core index: a rebuild from the DB has no deleted ones."""
    return client._engine.loaded(collection_id).index._core._slots


def test_reopen_loads_the_saved_index_and_a_write_invalidates_it(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    ids = [f"v{i}" for i in range(300)]
    client = open_persistent(tmp_path)
    collection = client.create_collection("saved", metadata={"hnsw:search_ef": 50})
    collection.add(ids=ids, embeddings=vectors)
    collection.delete(ids=ids[:30])
    expected = collection.query(query_embeddings=vectors[:5], n_results=4, include=["distances"])
    assert slots(client, collection.id) == 300
    close()
    saved = tmp_path / "indexes" / f"{collection.id}.hnsw"
    assert saved.exists()

    client = open_persistent(tmp_path)
    collection = client.get_collection("saved")
    assert collection.query(query_embeddings=vectors[:5], n_results=4, include=["distances"]) == expected
    assert slots(client, collection.id) == 300  # loaded (with its 30 deleted slots), not rebuilt
    collection.add(ids=["new"], embeddings=vectors[:1] + 1)
    assert not saved.exists()  # the file no longer matches the DB
    close()

    saved.write_bytes(saved.read_bytes()[:-5])  # truncated: ignored with a warning, then rebuilt
    client = open_persistent(tmp_path)
    collection = client.get_collection("saved")
    with pytest.warns(RuntimeWarning, match="saved index"):
        got = collection.query(query_embeddings=vectors[:5], n_results=4, include=[])
    assert got["ids"] == expected["ids"]
    assert slots(client, collection.id) == 271
    assert not saved.exists()


def saved_files(directory, collection_id: str) -> dict:
    """The collection's saved index and its DB state record, as bytes."""
    return {suffix: (directory / "indexes" / f"{collection_id}{suffix}").read_bytes() for suffix in (".hnsw", ".json")}


def restore(directory, collection_id: str, files: dict) -> None:
    for suffix, content in files.items():
        (directory / "indexes" / f"{collection_id}{suffix}").write_bytes(content)


@pytest.mark.parametrize("change", ["add", "update", "delete"])
def test_a_stale_saved_index_is_detected_and_rebuilt(tmp_path, change):
    """Index files from an earlier DB state (a restored backup, say) are never used."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    ids = [f"v{i}" for i in range(200)]
    client = open_persistent(tmp_path)
    collection = client.create_collection("stale")
    collection.add(ids=ids, embeddings=vectors)
    close()
    earlier = saved_files(tmp_path, collection.id)

    client = open_persistent(tmp_path)
    collection = client.get_collection("stale")
    far = vectors[0] + 100.0
    if change == "add":
        collection.add(ids=["new"], embeddings=far[None, :])
    elif change == "update":  # the same labels: only the DB's write counter tells the states apart
        collection.update(ids=["v7"], embeddings=far[None, :])
    else:
        collection.delete(ids=["v0"])
    expected = collection.query(query_embeddings=np.stack([far, vectors[0]]), n_results=3, include=["distances"])
    close()
    restore(tmp_path, collection.id, earlier)

    client = open_persistent(tmp_path)
    collection = client.get_collection("stale")
    with pytest.warns(RuntimeWarning, match="stale"):
        got = collection.query(query_embeddings=np.stack([far, vectors[0]]), n_results=3, include=["distances"])
    assert got == expected
    assert not (tmp_path / "indexes" / f"{collection.id}.hnsw").exists()  # removed, saved anew on close
    close()
    assert saved_files(tmp_path, collection.id) != earlier


def test_a_saved_index_without_its_state_record_is_not_trusted(tmp_path):
    client = open_persistent(tmp_path)
    collection = client.create_collection("unrecorded")
    collection.add(ids=["a", "b"], embeddings=[[0.0, 0.0], [1.0, 0.0]])
    close()
    (tmp_path / "indexes" / f"{collection.id}.json").unlink()

    client = open_persistent(tmp_path)
    collection = client.get_collection("unrecorded")
    with pytest.warns(RuntimeWarning, match="no record of the DB state"):
        assert collection.query(query_embeddings=[[0.9, 0.0]], n_results=2, include=[])["ids"] == [["b", "a"]]
    close()
    assert (tmp_path / "indexes" / f"{collection.id}.json").exists()
