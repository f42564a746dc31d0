"""Two processes on one ClickHouse server: each sees the other's writes on its next call.

This process (A) and a peer subprocess (B) each run a Local client over the
same real ``clickhouse-server``, each with its own cached vector index. After
one of them adds, updates or deletes, the other's next query returns the
right neighbours, and its index catches up in place instead of reloading.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import chroma
from clickhouse_helpers import ClickhouseServer, running_clickhouse
from conformance_helpers import SearchEfCase
from server_helpers import PACKAGE_ROOT, server_env, stop_process

COLLECTION = "shared"

# B: runs one JSON command per stdin line on collection COLLECTION, answers one JSON line.
PEER = f"""
import json, sys
import chroma
chroma.configure(api_impl="local", **json.loads(sys.argv[1]))
client = chroma.get_api()
print(json.dumps("ready"), flush=True)
for line in sys.stdin:
    op, args = json.loads(line)
    collection = client.get_collection("{COLLECTION}")
    if op == "query":
        answer = collection.query(query_embeddings=[args["embedding"]], n_results=args["n"], include=[])["ids"][0]
    elif op == "count":
        answer = collection.count()
    else:
        getattr(collection, op)(**args)
        answer = "done"
    print(json.dumps(answer), flush=True)
"""


class Peer:
    """Process B, driven over its stdin/stdout."""

    def __init__(self, settings: dict) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PEER, json.dumps(settings)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=server_env(), cwd=PACKAGE_ROOT,
        )
        assert self._answer() == "ready"

    def _answer(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"peer exited with status {self.process.wait()}")
        return json.loads(line)

    def __call__(self, op: str, **args):
        self.process.stdin.write(json.dumps([op, args]) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def query(self, embedding: list, n: int) -> list:
        return self("query", embedding=embedding, n=n)

    def close(self) -> None:
        self.process.stdin.close()
        stop_process(self.process, 10)


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory) -> Iterator[ClickhouseServer]:
    with running_clickhouse(tmp_path_factory.mktemp("clickhouse")) as server:
        yield server


@pytest.fixture
def both(clickhouse) -> Iterator[tuple]:
    settings = {**clickhouse.settings, "allow_reset": True}
    chroma.configure(api_impl="local", **settings)
    client = chroma.get_api()
    client.reset()
    peer = Peer(settings)
    try:
        yield client, peer
    finally:
        peer.close()
        client.reset()
        chroma.configure(**{key: None for key in ["api_impl", *settings]})


def nearest(collection, embedding: list, n: int) -> list:
    return collection.query(query_embeddings=[embedding], n_results=n, include=[])["ids"][0]


def test_each_process_sees_the_others_writes_on_its_next_call(both):
    client, peer = both
    # Points on a line: p{i} at x = i.
    collection = client.create_collection(COLLECTION)
    collection.add(ids=[f"p{i}" for i in range(10)], embeddings=[[float(i), 0.0] for i in range(10)])
    assert nearest(collection, [0.0, 0.0], 2) == ["p0", "p1"]  # A's index is cached now
    index = client._engine.loaded(collection.id).index

    # B sees A's add, then writes; A's next query sees each write.
    assert peer.query([9.0, 0.0], 2) == ["p9", "p8"]
    peer("add", ids=["b"], embeddings=[[0.1, 0.0]])
    assert nearest(collection, [0.0, 0.0], 2) == ["p0", "b"]
    peer("update", ids=["p5"], embeddings=[[0.05, 0.0]])
    assert nearest(collection, [0.0, 0.0], 3) == ["p0", "p5", "b"]
    peer("upsert", ids=["p6", "u"], embeddings=[[0.07, 0.0], [20.0, 0.0]])
    assert nearest(collection, [0.0, 0.0], 4) == ["p0", "p5", "p6", "b"]
    assert nearest(collection, [20.0, 0.0], 1) == ["u"]
    peer("delete", ids=["p0", "p5"])
    assert nearest(collection, [0.0, 0.0], 2) == ["p6", "b"]
    assert collection.count() == 10
    # caught up in place: the same index object, holding exactly the stored items
    assert client._engine.loaded(collection.id).index is index
    assert len(index) == 10

    # A writes; B's cached index (loaded by its first query above) sees each write.
    collection.add(ids=["a"], embeddings=[[8.9, 0.0]])
    assert peer.query([9.0, 0.0], 2) == ["p9", "a"]
    collection.update(ids=["p1"], embeddings=[[9.05, 0.0]])
    assert peer.query([9.0, 0.0], 3) == ["p9", "p1", "a"]
    collection.delete(ids=["p9"])
    assert peer.query([9.0, 0.0], 2) == ["p1", "a"]
    assert peer("count") == 10


def test_a_metadata_only_update_elsewhere_keeps_the_vector_and_a_filter_sees_it(both):
    client, peer = both
    collection = client.create_collection(COLLECTION)
    collection.add(ids=["x", "y"], embeddings=[[0.0, 0.0], [1.0, 0.0]], metadatas=[{"k": 1}, {"k": 1}])
    assert nearest(collection, [0.0, 0.0], 1) == ["x"]
    # A's metadata columns are loaded now, so the filter below sees B's update only by catching up
    assert collection.query(query_embeddings=[[0.0, 0.0]], n_results=2, where={"k": 1}, include=[])["ids"] == [["x", "y"]]
    peer("update", ids=["x"], metadatas=[{"k": 2}])
    hits = collection.query(query_embeddings=[[0.0, 0.0]], n_results=2, where={"k": 1}, include=["distances"])
    assert hits["ids"] == [["y"]] and hits["distances"] == [[1.0]]
    assert nearest(collection, [0.0, 0.0], 1) == ["x"]


def test_a_collection_deleted_elsewhere_is_gone_on_the_next_query(both):
    client, peer = both
    collection = client.create_collection(COLLECTION)
    collection.add(ids=["x"], embeddings=[[0.0, 0.0]])
    assert nearest(collection, [0.0, 0.0], 1) == ["x"]
    assert peer.query([0.0, 0.0], 1) == ["x"]
    client.delete_collection(COLLECTION)
    client.create_collection(COLLECTION).add(ids=["y"], embeddings=[[0.0, 0.0]])
    # B looks the collection up by name on each command: it finds the new one
    assert peer.query([0.0, 0.0], 1) == ["y"]
    with pytest.raises(chroma.errors.CollectionNotFound):
        collection.query(query_embeddings=[[0.0, 0.0]], n_results=1)


def test_one_call_of_60000_ids_is_written_read_and_deleted(clickhouse, configured):
    # Each call binds all its ids into one IN list: 18.16 refused past 50,000
    # syntax tree elements ("AST is too big") until the client lifted the limit.
    api = configured(api_impl="local", allow_reset=True, **clickhouse.settings)
    api.reset()
    collection = api.create_collection("big")
    ids = [f"i{i}" for i in range(60_000)]
    vectors = np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32)
    collection.add(ids=ids, embeddings=vectors)
    assert collection.count() == len(ids)
    got = collection.get(ids=ids[::-1], include=["embeddings"])
    assert got["ids"] == ids[::-1]
    np.testing.assert_array_equal(got["embeddings"], vectors[::-1])
    collection.update(ids=ids, metadatas=[{"n": i} for i in range(len(ids))])
    assert collection.get(ids=["i59999"])["metadatas"] == [{"n": 59_999}]
    collection.delete(ids=ids[:55_000])
    assert collection.count() == 5_000
    api.reset()


def test_modify_search_ef_here_changes_the_recall_of_the_next_query_there(both):
    client, peer = both
    case = SearchEfCase()
    collection = client.create_collection(COLLECTION, metadata=case.metadata())
    collection.add(ids=case.ids, embeddings=case.data)

    def peer_recall() -> float:
        return case.recall([peer.query(query.tolist(), case.k) for query in case.queries])

    default = peer_recall()  # B's index is loaded now, at the default ef
    collection.modify(metadata=case.metadata(case.low_ef))
    low = peer_recall()
    assert low < case.low_recall and low < default
    collection.modify(metadata=case.metadata(case.high_ef))
    assert peer_recall() >= case.high_recall
    collection.modify(metadata=case.metadata())
    assert peer_recall() == default
