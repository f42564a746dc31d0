"""Readiness: ``client.ready()`` over Local, ``GET /api/v1/ready`` and the Flight action ``ready``.

A store that takes writes answers ``writable: True``; one whose disk has too little space
(``min_free_disk_bytes``, or a real tmpfs filled to the last block) answers ``writable:
False`` with the problem, over HTTP with a 503 and the same body, and takes writes again
once space is freed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow.flight as flight
import pytest
import requests

import chroma
from chroma import errors
from chroma.api.arrowflight import ArrowFlight
from chroma.api.fastapi import FastAPI
from chroma.api.local import Local
from chroma.config import Settings
from chroma.db.duckdb import DuckDB

from server_helpers import running_server

TOKEN = "ready-token"
NO_DISK_IS_THAT_FREE = str(2**62)
FIELDS = {"writable", "problem", "store", "collections", "loaded_collections", "loaded_items", "version"}


def add_and_query(client) -> None:
    collection = client.create_collection("ready")
    collection.add(ids=["a", "b", "c"], embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    collection.query(query_embeddings=[[1.0, 0.0]], n_results=1)  # loads its query state


# --------------------------------------------------------------------------
# Local
# --------------------------------------------------------------------------


def test_an_in_memory_store_is_writable_and_counts_what_a_query_loaded():
    settings = Settings()
    db = DuckDB(settings)
    client = Local(settings, db=db)
    try:
        before = client.ready()
        assert before == {"writable": True, "problem": None, "store": "duckdb", "collections": 0,
                          "loaded_collections": 0, "loaded_items": 0, "version": chroma.__version__}
        add_and_query(client)
        client.create_collection("never-queried")
        after = client.ready()
        assert (after["collections"], after["loaded_collections"], after["loaded_items"]) == (2, 1, 3)
    finally:
        client.close()
        db.close()


def test_a_persistent_store_with_less_free_space_than_the_bound_is_not_writable(tmp_path):
    client = Local(Settings(db_impl="persistent_duckdb", persist_directory=str(tmp_path / "db"),
                            min_free_disk_bytes=int(NO_DISK_IS_THAT_FREE)))
    try:
        add_and_query(client)  # the bound is readiness' own: writes still go
        state = client.ready()
        assert set(state) == FIELDS
        assert state["writable"] is False
        assert state["problem"].startswith(f"the disk of persist_directory {str(tmp_path / 'db')!r} has ")
        assert f"below min_free_disk_bytes={NO_DISK_IS_THAT_FREE}; free some space" in state["problem"]
        assert (state["store"], state["collections"], state["loaded_collections"]) == ("persistent_duckdb", 1, 1)
    finally:
        client.close()


def test_a_persistent_store_on_a_roomy_disk_is_writable(tmp_path):
    client = Local(Settings(db_impl="persistent_duckdb", persist_directory=str(tmp_path / "db"),
                            min_free_disk_bytes=0))
    try:
        assert client.ready()["writable"] is True
    finally:
        client.close()


@contextlib.contextmanager
def small_tmpfs(path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted at ``path`` (the tests run as root); skips where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path) -> None:
    """Writes ``path`` until the disk under it has no block left."""
    block = b"\0" * 2**16
    with open(path, "wb", buffering=0) as file:
        try:
            while True:
                file.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(path, "ab", buffering=0) as file:  # the last partial block
        try:
            while True:
                file.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_full_disk_is_not_writable_and_writable_again_once_space_is_freed(tmp_path):
    # chmod does not stop root, a full file system does.
    with small_tmpfs(tmp_path / "disk") as disk:
        client = Local(Settings(db_impl="persistent_duckdb", persist_directory=str(disk / "db"),
                                min_free_disk_bytes=0))
        try:
            add_and_query(client)
            fill(disk / "filler")
            state = client.ready()
            assert state["writable"] is False
            assert state["problem"] == (f"the disk of persist_directory {str(disk / 'db')!r} has 0 bytes free, "
                                        "below min_free_disk_bytes=0; free some space (writes may fail with "
                                        "StorageFull)")
            assert state["collections"] == 1  # reads still work
            os.remove(disk / "filler")
            assert client.ready()["writable"] is True
        finally:
            client.close()


def test_chdb_reports_its_directory_too(tmp_path):
    pytest.importorskip("chdb")
    client = Local(Settings(db_impl="chdb", persist_directory=str(tmp_path / "db"),
                            min_free_disk_bytes=int(NO_DISK_IS_THAT_FREE)))
    try:
        state = client.ready()
        assert state["store"] == "chdb" and state["writable"] is False
        assert f"below min_free_disk_bytes={NO_DISK_IS_THAT_FREE}" in state["problem"]
    finally:
        client.close()


def test_a_closed_client_raises_client_closed():
    settings = Settings()
    db = DuckDB(settings)
    client = Local(settings, db=db)
    client.close()
    with pytest.raises(errors.ClientClosed):
        client.ready()
    db.close()


# --------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def writable(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("writable"), impl="both", auth_token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def not_writable(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("not-writable")
    with running_server(workdir, "--path", str(workdir / "db"), impl="both", auth_token=TOKEN,
                        min_free_disk_bytes=NO_DISK_IS_THAT_FREE) as server:
        yield server


def clients(server) -> dict:
    return {"http": FastAPI(Settings(server_host="127.0.0.1", server_http_port=server.port, auth_token=TOKEN)),
            "flight": ArrowFlight(Settings(server_host="127.0.0.1", server_flight_port=server.flight_port,
                                           auth_token=TOKEN))}


def test_a_writable_server_answers_200_and_both_clients_read_the_same(writable):
    response = requests.get(f"{writable.url}/api/v1/ready", headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["writable"] is True and body["problem"] is None and body["store"] == "duckdb"
    connected = clients(writable)
    add_and_query(connected["http"])
    for client in connected.values():
        try:
            state = client.ready()
            assert set(state) == FIELDS
            assert state["writable"] is True and state["problem"] is None
            assert (state["collections"], state["loaded_collections"], state["loaded_items"]) == (1, 1, 3)
        finally:
            client.close()


def test_a_server_that_takes_no_writes_answers_503_with_the_same_body(not_writable):
    response = requests.get(f"{not_writable.url}/api/v1/ready", headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["writable"] is False and body["store"] == "persistent_duckdb"
    assert f"below min_free_disk_bytes={NO_DISK_IS_THAT_FREE}" in body["problem"]
    for client in clients(not_writable).values():
        try:
            state = client.ready()
            assert state["writable"] is False
            # the same problem; the bytes free move with whatever else writes to this disk
            assert re.sub(r"has \d+ bytes", "has N bytes", state["problem"]) == \
                re.sub(r"has \d+ bytes", "has N bytes", body["problem"])
        finally:
            client.close()


def test_ready_needs_the_token(writable):
    response = requests.get(f"{writable.url}/api/v1/ready", timeout=30)
    assert response.status_code == 401 and response.json()["error"] == "Unauthorized"
    untrusted = flight.FlightClient(writable.flight_url)
    try:
        with pytest.raises(flight.FlightUnauthenticatedError, match="missing or invalid token"):
            list(untrusted.do_action(flight.Action("ready", b"{}")))
    finally:
        untrusted.close()
    for client in (FastAPI(Settings(server_host="127.0.0.1", server_http_port=writable.port)),
                   ArrowFlight(Settings(server_host="127.0.0.1", server_flight_port=writable.flight_port))):
        try:
            with pytest.raises(errors.Unauthorized):
                client.ready()
        finally:
            client.close()
