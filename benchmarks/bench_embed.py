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
The machine may be shared, so the two passes take turns: slice by slice of
the executor's chunk size (the baseline's batches are then exactly ours),
ours then the baseline, each slice's load average printed beside it; the
speed-up is the ratio of the summed times. "cosine min" is the smallest
cosine between our vector and the baseline's over every text. Then
add(documents=...) of the same texts into an in-memory Local collection,
between two timings of embedding them alone (the ratio is to their mean).

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
from chroma.embedding.executor import CHUNK_TEXTS, default_embedder, length_batches
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
    ours = np.empty((len(texts), 384), np.float32)
    baseline = np.empty_like(ours)
    ours_seconds = baseline_seconds = 0.0
    print(f"{'slice':<14}{'ours s':>8}{'base s':>8}{'ratio':>7}{'load':>6}")
    for start in range(0, len(texts), CHUNK_TEXTS):
        part = texts[start:start + CHUNK_TEXTS]
        began = time.perf_counter()
        ours[start:start + len(part)] = embedder.embed(part)
        ours_part = time.perf_counter() - began
        if start == 0:
            rss_ours = peak_rss_mb()  # before the baseline's first (and larger) temporaries
        began = time.perf_counter()
        part_ids = embedder.tokenize(part)
        for rows in length_batches(part_ids):
            baseline[start + rows] = encode_padded(embedder.weights, [part_ids[i] for i in rows])
        base_part = time.perf_counter() - began
        ours_seconds += ours_part
        baseline_seconds += base_part
        print(f"{start:>6}-{start + len(part):<7}{ours_part:>8.2f}{base_part:>8.2f}{base_part / ours_part:>7.2f}"
              f"{os.getloadavg()[0]:>6.1f}")
    rss_both = peak_rss_mb()

    cosines = np.sum(ours * baseline, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(baseline, axis=1))
    print(f"{'pass':<10}{'seconds':>9}{'texts/s':>10}{'tokens/s':>10}{'GFLOP/s':>9}")
    for name, seconds in (("ours", ours_seconds), ("baseline", baseline_seconds)):
        print(f"{name:<10}{seconds:>9.2f}{len(texts) / seconds:>10.0f}{tokens / seconds:>10.0f}"
              f"{flops / seconds / 1e9:>9.1f}")
    print(f"speed-up: {baseline_seconds / ours_seconds:.2f}x; cosine min to baseline {cosines.min():.7f}; "
          f"peak RSS {rss_before:.0f} MB before, {rss_ours:.0f} MB after our first slice, "
          f"{rss_both:.0f} MB after both passes")

    chroma.configure(db_impl="duckdb", index_impl="flat", api_impl="local")
    client = chroma.get_api()
    collection = client.create_collection("bench_embed", metadata={"hnsw:space": "cosine"})
    ids = [f"doc-{i}" for i in range(len(texts))]
    embed_seconds = []
    for step in ("embed", "add", "embed"):
        began = time.perf_counter()
        if step == "add":
            collection.add(ids=ids, documents=texts)
            add_seconds = time.perf_counter() - began
        else:
            embedder.embed(texts)
            embed_seconds.append(time.perf_counter() - began)
        print(f"  {step:<6}{time.perf_counter() - began:>8.2f} s  load {os.getloadavg()[0]:.1f}")
    alone = sum(embed_seconds) / len(embed_seconds)
    print(f"add(documents=...) {add_seconds:.2f} s, embedding alone {alone:.2f} s (mean of the two around it): "
          f"{add_seconds / alone:.2f}x")
    if collection.count() != len(texts):
        print("error: the collection did not get every text", file=sys.stderr)
        return 1
    if cosines.min() < 0.9999:
        print("error: a vector of ours differs from the baseline's (cosine < 0.9999)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
