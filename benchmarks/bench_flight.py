"""The Python API over Arrow Flight (``chroma.api.ArrowFlight``) against the
same API over HTTP (``chroma.api.FastAPI``) and in-process (Local), in the
same run, on the same data.

Each client in turn creates a collection, adds the vectors (by default in
one call), runs single queries and one batch query, and deletes the
collection; Local over a fresh in-memory DuckDB, FastAPI and Flight against a
fresh ``chroma run --impl fastapi|flight`` subprocess over one. The clients take turns ``--repeat`` times (so a burst of load on a shared machine
hits them alike); each row shows the median run, and the add also its best. The answers of the batch query are
checked to be the same on all three. Ratios are times against Local (x
slower) and FastAPI's time against Flight's (x faster over Flight).

Targets (issue 6): Flight's bulk add at least 5x FastAPI's throughput and
within 2x of Local's.

    python benchmarks/bench_flight.py            # add 100,000 x 128 in one call, batch query of 1,000
    python benchmarks/bench_flight.py --quick    # 5,000 x 32, a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from bench_http import Report, Sizes, argument_parser, run_one
from common import TRANSPORT_INDEX, cpu_model, start_server

import chroma

ADD_TARGET_OVER_FASTAPI = 5.0
ADD_TARGET_AGAINST_LOCAL = 2.0


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__, batch=None, batch_help="vectors per add call (default: all in one call)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of all three clients (median shown)")
    return parser.parse_args()


def sizes_from(args: argparse.Namespace) -> Sizes:
    if args.quick:
        args.repeat = 1
        return Sizes(n=5_000, dim=32, batch=5_000, queries=200, single_queries=50)
    return Sizes(n=args.n, dim=args.dim, batch=args.batch or args.n, queries=args.queries,
                 single_queries=args.single_queries)


CLIENTS = {
    "local": ({"api_impl": "local"}, None),
    "fastapi": ({"api_impl": "fastapi", "http_encoding": "binary"}, "fastapi"),
    "fastapi-json": ({"api_impl": "fastapi", "http_encoding": "json"}, "fastapi"),
    "flight": ({"api_impl": "arrowflight"}, "flight"),
}
"""Each client measured: its name, its settings, and the ``chroma run --impl`` serving it (None: in process).
FastAPI runs twice: with the Python client's binary vectors and with JSON (what curl and other languages send)."""


def run_client(name: str, workdir: Path, vectors: np.ndarray, queries: np.ndarray, sizes: Sizes) -> tuple[Report, list]:
    """One round of ``name``'s client. A remote client gets a fresh server, as Local gets a fresh
    in-memory DuckDB each round (a server reused across rounds keeps the rows deleted before)."""
    client_settings, server_impl = CLIENTS[name]
    settings = {**client_settings, "index_impl": TRANSPORT_INDEX}
    if server_impl is None:
        warm_up(settings, sizes.dim)
        return run_one(settings, vectors, queries, sizes)
    workdir.mkdir()
    server = start_server(workdir, impl=server_impl)
    try:
        settings.update(server_host="127.0.0.1", server_http_port=server.port or 0,
                        server_flight_port=server.flight_port or 0)
        warm_up(settings, sizes.dim)
        return run_one(settings, vectors, queries, sizes)
    finally:
        status = server.stop()
        if status != 0:
            raise RuntimeError(f"chroma run ended with status {status}:\n{server.output()}")


def warm_up(settings: dict, dim: int) -> None:
    """One small add and query through a client, so no measured call pays for first-use costs
    (imports, connections, the server's and DuckDB's first write)."""
    chroma.configure(**settings)
    try:
        collection = chroma.get_api().create_collection("bench_flight_warm_up")
        collection.add(ids=[f"w{i}" for i in range(100)], embeddings=np.ones((100, dim), np.float32))
        collection.query(query_embeddings=np.ones((2, dim), np.float32), n_results=3)
        chroma.get_api().delete_collection("bench_flight_warm_up")
    finally:
        chroma.configure(**{key: None for key in settings})


def median_report(reports: list[Report], add_name: str) -> Report:
    """Per row, the run with the median time (rows without a time: the first run's), plus the best add."""
    merged = Report()
    for name in reports[0].rows:
        runs = [(r.seconds.get(name, 0.0), r.rows[name]) for r in reports]
        if name in reports[0].seconds:
            seconds, text = sorted(runs)[len(runs) // 2]
            merged.add(name, text, seconds)
        else:
            merged.add(name, runs[0][1])
        if name == add_name and len(reports) > 1:
            best = min(r.seconds[add_name] for r in reports)
            merged.add(f"{add_name} (best of {len(reports)})", f"{best:.2f} s", best)
    return merged


def print_header(sizes: Sizes) -> None:
    import fastapi
    import requests
    import uvicorn

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}")
    print(f"versions: chroma {chroma.__version__}, python {platform.python_version()}, numpy {np.__version__}, "
          f"pyarrow {pa.__version__}, fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, "
          f"requests {requests.__version__}")
    print(f"data: {sizes.n:,} x {sizes.dim} float32 (standard normal), adds of {sizes.batch:,} per call, ids only; "
          f"in-memory DuckDB, index_impl {TRANSPORT_INDEX} (exact, on every side), space l2")
    print("servers: a fresh `chroma run --impl fastapi|flight` subprocess on 127.0.0.1 per round (HTTP: one uvicorn "
          "worker, the client's wire encoding as built; Flight: record batches, fixed_size_list<float32> embeddings)")
    print("ratios: x/Local = time over the wire / time in process; FastAPI/Flight = FastAPI time / Flight time "
          "(binary: the Python client's encoding; JSON: curl's)")
    print()


def print_table(local: Report, http: Report, http_json: Report, flight: Report) -> None:
    names = list(local.rows) + [n for n in [*http.rows, *flight.rows] if n not in local.rows]
    names = list(dict.fromkeys(names))
    headers = ["metric", "Local", "FastAPI binary", "FastAPI JSON", "Flight", "Flight/Local", "binary/Flight",
               "JSON/Flight"]

    def ratio(slow: Report, fast: Report, name: str) -> str:
        if name in slow.seconds and name in fast.seconds and fast.seconds[name] > 0:
            return f"{slow.seconds[name] / fast.seconds[name]:.1f}x"
        return "-"

    table = [[name, local.rows.get(name, "-"), http.rows.get(name, "-"), http_json.rows.get(name, "-"),
              flight.rows.get(name, "-"), ratio(flight, local, name), ratio(http, flight, name),
              ratio(http_json, flight, name)] for name in names]
    widths = [max(len(row[i]) for row in [headers, *table]) for i in range(len(headers))]
    print("  ".join([headers[0].ljust(widths[0])] + [h.rjust(w) for h, w in zip(headers[1:], widths[1:])]))
    print("  ".join("-" * width for width in widths))
    for row in table:
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))


def print_targets(local: Report, http: Report, http_json: Report, flight: Report, add_name: str) -> None:
    for name in [add_name, f"{add_name} (best of"]:
        name = next((row for row in local.seconds if row.startswith(name)), None)
        if name is not None:
            print_target(local, http, http_json, flight, name)


def print_target(local: Report, http: Report, http_json: Report, flight: Report, name: str) -> None:
    against_local = flight.seconds[name] / local.seconds[name]
    print()
    print(f"{name}:")
    for encoding, report in (("binary", http), ("JSON", http_json)):
        over_fastapi = report.seconds[name] / flight.seconds[name]
        print(f"  target: Flight add throughput >= {ADD_TARGET_OVER_FASTAPI:.0f}x FastAPI's ({encoding}): "
              f"{over_fastapi:.1f}x ({'met' if over_fastapi >= ADD_TARGET_OVER_FASTAPI else 'NOT met'})")
    print(f"  target: Flight add time within {ADD_TARGET_AGAINST_LOCAL:.0f}x of Local's: {against_local:.2f}x "
          f"({'met' if against_local <= ADD_TARGET_AGAINST_LOCAL else 'NOT met'})")


def main() -> int:
    args = parse_args()
    sizes = sizes_from(args)
    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((sizes.n, sizes.dim), dtype=np.float32)
    queries = rng.standard_normal((max(sizes.queries, sizes.single_queries), sizes.dim), dtype=np.float32)
    print_header(sizes)
    runs: dict[str, list[Report]] = {name: [] for name in CLIENTS}
    answers = []
    with tempfile.TemporaryDirectory(prefix="chroma-bench-flight-") as workdir:
        for round_ in range(args.repeat):
            for name in CLIENTS:
                report, ids = run_client(name, Path(workdir) / f"{name}-{round_}", vectors, queries, sizes)
                runs[name].append(report)
                answers.append(ids)
    if any(ids != answers[0] for ids in answers):
        raise AssertionError("the batch query answers differently over HTTP or Flight than in-process")
    add_name = f"add {sizes.n:,} x {sizes.dim}: total"
    local, http, http_json, flight = (median_report(runs[name], add_name) for name in CLIENTS)
    print(f"rounds: {args.repeat}")
    print_table(local, http, http_json, flight)
    print_targets(local, http, http_json, flight, add_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
