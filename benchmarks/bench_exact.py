"""Exact k-NN search: chroma._core against numpy's best effort, same run.

numpy baseline (per space):
  batch  : scores = q @ x.T (l2 via |x|^2 - 2 q.x with |x|^2 precomputed,
           cosine with x normalized beforehand), np.argpartition along axis 1,
           then sort the k survivors;
  single : x @ q + np.argpartition + sort of the k survivors;
  matmul : the raw q @ x.T alone (a lower bound for any numpy approach).

FlatIndex rows (single query only, default SIMD path): "flat" forces the plain
float scan, "flat2pass" the 4-bit first pass + exact distances of the rows it
cannot rule out (what FlatIndex picks on its own for few queries), with
--threads threads (0: all cores, the rows split between them), "flat2p-1t"
the same on one thread; "exact" is the average number of rows per query whose
float distance was computed. They are timed in
rounds of warm blocks next to numpy ("numpy-blk"), because the index scans its
own copy of the table. OpenBLAS's threads spin for ~0.1 s after a call
(THREAD_TIMEOUT) and would take the cores of whatever runs next, so every
numpy block or batch is followed by a pause of SETTLE seconds before anything
else is timed. With threadpoolctl installed, "numpy-1t" times numpy's single
query with one BLAS thread too, to set beside "flat2p-1t": on a loaded machine
numpy's threaded gemv slows down far more than one-thread code does, so the
one-thread pair is the comparison that load does not distort.

Usage: python benchmarks/bench_exact.py [--n 100000 --d 128 --queries 1000 --k 10]
       python benchmarks/bench_exact.py --quick      # small sizes, CI smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from common import cpu_model

try:
    import chroma._core as core
except ImportError:  # running from a checkout without the package importable
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "chroma"))
    import _core as core  # type: ignore[no-redef]


def blas_info() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        text = f"{blas.get('name')} {blas.get('version')}"
        extra = blas.get("openblas configuration")
        if extra:
            text += f" ({' '.join(extra.split())})"
    except Exception:  # numpy < 1.25 has no mode="dicts"
        text = "unknown"
    try:
        from threadpoolctl import threadpool_info

        pools = [f"{p['internal_api']} threads={p['num_threads']}" for p in threadpool_info()]
        if pools:
            text += "; runtime: " + ", ".join(pools)
    except ImportError:
        pass
    return text


def make_data(kind: str, n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((n, d), dtype=np.float32)
    centers = rng.standard_normal((max(1, n // 1000), d), dtype=np.float32) * 4
    labels = rng.integers(0, len(centers), n)
    return (centers[labels] + rng.standard_normal((n, d), dtype=np.float32)).astype(np.float32)


SETTLE = 0.25


def one_blas_thread():
    """A context limiting numpy's BLAS to one thread, or None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return lambda: threadpool_limits(limits=1, user_api="blas")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class NumpyBaseline:
    def __init__(self, space: str, x: np.ndarray, k: int):
        self.space, self.k = space, k
        if space == "cosine":
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.where(norms > 0, norms, 1)
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.xx = (self.x * self.x).sum(1) if space == "l2" else None

    def _scores(self, s: np.ndarray) -> np.ndarray:
        # Smaller is better in every branch.
        if self.space == "l2":
            return self.xx - 2 * s
        return -s

    def _prep(self, q: np.ndarray) -> np.ndarray:
        if self.space == "cosine":
            n = np.linalg.norm(q, axis=-1, keepdims=True)
            q = q / np.where(n > 0, n, 1)
        return q

    def batch(self, q: np.ndarray) -> np.ndarray:
        s = self._scores(self._prep(q) @ self.x.T)
        top = np.argpartition(s, self.k - 1, axis=1)[:, : self.k]
        order = np.argsort(np.take_along_axis(s, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    def single(self, q: np.ndarray) -> np.ndarray:
        s = self._scores(self.x @ self._prep(q))
        top = np.argpartition(s, self.k - 1)[: self.k]
        return top[np.argsort(s[top])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="rows in the table")
    ap.add_argument("--d", type=int, default=128, help="dimension")
    ap.add_argument("--queries", type=int, default=1000, help="queries in the batch")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--data", choices=["gaussian", "clustered"], default="gaussian")
    ap.add_argument("--spaces", default="l2,ip,cosine")
    ap.add_argument("--single-runs", type=int, default=300, help="runs for single-query medians")
    ap.add_argument("--repeat", type=int, default=3, help="batch repetitions (best is kept)")
    ap.add_argument("--threads", type=int, default=0, help="num_threads for the core (0 = all)")
    ap.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run")
    args = ap.parse_args()
    if args.quick:
        args.n, args.queries, args.single_runs, args.repeat = 5_000, 64, 30, 1
        args.d = min(args.d, 64)
    k = min(args.k, args.n)

    x = make_data(args.data, args.n, args.d, seed=0)
    q = make_data(args.data, args.queries, args.d, seed=1)

    print(f"exact k-NN: n={args.n} d={args.d} batch={args.queries} k={k} data={args.data}")
    print(f"cpu: {cpu_model()} ({os.cpu_count()} logical cpus)")
    print(f"numpy {np.__version__}, BLAS: {blas_info()}")
    env = {v: os.environ[v] for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                      "OMP_NUM_THREADS", "CHROMA_SIMD") if v in os.environ}
    print(f"env: {env or 'none of OPENBLAS_*/OMP_NUM_THREADS/CHROMA_SIMD set'}")
    print(f"core simd paths: {core.available_simd_paths()} (default {core.simd_path()}), "
          f"threads={args.threads or 'all'}")
    print()

    header = (f"{'space':<7} {'impl':<9} {'batch ms':>9} {'queries/s':>10} {'x numpy':>8} "
              f"{'single ms':>10} {'x numpy':>8} {'agree':>6}")
    print(header)
    print("-" * len(header))
    default_path = core.simd_path()
    paths = core.available_simd_paths()
    flat_rows = {"flat": (False, args.threads), "flat2pass": (True, args.threads), "flat2p-1t": (True, 1)}
    for space in args.spaces.split(","):
        base = NumpyBaseline(space, x, k)
        index = core.FlatIndex(args.d, space)
        index.add(np.arange(args.n, dtype=np.int64), x)
        base.batch(q[:2])  # warm up
        ref = base.batch(q)

        def core_batch(path, space=space):
            core.set_simd_path(path)
            return core.exact_search(x, q, k, space, num_threads=args.threads)

        def core_single(path, v, space=space):
            core.set_simd_path(path)
            return core.exact_search(x, v, k, space, num_threads=args.threads)

        # Implementations are interleaved rep by rep (and query by query for
        # the single-query medians) so load from elsewhere on the machine hits
        # all of them alike; the ratios are more trustworthy than raw times.
        batch = {name: [] for name in ["numpy", "matmul", *paths]}
        for _ in range(max(2, args.repeat)):
            batch["numpy"].append(timed(lambda: base.batch(q)))
            batch["matmul"].append(timed(lambda: base.x @ q.T))
            time.sleep(SETTLE)
            for path in paths:
                batch[path].append(timed(lambda: core_batch(path)))
        single = {name: [] for name in ["numpy", *paths, *flat_rows]}
        for path in paths:
            core_single(path, q[0])
        reranked = []
        for i in range(args.single_runs):
            v = q[i % len(q)]
            single["numpy"].append(timed(lambda: base.single(v)))
            for path in paths:
                single[path].append(timed(lambda: core_single(path, v)))
        # FlatIndex reads its own copy of the table, so interleaving query by
        # query would leave it cold in cache while numpy's table stays hot.
        # Instead: rounds of short warm blocks per implementation, numpy
        # included again, so all three are compared in the same state.
        core.set_simd_path(default_path)
        block = max(5, args.single_runs // 10)
        limit_blas = one_blas_thread()
        numpy_rows = ["numpy-blk"] + (["numpy-1t"] if limit_blas else [])
        for name in numpy_rows:
            single[name] = []
        for r in range(10):
            for name in [*numpy_rows, *flat_rows]:
                for i in range(block):
                    v = q[(r * block + i) % len(q)]
                    if name == "numpy-blk":
                        single[name].append(timed(lambda: base.single(v)))
                    elif name == "numpy-1t":
                        with limit_blas():
                            single[name].append(timed(lambda: base.single(v)))
                    else:
                        two_pass, threads = flat_rows[name]
                        single[name].append(timed(lambda: index.search(
                            v, k, num_threads=threads, _two_pass=two_pass)))
                if name == "numpy-blk":
                    time.sleep(SETTLE)
        for i in range(min(len(q), args.single_runs)):
            reranked.append(index._search_stats(q[i], k, _two_pass=True)[2][0])
        np_batch, np_mm = min(batch["numpy"]), min(batch["matmul"])
        np_single = statistics.median(single["numpy"])
        print(f"{space:<7} {'numpy':<9} {np_batch * 1e3:9.1f} {args.queries / np_batch:10.0f} "
              f"{1.0:8.2f} {np_single * 1e3:10.3f} {1.0:8.2f} {'':>6}")
        print(f"{space:<7} {'(matmul)':<9} {np_mm * 1e3:9.1f} {args.queries / np_mm:10.0f} "
              f"{np_batch / np_mm:8.2f}")
        for path in paths:
            t_batch = min(batch[path])
            t_single = statistics.median(single[path])
            ids, _ = core_batch(path)
            agree = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids.tolist(), ref.tolist())])
            print(f"{space:<7} {path:<9} {t_batch * 1e3:9.1f} {args.queries / t_batch:10.0f} "
                  f"{np_batch / t_batch:8.2f} {t_single * 1e3:10.3f} {np_single / t_single:8.2f} "
                  f"{agree:6.3f}")
        np_blk = statistics.median(single["numpy-blk"])
        print(f"{space:<7} {'numpy-blk':<9} {'':>9} {'':>10} {'':>8} {np_blk * 1e3:10.3f} {1.0:8.2f}")
        np_1t = statistics.median(single["numpy-1t"]) if limit_blas else None
        if np_1t:
            print(f"{space:<7} {'numpy-1t':<9} {'':>9} {'':>10} {'':>8} {np_1t * 1e3:10.3f} {np_blk / np_1t:8.2f}")
        for name in flat_rows:
            t_single = statistics.median(single[name])
            extra = f"   exact {np.mean(reranked):.1f} rows/query" if name == "flat2pass" else ""
            if name == "flat2p-1t" and np_1t:
                extra = f"   x numpy-1t {np_1t / t_single:.2f}"
            print(f"{space:<7} {name:<9} {'':>9} {'':>10} {'':>8} {t_single * 1e3:10.3f} "
                  f"{np_blk / t_single:8.2f} {'':>6}{extra}")
        print()
    core.set_simd_path(default_path)
    print("batch: best of the repeats; single: median latency. x numpy = numpy time / core time "
          "(higher is better);\nnumpy-blk / flat / flat2pass: single query measured in warm "
          "blocks (x numpy against numpy-blk);\nflat = FlatIndex.search plain scan, flat2pass = "
          f"4-bit pass + exact distances (threads={args.threads or 'all'}), flat2p-1t = the same on one thread\n"
          "(its 'x numpy-1t' against numpy's single query with one BLAS thread, if threadpoolctl is installed);\n(matmul) row: the raw q @ x.T alone, its 'x numpy' = numpy batch / "
          "matmul. agree = top-k overlap with numpy's batch result.")


if __name__ == "__main__":
    main()
