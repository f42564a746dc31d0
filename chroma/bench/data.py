"""Benchmark data: vectors, queries, filter buckets and exact ground truth.

Three sources, all giving a :class:`Dataset`:

- ``clustered``: a Gaussian mixture (the shape of real embeddings: dense
  clusters, not uniform noise); queries come from the same mixture.
- ``npy``: a user's own ``(n, d)`` ``.npy`` file of vectors, with an optional
  file of queries (else queries are held-out rows of the vectors).
- ``sentences``: real sentence embeddings (all-MiniLM-L6-v2, 384 dimensions)
  of generated sentences, by chroma's default model.

Every item gets a ``bucket`` in ``[0, BUCKETS)``, uniform and independent of
its vector, so ``{"bucket": {"$lt": s * BUCKETS}}`` selects a fraction ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from chroma import errors

BUCKETS = 1000
SOURCES = ("clustered", "npy", "sentences")


@dataclass
class Dataset:
    name: str
    vectors: np.ndarray  # (n, d) float32, C-contiguous
    queries: np.ndarray  # (q, d) float32
    buckets: np.ndarray  # (n,) int64 in [0, BUCKETS)
    space: str

    @property
    def ids(self) -> list[str]:
        return [f"id{i}" for i in range(len(self.vectors))]

    def describe(self) -> str:
        n, d = self.vectors.shape
        return f"{self.name}: {n:,} x {d} float32, {len(self.queries):,} queries, space {self.space}"


def clustered(n: int, dim: int, queries: int, clusters: int = 100, seed: int = 0, space: str = "l2") -> Dataset:
    """A mixture of ``clusters`` Gaussians; unit vectors when ``space`` is cosine."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim), dtype=np.float32) * 4.0

    def draw(count: int) -> np.ndarray:
        points = centers[rng.integers(0, clusters, count)] + rng.standard_normal((count, dim), dtype=np.float32)
        if space == "cosine":
            points /= np.linalg.norm(points, axis=1, keepdims=True)
        return np.ascontiguousarray(points, dtype=np.float32)

    vectors = draw(n)
    return Dataset(f"clustered({clusters})", vectors, draw(queries), _buckets(n, rng), space)


def from_npy(path: str, queries_path: Optional[str], queries: int, seed: int = 0, space: str = "l2") -> Dataset:
    """Vectors from ``path``; queries from ``queries_path`` or the last ``queries`` rows (held out)."""
    vectors = _load_matrix(path)
    if queries_path:
        query_vectors = _load_matrix(queries_path)
        if query_vectors.shape[1] != vectors.shape[1]:
            raise errors.InvalidArgument(
                f"{queries_path} has {query_vectors.shape[1]} dimensions, {path} has {vectors.shape[1]}")
    else:
        if len(vectors) <= queries:
            raise errors.InvalidArgument(f"{path} has {len(vectors)} rows: too few to hold out {queries} queries")
        vectors, query_vectors = vectors[:-queries], vectors[-queries:]
    rng = np.random.default_rng(seed)
    return Dataset(Path(path).name, np.ascontiguousarray(vectors), np.ascontiguousarray(query_vectors[:queries]),
                   _buckets(len(vectors), rng), space)


def sentences(n: int, queries: int, seed: int = 0) -> Dataset:
    """all-MiniLM-L6-v2 embeddings of ``n + queries`` generated sentences (cosine), by chroma's
    default model (its files as ``docs/embedding.md`` says; no torch).

    Raises:
        EmbeddingModelUnavailable: the model's files cannot be had.
    """
    from chroma import embedding

    rng = np.random.default_rng(seed)
    texts = [_sentence(rng) for _ in range(n + queries)]
    embedded = np.asarray(embedding.embed(texts), dtype=np.float32)
    return Dataset("all-MiniLM-L6-v2 sentences", np.ascontiguousarray(embedded[:n]),
                   np.ascontiguousarray(embedded[n:]), _buckets(n, rng), "cosine")


_SUBJECTS = "the cat|a database|my neighbour|the committee|an engineer|the river|a small bird|the old server".split("|")
_VERBS = "reads|builds|ignores|measures|crosses|answers|paints|indexes".split("|")
_OBJECTS = "the report|a bridge|every query|the morning news|a red apple|the vector store|a long letter|the map".split("|")
_ENDINGS = "today|with care|before lunch|in silence|for the team|again|at night|without a plan".split("|")


def _sentence(rng: np.random.Generator) -> str:
    return " ".join(part[rng.integers(len(part))] for part in (_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS))


def _buckets(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, BUCKETS, n).astype(np.int64)


def _load_matrix(path: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise errors.InvalidArgument(f"cannot read {path} as a .npy array: {exc}") from None
    if array.ndim != 2 or array.shape[1] == 0:
        raise errors.InvalidArgument(f"{path} must hold a 2-D (n, d) array, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def ground_truth(dataset: Dataset, queries: np.ndarray, k: int, allowed: Optional[np.ndarray] = None) -> np.ndarray:
    """Row numbers of the exact ``k`` nearest vectors per query (among ``allowed`` rows if given)."""
    from chroma import _core

    rows, _ = _core.exact_search(dataset.vectors, queries, k, dataset.space, allowed)
    return rows


def recall(found_ids: list[list[str]], truth_rows: np.ndarray) -> float:
    """Mean fraction of each query's exact neighbours that ``found_ids`` holds."""
    hits = total = 0
    for ids, rows in zip(found_ids, truth_rows):
        expected = {f"id{int(r)}" for r in rows}
        hits += len(expected.intersection(ids))
        total += len(expected)
    return hits / total if total else 1.0
