"""The cost of one remote call above the network floor, in one run (issue 16, "the hot path").

Measured side by side, on the same data (N x DIM float32, in-memory DuckDB, the flat index):

- the floor: a bare Starlette endpoint under uvicorn (the same uvicorn settings as ``chroma run``)
  answering a POST from ``requests.Session`` with the very bytes our server answers (the request
  the Python client sends, recorded), and a bare Flight ``do_action`` answering with as many bytes;
- our HTTP server (``chroma run --impl fastapi``) through ``chroma.api.FastAPI``;
- our Flight server (``chroma run --impl flight``) through ``chroma.api.ArrowFlight``;
- Local in process.

Rows: single query ids only (``include=[]``) and with the default include, get of 1 id, count
(p50 and p99 of many calls, taken in interleaved rounds so that a burst of load on a shared machine
hits every side alike), add of a batch, and the query throughput of 1 and of 8 client processes
against each server, also with one of the 8 running slow batch queries (a slow call must not stall
the others: the core releases the GIL). The servers' resident memory closes the report.

Targets: single-call p50 over HTTP and Flight at most 0.25 ms above its floor; 8 clients at least
1.6x the throughput of one. ``--chromadb`` then runs chromadb's own server against ours on the
100,000 x 128 set (``bench_vs_chromadb.py --server``): our single query with the default include
at least 3x faster.

    python benchmarks/bench_remote.py            # 20,000 x 128, 2,000 calls per row
    python benchmarks/bench_remote.py --quick    # 2,000 x 32, about 30 s (smoke test)
    python benchmarks/bench_remote.py --chromadb # and chromadb's server, full size (minutes)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from common import TRANSPORT_INDEX, cpu_model, percentile, start_server, timed

import chroma

N_RESULTS = 10
FLOOR_TARGET_MS = 0.25
CONCURRENCY_TARGET = 1.6
CLIENTS = 8
COLLECTION = "bench_remote"


@dataclass
class Sizes:
    n: int
    dim: int
    calls: int
    rounds: int
    seconds: float
    slow_queries: int
    """Vectors per batch query of the slow client (0: no run with a slow client)."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="items in the collection")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--calls", type=int, default=2_000, help="calls timed per row and side")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2,000 x 32, about 30 s (smoke test)")
    parser.add_argument("--chromadb", action="store_true",
                        help="then chromadb's own server against ours on the 100,000 x 128 set of "
                             "bench_vs_chromadb.py (--server), chromadb from PyPI in a venv of its own")
    return parser.parse_args()


def sizes_from(args: argparse.Namespace) -> Sizes:
    if args.quick:
        return Sizes(n=2_000, dim=32, calls=100, rounds=2, seconds=0.5, slow_queries=0)
    return Sizes(n=args.n, dim=args.dim, calls=args.calls, rounds=20, seconds=args.seconds, slow_queries=1_000)


# --------------------------------------------------------------------------
# The floors: bare servers in processes of their own
# --------------------------------------------------------------------------


def _bare_http(answers: dict[str, tuple[bytes, str]], ports) -> None:
    """A Starlette app under uvicorn, configured as ``chroma.server.fastapi`` runs it, answering
    ``POST /NAME`` with ``answers[NAME]`` (bytes, content type) after reading the body."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def answer(request: Request) -> Response:
        await request.body()
        body, media_type = answers[request.path_params["name"]]
        return Response(body, media_type=media_type)

    app = Starlette(routes=[Route("/{name}", answer, methods=["GET", "POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, as ours
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    ports.put(sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])


def _bare_flight(sizes: dict[str, int], ports) -> None:
    """A Flight server whose action NAME answers ``sizes[NAME]`` bytes."""
    import pyarrow.flight as flight

    class Echo(flight.FlightServerBase):
        def do_action(self, context, action):
            action.body.to_pybytes()
            return [flight.Result(b"x" * sizes[action.type])]

    server = Echo("grpc://127.0.0.1:0")
    ports.put(server.port)
    server.serve()


class Floor:
    """A bare server process; ``stop()`` ends it."""

    def __init__(self, target: Callable, payload: Any) -> None:
        context = multiprocessing.get_context("spawn")
        ports = context.Queue()
        self.process = context.Process(target=target, args=(payload, ports), daemon=True)
        self.process.start()
        self.port = ports.get(timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


# --------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------


@dataclass
class Recorded:
    """One HTTP call of the Python client as it went over the wire."""

    method: str
    data: Optional[bytes]
    headers: Optional[dict]
    answer: bytes
    media_type: str


def record_http(api: Any, call: Callable[[], object]) -> Recorded:
    """The request ``call`` makes through the HTTP client ``api``, and the server's answer."""
    seen: list[Recorded] = []
    send = api._send

    def recording(method: str, url: str, data: Optional[bytes], headers: Optional[dict]):
        response = send(method, url, data, headers)
        seen.append(Recorded(method, data, headers, response.content, response.headers["content-type"]))
        return response

    api._send = recording
    try:
        call()
    finally:
        del api._send
    return seen[-1]


def operations(collection: chroma.Collection, query: np.ndarray, one_id: str) -> dict[str, Callable[[], object]]:
    """The single calls measured, by row name."""
    return {
        "query, ids only": lambda: collection.query(query_embeddings=query, n_results=N_RESULTS, include=[]),
        "query, default include": lambda: collection.query(query_embeddings=query, n_results=N_RESULTS),
        "get 1 id": lambda: collection.get(ids=[one_id]),
        "count": lambda: collection.count(),
    }


def latencies(sides: dict[str, dict[str, Callable[[], object]]], sizes: Sizes) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of every side's every operation, in interleaved rounds."""
    times: dict[str, dict[str, list[float]]] = {side: {name: [] for name in calls} for side, calls in sides.items()}
    per_round = max(1, sizes.calls // sizes.rounds)
    for calls in sides.values():  # warm-up: connections, first-use costs
        for call in calls.values():
            for _ in range(20):
                call()
    for _ in range(sizes.rounds):
        for side, calls in sides.items():
            for name, call in calls.items():
                row = times[side][name]
                for _ in range(per_round):
                    start = time.perf_counter()
                    call()
                    row.append(time.perf_counter() - start)
    return times


def _client_loop(settings: dict, dim: int, seconds: float, slow: int, seed: int, barrier, results) -> None:
    """One client process: single queries (or, with ``slow``, batch queries of ``slow`` vectors)
    from the barrier on, for ``seconds``; puts the number of calls done."""
    client = chroma.Client(**settings)
    collection = client.get_collection(COLLECTION)
    rng = np.random.default_rng(seed)
    rows = slow or 1
    queries = rng.standard_normal((64, rows, dim), dtype=np.float32)
    collection.query(query_embeddings=queries[0], n_results=N_RESULTS)
    barrier.wait()
    done = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        collection.query(query_embeddings=queries[done % 64], n_results=N_RESULTS)
        done += 1
    results.put((slow, done))
    client.close()


def throughput(settings: dict, sizes: Sizes, server_pid: int, clients: int,
               slow_clients: int = 0) -> tuple[float, float]:
    """Single queries per second of the clients that run single queries, over ``sizes.seconds``,
    and the cores the server kept busy meanwhile (its CPU seconds per second)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients + 1)
    results = context.Queue()
    processes = [context.Process(target=_client_loop, daemon=True,
                                 args=(settings, sizes.dim, sizes.seconds, sizes.slow_queries if i < slow_clients
                                       else 0, i, barrier, results)) for i in range(clients)]
    for process in processes:
        process.start()
    barrier.wait(timeout=120)
    cpu_before, wall_before = cpu_seconds(server_pid), time.perf_counter()
    time.sleep(sizes.seconds)
    cores = (cpu_seconds(server_pid) - cpu_before) / (time.perf_counter() - wall_before)
    counts = [results.get(timeout=120 + sizes.seconds) for _ in processes]
    for process in processes:
        process.join(30)
        if process.exitcode != 0:
            raise RuntimeError(f"a client process ended with status {process.exitcode}")
    return sum(done for slow, done in counts if not slow) / sizes.seconds, cores


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid``, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_add(client: chroma.API, ids: list[str], vectors: np.ndarray, times: int = 3) -> float:
    """The median time of one add of ``vectors`` into a fresh collection, of ``times`` tries."""
    seconds = []
    for _ in range(times):
        collection = client.create_collection(f"{COLLECTION}_add")
        seconds.append(timed(lambda: collection.add(ids=ids, embeddings=vectors))[0])
        client.delete_collection(collection.name)
    return sorted(seconds)[len(seconds) // 2]


def rss_mb(pid: int) -> str:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    current, peak = (int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
    return f"{current:,.0f} MB (peak {peak:,.0f} MB)"


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def print_header(sizes: Sizes) -> None:
    import pyarrow as pa
    import requests
    import starlette
    import uvicorn

    extras = [name for name in ("httptools", "uvloop") if _importable(name)]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"versions: chroma {chroma.__version__}, python {platform.python_version()}, numpy {np.__version__}, "
          f"pyarrow {pa.__version__}, starlette {starlette.__version__}, uvicorn {uvicorn.__version__} "
          f"(with {', '.join(extras) or 'neither httptools nor uvloop'}), requests {requests.__version__}")
    print(f"data: {sizes.n:,} x {sizes.dim} float32 (standard normal), ids only; in-memory DuckDB, index_impl "
          f"{TRANSPORT_INDEX}, space l2; n_results={N_RESULTS}; {sizes.calls:,} calls per row in "
          f"{sizes.rounds} interleaved rounds")
    print("floor: HTTP = bare Starlette route under uvicorn answering the recorded bytes of our answer to the "
          "recorded request of our client, from a requests.Session set up as the client's; Flight = bare do_action answering as many bytes")
    print()


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    print("  ".join([headers[0].ljust(widths[0])] + [h.rjust(w) for h, w in zip(headers[1:], widths[1:])]))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))
    print()


def latency_table(times: dict[str, dict[str, list[float]]], names: list[str]) -> dict[str, dict[str, float]]:
    """Prints p50/p99 per side and the distance of each server to its floor; returns the p50s."""
    p50 = {side: {name: percentile(rows[name], 0.5) for name in rows} for side, rows in times.items()}
    p99 = {side: {name: percentile(rows[name], 0.99) for name in rows} for side, rows in times.items()}
    headers = ["single call, p50 / p99 (ms)", "HTTP floor", "HTTP", "HTTP-floor", "HTTP/floor",
               "Flight floor", "Flight", "Flight-floor", "Flight/floor", "Local"]
    both = lambda side, name: f"{p50[side][name] * 1e3:.3f} / {p99[side][name] * 1e3:.3f}"  # noqa: E731
    rows = []
    for name in names:
        rows.append([name, both("HTTP floor", name), both("HTTP", name),
                     f"{(p50['HTTP'][name] - p50['HTTP floor'][name]) * 1e3:+.3f}",
                     f"{p50['HTTP'][name] / p50['HTTP floor'][name]:.2f}x",
                     both("Flight floor", name), both("Flight", name),
                     f"{(p50['Flight'][name] - p50['Flight floor'][name]) * 1e3:+.3f}",
                     f"{p50['Flight'][name] / p50['Flight floor'][name]:.2f}x", both("Local", name)])
    print_table(headers, rows)
    return p50


def main() -> int:
    args = parse_args()
    sizes = sizes_from(args)
    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((sizes.n, sizes.dim), dtype=np.float32)
    query = rng.standard_normal((1, sizes.dim), dtype=np.float32)
    ids = [f"id-{i}" for i in range(sizes.n)]
    half = sizes.n // 2
    print_header(sizes)
    with tempfile.TemporaryDirectory(prefix="chroma-bench-remote-") as workdir:
        http_server = start_server(Path(workdir) / "http", impl="fastapi")
        flight_server = start_server(Path(workdir) / "flight", impl="flight")
        floors: list[Floor] = []
        clients: list[Any] = []
        try:
            remote = {"index_impl": TRANSPORT_INDEX, "server_host": "127.0.0.1"}
            settings = {
                "HTTP": {**remote, "api_impl": "fastapi", "server_http_port": http_server.port},
                "Flight": {**remote, "api_impl": "arrowflight", "server_flight_port": flight_server.flight_port},
                "Local": {"api_impl": "local", "index_impl": TRANSPORT_INDEX},
            }
            collections, adds = {}, {}
            for side, side_settings in settings.items():
                client = chroma.Client(**side_settings)
                clients.append(client)
                collection = client.create_collection(COLLECTION)
                collection.add(ids=ids[:half], embeddings=vectors[:half])  # first write's costs paid here
                collection.add(ids=ids[half:], embeddings=vectors[half:])
                adds[side] = median_add(client, ids[:half], vectors[:half])
                collections[side] = collection
            calls = {side: operations(collection, query, ids[0]) for side, collection in collections.items()}
            names = list(calls["HTTP"])
            recorded = {name: record_http(clients[0], call) for name, call in calls["HTTP"].items()}
            floors.append(Floor(_bare_http, {slug(name): (r.answer, r.media_type) for name, r in recorded.items()}))
            floors.append(Floor(_bare_flight, {slug(name): len(r.answer) for name, r in recorded.items()}))
            calls["HTTP floor"] = bare_http_calls(floors[0].port, recorded)
            calls["Flight floor"] = bare_flight_calls(floors[1].port, recorded)
            times = latencies(calls, sizes)
            p50 = latency_table(times, names)
            print_table(["add", "HTTP", "Flight", "Local"],
                        [[f"{half:,} x {sizes.dim} (one call, median of 3)",
                          *(f"{adds[side] * 1e3:.1f} ms" for side in ("HTTP", "Flight", "Local"))]])
            rates, rows = {}, []
            for side, server in (("HTTP", http_server), ("Flight", flight_server)):
                pid = server.process.pid
                (one, one_cores), (many, many_cores) = (
                    throughput(settings[side], sizes, pid, 1), throughput(settings[side], sizes, pid, CLIENTS))
                rates[side] = (one, many)
                row = [side, f"{one:,.0f} ({one_cores:.2f})", f"{many:,.0f} ({many_cores:.2f})", f"{many / one:.2f}x"]
                if sizes.slow_queries:
                    slow, slow_cores = throughput(settings[side], sizes, pid, CLIENTS, slow_clients=1)
                    row += [f"{slow:,.0f} ({slow_cores:.2f})", f"{slow / one:.2f}x"]
                rows.append(row + ["-", "-"] * (not sizes.slow_queries))
            print_table(["single queries per second (server cores busy)", "1 client", f"{CLIENTS} clients",
                         f"{CLIENTS}/1", f"{CLIENTS - 1} + 1 slow", f"{CLIENTS - 1}+slow / 1"], rows)
            slow_note = (f"slow client: batch queries of {sizes.slow_queries:,} vectors, its own calls not counted"
                         if sizes.slow_queries else "no run with a slow client (--quick)")
            print(f"queries with the default include; {slow_note}; server cores busy = its CPU seconds per second; "
                  f"the clients share the machine's {os.cpu_count()} cores with the server")
            print(f"server memory (RSS after the run): HTTP {rss_mb(http_server.process.pid)}, "
                  f"Flight {rss_mb(flight_server.process.pid)}")
            print()
            print_targets(p50, rates, names[:2])
        finally:
            for client in clients:
                client.close()
            for floor in floors:
                floor.stop()
            for server in (http_server, flight_server):
                status = server.stop()
                if status != 0:
                    raise RuntimeError(f"chroma run ended with status {status}:\n{server.output()}")
    if args.chromadb:
        print("\n== chromadb's own server against ours (bench_vs_chromadb.py --server)", flush=True)
        against = [sys.executable, str(Path(__file__).with_name("bench_vs_chromadb.py")), "--server",
                   "--data-set", "clusters-128-l2"] + (["--quick"] if args.quick else [])
        return subprocess.run(against).returncode
    return 0


def slug(name: str) -> str:
    """A row name as a URL path segment and a Flight action type."""
    return name.replace(", ", "-").replace(" ", "-")


def bare_http_calls(port: int, recorded: dict[str, Recorded]) -> dict[str, Callable[[], object]]:
    import requests

    # as the client's session: the environment read once, JSON by default, the recorded headers per request
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(f"http://127.0.0.1:{port}")
    session.headers["Content-Type"] = "application/json"

    def call(r: Recorded, url: str) -> Callable[[], object]:
        return lambda: session.request(r.method, url, data=r.data, headers=r.headers).content

    return {name: call(r, f"http://127.0.0.1:{port}/{slug(name)}") for name, r in recorded.items()}


def bare_flight_calls(port: int, recorded: dict[str, Recorded]) -> dict[str, Callable[[], object]]:
    import pyarrow.flight as flight

    client = flight.FlightClient(f"grpc://127.0.0.1:{port}")

    def call(action: str, r: Recorded) -> Callable[[], object]:
        request = r.data or b"{}"
        return lambda: [result.body.to_pybytes() for result in client.do_action(flight.Action(action, request))]

    return {name: call(slug(name), r) for name, r in recorded.items()}


def print_targets(p50: dict[str, dict[str, float]], rates: dict[str, tuple[float, float]],
                  names: list[str]) -> None:
    for side in ("HTTP", "Flight"):
        for name in names:
            above = (p50[side][name] - p50[f"{side} floor"][name]) * 1e3
            print(f"target: {side} {name} p50 at most {FLOOR_TARGET_MS} ms above its floor: {above:+.3f} ms "
                  f"({'met' if above <= FLOOR_TARGET_MS else 'NOT met'})")
        one, many = rates[side]
        print(f"target: {side} {CLIENTS} clients at least {CONCURRENCY_TARGET}x one client's throughput: "
              f"{many / one:.2f}x ({'met' if many / one >= CONCURRENCY_TARGET else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
