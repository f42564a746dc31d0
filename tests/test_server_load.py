"""A bounded load test of one ``chroma run`` server, over HTTP and over Flight:
8 client threads x 500 mixed operations on one shared collection, then no error
and no lost write.

Each thread writes only ids of its own (``t<thread>-<n>``) and keeps a plain
dict of what they must hold at the end, so the final state of the whole
collection is known exactly while the threads interleave freely on the server.
The threads share one client (one pooled HTTP session, or one Flight client).
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

import chroma
from server_helpers import running_server

THREADS = 8
OPERATIONS = 500
DIM = 16
N_RESULTS = 5
JOIN_TIMEOUT = 120.0  # seconds for all threads together; a hang fails instead of blocking


def vector(rng: random.Random) -> list[float]:
    # float32 values, so what comes back (float32) equals what was sent
    return np.array([rng.uniform(-1.0, 1.0) for _ in range(DIM)], dtype=np.float32).tolist()


def worker(collection, thread: int, model: dict, errors: list) -> None:
    """``OPERATIONS`` seeded operations; ``model`` ends as this thread's ids -> (embedding, metadata, document)."""
    rng = random.Random(1000 + thread)
    next_id = 0

    def new_ids(count: int) -> list[str]:
        nonlocal next_id
        ids = [f"t{thread}-{next_id + i}" for i in range(count)]
        next_id += count
        return ids

    def record(item_id: str, version: int) -> tuple[list[float], dict, str]:
        return vector(rng), {"thread": thread, "v": version, "even": version % 2 == 0}, f"doc {item_id} v{version}"

    def own(count: int) -> list[str]:
        return rng.sample(sorted(model), min(count, len(model)))

    try:
        for step in range(OPERATIONS):
            kind = rng.choices(
                ["add", "upsert", "update", "delete", "get", "query", "query_where", "count"],
                # writes ~22%: a small write costs ~10 ms (upsert ~20 ms) of server CPU in DuckDB, a count ~1.5 ms
                weights=[9, 4, 5, 4, 15, 18, 13, 32],
            )[0]
            if kind == "delete" and not model or kind == "update" and not model:
                kind = "add"
            if kind == "add":
                ids = new_ids(rng.randint(1, 8))
                rows = [record(i, step) for i in ids]
                collection.add(ids=ids, embeddings=[r[0] for r in rows], metadatas=[r[1] for r in rows],
                               documents=[r[2] for r in rows])
                model.update(zip(ids, rows))
            elif kind == "upsert":  # some existing ids, some new
                ids = own(rng.randint(0, 3)) + new_ids(rng.randint(0, 3)) or new_ids(1)
                rows = [record(i, step) for i in ids]
                collection.upsert(ids=ids, embeddings=[r[0] for r in rows], metadatas=[r[1] for r in rows],
                                  documents=[r[2] for r in rows])
                model.update(zip(ids, rows))
            elif kind == "update":  # metadata only: it replaces the metadata, keeps the rest
                ids = own(rng.randint(1, 4))
                metadatas = [{"thread": thread, "v": step, "even": step % 2 == 0, "updated": True} for _ in ids]
                collection.update(ids=ids, metadatas=metadatas)
                for item_id, metadata in zip(ids, metadatas):
                    embedding, _, document = model[item_id]
                    model[item_id] = (embedding, metadata, document)
            elif kind == "delete":
                ids = own(rng.randint(1, 3))
                collection.delete(ids=ids)
                for item_id in ids:
                    del model[item_id]
            elif kind == "get":  # own ids are written by this thread only: exact answers
                ids = own(rng.randint(1, 10)) + [f"t{thread}-absent"]
                got = collection.get(ids=ids, include=["embeddings", "metadatas", "documents"])
                assert got["ids"] == ids[:-1], (step, got["ids"], ids)
                for i, item_id in enumerate(got["ids"]):
                    embedding, metadata, document = model[item_id]
                    assert got["embeddings"][i].tolist() == embedding, (step, item_id)
                    assert got["metadatas"][i] == metadata and got["documents"][i] == document, (step, item_id)
            elif kind == "query":
                # Other threads' items may be nearer; still, the answer is never shorter than this
                # thread's own items allow (concurrent deletes of others' hits are searched around),
                # own hits carry the model's values, and an own stored vector finds its own id first.
                target = rng.choice(sorted(model)) if model and rng.random() < 0.5 else None
                query = model[target][0] if target is not None else vector(rng)
                result = collection.query(query_embeddings=[query], n_results=N_RESULTS,
                                          include=["metadatas", "distances"])
                ids, distances = result["ids"][0], result["distances"][0]
                assert len(ids) == len(distances) == len(result["metadatas"][0]) <= N_RESULTS, step
                assert len(ids) >= min(N_RESULTS, len(model)), (step, ids)
                assert len(set(ids)) == len(ids) and distances == sorted(distances), (step, ids, distances)
                if target is not None:
                    assert ids[0] == target and distances[0] == 0.0, (step, target, ids, distances)
                for item_id, metadata in zip(ids, result["metadatas"][0]):
                    if item_id.startswith(f"t{thread}-"):
                        assert metadata == model[item_id][1], (step, item_id)
            elif kind == "query_where":  # only this thread writes {"thread": thread}: exact set size
                where = {"thread": thread} if rng.random() < 0.5 else {"$and": [{"thread": thread}, {"even": True}]}
                result = collection.query(query_embeddings=[vector(rng)], n_results=N_RESULTS, where=where,
                                          include=["metadatas"])
                matching = [i for i, (_, metadata, _) in model.items()
                            if "$and" not in where or metadata["even"]]
                assert len(result["ids"][0]) == min(N_RESULTS, len(matching)), (step, where)
                for item_id, metadata in zip(result["ids"][0], result["metadatas"][0]):
                    assert metadata == model[item_id][1], (step, item_id)
            else:  # count: the others' items only add to this thread's
                assert collection.count() >= len(model), step
    except BaseException as exc:  # collected and re-raised by the test
        exc.add_note(f"in thread {thread}")
        errors.append(exc)


CLIENT_SETTINGS = {
    "fastapi": lambda server: {"api_impl": "fastapi", "server_http_port": server.port},
    "flight": lambda server: {"api_impl": "arrowflight", "server_flight_port": server.flight_port},
}


@pytest.mark.parametrize("impl", list(CLIENT_SETTINGS))
def test_eight_threads_of_mixed_operations_lose_nothing(tmp_path, impl):
    with running_server(tmp_path, impl=impl) as server:  # in-memory DuckDB
        chroma.configure(server_host="127.0.0.1", **CLIENT_SETTINGS[impl](server))
        try:
            client = chroma.get_api()
            collection = client.create_collection("load")
            models: list[dict] = [{} for _ in range(THREADS)]
            errors: list[BaseException] = []
            threads = [threading.Thread(target=worker, args=(collection, t, models[t], errors), daemon=True,
                                        name=f"load-{t}") for t in range(THREADS)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + JOIN_TIMEOUT
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            hung = [thread.name for thread in threads if thread.is_alive()]
            assert not hung, f"threads still running after {JOIN_TIMEOUT} s: {hung}\n{server.output()}"
            if errors:
                for other in errors[1:]:
                    errors[0].add_note(f"also: {type(other).__name__}: {other}")
                raise errors[0]
            expected = {item_id: row for model in models for item_id, row in model.items()}
            assert collection.count() == sum(len(model) for model in models) == len(expected)

            got = collection.get(include=["embeddings", "metadatas", "documents"])
            assert sorted(got["ids"]) == sorted(expected)
            assert got["embeddings"].dtype == np.float32 and got["embeddings"].shape == (len(expected), DIM)
            for i, item_id in enumerate(got["ids"]):
                embedding, metadata, document = expected[item_id]
                assert got["embeddings"][i].tolist() == embedding, item_id
                assert got["metadatas"][i] == metadata, item_id
                assert got["documents"][i] == document, item_id
            # every thread's records survive by id too
            for model in models:
                ids = sorted(model)
                by_id = collection.get(ids=ids, include=["metadatas"])
                assert by_id["ids"] == ids and by_id["metadatas"] == [model[i][1] for i in ids]

            # stored vectors find themselves first
            sample = random.Random(7).sample(sorted(expected), 20)
            result = collection.query(query_embeddings=[expected[i][0] for i in sample], n_results=3)
            assert [ids[0] for ids in result["ids"]] == sample
            assert all(distances[0] == 0.0 for distances in result["distances"])
        finally:
            chroma.configure(api_impl=None, server_host=None, server_http_port=None, server_flight_port=None)

