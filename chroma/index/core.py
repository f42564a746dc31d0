"""The part every index of the compiled core shares: the calls into it."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chroma.index import Index, as_labels, as_vectors


class CoreIndex(Index):
    """An :class:`Index` that forwards to a ``chroma._core`` index object in ``self._core``."""

    _core: Any

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        self._core.add(as_labels(labels), as_vectors(vectors))

    def remove(self, labels: np.ndarray) -> None:
        self._core.remove(as_labels(labels))

    def search(
        self, queries: np.ndarray, k: int, allowed: Optional[np.ndarray] = None, num_threads: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            allowed = as_labels(allowed)
        return self._core.search(as_vectors(queries), k, allowed, num_threads=num_threads)

    def __len__(self) -> int:
        return len(self._core)
