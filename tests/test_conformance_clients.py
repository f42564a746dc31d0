"""Conformance: independent clients, clients sharing a store, their lifecycle, single values,
settings that take effect at once (``hnsw:search_ef``), and what users of the original Chroma
expect (``reset()`` returns True)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import chroma
from chroma import errors
from conformance_helpers import SearchEfCase, rejected_without_change
from embedding_functions import hashed
from python_subprocess import PACKAGE_PARENT, run_python
from server_helpers import free_port


def is_in_memory_local(settings: dict) -> bool:
    """Whether ``settings`` name an in-memory store in this process: a new client of them is a new store."""
    return settings.get("api_impl", "local") in ("local", "celery") and settings.get("db_impl", "duckdb") == "duckdb"


def nearest(collection, embedding: list, n: int = 1) -> list:
    return collection.query(query_embeddings=embedding, n_results=n, include=[])["ids"][0]


def test_chroma_03_calls_reset_returns_true_and_persist_is_a_deprecated_no_op(client):
    client.create_collection("gone").add(ids="a", embeddings=[1.0])
    with pytest.warns(DeprecationWarning, match="durable"):
        assert client.persist() is None
    assert client.get_collection("gone").count() == 1
    assert client.reset() is True
    assert client.list_collections() == []


def test_an_in_memory_and_a_persistent_client_used_alternately_beside_the_configured_one(client, tmp_path):
    directory = str(tmp_path / "disk")
    with chroma.EphemeralClient() as scratch, chroma.PersistentClient(directory) as disk:
        clients = {"configured": client, "scratch": scratch, "disk": disk}
        collections = {name: each.create_collection("notes") for name, each in clients.items()}
        for turn in range(3):
            for name, collection in collections.items():
                collection.add(ids=f"{name}-{turn}", embeddings=[float(turn), 1.0], documents=f"{name} {turn}")
                assert nearest(collection, [float(turn), 1.0]) == [f"{name}-{turn}"]
        for name, collection in collections.items():
            assert collection.get()["ids"] == [f"{name}-{turn}" for turn in range(3)]
            assert clients[name].get_collection("notes").count() == 3
        disk_id = collections["disk"].id
    for name in ("scratch", "disk"):
        assert clients[name].closed
        with pytest.raises(errors.ClientClosed):
            collections[name].count()
    assert not client.closed and collections["configured"].count() == 3
    with chroma.PersistentClient(directory) as reopened:
        again = reopened.get_collection("notes")
        assert again.id == disk_id and again.get()["ids"] == ["disk-0", "disk-1", "disk-2"]


def test_two_in_memory_clients_are_two_stores():
    with chroma.EphemeralClient() as first, chroma.EphemeralClient() as second:
        first.create_collection("mine").add(ids="a", embeddings=[1.0, 2.0])
        assert second.list_collections() == []
        second.create_collection("mine").add(ids="b", embeddings=[1.0, 2.0])
        assert first.get_collection("mine").get()["ids"] == ["a"]


def test_two_clients_of_one_store_see_each_others_writes_at_once(client, client_settings):
    mine = client.create_collection("shared")
    mine.add(ids=["a", "b"], embeddings=[[0.0, 0.0], [1.0, 0.0]])
    assert nearest(mine, [0.0, 0.0]) == ["a"]  # this client's derived state is loaded
    with chroma.Client(**client_settings) as other:
        assert other is not client
        if is_in_memory_local(client_settings):
            assert other.list_collections() == []  # an in-memory store of its own
            return
        theirs = other.get_collection("shared")
        assert nearest(theirs, [1.0, 0.0]) == ["b"]
        theirs.add(ids="c", embeddings=[0.1, 0.0])
        assert nearest(mine, [0.1, 0.0]) == ["c"]
        mine.update(ids="a", embeddings=[5.0, 5.0])
        assert nearest(theirs, [5.0, 5.0]) == ["a"]
        theirs.delete(ids="c")
        assert nearest(mine, [0.1, 0.0], 3) == ["b", "a"]
        mine.upsert(ids=["d", "b"], embeddings=[[9.0, 9.0], [0.2, 0.0]], metadatas=[{"k": 1}, {"k": 2}])
        assert theirs.query(query_embeddings=[0.0, 0.0], n_results=3, where={"k": 2}, include=[])["ids"] == [["b"]]
        assert theirs.count() == mine.count() == 3
        mine.modify(name="renamed")
        assert other.get_collection("renamed").id == mine.id
    assert mine.count() == 3  # closing the other client leaves the store to this one


def test_a_closed_client_raises_client_closed_and_leaves_the_configured_one_working(client, client_settings):
    mine = client.create_collection("kept")
    mine.add(ids="a", embeddings=[1.0, 2.0])
    with chroma.Client(**client_settings) as other:
        theirs = other.get_or_create_collection("kept")
        assert not other.closed
    assert other.closed
    calls = {
        "heartbeat": other.heartbeat,
        "ready": other.ready,
        "list_collections": other.list_collections,
        "get_collection": lambda: other.get_collection("kept"),
        "count": theirs.count,
        "add": lambda: theirs.add(ids="b", embeddings=[1.0, 2.0]),
        "query": lambda: theirs.query(query_embeddings=[1.0, 2.0], n_results=1),
    }
    for name, call in calls.items():
        with pytest.raises(errors.ClientClosed, match="closed"):
            call()
    other.close()  # a second close is harmless
    assert mine.count() == 1 and nearest(mine, [1.0, 2.0]) == ["a"]
    assert chroma.get_api() is client


def test_a_client_obtained_before_a_new_configuration_keeps_working_on_its_own(client, configured):
    collection = client.create_collection("before")
    collection.add(ids="a", embeddings=[1.0, 2.0])
    assert nearest(collection, [1.0, 2.0]) == ["a"]
    new = configured(api_impl="local", db_impl="duckdb", index_impl="flat")
    assert new is not client and new.list_collections() == []
    collection.add(ids="b", embeddings=[2.0, 2.0])
    assert nearest(collection, [2.1, 2.0]) == ["b"]
    assert [c.name for c in client.list_collections()] == ["before"]
    assert new.list_collections() == []


def test_single_values_are_one_item_in_every_write_get_and_delete(client):
    collection = client.create_collection("single")
    collection.add(ids="one", embeddings=[1.0, 2.0], metadatas={"k": 1}, documents="first")
    collection.upsert(ids="two", embeddings=[2.0, 2.0], metadatas={"k": 2}, documents="second")
    collection.update(ids="one", metadatas={"k": 3}, documents="changed")
    collection.upsert(ids="two", embeddings=[2.0, 3.0], documents="upserted")
    assert collection.get(ids="one", include=["metadatas", "documents", "embeddings"])["documents"] == ["changed"]
    got = collection.get(ids="two", include=["metadatas", "documents", "embeddings"])
    assert got["ids"] == ["two"] and got["metadatas"] == [{"k": 2}] and got["documents"] == ["upserted"]
    np.testing.assert_array_equal(got["embeddings"], np.array([[2.0, 3.0]], dtype=np.float32))
    assert collection.get(ids="one")["metadatas"] == [{"k": 3}]
    collection.delete(ids="one")
    assert collection.get()["ids"] == ["two"]
    # One value stands for one item: beside two ids it is a length mismatch.
    with rejected_without_change(errors.InvalidArgument, collection):
        collection.add(ids=["x", "y"], embeddings=[[0.0, 0.0], [1.0, 1.0]], documents="only one")
    with rejected_without_change(errors.InvalidArgument, collection):
        collection.upsert(ids=["x", "y"], embeddings=[[0.0, 0.0], [1.0, 1.0]], metadatas={"k": 1})
    with rejected_without_change(errors.DuplicateIDError, collection):
        collection.add(ids="two", embeddings=[0.0, 0.0])


def test_a_single_document_is_embedded_as_one_item(client):
    collection = client.create_collection("embedded", embedding_function=hashed)
    collection.add(ids="id1", documents="hello")
    collection.upsert(ids="id2", documents="world")
    collection.update(ids="id1", documents="hello again")
    found = collection.query(query_texts="hello again", n_results=1, include=["documents", "distances"])
    assert found["ids"] == [["id1"]] and found["documents"] == [["hello again"]]
    assert found["distances"] == [[0.0]]


def test_modify_search_ef_changes_the_recall_of_the_very_next_query(client, client_settings):
    case = SearchEfCase()
    collection = client.create_collection("recall", metadata=case.metadata())
    if client_settings.get("api_impl") == "celery":
        # The suite's Celery settings split a write into tasks of 2 ids; a client of the same
        # store with large tasks loads these rows in a few.
        with chroma.Client(**{**client_settings, "celery_chunk_size": case.rows}) as loader:
            loader.get_collection("recall").add(ids=case.ids, embeddings=case.data)
    else:
        collection.add(ids=case.ids, embeddings=case.data)

    def recalls() -> tuple[float, float]:
        # One query per call, then one batch (which Celery hands to its workers, other processes).
        single = [nearest(collection, query.tolist(), case.k) for query in case.queries]
        batch = collection.query(query_embeddings=case.queries, n_results=case.k, include=[])["ids"]
        return case.recall(single), case.recall(batch)

    default = recalls()  # the index is loaded now
    collection.modify(metadata=case.metadata(case.low_ef))
    low = recalls()
    assert max(low) < case.low_recall and max(low) < min(default)
    collection.modify(metadata=case.metadata(case.high_ef))
    assert min(recalls()) >= case.high_recall
    collection.modify(metadata=case.metadata(case.low_ef))
    assert recalls() == low
    collection.modify(metadata=case.metadata())  # without the key: the default again
    assert recalls() == default


def settled_descriptors(outside: tuple[str, ...] = ()) -> int:
    """``open_descriptors`` once it has held still: a closed Flight client's gRPC channel closes its
    sockets on gRPC's own threads a moment after ``close()`` returns, so a count taken at once can
    still hold the descriptors of the client closed just before."""
    count, steady, deadline = open_descriptors(outside), 0, time.monotonic() + 5
    while steady < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
        again = open_descriptors(outside)
        steady = steady + 1 if again == count else 0
        count = again
    return count


def open_descriptors(outside: tuple[str, ...] = ()) -> int:
    """Descriptors open in this process, but for files whose path starts with one of ``outside``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed meanwhile
        count += not target.startswith(outside)
    return count


def test_twenty_clients_opened_and_closed_in_turn_leave_no_descriptor_thread_or_lock(client, client_settings,
                                                                                    tmp_path):
    settings = dict(client_settings)
    if settings.get("db_impl") == "persistent_duckdb":  # a directory of its own, which no singleton holds
        settings["persist_directory"] = str(tmp_path / "turns")

    def use_one_client(turn: int) -> None:
        with chroma.Client(**settings) as other:
            collection = other.get_or_create_collection("turns")
            collection.upsert(ids=f"t{turn}", embeddings=[float(turn), 1.0])
            assert nearest(collection, [float(turn), 1.0]) == [f"t{turn}"]  # its index is loaded now
            collection.upsert(ids=f"t{turn}", embeddings=[float(turn), 2.0])  # applied by the store's thread
            assert nearest(collection, [float(turn), 2.0]) == [f"t{turn}"]

    # Imports, what a library keeps for the whole process (thread pools), and the threads of a
    # store that the configured client shares with these clients and keeps open.
    use_one_client(0)
    # chDB's engine (one per process, kept by the configured client) opens files of its own as its
    # tables grow, and a stats file per thread of its pool: they belong to the engine, not to the
    # clients that come and go.
    store_files: tuple[str, ...] = ()
    if settings.get("db_impl") == "chdb":
        store_files = (os.path.realpath(settings["persist_directory"]) + os.sep, f"/proc/{os.getpid()}/task/")
    gc.collect()
    descriptors, threads = settled_descriptors(store_files), sorted(t.name for t in threading.enumerate())
    for turn in range(1, 21):
        use_one_client(turn)
    gc.collect()
    assert settled_descriptors(store_files) == descriptors
    assert sorted(t.name for t in threading.enumerate()) == threads
    if settings.get("db_impl") == "persistent_duckdb" and settings.get("api_impl") == "local":
        # the directory's lock is released: another process opens it
        count = run_python(f"""
            import chroma
            print(chroma.PersistentClient({settings["persist_directory"]!r}).get_collection("turns").count())
        """)
        assert count == "21"


def test_interpreter_exit_with_several_clients_open_saves_and_releases_everything(tmp_path):
    directory = tmp_path / "left-open"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import chroma
        first, second = chroma.PersistentClient({str(directory)!r}), chroma.PersistentClient({str(directory)!r})
        scratch, singleton = chroma.EphemeralClient(), chroma.get_api()
        collection = first.create_collection("kept")
        collection.add(ids=["a", "b"], embeddings=[[0.0, 1.0], [1.0, 0.0]])
        assert second.get_collection("kept").query(query_embeddings=[1.0, 0.0], n_results=1)["ids"] == [["b"]]
        scratch.create_collection("scratch").add(ids="x", embeddings=[1.0])
        singleton.heartbeat()
        print(collection.id)
    """)], capture_output=True, text=True, timeout=60, cwd=PACKAGE_PARENT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}, "PYTHONPATH": str(PACKAGE_PARENT)})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    collection_id = done.stdout.strip()
    assert (directory / "indexes" / f"{collection_id}.hnsw").exists()  # saved at exit
    with chroma.PersistentClient(str(directory)) as reopened:  # and the directory released
        assert reopened.get_collection("kept").get()["ids"] == ["a", "b"]


def test_chroma_03_setting_values_and_names_are_deprecated_aliases(configured, monkeypatch):
    with pytest.warns(DeprecationWarning, match="api_impl='fastapi'"):
        chroma.configure(api_impl="rest")
    with pytest.warns(DeprecationWarning, match="db_impl='persistent_duckdb'"):
        chroma.configure(db_impl="duckdb+parquet")
    settings = chroma.current_settings()
    assert (settings.api_impl, settings.db_impl) == ("fastapi", "persistent_duckdb")
    configured(api_impl=None, db_impl=None)
    with pytest.warns(DeprecationWarning, match="'server_http_port'"):
        chroma.configure(chroma_server_http_port=8123)
    assert chroma.current_settings().server_http_port == 8123
    configured(server_http_port=None)
    monkeypatch.setenv("CHROMA_API_IMPL", "rest")
    with pytest.warns(DeprecationWarning, match="CHROMA_API_IMPL='fastapi'"):
        assert chroma.current_settings().api_impl == "fastapi"


def test_an_unreachable_http_server_raises_what_requests_code_catches():
    import requests

    with chroma.HttpClient("127.0.0.1", free_port()) as unreachable:
        with pytest.raises(requests.exceptions.ConnectionError) as raised:
            unreachable.heartbeat()
    assert isinstance(raised.value, errors.ServerUnavailable) and isinstance(raised.value, ConnectionError)
    assert "cannot reach the chroma server" in str(raised.value)


def test_import_chroma_imports_no_requests():
    assert run_python("import chroma, sys; print('requests' in sys.modules)") == "False"
