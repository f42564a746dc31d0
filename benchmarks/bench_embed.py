"""The default embedding model (all-MiniLM-L6-v2): our forward pass against a plain numpy pass, same run.

Texts: the paragraphs of the docstrings in the standard library's source (read
with ast, nothing imported; tests left out), distinct, in file order: real
short texts.

  ours     : chroma.embedding's executor (tokenize in chunks, the next chunk on
             a helper thread, batches of similar length, packed tokens, numpy
             BLAS for the matrix products, the compiled core's fused kernels).
  baseline : chroma.embedding.reference.encode_padded, the textbook numpy pass
             (padded batch + mask, one numpy operation per formula step), fed
             the same batches by length from the same tokenizer.

Both count real (unpadded) tokens only; GFLOP/s is the model's arithmetic on
those tokens (chroma.embedding.model.flops_per_token) over the wall time.
"cosine min" is the smallest cosine between our vector and the baseline's
over every text. Then add(documents=...) of the same texts into an in-memory
Local collection, against embedding them alone.

Usage: CHROMA_EMBEDDING_MODEL_DIR=DIR python benchmarks/bench_embed.py [--texts 10000]
       python benchmarks/bench_embed.py --quick      # 300 texts, CI smoke
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
from common import cpu_model

import chroma
from chroma.embedding.executor import default_embedder, length_batches
from chroma.embedding.model import flops_per_token
from chroma.embedding.reference import encode_padded


def stdlib_docstrings(count: int) -> list[str]:
    """Up to ``count`` distinct paragraphs of docstrings of the standard library, in file order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: dict[str, None] = {}
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                for paragraph in (ast.get_docstring(node) or "").split("\n\n"):
                    text = " ".join(paragraph.split())
                    if len(text) >= 10:
                        seen.setdefault(text, None)
                        if len(seen) >= count:
                            return list(seen)
    return list(seen)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="300 texts: a smoke run")
    args = parser.parse_args()
    count = 300 if args.quick else args.texts

    texts = stdlib_docstrings(count)
    embedder = default_embedder()
    print(f"cpu: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    print(f"texts: {len(texts)} stdlib docstring paragraphs, mean {np.mean([len(t) for t in texts]):.0f} chars")

    token_ids = embedder.tokenize(texts)
    lengths = np.array([len(ids) for ids in token_ids])
    tokens = int(lengths.sum())
    flops = float(sum(length * flops_per_token(embedder.weights, int(length)) for length in lengths))
    print(f"tokens: {tokens} real (mean {lengths.mean():.1f}, max {lengths.max()}), model arithmetic "
          f"{flops / 1e9:.1f} GFLOP")

    embedder.embed(texts[:64])  # first-call costs (thread start-up, page faults) out of both timings
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    ours = embedder.embed(texts)
    ours_seconds = time.perf_counter() - start
    rss_ours = peak_rss_mb()

    start = time.perf_counter()
    baseline = np.empty_like(ours)
    baseline_ids = embedder.tokenize(texts)
    for rows in length_batches(baseline_ids):
        baseline[rows] = encode_padded(embedder.weights, [baseline_ids[i] for i in rows])
    baseline_seconds = time.perf_counter() - start

    cosines = np.sum(ours * baseline, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(baseline, axis=1))
    print(f"{'pass':<10}{'seconds':>9}{'texts/s':>10}{'tokens/s':>10}{'GFLOP/s':>9}")
    for name, seconds in (("ours", ours_seconds), ("baseline", baseline_seconds)):
        print(f"{name:<10}{seconds:>9.2f}{len(texts) / seconds:>10.0f}{tokens / seconds:>10.0f}"
              f"{flops / seconds / 1e9:>9.1f}")
    print(f"speed-up: {baseline_seconds / ours_seconds:.2f}x; cosine min to baseline {cosines.min():.7f}; "
          f"peak RSS {rss_before:.0f} MB before ours, {rss_ours:.0f} MB after")

    chroma.configure(db_impl="duckdb", index_impl="flat", api_impl="local")
    client = chroma.get_api()
    collection = client.create_collection("bench_embed", metadata={"hnsw:space": "cosine"})
    ids = [f"doc-{i}" for i in range(len(texts))]
    start = time.perf_counter()
    collection.add(ids=ids, documents=texts)
    add_seconds = time.perf_counter() - start
    start = time.perf_counter()
    embedder.embed(texts)
    embed_seconds = time.perf_counter() - start
    print(f"add(documents=...) {add_seconds:.2f} s, embedding alone {embed_seconds:.2f} s: "
          f"{add_seconds / embed_seconds:.2f}x")
    if collection.count() != len(texts):
        print("error: the collection did not get every text", file=sys.stderr)
        return 1
    if cosines.min() < 0.9999:
        print("error: a vector of ours differs from the baseline's (cosine < 0.9999)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
