"""The ``hnswlib`` package as an index (``index_impl="hnswlib"``, extra ``hnswlib``).

The benchmarks' baseline, and a choice for users who want it. Its filter is a
Python callable that hnswlib calls for every node the walk visits; this class
passes ``allowed`` that way, as early Chroma did.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import hnswlib
import numpy as np

from chroma import _core
from chroma.index import Index, as_labels, as_vectors
from chroma.index.hnsw import index_params

_INITIAL_CAPACITY = 1024
EXACT_CANDIDATES = 1024
"""Candidate sets up to this size are answered by exact search, as the core's planner answers
them (``kExactRows`` in csrc/hnsw.h): after updates and slot reuse, hnswlib's walk can miss the
nearest item or answer with a deleted label, which on a small set the user sees at once."""


class Hnswlib(Index):
    """hnswlib's HNSW graph behind :class:`chroma.index.Index`.

    Removal marks labels deleted and lets later inserts reuse their slots; the
    graph grows by doubling (``resize_index``). Writes and searches take one
    lock: hnswlib cannot search while it resizes.
    """

    def __init__(self, dim: int, space: str, params: dict[str, Any]) -> None:
        super().__init__(dim, space, params)
        self.M, self.construction_ef, self.search_ef = index_params(params)
        self._index = hnswlib.Index(space=space, dim=dim)
        self._index.init_index(
            max_elements=_INITIAL_CAPACITY, ef_construction=self.construction_ef, M=self.M, allow_replace_deleted=True
        )
        self._index.set_ef(self.search_ef)
        self._live: set[int] = set()
        self._lock = threading.Lock()

    def set_search_ef(self, ef: int) -> None:
        """Sets the default ef of later searches (at least k is used)."""
        with self._lock:
            self.search_ef = ef
            self._index.set_ef(ef)
        self.params = {**self.params, "hnsw:search_ef": ef}

    def add(self, labels: np.ndarray, vectors: np.ndarray, num_threads: int = 0) -> None:
        labels, vectors = as_labels(labels), as_vectors(vectors)
        if not len(labels):
            return
        with self._lock:
            # last occurrence wins, as in the core's indexes
            _, last = np.unique(labels[::-1], return_index=True)
            keep = np.sort(len(labels) - 1 - last)
            labels, vectors = labels[keep], vectors[keep]
            needed = self._index.get_current_count() + len(labels)
            capacity = self._index.get_max_elements()
            if needed > capacity:
                self._index.resize_index(max(needed, 2 * capacity))
            self._index.add_items(vectors, labels, num_threads=num_threads or -1, replace_deleted=True)
            self._live.update(labels.tolist())

    def remove(self, labels: np.ndarray) -> None:
        with self._lock:
            for label in as_labels(labels).tolist():
                if label in self._live:
                    self._index.mark_deleted(label)
                    self._live.discard(label)

    def search(
        self, queries: np.ndarray, k: int, allowed: Optional[np.ndarray] = None, num_threads: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_vectors(queries).reshape(-1, self.dim)
        with self._lock:
            candidates = self._live
            if allowed is not None:
                candidates = self._live.intersection(as_labels(allowed).tolist())
            kk = min(k, len(candidates))
            if kk == 0 or not len(queries):
                return np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0), np.float32)
            if len(candidates) <= EXACT_CANDIDATES:
                labels, distances = self._exact(queries, kk, candidates)
            else:
                labels, distances = self._walk(queries, kk, candidates, allowed is not None, num_threads)
        return labels.astype(np.int64), distances.astype(np.float32)

    def _walk(self, queries: np.ndarray, k: int, candidates: set[int], filtered: bool,
              num_threads: int) -> tuple[np.ndarray, np.ndarray]:
        self._index.set_ef(max(self.search_ef, k))
        try:
            labels, distances = self._index.knn_query(queries, k, num_threads=num_threads or -1,
                                                      filter=candidates.__contains__ if filtered else None)
        except RuntimeError:
            # hnswlib raises when its walk found fewer than k: answer exactly instead
            return self._exact(queries, k, candidates)
        if not all(map(candidates.__contains__, labels.ravel().tolist())):
            # a slot reused by replace_deleted can still answer with its deleted label
            return self._exact(queries, k, candidates)
        return labels, distances

    def _exact(self, queries: np.ndarray, k: int, candidates: set[int]) -> tuple[np.ndarray, np.ndarray]:
        # ascending labels: exact search breaks ties by row, so ties come back in insertion order
        pool = np.sort(np.fromiter(candidates, np.int64, len(candidates)))
        vectors = np.asarray(self._index.get_items(pool), dtype=np.float32)
        rows, distances = _core.exact_search(vectors, queries, k, self.space)
        return pool[rows], distances

    def __len__(self) -> int:
        return len(self._live)
