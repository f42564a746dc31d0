"""The Python API over HTTP (``chroma.api.FastAPI`` against a ``chroma run``
subprocess) against Local in-process, in the same run, on the same data.

Measures what a user sees through ``chroma.get_api()``: single-query round
trip, add throughput in batches, and one batch query, over HTTP with the
binary vector encoding (the client's default, ``chroma.wire``) and with plain
JSON; the ratio columns are HTTP time / Local time (how many times slower over
HTTP) and JSON time / binary time. Both sides use an in-memory DuckDB and the
flat index; the answers are checked to be the same.

    python benchmarks/bench_http.py              # 100,000 x 128 in batches of 5,000
    python benchmarks/bench_http.py --quick      # 5,000 x 32, a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from common import TRANSPORT_INDEX, cpu_model, ms, percentile, seconds_until_answered, start_server, timed
import requests

import chroma

N_RESULTS = 10


@dataclass
class Sizes:
    n: int
    dim: int
    batch: int
    queries: int
    single_queries: int


@dataclass
class Report:
    rows: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # the time behind a row, for the ratio

    def add(self, name: str, value: str, seconds: Optional[float] = None) -> None:
        self.rows[name] = value
        if seconds is not None:
            self.seconds[name] = seconds


def argument_parser(description: str = __doc__, batch: Optional[int] = 5_000,
                    batch_help: str = "vectors per add call") -> argparse.ArgumentParser:
    """The options of a client benchmark (sizes, seed, --quick)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors to add")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=batch, help=batch_help)
    parser.add_argument("--queries", type=int, default=1_000, help="queries in the batch query")
    parser.add_argument("--single-queries", type=int, default=200, help="single queries timed one by one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5,000 x 32, finishes in seconds (smoke test)")
    return parser


def parse_args() -> argparse.Namespace:
    return argument_parser().parse_args()


def sizes_from(args: argparse.Namespace) -> Sizes:
    if args.quick:
        return Sizes(n=5_000, dim=32, batch=1_000, queries=1_000, single_queries=200)
    return Sizes(n=args.n, dim=args.dim, batch=args.batch, queries=args.queries, single_queries=args.single_queries)


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


def run_one(settings: dict, vectors: np.ndarray, queries: np.ndarray, sizes: Sizes) -> tuple[Report, list]:
    """Adds, then queries, through ``chroma.get_api()`` configured by ``settings``; the batch answer too."""
    report = Report()
    chroma.configure(**settings)
    try:
        client = chroma.get_api()
        if settings.get("api_impl", "local") != "local":
            times = [timed(client.heartbeat)[0] for _ in range(100)]
            report.add("heartbeat round trip (median)", ms(statistics.median(times)))
        collection = client.create_collection("bench_http")
        ids = [f"id-{i}" for i in range(sizes.n)]
        batch_times = []
        for start in range(0, sizes.n, sizes.batch):
            end = min(start + sizes.batch, sizes.n)
            batch_times.append(timed(lambda: collection.add(ids=ids[start:end], embeddings=vectors[start:end]))[0])
        total = sum(batch_times) + seconds_until_answered(collection, queries[0])
        if collection.count() != sizes.n:
            raise AssertionError(f"count {collection.count()} after adding {sizes.n}")
        report.add(f"add: per batch of {sizes.batch:,} (median)", ms(statistics.median(batch_times)),
                   statistics.median(batch_times))
        report.add(f"add {sizes.n:,} x {sizes.dim}: total", f"{total:.2f} s", total)
        report.add("add: throughput", f"{sizes.n / total:,.0f} vec/s", total)

        collection.query(query_embeddings=queries[:1], n_results=N_RESULTS)  # warm-up: the index is loaded
        singles = []
        for query in queries[: sizes.single_queries]:
            seconds, result = timed(lambda: collection.query(query_embeddings=query[None, :], n_results=N_RESULTS))
            singles.append(seconds)
            if len(result["ids"][0]) != N_RESULTS:
                raise AssertionError("a single query returned too few results")
        report.add(f"single query, n_results={N_RESULTS}: median ({sizes.single_queries} queries)",
                   ms(statistics.median(singles)), statistics.median(singles))
        report.add(f"single query, n_results={N_RESULTS}: p95", ms(percentile(singles, 0.95)),
                   percentile(singles, 0.95))

        batch = queries[: sizes.queries]
        seconds, result = timed(lambda: collection.query(query_embeddings=batch, n_results=N_RESULTS))
        report.add(f"batch query of {sizes.queries:,}: total", ms(seconds), seconds)
        report.add(f"batch query of {sizes.queries:,}: throughput", f"{sizes.queries / seconds:,.0f} q/s", seconds)
        client.delete_collection("bench_http")
        return report, result["ids"]
    finally:
        chroma.configure(**{key: None for key in settings})


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def print_header(sizes: Sizes) -> None:
    import fastapi
    import uvicorn

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}")
    print(f"versions: chroma {chroma.__version__}, python {platform.python_version()}, numpy {np.__version__}, "
          f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, requests {requests.__version__}")
    print(f"data: {sizes.n:,} x {sizes.dim} float32 (standard normal), adds in batches of {sizes.batch:,}, "
          f"ids only (no metadata/documents); in-memory DuckDB, index_impl "
          f"{TRANSPORT_INDEX} (exact, on both sides), space l2")
    print("HTTP: chroma.api.FastAPI -> `chroma run` subprocess on 127.0.0.1 (one uvicorn worker), "
          "vectors as binary float32 frames (http_encoding=binary) or as JSON (http_encoding=json)")
    print("ratios: time / time (x slower; for throughput rows the inverse of the throughputs)")
    print()


def ratio(slow: Report, fast: Report, name: str) -> str:
    if name in slow.seconds and name in fast.seconds and fast.seconds[name] > 0:
        return f"{slow.seconds[name] / fast.seconds[name]:.1f}x"
    return "-"


def print_table(local: Report, binary: Report, as_json: Report) -> None:
    names = list(local.rows) + [name for name in binary.rows if name not in local.rows]
    headers = ["metric", "Local", "HTTP binary", "HTTP JSON", "binary/Local", "JSON/Local", "JSON/binary"]
    table = []
    for name in names:
        table.append([name, local.rows.get(name, "-"), binary.rows.get(name, "-"), as_json.rows.get(name, "-"),
                      ratio(binary, local, name), ratio(as_json, local, name), ratio(as_json, binary, name)])
    widths = [max(len(row[i]) for row in [headers, *table]) for i in range(len(headers))]
    print("  ".join([headers[0].ljust(widths[0])] + [h.rjust(w) for h, w in zip(headers[1:], widths[1:])]))
    print("  ".join("-" * width for width in widths))
    for row in table:
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))


def main() -> int:
    args = parse_args()
    sizes = sizes_from(args)
    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((sizes.n, sizes.dim), dtype=np.float32)
    queries = rng.standard_normal((max(sizes.queries, sizes.single_queries), sizes.dim), dtype=np.float32)
    print_header(sizes)
    with tempfile.TemporaryDirectory(prefix="chroma-bench-http-") as workdir:
        server = start_server(Path(workdir))
        try:
            local, local_ids = run_one({"api_impl": "local", "index_impl": TRANSPORT_INDEX}, vectors, queries, sizes)
            remote = {"api_impl": "fastapi", "server_host": "127.0.0.1", "server_http_port": server.port}
            binary, binary_ids = run_one({**remote, "http_encoding": "binary"}, vectors, queries, sizes)
            as_json, json_ids = run_one({**remote, "http_encoding": "json"}, vectors, queries, sizes)
        finally:
            status = server.stop()
        if status != 0:
            raise RuntimeError(f"chroma run ended with status {status}:\n{server.output()}")
    if not binary_ids == json_ids == local_ids:
        raise AssertionError("the batch query answers differently over HTTP than in-process")
    print_table(local, binary, as_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
