"""Durability of ``persistent_duckdb`` with real processes: kill -9, locking, reopen.

A call that returned is durable: a writer killed with SIGKILL right after an
acknowledged ``add`` loses nothing of it, and a batch is never half written.
One process at a time holds a directory; a configuration change closes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import chroma
from chroma import errors
from durability_batches import BATCH_SIZE, batch_embeddings, batch_ids, batch_metadatas

BATCH_COUNT = 20
COLLECTION = "durable"
REPO_ROOT = Path(chroma.__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent

# The subprocesses import the same batches (TESTS_DIR is on their PYTHONPATH).
BATCH_HELPERS = "from durability_batches import BATCH_SIZE, batch_embeddings, batch_ids, batch_metadatas\n"

OPEN_DIRECTORY = """
import sys
import chroma
chroma.configure(api_impl="local", db_impl="persistent_duckdb", persist_directory=sys.argv[1])
client = chroma.get_api()
"""

WRITER = BATCH_HELPERS + OPEN_DIRECTORY + f"""
import time
collection = client.get_or_create_collection("{COLLECTION}")
for batch in range({BATCH_COUNT}):
    collection.add(ids=batch_ids(batch), embeddings=batch_embeddings(batch), metadatas=batch_metadatas(batch))
    print(f"ACK {{batch}}", flush=True)
while True:  # never exit on its own: the test always kills a live process
    time.sleep(1)
"""

# Holds the directory open; on each stdin line adds one more batch; exits at EOF.
HOLDER = BATCH_HELPERS + OPEN_DIRECTORY + f"""
import os
collection = client.get_or_create_collection("{COLLECTION}")
batch = 0
collection.add(ids=batch_ids(batch), embeddings=batch_embeddings(batch), metadatas=batch_metadatas(batch))
print(f"READY {{os.getpid()}}", flush=True)
for _ in sys.stdin:
    batch += 1
    collection.add(ids=batch_ids(batch), embeddings=batch_embeddings(batch), metadatas=batch_metadatas(batch))
    print(f"ACK {{batch}}", flush=True)
"""

COUNT_READER = OPEN_DIRECTORY + f"""
print(client.get_collection("{COLLECTION}").count(), flush=True)
"""


@pytest.fixture(autouse=True)
def restore_configuration():
    yield
    chroma.configure(api_impl=None, db_impl=None, persist_directory=None, allow_reset=None)
    chroma.get_db()  # a new configuration closes the persistent DB, releasing its directory


def open_persistent(directory: Path) -> chroma.API:
    chroma.configure(api_impl="local", db_impl="persistent_duckdb", persist_directory=str(directory))
    return chroma.get_api()


def switch_away() -> None:
    chroma.configure(db_impl=None, persist_directory=None)
    chroma.get_api()


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), str(TESTS_DIR), env.get("PYTHONPATH", "")] if p)
    return env


@contextmanager
def running(tmp_path: Path, name: str, source: str, directory: Path, **popen_args) -> Iterator[subprocess.Popen]:
    """Runs ``source`` as a script on ``directory``; kills it on the way out if still alive."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(source))
    with open(tmp_path / f"{name}.stderr", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), str(directory)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=child_env(),
            **popen_args,
        )
    with process:  # closes the pipes and reaps the process
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def read_line(process: subprocess.Popen, tmp_path: Path, name: str) -> str:
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        stderr = (tmp_path / f"{name}.stderr").read_text()
        pytest.fail(f"{name} ended (exit {process.returncode}) before answering:\n{stderr}")
    return line.strip()


def acknowledged_batch(line: str) -> int:
    word, batch = line.split()
    assert word == "ACK", line
    return int(batch)


def assert_whole_batches(collection, first_missing_at_least: int) -> int:
    """Checks that the stored items are exactly batches 0..n-1, each in full; returns n."""
    stored = collection.get(include=["embeddings", "metadatas"])
    count = collection.count()
    assert count == len(stored["ids"])
    assert count % BATCH_SIZE == 0, f"{count} items: a batch was partly written"
    stored_batches = count // BATCH_SIZE
    assert stored_batches >= first_missing_at_least, (
        f"only {stored_batches} batches stored, {first_missing_at_least} were acknowledged"
    )
    expected_ids = [i for batch in range(stored_batches) for i in batch_ids(batch)]
    assert stored["ids"] == expected_ids  # insertion order, batch by batch
    expected_embeddings = np.concatenate([batch_embeddings(batch) for batch in range(stored_batches)])
    np.testing.assert_array_equal(stored["embeddings"], expected_embeddings)
    assert stored["metadatas"] == [m for batch in range(stored_batches) for m in batch_metadatas(batch)]
    for batch in range(stored_batches):  # the typed metadata that filters run on is whole too
        selected = collection.get(where={"batch": batch}, include=[])["ids"]
        assert selected == batch_ids(batch), f"batch {batch}: the filter selects {len(selected)} of its items"
    return stored_batches


def assert_queries_see_batches(collection, batches: list[int]) -> None:
    for batch in batches:
        row = (batch * 37) % BATCH_SIZE
        result = collection.query(query_embeddings=batch_embeddings(batch)[row : row + 1], n_results=1,
                                  include=["distances", "metadatas"])
        assert result["ids"] == [[batch_ids(batch)[row]]]
        assert result["distances"][0][0] == pytest.approx(0.0, abs=1e-4)
        assert result["metadatas"] == [[{"batch": batch, "row": row}]]


def assert_filter_selects_batch(collection, batch: int, query: np.ndarray) -> None:
    result = collection.query(query_embeddings=query[None, :], n_results=10, where={"batch": batch},
                              include=["metadatas", "distances"])
    assert len(result["ids"][0]) == 10
    assert all(m["batch"] == batch for m in result["metadatas"][0])
    exact = ((batch_embeddings(batch) - query) ** 2).sum(axis=1)
    expected = [batch_ids(batch)[i] for i in np.argsort(exact, kind="stable")[:10]]
    assert result["ids"][0] == expected


# An add takes ~20 ms here; the delays land the kill at different points of a
# later add (validation, inside the transaction, the commit itself).
@pytest.mark.parametrize("kill_after, delay", [(1, 0.0), (3, 0.007), (5, 0.015), (6, 0.027)])
def test_sigkill_after_acknowledged_adds_loses_nothing(tmp_path, kill_after, delay):
    directory = tmp_path / "data"
    with running(tmp_path, "writer", WRITER, directory) as writer:
        acked = [acknowledged_batch(read_line(writer, tmp_path, "writer")) for _ in range(kill_after)]
        time.sleep(delay)
        os.kill(writer.pid, signal.SIGKILL)  # no close, no checkpoint: the writer may be mid-add
        writer.wait(timeout=10)
        # acks printed before the kill but not read yet count as acknowledged too
        acked += [acknowledged_batch(line) for line in writer.stdout.read().splitlines()]
    assert writer.returncode == -signal.SIGKILL
    assert acked == list(range(len(acked)))

    collection = open_persistent(directory).get_collection(COLLECTION)
    stored_batches = assert_whole_batches(collection, first_missing_at_least=len(acked))
    assert_queries_see_batches(collection, sorted({0, len(acked) // 2, len(acked) - 1}))
    last = len(acked) - 1
    assert_filter_selects_batch(collection, last, query=batch_embeddings(0)[3])
    assert_filter_selects_batch(collection, 0, query=batch_embeddings(last)[5])
    assert stored_batches <= len(acked) + 1  # at most the add the kill interrupted after its commit


def test_second_process_gets_locked_error_naming_holder(tmp_path):
    directory = tmp_path / "data"
    with running(tmp_path, "holder", HOLDER, directory, stdin=subprocess.PIPE) as holder:
        word, pid = read_line(holder, tmp_path, "holder").split()
        assert (word, int(pid)) == ("READY", holder.pid)

        with pytest.raises(errors.PersistentDirectoryLocked) as raised:
            open_persistent(directory)
        message = str(raised.value)
        assert str(holder.pid) in message
        assert "server" in message

        # the holder is unaffected by the failed open: it still writes
        holder.stdin.write("more\n")
        holder.stdin.flush()
        assert acknowledged_batch(read_line(holder, tmp_path, "holder")) == 1
        holder.stdin.close()
        assert holder.wait(timeout=20) == 0, (tmp_path / "holder.stderr").read_text()

    collection = open_persistent(directory).get_collection(COLLECTION)
    assert assert_whole_batches(collection, first_missing_at_least=2) == 2
    assert_queries_see_batches(collection, [0, 1])


def test_reopen_in_same_process_keeps_everything(tmp_path):
    directory = tmp_path / "data"
    client = open_persistent(directory)
    vectors = client.create_collection("vectors", metadata={"hnsw:space": "cosine", "owner": "me"})
    for batch in range(3):
        vectors.add(ids=batch_ids(batch), embeddings=batch_embeddings(batch), metadatas=batch_metadatas(batch))
    vectors.delete(ids=batch_ids(2)[:100])
    vectors.update(ids=["b0-0"], metadatas=[{"batch": 0, "row": 0, "edited": True}])
    texts = client.create_collection("texts")
    texts.add(ids=["x", "y"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["hello", None])
    before = vectors.get(include=["embeddings", "metadatas", "documents"])
    query = batch_embeddings(1)[:4]
    before_query = vectors.query(query_embeddings=query, n_results=5)

    switch_away()
    assert [c.name for c in chroma.get_api().list_collections()] == []  # really another DB now

    client = open_persistent(directory)
    assert [c.name for c in client.list_collections()] == ["texts", "vectors"]
    vectors = client.get_collection("vectors")
    assert vectors.metadata == {"hnsw:space": "cosine", "owner": "me"}
    assert vectors.count() == 3 * BATCH_SIZE - 100
    after = vectors.get(include=["embeddings", "metadatas", "documents"])
    assert after["ids"] == before["ids"]
    np.testing.assert_array_equal(after["embeddings"], before["embeddings"])
    assert after["metadatas"] == before["metadatas"]
    assert after["metadatas"][0] == {"batch": 0, "row": 0, "edited": True}
    after_query = vectors.query(query_embeddings=query, n_results=5)
    assert after_query["ids"] == before_query["ids"]
    assert [r[0] for r in after_query["ids"]] == batch_ids(1)[:4]
    assert vectors.get(where={"edited": True})["ids"] == ["b0-0"]
    assert client.get_collection("texts").get(include=["documents"]) == {
        "ids": ["x", "y"], "embeddings": None, "metadatas": None, "documents": ["hello", None]}


def count_in_another_process(tmp_path: Path, directory: Path) -> int:
    """The collection's count as a new process that opens ``directory`` reads it."""
    with running(tmp_path, "reader", COUNT_READER, directory) as reader:
        output, _ = reader.communicate(timeout=30)
    assert reader.returncode == 0, (tmp_path / "reader.stderr").read_text()
    return int(output.strip())


def test_switching_configuration_away_releases_a_directory_no_client_holds(tmp_path):
    directory = tmp_path / "data"
    open_persistent(directory).create_collection(COLLECTION).add(ids=batch_ids(0), embeddings=batch_embeddings(0))
    switch_away()
    assert count_in_another_process(tmp_path, directory) == BATCH_SIZE


def test_a_client_kept_across_a_new_configuration_works_until_closed_then_releases_the_directory(tmp_path):
    directory = tmp_path / "data"
    client = open_persistent(directory)
    collection = client.create_collection(COLLECTION)
    collection.add(ids=batch_ids(0), embeddings=batch_embeddings(0))
    switch_away()
    collection.add(ids=batch_ids(1), embeddings=batch_embeddings(1))  # still on its own settings
    assert client.get_collection(COLLECTION).count() == 2 * BATCH_SIZE
    client.close()
    with pytest.raises(errors.ClientClosed):
        collection.count()
    assert count_in_another_process(tmp_path, directory) == 2 * BATCH_SIZE
