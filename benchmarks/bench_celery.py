"""Celery workers against Local, same run, same data, one ClickHouse server.

Measured, over a real clickhouse-server and redis-server on 127.0.0.1 with
``chroma worker`` processes (1 and 2), against Local in this process:

  bulk add : one ``add`` call of N x 128 float32 given as embeddings (no
             documents, no metadata). Local writes the batch and builds its index
             in the call; Celery plans it, the workers write it in chunks of
             ``--chunk`` ids, this process commits it (its index is built when a
             query first needs it: see rebuild).
  rebuild  : a fresh client's first query of that collection, which has to get
             an index: Local builds it from the DB; Celery has a worker build it
             (or bring its own up to date) and keep a snapshot in the DB, then
             loads the snapshot.

Each configuration gets its own collection; a round measures each in turn;
the table shows the median of the rounds and its ratio to Local's (below 1 is
faster). The answers are checked: the first query must find the stored vector.

Usage: python benchmarks/bench_celery.py             # 200,000 x 128 (several minutes)
       python benchmarks/bench_celery.py --quick     # small, the CI smoke run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from common import cpu_model, timed

import chroma
from chroma import registry
from chroma.config import current_settings
from chroma.bench.celery_processes import WorkerProcess, start_redis
from chroma.bench.clickhouse_server import start_clickhouse

DIM = 128


def client(settings: dict, api_impl: str, chunk: int):
    chroma.configure(api_impl=api_impl, allow_reset=True, celery_chunk_size=chunk,
                     celery_write_threshold=chunk, **settings)
    return chroma.get_api()


def measure(settings: dict, api_impl: str, name: str, ids: list[str], vectors: np.ndarray, chunk: int) -> dict:
    api = client(settings, api_impl, chunk)
    collection = api.create_collection(name)
    add, _ = timed(lambda: collection.add(ids=ids, embeddings=vectors))
    assert collection.count() == len(ids)
    # A second client of the same settings, as another process would have: no index loaded.
    fresh_api = registry.lookup("api_impl", api_impl)(current_settings())
    fresh = fresh_api.get_collection(name)
    probe = len(ids) // 3
    rebuild, found = timed(lambda: fresh.query(query_embeddings=vectors[probe:probe + 1], n_results=1,
                                               include=["distances"]))
    assert found["ids"] == [[ids[probe]]], found
    fresh_api.close()
    return {"add": add, "rebuild": rebuild}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("-n", type=int, default=None, help="vectors to add (default 200,000; --quick 6,000)")
    parser.add_argument("--chunk", type=int, default=None, help="ids per worker task (default 10,000; --quick 1,000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick 1)")
    args = parser.parse_args()
    n = args.n or (6_000 if args.quick else 200_000)
    chunk = args.chunk or (1_000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 3)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(100, DIM)).astype(np.float32) * 3
    vectors = (centers[rng.integers(0, 100, n)] + rng.normal(size=(n, DIM))).astype(np.float32)
    ids = [f"v{i}" for i in range(n)]
    print(f"CPU: {cpu_model()}; {n} x {DIM} float32 in one add, worker chunks of {chunk} ids, {rounds} round(s)")

    with tempfile.TemporaryDirectory(prefix="bench-celery-") as scratch:
        directory = Path(scratch)
        clickhouse = start_clickhouse(directory / "clickhouse")
        redis = start_redis(directory / "redis")
        settings = {**clickhouse.settings, "celery_broker_url": redis.url, "celery_result_backend": redis.url}
        workers: list[WorkerProcess] = []
        figures: dict[str, list[dict]] = {"Local": [], "Celery, 1 worker": [], "Celery, 2 workers": []}
        try:
            for round_number in range(rounds):
                for label in figures:
                    wanted = 0 if label == "Local" else int(label.split(", ")[1][0])
                    while len(workers) < wanted:
                        workers.append(WorkerProcess(directory / "workers", settings, name=f"w{len(workers)}").start())
                    while len(workers) > wanted:
                        workers.pop().stop()
                    api_impl = "local" if label == "Local" else "celery"
                    figures[label].append(measure(settings, api_impl, f"r{round_number}-{len(workers)}w",
                                                  ids, vectors, chunk))
                    chroma.configure(api_impl=None)
                    chroma.get_api().reset()
        finally:
            chroma.configure(**{key: None for key in settings}, api_impl=None, allow_reset=None,
                             celery_chunk_size=None, celery_write_threshold=None)
            for worker in workers:
                worker.stop()
            redis.stop()
            clickhouse.stop()

    local = {key: statistics.median(r[key] for r in figures["Local"]) for key in ("add", "rebuild")}
    print(f"\n{'':<20} | {'bulk add':>10} {'vectors/s':>10} {'x Local':>8} | {'rebuild':>9} {'x Local':>8}")
    for label, results in figures.items():
        add = statistics.median(r["add"] for r in results)
        rebuild = statistics.median(r["rebuild"] for r in results)
        print(f"{label:<20} | {add:>8.2f} s {n / add:>10,.0f} {add / local['add']:>7.2f}x |"
              f" {rebuild:>7.2f} s {rebuild / local['rebuild']:>7.2f}x")


if __name__ == "__main__":
    main()
