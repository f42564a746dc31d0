"""The workload, run for one combination in a process of its own (so its peak memory is its own).

``python -m chroma.bench.workload JOB.json`` reads the job (combination, data
files, sizes), runs the phases through ``chroma.get_api()`` and writes the
figures to the job's ``output`` path as JSON.

Phases, in order: add (in batches, two metadata keys each), single queries,
one batch query, filtered single queries at each selectivity, get by ids,
update, delete, reopen (persistent DBs: a new process, or a restarted server,
answering its first query) and peak memory. Every query phase reports
recall@10 against exact ground truth computed by the driver.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import chroma
from chroma.bench.combinations import REMOTE_APIS, Combination, own_peak_memory_bytes, running
from chroma.bench.data import BUCKETS, recall

COLLECTION = "bench"
K = 10


def _clock(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def seconds_until_answered(collection: Any, vector: np.ndarray) -> float:
    """The time a collection takes to answer one query right after writes: part of their cost,
    since a write returns once committed and its index update may still be running
    (``chroma.api.behind``)."""
    return _clock(lambda: collection.query(query_embeddings=vector[None, :], n_results=1, include=[]))[0]


def run_job(job: dict, progress: Callable[[str], None] = lambda phase: None) -> dict:
    """Every phase for ``job['combination']``; the figures as a JSON-able dict."""
    combination = Combination.parse(job["combination"])
    vectors = np.load(job["vectors"], mmap_mode="r")
    queries = np.load(job["queries"])
    buckets = np.load(job["buckets"])
    truth = {key: np.load(path) for key, path in job["truth"].items()}
    n, dim = vectors.shape
    ids = [f"id{i}" for i in range(n)]
    sizes = job["sizes"]
    figures: dict[str, Any] = {"combination": combination.name, "n": n, "dim": dim, "phases": {}}
    phases = figures["phases"]

    with tempfile.TemporaryDirectory(prefix="chroma-bench-") as workdir, \
            running(combination, Path(workdir)) as setup:
        chroma.configure(**setup.settings)
        try:
            client = chroma.get_api()
            collection = client.create_collection(COLLECTION, metadata={"hnsw:space": job["space"]})

            progress("add")
            batch_seconds = []
            for start in range(0, n, sizes["batch"]):
                end = min(start + sizes["batch"], n)
                metadatas = [{"bucket": int(b), "parity": int(b) % 2} for b in buckets[start:end]]
                seconds, _ = _clock(lambda: collection.add(
                    ids=ids[start:end], embeddings=np.ascontiguousarray(vectors[start:end]), metadatas=metadatas))
                batch_seconds.append(seconds)
            total = sum(batch_seconds) + seconds_until_answered(collection, queries[0])
            assert collection.count() == n, f"count {collection.count()} after adding {n}"
            phases["add"] = {"seconds": total, "per_second": n / total, "batch_median": statistics.median(batch_seconds)}

            progress("single query")
            collection.query(query_embeddings=queries[:1], n_results=K)  # the index is loaded/built
            singles, found = [], []
            for query in queries[: sizes["single_queries"]]:
                seconds, result = _clock(lambda: collection.query(query_embeddings=query[None, :], n_results=K,
                                                                  include=["distances"]))
                singles.append(seconds)
                found.append(result["ids"][0])
            phases["single query"] = _latencies(singles, recall(found, truth["all"]))

            progress("batch query")
            batch = queries[: sizes["batch_queries"]]
            seconds, result = _clock(lambda: collection.query(query_embeddings=batch, n_results=K,
                                                              include=["distances"]))
            phases["batch query"] = {"seconds": seconds, "per_second": len(batch) / seconds,
                                     "recall": recall(result["ids"], truth["all"])}

            for selectivity in job["selectivities"]:
                progress(f"filtered {selectivity:g}")
                where = {"bucket": {"$lt": int(round(selectivity * BUCKETS))}}
                times, found = [], []
                for query in queries[: sizes["filtered_queries"]]:
                    seconds, result = _clock(lambda: collection.query(
                        query_embeddings=query[None, :], n_results=K, where=where, include=["distances"]))
                    times.append(seconds)
                    found.append(result["ids"][0])
                phases[f"filtered {selectivity:g}"] = _latencies(times, recall(found, truth[f"{selectivity:g}"]))

            progress("get by ids")
            rng = np.random.default_rng(1)
            wanted = [ids[i] for i in rng.choice(n, min(sizes["get_ids"], n), replace=False)]
            times = []
            for _ in range(sizes["repeats"]):
                seconds, got = _clock(lambda: collection.get(ids=wanted, include=["embeddings", "metadatas"]))
                times.append(seconds)
            assert got["ids"] == wanted
            phases["get by ids"] = _latencies(times)

            progress("update")
            changed = wanted[: sizes["update"]]
            rows = np.asarray([int(i[2:]) for i in changed])
            new_vectors = np.ascontiguousarray(vectors[rows] + 1.0, dtype=np.float32)
            seconds, _ = _clock(lambda: collection.update(ids=changed, embeddings=new_vectors))
            after = collection.get(ids=changed[:1], include=["embeddings"])["embeddings"]
            assert np.array_equal(after[0], new_vectors[0])
            phases["update"] = {"seconds": seconds, "per_second": len(changed) / seconds}

            progress("delete")
            gone = wanted[-sizes["delete"]:]
            seconds, _ = _clock(lambda: collection.delete(ids=gone))
            assert collection.count() == n - len(gone)
            phases["delete"] = {"seconds": seconds, "per_second": len(gone) / seconds}

            if combination.persistent:
                progress("reopen")
                if setup.server is None:
                    # As at a process's end: a persistent DB saves its indexes, and its directory
                    # (one process at a time) is released with its last client.
                    client.close()
                phases["reopen"] = {"seconds": _reopen(setup, queries[0])}
            figures["peak_memory_bytes"] = own_peak_memory_bytes() + (
                setup.server.peak_memory_bytes() if setup.server else 0)
            if not combination.persistent:
                client.delete_collection(COLLECTION)
        finally:
            chroma.configure(**{key: None for key in setup.settings})
    return figures


def _latencies(seconds: list[float], recall_value: float | None = None) -> dict:
    ordered = sorted(seconds)
    out = {"median": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]}
    if recall_value is not None:
        out["recall"] = recall_value
    return out


_REOPEN = """
import sys, time, numpy as np, chroma
from chroma import registry
settings = {settings}
for setting in ("api_impl", "db_impl", "index_impl"):
    registry.lookup(setting, settings[setting])  # imported before the clock starts
start = time.perf_counter()
chroma.configure(**settings)
found = chroma.get_api().get_collection({collection!r}).query(query_embeddings=np.array([{query}], np.float32),
                                                              n_results={k})
assert len(found["ids"][0]) == {k}
print(time.perf_counter() - start)
"""


def _reopen(setup, query: np.ndarray) -> float:
    """Seconds from opening the data again to the first answered query."""
    if setup.server is not None:
        start = time.perf_counter()
        setup.server.restart()
        port = setup.server.port if setup.server.port is not None else setup.server.flight_port
        settings = {**setup.settings, REMOTE_APIS[setup.settings["api_impl"]][1]: port}
        chroma.configure(**settings)
        found = chroma.get_api().get_collection(COLLECTION).query(query_embeddings=query[None, :], n_results=K)
        assert len(found["ids"][0]) == K
        seconds = time.perf_counter() - start
        chroma.configure(**{key: None for key in settings})
        return seconds
    # A new process, as a user reopening a directory: imports are not counted.
    script = _REOPEN.format(settings=repr(setup.settings), collection=COLLECTION,
                            query=", ".join(repr(float(v)) for v in query), k=K)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reopen failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())

    def progress(phase: str) -> None:
        print(f"phase {phase}", file=sys.stderr, flush=True)

    figures = run_job(job, progress)
    Path(job["output"]).write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
