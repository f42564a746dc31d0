"""End-to-end benchmark of the Local API over ``duckdb`` and ``persistent_duckdb``
(and, with ``--db``, ``clickhouse`` on a real clickhouse-server or ``chdb``).

Measures what a user sees through ``chroma.get_api()``: batched adds, single
and batch queries, filtered queries, get by ids and, for the persistent DB,
reopening a directory. Checks the answers on the way (recall@10 against exact
numpy ground truth, filters honoured, get returning what was stored).

    python benchmarks/bench_local.py                 # 100k x 128
    python benchmarks/bench_local.py --quick         # a few seconds, a smoke test
    python benchmarks/bench_local.py --db duckdb --db clickhouse   # side by side
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from common import cpu_model, ms, seconds_until_answered, timed

import chroma

DB_IMPLS = ("duckdb", "persistent_duckdb", "clickhouse", "chdb")
DEFAULT_DB_IMPLS = ("duckdb", "persistent_duckdb")
CATEGORIES = 100  # {"category": c} selects 1% of the items
TAGS = 10
N_RESULTS = 10


@dataclass
class Sizes:
    n: int
    dim: int
    batch: int
    queries: int
    single_queries: int
    get_ids: int
    repeats: int
    recall_sample: int


@dataclass
class Dataset:
    ids: list[str]
    vectors: np.ndarray
    metadatas: list[dict]
    categories: np.ndarray
    queries: np.ndarray


@dataclass
class Report:
    rows: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str) -> None:
        self.rows[name] = value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors to add")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=10_000, help="vectors per add call")
    parser.add_argument("--queries", type=int, default=1_000, help="queries in the batch query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in seconds (smoke test)")
    parser.add_argument("--db", action="append", choices=DB_IMPLS, default=None,
                        help="DB to run on, repeatable (default: duckdb and persistent_duckdb); clickhouse starts "
                        "a clickhouse-server of its own on 127.0.0.1")
    return parser.parse_args()


def sizes_from(args: argparse.Namespace) -> Sizes:
    if args.quick:
        return Sizes(n=5_000, dim=32, batch=1_000, queries=100, single_queries=50, get_ids=200, repeats=10,
                     recall_sample=100)
    return Sizes(n=args.n, dim=args.dim, batch=args.batch, queries=args.queries, single_queries=200,
                 get_ids=1_000, repeats=20, recall_sample=min(args.queries, 200))


def gaussian_mixture(rng: np.random.Generator, count: int, centers: np.ndarray) -> np.ndarray:
    picks = rng.integers(0, len(centers), size=count)
    noise = rng.standard_normal((count, centers.shape[1]), dtype=np.float32) * 0.35
    return (centers[picks] + noise).astype(np.float32)


def make_dataset(sizes: Sizes, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((64, sizes.dim), dtype=np.float32)
    vectors = gaussian_mixture(rng, sizes.n, centers)
    categories = rng.integers(0, CATEGORIES, size=sizes.n)
    tags = rng.integers(0, TAGS, size=sizes.n)
    metadatas = [{"category": int(c), "tag": f"tag-{t}"} for c, t in zip(categories, tags)]
    return Dataset(
        ids=[f"id-{i}" for i in range(sizes.n)],
        vectors=vectors,
        metadatas=metadatas,
        categories=categories,
        queries=gaussian_mixture(rng, sizes.queries, centers),
    )


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k nearest vectors (squared L2, in float64) for each query."""
    data = vectors.astype(np.float64)
    norms = (data * data).sum(axis=1)
    top = []
    for start in range(0, len(queries), 64):
        chunk = queries[start : start + 64].astype(np.float64)
        distances = norms[None, :] - 2.0 * chunk @ data.T
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(distances, nearest, axis=1).argsort(axis=1, kind="stable")
        top.append(np.take_along_axis(nearest, order, axis=1))
    return np.concatenate(top)


def recall_at_k(found_ids: list[list[str]], true_positions: np.ndarray, ids: list[str]) -> float:
    hits = sum(len(set(found) & {ids[p] for p in truth}) for found, truth in zip(found_ids, true_positions))
    return hits / true_positions.size


def latencies(values: list[float]) -> tuple[str, str]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return ms(statistics.median(ordered)), ms(p95)


def bench_add(collection, data: Dataset, sizes: Sizes, report: Report) -> None:
    batch_times = []
    for start in range(0, sizes.n, sizes.batch):
        end = min(start + sizes.batch, sizes.n)
        seconds, _ = timed(lambda: collection.add(ids=data.ids[start:end], embeddings=data.vectors[start:end],
                                                  metadatas=data.metadatas[start:end]))
        batch_times.append(seconds)
    total = sum(batch_times) + seconds_until_answered(collection, data.queries[0])
    assert collection.count() == sizes.n
    report.add(f"add: per batch of {sizes.batch:,} (median / max)",
               f"{ms(statistics.median(batch_times))} / {ms(max(batch_times))}")
    report.add("add: total, until a query is answered", f"{total:.2f} s")
    report.add("add: throughput", f"{sizes.n / total:,.0f} vec/s")


def bench_queries(collection, data: Dataset, sizes: Sizes, truth: np.ndarray, report: Report) -> None:
    seconds, _ = timed(lambda: collection.query(query_embeddings=data.queries[:1], n_results=N_RESULTS))
    report.add("first query (builds the index)", ms(seconds))

    singles = [timed(lambda q=q: collection.query(query_embeddings=q[None, :], n_results=N_RESULTS))[0]
               for q in data.queries[: sizes.single_queries]]
    median, p95 = latencies(singles)
    report.add(f"single query, n_results={N_RESULTS} (median / p95)", f"{median} / {p95}")

    seconds, result = timed(lambda: collection.query(query_embeddings=data.queries, n_results=N_RESULTS))
    report.add(f"batch query of {sizes.queries:,}: total", ms(seconds))
    report.add(f"batch query of {sizes.queries:,}: throughput", f"{sizes.queries / seconds:,.0f} q/s")
    recall = recall_at_k(result["ids"][: sizes.recall_sample], truth, data.ids)
    report.add(f"recall@{N_RESULTS} vs numpy exact ({sizes.recall_sample} queries)", f"{recall:.4f}")


def bench_filtered(collection, data: Dataset, sizes: Sizes, report: Report) -> None:
    times, mismatched = [], 0
    for i, query in enumerate(data.queries[: sizes.single_queries]):
        category = i % CATEGORIES
        seconds, result = timed(lambda: collection.query(query_embeddings=query[None, :], n_results=N_RESULTS,
                                                         where={"category": category}))
        times.append(seconds)
        mismatched += sum(m["category"] != category for m in result["metadatas"][0])
        if i < 20:  # exact answer among the 1% that match
            members = np.flatnonzero(data.categories == category)
            expected = members[exact_top_k(data.vectors[members], query[None, :], N_RESULTS)[0]]
            if result["ids"][0] != [data.ids[p] for p in expected]:
                raise AssertionError(f"filtered query {i} (category {category}) differs from the exact answer")
    if mismatched:
        raise AssertionError(f"filtered queries returned {mismatched} items outside the filter")
    report.add("filtered query, 1% selectivity (median / p95)", " / ".join(latencies(times)))
    report.add("filtered query: results matching the filter", "all")


def bench_get(collection, data: Dataset, sizes: Sizes, rng: np.random.Generator, report: Report) -> None:
    times = []
    for _ in range(sizes.repeats):
        positions = rng.choice(sizes.n, size=sizes.get_ids, replace=False)
        asked = [data.ids[p] for p in positions]
        seconds, result = timed(lambda: collection.get(ids=asked, include=["embeddings", "metadatas"]))
        times.append(seconds)
        if result["ids"] != asked or not np.array_equal(result["embeddings"], data.vectors[positions]):
            raise AssertionError("get by ids returned other items than asked")
    report.add(f"get {sizes.get_ids:,} ids, embeddings+metadatas (median)", ms(statistics.median(times)))


def bench_reopen(directory: str, data: Dataset, report: Report) -> None:
    query = data.queries[:8]
    before = chroma.get_api().get_collection("bench").query(query_embeddings=query, n_results=N_RESULTS)
    chroma.configure(db_impl=None, persist_directory=None)
    chroma.get_api()  # the configuration change closes the persistent DB
    chroma.configure(db_impl="persistent_duckdb", persist_directory=directory)
    seconds, collection = timed(lambda: chroma.get_api().get_collection("bench"))
    report.add("reopen: open directory + get_collection", ms(seconds))
    seconds, after = timed(lambda: collection.query(query_embeddings=query, n_results=N_RESULTS))
    report.add("reopen: first query (rebuilds index from DB)", ms(seconds))
    if after["ids"] != before["ids"] or collection.count() != len(data.ids):
        raise AssertionError("the reopened directory answers differently")


@contextlib.contextmanager
def db_settings(db_impl: str, directory: str) -> Iterator[dict]:
    """``chroma.configure`` settings of ``db_impl``, with a ClickHouse server running for ``clickhouse``."""
    if db_impl != "clickhouse":
        yield {"db_impl": db_impl, "persist_directory": directory}
        return
    # A server on free ports in a scratch directory, stopped by PID (as the tests start theirs).
    from chroma.bench.clickhouse_server import SERVER_BINARY, server_available, start_clickhouse

    if not server_available():
        raise SystemExit(f"--db clickhouse needs {SERVER_BINARY} (apt-get install clickhouse-server)")
    server = start_clickhouse(Path(directory) / "clickhouse")
    try:
        yield server.settings
    finally:
        server.stop()


def run_one(db_impl: str, data: Dataset, sizes: Sizes, truth: np.ndarray, seed: int) -> Report:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="chroma-bench-") as directory, db_settings(db_impl, directory) as settings:
        chroma.configure(api_impl="local", allow_reset=True, **settings)
        collection = chroma.get_api().create_collection("bench")
        bench_add(collection, data, sizes, report)
        bench_queries(collection, data, sizes, truth, report)
        bench_filtered(collection, data, sizes, report)
        bench_get(collection, data, sizes, np.random.default_rng(seed + 1), report)
        if db_impl == "persistent_duckdb":
            bench_reopen(directory, data, report)
            report.add("on-disk size", f"{directory_size(directory) / 2**20:.1f} MiB")
        chroma.configure(api_impl=None, allow_reset=None, **{key: None for key in settings})
        chroma.get_db()  # closes this DB before its directory goes away
    return report


def directory_size(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(directory) for name in names)


def print_header(sizes: Sizes) -> None:
    import duckdb
    import pyarrow

    from chroma import _core

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}")
    print(f"versions: chroma {chroma.__version__}, python {platform.python_version()}, duckdb {duckdb.__version__}, "
          f"numpy {np.__version__}, pyarrow {pyarrow.__version__}, simd {simd_path(_core)}")
    print(f"data: {sizes.n:,} x {sizes.dim} float32, Gaussian mixture (64 clusters), metadata "
          f"category (int, {CATEGORIES} values) + tag (str); batches of {sizes.batch:,}; space l2; "
          f"index_impl {chroma.current_settings().index_impl}")
    print()


def simd_path(core) -> str:
    path = getattr(core, "simd_path", None)
    return str(path() if callable(path) else path) if path is not None else "n/a"


def print_table(reports: dict[str, Report]) -> None:
    names = list(next(iter(reports.values())).rows)
    for report in reports.values():
        names += [name for name in report.rows if name not in names]
    columns = list(reports)
    widths = [max(len("metric"), *map(len, names))]
    widths += [max(len(column), *(len(reports[column].rows.get(name, "-")) for name in names)) for column in columns]
    line = "  ".join("-" * width for width in widths)
    print("  ".join(["metric".ljust(widths[0])] + [c.rjust(w) for c, w in zip(columns, widths[1:])]))
    print(line)
    for name in names:
        cells = [reports[column].rows.get(name, "-").rjust(width) for column, width in zip(columns, widths[1:])]
        print("  ".join([name.ljust(widths[0])] + cells))


def main() -> int:
    args = parse_args()
    sizes = sizes_from(args)
    print_header(sizes)
    data = make_dataset(sizes, args.seed)
    truth = exact_top_k(data.vectors, data.queries[: sizes.recall_sample], N_RESULTS)
    reports = {db_impl: run_one(db_impl, data, sizes, truth, args.seed) for db_impl in args.db or DEFAULT_DB_IMPLS}
    print_table(reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
