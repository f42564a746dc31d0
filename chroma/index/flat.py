"""Exact search: every query compared with every (allowed) vector, in C++."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chroma import _core
from chroma.index import Index, as_labels, as_vectors


class FlatIndex(Index):
    """Exact nearest neighbours by the compiled core's SIMD kernels."""

    def __init__(self, dim: int, space: str, params: dict[str, Any]) -> None:
        super().__init__(dim, space, params)
        self._core = _core.FlatIndex(dim, space)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        self._core.add(as_labels(labels), as_vectors(vectors))

    def remove(self, labels: np.ndarray) -> None:
        self._core.remove(as_labels(labels))

    def search(
        self, queries: np.ndarray, k: int, allowed: Optional[np.ndarray] = None, num_threads: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            allowed = as_labels(allowed)
        return self._core.search(as_vectors(queries), k, allowed, num_threads)

    def __len__(self) -> int:
        return len(self._core)
