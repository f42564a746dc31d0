"""chromadb (from PyPI) against our Local over PersistentDuckDB, on the same data in one run.

Two data sets, default settings on both sides: 100,000 x 128 from 100 clusters
(l2, two metadata keys, batches of 10,000), then 40,000 x 384 unit vectors with
a ~100-character document each (cosine). Rows: query with ``include=[]``,
query filtered to 1%, add everything (timed until a query sees the last
batch), query with the default include, get 1 id, get 1,000 ids, count (p50s),
peak RSS of the process, reopen to first query with documents, and recall@10
against exact ground truth computed here with numpy. Then each process's memory
step by step (RSS after opening, after loading the data, after the add, after
the reads; peak RSS; DuckDB's buffer manager at the end), and with
``--profile-add`` cProfile's view of each side's add.

chromadb is never our dependency and its modules never meet ours: it is
installed into a virtualenv of this benchmark's own (under the user's cache
directory, reused when present), and each side runs in a subprocess of its
own python (chromadb's venv, and this python for ours), which reports JSON.
This file is that subprocess too (``--side``), so at top level it imports
nothing but numpy and the standard library.

    python benchmarks/bench_vs_chromadb.py            # full size, minutes
    python benchmarks/bench_vs_chromadb.py --quick    # small sizes, seconds
    python benchmarks/bench_vs_chromadb.py --server   # each side as its own HTTP server

With ``--server`` each side runs its own HTTP server over its persistent store
(chromadb's ``chroma run``, ours ``chroma run``) and the side's process is the
client; peak RSS is then the server's, and there is no reopen row.

``--quick`` skips chromadb's side, saying so, when its venv cannot be made
(no network); with ``CI=true`` that is an error.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

CHROMADB_REQUIREMENT = "chromadb>=1.5,<1.6"
BATCH = 10_000
CLUSTERS = 100
N_RESULTS = 10
GET_MANY = 1_000
DATA_SETS = {
    # name: (items, dimension, space, documents)
    "clusters-128-l2": (100_000, 128, "l2", False),
    "unit-384-cosine-docs": (40_000, 384, "cosine", True),
}
QUICK_SIZES = {"clusters-128-l2": (5_000, 32), "unit-384-cosine-docs": (2_000, 64)}
QUERIES, QUICK_QUERIES = 200, 30
ROWS = [
    ("query_ids_ms", "query, include=[], p50", "ms"),
    ("query_filtered_ms", "query filtered to 1%, include=[], p50", "ms"),
    ("add_s", "add everything (until a query sees it)", "s"),
    ("query_default_ms", "query, default include, p50", "ms"),
    ("get_one_ms", "get 1 id, p50", "ms"),
    ("get_many_ms", "get 1,000 ids, p50", "ms"),
    ("count_ms", "count, p50", "ms"),
    ("peak_rss_mb", "peak RSS of the process", "MB"),
    ("reopen_s", "reopen to first query with documents", "s"),
    ("recall", "recall@10 (include=[] queries)", ""),
]
HIGHER_IS_BETTER = {"recall"}


# ---- the data, made once here and read by both sides ----

def make_data(directory: Path, name: str, n: int, d: int, space: str, documents: bool, queries: int) -> None:
    rng = np.random.default_rng(15)
    centers = rng.normal(size=(CLUSTERS, d)).astype(np.float32) * 3
    points = (centers[rng.integers(0, CLUSTERS, n + queries)] + rng.normal(size=(n + queries, d))).astype(np.float32)
    if space == "cosine":
        points /= np.linalg.norm(points, axis=1, keepdims=True)
    vectors, probes = points[:n], points[n:]
    np.save(directory / f"{name}.vectors.npy", vectors)
    np.save(directory / f"{name}.queries.npy", probes)
    words = np.array(["vector", "index", "graph", "query", "memory", "column", "arena", "label", "batch", "store",
                      "cosine", "search", "recall", "filter", "reader", "writer"])
    texts = None
    if documents:
        picks = words[rng.integers(0, len(words), size=(n, 16))]
        texts = [f"doc {i}: " + " ".join(row)[:92] for i, row in enumerate(picks.tolist())]
    spec = {"space": space, "n": n, "d": d, "documents": texts}
    (directory / f"{name}.json").write_text(json.dumps(spec))
    np.save(directory / f"{name}.truth.npy", exact_neighbours(vectors, probes, space))


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, space: str) -> np.ndarray:
    """Row numbers of the N_RESULTS nearest vectors of each query (numpy, exact)."""
    if space == "cosine":
        distances = -(queries @ vectors.T)  # unit vectors
    else:
        distances = (queries ** 2).sum(1)[:, None] - 2 * queries @ vectors.T + (vectors ** 2).sum(1)[None, :]
    nearest = np.argpartition(distances, N_RESULTS, axis=1)[:, :N_RESULTS]
    return np.take_along_axis(nearest, np.argsort(np.take_along_axis(distances, nearest, 1), 1), 1)


def metadata_of(i: int) -> dict:
    return {"bucket": i % 100, "tag": f"t{i % 7}"}


# ---- one side, in its own process ----

class Side:
    """The calls a side makes; chromadb's and ours share the API's shape."""

    def __init__(self, side: str, path: str, url: Optional[str] = None) -> None:
        self.side, self.path, self.url = side, path, url

    def open(self) -> Any:
        if self.url is not None:
            return self.open_remote()
        if self.side == "chromadb":
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            return chromadb.PersistentClient(path=self.path, settings=ChromaSettings(anonymized_telemetry=False))
        import chroma

        chroma.configure(api_impl="local", db_impl="persistent_duckdb", persist_directory=self.path)
        return chroma.get_api()

    def open_remote(self) -> Any:
        """A client of the side's own HTTP server at ``self.url``."""
        host, port = self.url.removeprefix("http://").split(":")
        if self.side == "chromadb":
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            return chromadb.HttpClient(host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False))
        import chroma

        return chroma.HttpClient(host=host, port=int(port))

    def largest_add(self, client: Any) -> int:
        """Items one add may carry: chromadb's PersistentClient refuses more than its
        ``get_max_batch_size()`` (5,461), so its batches of BATCH go in that many adds."""
        return client.get_max_batch_size() if self.side == "chromadb" else BATCH

    def close(self, client: Any) -> None:
        if self.side != "chromadb":
            client.close()


def p50_ms(action: Callable[[Any], object], arguments: list) -> float:
    times = []
    for argument in arguments:
        start = time.perf_counter()
        action(argument)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float:
    """The process's resident set now (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def duckdb_buffer_mb() -> Optional[float]:
    """What DuckDB's buffer manager holds now, for our side over DuckDB (None otherwise)."""
    import chroma

    db = chroma.get_db()
    connection = getattr(db, "_con", None)  # a benchmark may look inside: there is no public figure
    if connection is None:
        return None
    return connection.cursor().execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()[0][0] / 2**20


BREAKDOWN = [
    ("rss_open_mb", "RSS after imports and opening the client"),
    ("rss_data_mb", "+ the data set held by the benchmark"),
    ("rss_added_mb", "+ add everything (DB, index, derived state)"),
    ("rss_queried_mb", "+ the queries, gets and counts"),
    ("peak_rss_mb", "peak RSS"),
    ("duckdb_mb", "of which DuckDB's buffer manager, at the end"),
]


def run_build(side: Side, data: Path, name: str, queries: int, profile_add: bool = False) -> dict:
    client = side.open()
    result: dict = {"rss_open_mb": rss_mb()}
    spec = json.loads((data / f"{name}.json").read_text())
    vectors = np.load(data / f"{name}.vectors.npy")
    probes = np.load(data / f"{name}.queries.npy")[:queries]
    n = len(vectors)
    ids = [f"id{i}" for i in range(n)]
    metadatas = [metadata_of(i) for i in range(n)]
    documents = spec["documents"]
    result["rss_data_mb"] = rss_mb()
    collection = client.create_collection("bench", metadata={"hnsw:space": spec["space"]})
    profile = cProfile.Profile() if profile_add else None

    step = min(BATCH, side.largest_add(client))
    if profile is not None:
        profile.enable()
    start = time.perf_counter()
    for batch in range(0, n, BATCH):
        for first in range(batch, min(n, batch + BATCH), step):
            last = min(n, batch + BATCH, first + step)
            collection.add(ids=ids[first:last], embeddings=vectors[first:last], metadatas=metadatas[first:last],
                           documents=None if documents is None else documents[first:last])
    while collection.query(query_embeddings=vectors[n - 1 : n], n_results=1, include=[])["ids"][0] != [ids[n - 1]]:
        time.sleep(0.001)  # an index that catches up behind the add
    result["add_s"] = time.perf_counter() - start
    if profile is not None:
        profile.disable()
        report = io.StringIO()
        pstats.Stats(profile, stream=report).sort_stats("tottime").print_stats(15)
        print(f"== where {side.side}'s add of {name} spends its time (cProfile, by own time)\n{report.getvalue()}",
              file=sys.stderr)
    result["rss_added_mb"] = rss_mb()

    singles = [probes[i : i + 1] for i in range(len(probes))]
    found = []

    def ids_only(query: np.ndarray) -> None:
        found.append(collection.query(query_embeddings=query, n_results=N_RESULTS, include=[])["ids"][0])

    result["query_ids_ms"] = p50_ms(ids_only, singles)
    row_of = {item_id: i for i, item_id in enumerate(ids)}
    result["found"] = [[row_of[item_id] for item_id in row] for row in found]
    buckets = list(range(len(singles)))
    result["query_filtered_ms"] = p50_ms(
        lambda i: collection.query(query_embeddings=singles[i], n_results=N_RESULTS, where={"bucket": i % 100},
                                   include=[]),
        buckets)
    result["query_default_ms"] = p50_ms(lambda q: collection.query(query_embeddings=q, n_results=N_RESULTS), singles)
    rng = np.random.default_rng(1)
    one = [[ids[i]] for i in rng.integers(0, n, len(singles)).tolist()]
    result["get_one_ms"] = p50_ms(lambda wanted: collection.get(ids=wanted), one)
    many = [[ids[i] for i in rng.choice(n, min(GET_MANY, n), replace=False).tolist()] for _ in range(20)]
    result["get_many_ms"] = p50_ms(lambda wanted: collection.get(ids=wanted), many)
    result["count_ms"] = p50_ms(lambda _: collection.count(), list(range(len(singles))))
    check = collection.get(ids=many[0][:3], include=["metadatas", "documents"])
    expected = [int(item_id[2:]) for item_id in check["ids"]]
    if check["metadatas"] != [metadata_of(i) for i in expected] or (
            documents is not None and check["documents"] != [documents[i] for i in expected]):
        raise SystemExit(f"{side.side}: get returned other metadata or documents than were added")
    result["rss_queried_mb"] = rss_mb()
    result["duckdb_mb"] = duckdb_buffer_mb() if side.side == "ours" else None
    side.close(client)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_reopen(side: Side, data: Path, name: str) -> dict:
    probe = np.load(data / f"{name}.queries.npy")[:1]
    start = time.perf_counter()
    client = side.open()
    answer = client.get_collection("bench").query(query_embeddings=probe, n_results=N_RESULTS,
                                                   include=["documents", "metadatas", "distances"])
    seconds = time.perf_counter() - start
    if len(answer["ids"][0]) != N_RESULTS:
        raise SystemExit(f"{side.side}: the reopened collection answered {answer['ids']}")
    side.close(client)
    return {"reopen_s": seconds}


def side_main(args: argparse.Namespace) -> None:
    side = Side(args.side, args.store, args.url)
    data = Path(args.data)
    result = (run_build(side, data, args.name, args.queries, args.profile_add) if args.phase == "build"
              else run_reopen(side, data, args.name))
    print(json.dumps(result))


# ---- the driver ----

def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chroma-bench"


def chromadb_python() -> Path:
    """chromadb's venv's python, made (or reused) under the cache directory.

    Raises:
        RuntimeError: the venv or the install failed (e.g. no network).
    """
    home = cache_root() / "chromadb-venv"
    python = home / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import chromadb"], capture_output=True).returncode == 0:
        return python
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    print(f"making chromadb's virtualenv in {home} (pip install {CHROMADB_REQUIREMENT}) ...", flush=True)
    venv.EnvBuilder(with_pip=True).create(home)
    done = subprocess.run([python, "-m", "pip", "install", "-q", CHROMADB_REQUIREMENT], capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"pip install {CHROMADB_REQUIREMENT} failed:\n{done.stderr[-2000:]}")
    return python


def run_side(python: Path, side: str, phase: str, name: str, data: Path, store: Path, queries: int,
             profile_add: bool = False, url: Optional[str] = None) -> dict:
    environment = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    if side == "chromadb":
        environment.pop("PYTHONPATH", None)  # whatever points at our package stays on our side
    command = [str(python), os.path.abspath(__file__), "--side", side, "--phase", phase, "--name", name,
               "--data", str(data), "--store", str(store), "--queries", str(queries)] + (["--profile-add"] if profile_add else []) \
        + ([] if url is None else ["--url", url])
    # a neutral working directory: neither side imports the other's modules from it
    done = subprocess.run(command, capture_output=True, text=True, cwd=data, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"{side} {phase} on {name} failed:\n{done.stderr[-3000:]}")
    if profile_add and done.stderr:
        print(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def serving(side: str, python: Path, store: Path) -> Iterator[tuple[str, int]]:
    """The side's own HTTP server over ``store`` on 127.0.0.1, as ``(url, pid)``: ``chroma run`` of
    chromadb's venv, or ours (``python -m chroma run``, PersistentDuckDB, default index)."""
    if side == "ours":
        from chroma.bench.server_process import ServerProcess

        server = ServerProcess(store.parent, impl="fastapi", name=f"server-{store.name}",
                               settings={"db_impl": "persistent_duckdb", "persist_directory": str(store),
                                         "embedding_function": "none"}).start()  # the benchmark sends vectors
        try:
            yield server.url, server.process.pid
        finally:
            server.stop()
        return
    with socket.socket() as probe:  # chromadb's server takes a port number, not 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(store.parent / f"chromadb-server-{store.name}.log", "w")
    process = subprocess.Popen([str(python.parent / "chroma"), "run", "--path", str(store), "--host", "127.0.0.1",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{url}/api/v2/heartbeat"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromadb's server did not start: see {log.name}")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def peak_rss_of_mb(pid: int) -> float:
    """A live process's peak resident set (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def chromadb_version(python: Path) -> str:
    return subprocess.run([python, "-c", "import chromadb; print(chromadb.__version__)"], capture_output=True,
                          text=True).stdout.strip()


def recall(found: list, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth.tolist())]))


def cell(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f}"
    if unit == "s":
        return f"{value:.2f}"
    if unit == "MB":
        return f"{value:.0f}"
    return f"{value:.3f}"


def print_table(name: str, shape: str, theirs: Optional[dict], ours: dict, breakdown: bool = True) -> None:
    print(f"\n== {name}: {shape}")
    print(f"| {'call':<42} | {'chromadb':>10} | {'ours':>10} | {'chromadb / ours':>15} |")
    print(f"|{'-' * 44}|{'-' * 12}|{'-' * 12}|{'-' * 17}|")
    for key, label, unit in ROWS:
        mine = ours[key]
        other = None if theirs is None else theirs[key]
        if other is None or mine is None:
            ratio = "-"
        elif key in HIGHER_IS_BETTER:
            ratio = f"{mine / other:.2f} (ours / theirs)"
        else:
            ratio = f"{other / mine:.2f}x"
        label = f"{label} [{unit}]" if unit else label
        print(f"| {label:<42} | {cell(other, unit):>10} | {cell(mine, unit):>10} | {ratio:>15} |")
    if not breakdown:
        return
    print(f"\nmemory of each process, MB (RSS now at each step; the steps add up to the RSS after them)")
    print(f"| {'step':<46} | {'chromadb':>10} | {'ours':>10} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 12}|")
    previous: dict = {}
    for key, label in BREAKDOWN:
        row = []
        for result in (theirs, ours):
            value = None if result is None else result.get(key)
            if key.startswith("rss_") and key != "rss_open_mb" and value is not None:
                row.append(f"+{value - previous[id(result)]:.0f}")
            else:
                row.append(cell(value, "MB"))
            if key.startswith("rss_") and value is not None:
                previous[id(result)] = value
        print(f"| {label:<46} | {row[0]:>10} | {row[1]:>10} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds); chromadb is skipped if it cannot be installed")
    parser.add_argument("--skip-chromadb", action="store_true", help="run our side only")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--profile-add", action="store_true", help="print cProfile's view of each side's add")
    parser.add_argument("--server", action="store_true",
                        help="each side as its own HTTP server (chromadb's `chroma run`, ours `chroma run`), "
                             "timed from a client process")
    parser.add_argument("--data-set", action="append", choices=list(DATA_SETS), help="repeatable; default both")
    parser.add_argument("--url", help=argparse.SUPPRESS)
    # the side subprocess
    parser.add_argument("--side", choices=["chromadb", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["build", "reopen"], help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side_main(args)
        return

    in_ci = os.environ.get("CI", "").lower() == "true"
    theirs_python: Optional[Path] = None
    if not args.skip_chromadb:
        try:
            theirs_python = chromadb_python()
        except RuntimeError as exc:
            if in_ci or not args.quick:
                raise SystemExit(f"chromadb could not be installed: {exc}")
            print(f"\n*** chromadb's side SKIPPED: it could not be installed ({str(exc).splitlines()[0]}) ***\n")
    queries = QUICK_QUERIES if args.quick else QUERIES
    load = os.getloadavg()
    print(f"chromadb {chromadb_version(theirs_python) if theirs_python else '(skipped)'} against ours "
          f"(python {sys.executable}); {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-vs-chromadb-") as scratch:
        root = Path(scratch)
        for name, (n, d, space, documents) in DATA_SETS.items():
            if args.data_set and name not in args.data_set:
                continue
            if args.quick:
                n, d = QUICK_SIZES[name]
            make_data(root, name, n, d, space, documents, queries)
            truth = np.load(root / f"{name}.truth.npy")
            sides = {"ours": Path(sys.executable)}
            if theirs_python is not None:
                sides["chromadb"] = theirs_python
            for side, python in sides.items():
                store = root / f"{side}-{name}"
                if args.server:
                    with serving(side, python, store) as (url, pid):
                        measured = run_side(python, side, "build", name, root, store, queries, args.profile_add, url)
                        measured["peak_rss_mb"] = peak_rss_of_mb(pid)
                    measured["reopen_s"] = None
                else:
                    measured = run_side(python, side, "build", name, root, store, queries, args.profile_add)
                    measured.update(run_side(python, side, "reopen", name, root, store, queries))
                measured["recall"] = recall(measured.pop("found"), truth)
                results.setdefault(name, {})[side] = measured
                shutil.rmtree(store, ignore_errors=True)
            docs = ", ~100-character documents" if documents else ""
            where = ("; over HTTP, each side's own server (peak RSS: the server's; no reopen)" if args.server
                     else "")
            print_table(name, f"{n:,} x {d}, {space}, two metadata keys{docs}, batches of {BATCH:,}{where}",
                        results[name].get("chromadb"), results[name]["ours"], breakdown=not args.server)
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
