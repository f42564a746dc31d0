"""A PersistentDuckDB directory whose file or write-ahead log is damaged: opening
it raises StorageCorrupt naming the file and what to do, not a raw duckdb error."""

from __future__ import annotations

from pathlib import Path

import pytest

import chroma
from chroma import errors
from python_subprocess import run_python


def stored_directory(directory: Path, keep_wal: bool) -> Path:
    """A directory holding one collection of two items; ``keep_wal``: the process dies before any checkpoint."""
    run_python(f"""
        import os
        import chroma
        chroma.configure(db_impl="persistent_duckdb", persist_directory={str(directory)!r})
        collection = chroma.get_api().create_collection("kept")
        collection.add(ids=["a", "b"], embeddings=[[1.0, 2.0], [3.0, 4.0]])
        if {keep_wal}:
            os._exit(0)
    """)
    return directory / "chroma.duckdb"


def overwrite(path: Path, at: int, data: bytes) -> None:
    with open(path, "r+b") as file:
        file.seek(at)
        file.write(data)


DAMAGE = {
    "a block overwritten": (False, lambda db: overwrite(db, 5000, b"\xff" * 20000), "the DB file"),
    "a truncated file": (False, lambda db: db.write_bytes(db.read_bytes()[:5000]), "the DB file"),
    "another kind of file": (False, lambda db: db.write_bytes(b"not a database\n" * 1000), "the DB file"),
    "a WAL entry overwritten": (True, lambda db: overwrite(Path(f"{db}.wal"), 100, b"\xff" * 200),
                                "the write-ahead log"),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_opening_a_damaged_directory(tmp_path, configured, damage):
    keep_wal, harm, named = damage
    db_file = stored_directory(tmp_path / "store", keep_wal)
    harm(db_file)
    wal = f"{db_file}.wal" if keep_wal else str(db_file)
    with pytest.raises(errors.StorageCorrupt, match="is corrupt") as failure:
        configured(db_impl="persistent_duckdb", persist_directory=str(tmp_path / "store"))
        chroma.get_api().get_collection("kept").count()
    message = str(failure.value)
    assert message.startswith(f"{named} {wal!r}")
    assert "backup" in message and "move" in message.lower()
