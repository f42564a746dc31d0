"""``chroma bench``: one workload over chosen (API, DB, index) combinations.

    chroma bench --quick                                  # every combination that can run here, small data
    chroma bench --combinations local-duckdb-flat,fastapi-duckdb-flat --n 100000 --dim 128
    chroma bench --data npy --vectors my.npy [--queries-file q.npy] --space cosine
    chroma bench --baseline local-duckdb-flat --output results/   # table + results.json + PNG plots

Each combination runs in a process of its own (``chroma.bench.workload``)
over the same data, with the servers it needs started on 127.0.0.1; the
driver computes exact ground truth once, then prints a table of medians with
ratios against the baseline combination, writes every figure with the
environment to ``results.json`` and draws ``latency.png`` (bars per
combination) and ``recall_qps.png`` (recall@10 against queries per second,
one curve per index; see :mod:`chroma.bench.curves`).
"""

from __future__ import annotations

import argparse
from importlib import metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from chroma import errors

DEFAULT_SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)


def parser(prog: str = "chroma bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--combinations", default=None, metavar="LIST",
                   help="comma-separated API-DB-INDEX names (default: every one that can run here)")
    p.add_argument("--baseline", default=None, help="the combination ratios are taken against (default: the first)")
    p.add_argument("--data", choices=("clustered", "npy", "sentences"), default="clustered")
    p.add_argument("--vectors", default=None, metavar="FILE.npy", help="--data npy: an (n, d) float32 array")
    p.add_argument("--queries-file", default=None, metavar="FILE.npy", help="--data npy: queries (else held out)")
    p.add_argument("--space", choices=("l2", "cosine", "ip"), default=None,
                   help="distance (default l2; cosine for sentences)")
    p.add_argument("--n", type=int, default=100_000, help="vectors to add (clustered, sentences)")
    p.add_argument("--dim", type=int, default=128, help="dimensions (clustered)")
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--queries", type=int, default=1_000, help="queries in the batch query")
    p.add_argument("--single-queries", type=int, default=200)
    p.add_argument("--batch", type=int, default=10_000, help="vectors per add call")
    p.add_argument("--selectivities", default=",".join(f"{s:g}" for s in DEFAULT_SELECTIVITIES),
                   help="fractions of items a filtered query allows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="bench-results", metavar="DIR", help="where results.json and the plots go")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quick", action="store_true", help="5,000 x 32, small phases: a smoke run in well under 2 minutes")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "chroma bench") -> int:
    args = parser(prog).parse_args(argv)
    try:
        return run(args)
    except errors.ChromaError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def sizes_of(args: argparse.Namespace) -> dict:
    if args.quick:
        return {"n": 5_000, "dim": 32, "batch": 1_000, "batch_queries": 200, "single_queries": 50,
                "filtered_queries": 20, "get_ids": 200, "repeats": 5, "update": 100, "delete": 100}
    return {"n": args.n, "dim": args.dim, "batch": args.batch, "batch_queries": args.queries,
            "single_queries": args.single_queries, "filtered_queries": max(20, args.single_queries // 4),
            "get_ids": 1_000, "repeats": 10, "update": 1_000, "delete": 1_000}


def run(args: argparse.Namespace) -> int:
    from chroma.bench import combinations as combos
    from chroma.bench import data, progress, report

    sizes = sizes_of(args)
    selectivities = [float(s) for s in args.selectivities.split(",") if s.strip()]
    for s in selectivities:
        if not 0 < s <= 1:
            raise errors.InvalidArgument(f"--selectivities: {s} is not a fraction in (0, 1]")
    chosen = ([combos.Combination.parse(name) for name in args.combinations.split(",")] if args.combinations
              else combos.every_combination())
    runnable, skipped = [], []
    for combination in chosen:
        why = combination.missing()
        (skipped.append((combination, why)) if why else runnable.append(combination))
    if args.combinations and skipped:
        raise errors.MissingDependency("; ".join(f"{c.name}: {why}" for c, why in skipped))
    if not runnable:
        raise errors.InvalidArgument("no combination can run here")
    if args.baseline and args.baseline not in {c.name for c in runnable}:
        raise errors.InvalidArgument(f"--baseline {args.baseline!r} is not among the combinations run: "
                                     f"{', '.join(c.name for c in runnable)}")

    total_queries = max(sizes["batch_queries"], sizes["single_queries"], sizes["filtered_queries"])
    if args.data == "clustered":
        dataset = data.clustered(sizes["n"], sizes["dim"], total_queries, args.clusters, args.seed,
                                 args.space or "l2")
    elif args.data == "npy":
        if not args.vectors:
            raise errors.InvalidArgument("--data npy needs --vectors FILE.npy")
        dataset = data.from_npy(args.vectors, args.queries_file, total_queries, args.seed, args.space or "l2")
    else:
        dataset = data.sentences(sizes["n"], total_queries, args.seed)
    sizes["n"], sizes["dim"] = dataset.vectors.shape
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    print(f"data: {dataset.describe()}")
    for combination, why in skipped:
        print(f"skipped {combination.name}: {why}")

    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="chroma-bench-data-") as scratch:
        job = _prepare(Path(scratch), dataset, sizes, selectivities)
        bar = progress.Bar(len(runnable), "combinations")
        for combination in runnable:
            bar.describe(combination.name)
            results.append(_run_one(Path(scratch), job, combination, bar))
            bar.advance()
        bar.close()
        curves = []
        if not args.no_plots:
            from chroma.bench import curves as curve_module

            curves = curve_module.recall_qps(dataset, sorted({c.index for c in runnable}),
                                             np.load(job["truth"]["all"]), quick=args.quick)

    baseline = args.baseline or results[0]["combination"]
    print()
    print(report.table(results, baseline))
    document = {"environment": environment(), "data": dataset.describe(), "sizes": sizes,
                "selectivities": selectivities, "baseline": baseline, "results": results, "curves": curves,
                "skipped": {c.name: why for c, why in skipped}}
    (output / "results.json").write_text(json.dumps(document, indent=2))
    written = [output / "results.json"]
    if not args.no_plots:
        written += report.plots(results, curves, output)
    print("\nwrote " + ", ".join(str(path) for path in written))
    return 0


def _prepare(scratch: Path, dataset, sizes: dict, selectivities: list[float]) -> dict:
    """Writes the data and the exact ground truth of every query phase; the job template."""
    from chroma.bench.data import BUCKETS, ground_truth

    paths = {name: scratch / f"{name}.npy" for name in ("vectors", "queries", "buckets")}
    np.save(paths["vectors"], dataset.vectors)
    np.save(paths["queries"], dataset.queries)
    np.save(paths["buckets"], dataset.buckets)
    truth = {"all": ground_truth(dataset, dataset.queries, 10)}
    for s in selectivities:
        allowed = np.flatnonzero(dataset.buckets < int(round(s * BUCKETS)))
        truth[f"{s:g}"] = ground_truth(dataset, dataset.queries[: sizes["filtered_queries"]], 10, allowed)
    truth_paths = {}
    for key, rows in truth.items():
        truth_paths[key] = str(scratch / f"truth-{key}.npy")
        np.save(truth_paths[key], rows)
    return {"vectors": str(paths["vectors"]), "queries": str(paths["queries"]), "buckets": str(paths["buckets"]),
            "truth": truth_paths, "sizes": sizes, "selectivities": selectivities, "space": dataset.space}


def _run_one(scratch: Path, template: dict, combination, bar) -> dict:
    job = {**template, "combination": combination.name, "output": str(scratch / f"{combination.name}.json")}
    job_path = scratch / f"{combination.name}.job.json"
    job_path.write_text(json.dumps(job))
    import chroma

    env = dict(os.environ)
    package_root = str(Path(chroma.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [package_root, env.get("PYTHONPATH", "")] if p)
    started = time.perf_counter()
    # cwd away from a source checkout: "-m" puts the cwd first, and its chroma/ has no compiled core
    process = subprocess.Popen([sys.executable, "-m", "chroma.bench.workload", str(job_path)],
                               stderr=subprocess.PIPE, text=True, env=env, cwd=scratch)
    log = []
    for line in process.stderr:
        log.append(line)
        if line.startswith("phase "):
            bar.describe(f"{combination.name}: {line[6:].strip()}")
    if process.wait() != 0:
        raise errors.ChromaError(f"the benchmark of {combination.name} failed:\n{''.join(log[-40:])}")
    figures = json.loads(Path(job["output"]).read_text())
    figures["wall_seconds"] = time.perf_counter() - started
    return figures


def environment() -> dict[str, Any]:
    """Versions, CPU and SIMD path, for results.json."""
    import chroma
    from chroma import _core

    versions = {"chroma": chroma.__version__, "python": platform.python_version(), "numpy": np.__version__}
    for package in ("duckdb", "pyarrow", "fastapi", "uvicorn", "requests", "hnswlib", "clickhouse-connect"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    from chroma.bench.report import cpu_model

    return {"versions": versions, "cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "simd": _core.simd_path()}
