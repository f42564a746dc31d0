"""A PersistentDuckDB whose disk fills up: the write that does not fit fails with
StorageFull, reads keep working, writes work again once space is freed, with no
restart, and nothing acknowledged is lost. On a real small filesystem (tmpfs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import requests

import chroma
from chroma import errors
from chroma.api.arrowflight import ArrowFlight
from chroma.api.fastapi import FastAPI
from chroma.api.local import Local
from chroma.config import Settings
from chroma.db.duckdb import PersistentDuckDB

from server_helpers import running_server

DISK_MB = 40
FREE_MB = 22
"""Room for DuckDB's WAL to pass its 16 MiB checkpoint threshold, not for the checkpoint after it."""


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs (CI runs as root): {mounted.stderr}")
        pytest.skip(f"mounting a tmpfs needs root: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


DOCUMENT = "d" * 4000


def _fill(collection) -> list[str]:
    """Adds batches until the disk is full (StorageFull); the ids acknowledged before."""
    rng = np.random.default_rng(0)
    acknowledged: list[str] = []
    with pytest.raises(errors.StorageFull, match="is full; nothing was written"):
        for batch in range(200):
            ids = [f"{batch}-{row}" for row in range(200)]
            collection.add(ids=ids, embeddings=rng.random((200, 8), dtype=np.float32), documents=[DOCUMENT] * 200)
            acknowledged += ids
    return acknowledged


def test_writes_into_a_full_disk(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * ((DISK_MB - FREE_MB) << 20))
        settings = Settings(db_impl="persistent_duckdb", persist_directory=str(disk / "store"), index_impl="flat")
        db = PersistentDuckDB(settings)  # the caller's to close (Local over a given DB)
        client = Local(settings, db=db)
        collection = client.create_collection("filling")
        acknowledged = _fill(collection)
        # The filling passed the checkpoint threshold, whose checkpoint then failed (the
        # case that invalidated DuckDB's instance), before the WAL itself ran out of room.
        assert (disk / "store" / "chroma.duckdb.wal").stat().st_size >= 16 << 20
        assert collection.count() == len(acknowledged)
        assert collection.get(ids=acknowledged[-3:])["ids"] == acknowledged[-3:]
        assert len(collection.query(query_embeddings=[[0.5] * 8], n_results=3)["ids"][0]) == 3
        with pytest.raises(errors.StorageFull):
            collection.add(ids=["still-full"], embeddings=[[0.0] * 8], documents=[DOCUMENT * 50])
        assert collection.count() == len(acknowledged)

        filler.unlink()
        collection.add(ids=["after"], embeddings=[[0.0] * 8])
        collection.delete(ids=[acknowledged[0]])
        expected = sorted(acknowledged[1:] + ["after"])
        assert sorted(collection.get(include=[])["ids"]) == expected
        client.close()
        db.close()

        db = PersistentDuckDB(settings)
        reopened = Local(settings, db=db)
        assert sorted(reopened.get_collection("filling").get(include=[])["ids"]) == expected
        reopened.close()
        db.close()


@pytest.mark.parametrize("impl", ["fastapi", "flight"])
def test_a_server_writing_into_a_full_disk(tmp_path, impl):
    # The same over a server: 507 StorageFull over HTTP (the class itself through either
    # client), reads answered, and writes again once space is freed, with no restart.
    with small_disk(tmp_path / "disk") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * ((DISK_MB - FREE_MB) << 20))
        with running_server(tmp_path, impl=impl, db_impl="persistent_duckdb", index_impl="flat",
                            persist_directory=str(disk / "store"), embedding_function="none") as server:
            if impl == "fastapi":
                client = FastAPI(Settings(server_host="127.0.0.1", server_http_port=server.port))
            else:
                client = ArrowFlight(Settings(server_host="127.0.0.1", server_flight_port=server.flight_port))
            collection = client.create_collection("filling")
            acknowledged = _fill(collection)
            if impl == "fastapi":
                refused = requests.post(f"http://127.0.0.1:{server.port}/api/v1/collections/{collection.id}/add",
                                        json={"ids": ["curl"], "embeddings": [[0.0] * 8],
                                              "documents": [DOCUMENT * 50]}, timeout=60)
                assert refused.status_code == 507, refused.text
                assert refused.json()["error"] == "StorageFull"
            assert collection.count() == len(acknowledged)
            assert collection.get(ids=acknowledged[-3:])["ids"] == acknowledged[-3:]
            assert len(collection.query(query_embeddings=[[0.5] * 8], n_results=3)["ids"][0]) == 3

            filler.unlink()
            collection.add(ids=["after"], embeddings=[[0.0] * 8])
            assert collection.count() == len(acknowledged) + 1
            client.close()
