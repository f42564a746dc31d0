"""``$in``/``$nin`` filters of many values on get and delete, per DB: the time at n
values and at 4n values, and their ratio (about 4 when the cost is linear in the
list, 16 when it is quadratic), with the process's peak RSS beside it; and how
long 1-row adds to another collection take while the $nin delete runs.

    python benchmarks/bench_filters.py                 # 10,000 and 40,000 values
    python benchmarks/bench_filters.py --quick         # a smoke test
    python benchmarks/bench_filters.py --db duckdb --db chdb
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import threading
import time

import numpy as np
from common import cpu_model, timed

import chroma

DB_IMPLS = ("duckdb", "persistent_duckdb", "chdb")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(db_impl: str, items: int, values: int, directory: str) -> dict[str, float]:
    """Seconds of each call at ``values`` listed values, on a fresh collection of ``items`` items."""
    with chroma.Client(api_impl="local", db_impl=db_impl, index_impl="flat", persist_directory=directory,
                       allow_reset=True) as api:
        api.reset()
        return _timed_calls(api, items, values)


def _timed_calls(api: chroma.API, items: int, values: int) -> dict[str, float]:
    collection = api.create_collection("filters")
    collection.add(ids=[str(i) for i in range(items)], embeddings=np.zeros((items, 2), np.float32),
                   metadatas=[{"k": i} for i in range(items)])
    listed = list(range(0, 2 * values, 2))  # every other item, and values beyond the collection
    times = {}
    for op in ("$in", "$nin"):
        times[f"get {op}"], _ = timed(lambda: collection.get(where={"k": {op: listed}}, include=[]))
    other = api.create_collection("other")
    other.add(ids=["first"], embeddings=[[0.0, 0.0]])
    deleting = threading.Event()
    deleting.set()

    def delete() -> None:
        times["delete $nin"], _ = timed(lambda: collection.delete(where={"k": {"$nin": listed}}))
        deleting.clear()

    thread = threading.Thread(target=delete)
    thread.start()
    adds = []
    while deleting.is_set():
        started = time.perf_counter()
        other.add(ids=[f"add{len(adds)}"], embeddings=[[0.0, 0.0]])
        adds.append(time.perf_counter() - started)
    thread.join()
    times["add meanwhile (median)"], times["add meanwhile (max)"] = statistics.median(adds), max(adds)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 and 4,000 values")
    parser.add_argument("--db", action="append", choices=DB_IMPLS, help="repeatable; default duckdb, persistent_duckdb")
    args = parser.parse_args()
    values = 1_000 if args.quick else 10_000
    items = 8 * values  # the same collection for both sizes: what grows is the list
    print(f"CPU: {cpu_model()}; {items:,} items, $in/$nin of {values:,} and {4 * values:,} values")
    for db_impl in args.db or ["duckdb", "persistent_duckdb"]:
        # chDB's engine lives on in this process after its client closes and merges
        # parts in the background, so a file may appear while the directory goes.
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as directory:
            small = run(db_impl, items, values, directory)
            large = run(db_impl, items, 4 * values, directory)
        for call in small:
            line = f"{db_impl:18} {call:24} {small[call]:8.3f} s at {values:,}  {large[call]:8.3f} s at {4 * values:,}"
            if not call.startswith("add"):  # an add's latency beside the delete is no cost of the list
                line += f"  ratio {large[call] / small[call]:5.1f} (linear: 4)"
            print(f"{line}  peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
