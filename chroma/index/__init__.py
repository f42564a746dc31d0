"""The vector index interface: what ``chroma.api.Local`` searches with.

An index is derived state: it holds each item's vector under the item's int64
label and can always be rebuilt from the DB. Implementations are chosen by the
``index_impl`` setting: ``hnsw`` (default: the compiled core's HNSW graph,
exact while the candidates are few), ``flat`` (exact search in the compiled
core), ``hnswlib`` (the hnswlib package; extra ``hnswlib``).
"""

from __future__ import annotations

import abc
import os
from typing import Any, Optional

import numpy as np

DEFAULT_SEARCH_EF = 64
"""Gives recall@10 >= 0.95 on both benchmark sets of ``benchmarks/bench_hnsw.py``
(100k x 128 Gaussian mixture, l2; 50k x 384 unit vectors, cosine); hnswlib's 10
gives about 0.65 on the first."""


class Index(abc.ABC):
    """Vectors by label, searchable by distance. Thread-safe."""

    def __init__(self, dim: int, space: str, params: dict[str, Any]) -> None:
        self.dim = dim
        self.space = space
        self.params = params

    @abc.abstractmethod
    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Adds vectors; a label already present gets its vector replaced."""

    @abc.abstractmethod
    def remove(self, labels: np.ndarray) -> None:
        """Removes labels; unknown ones are ignored."""

    @abc.abstractmethod
    def search(
        self, queries: np.ndarray, k: int, allowed: Optional[np.ndarray] = None, num_threads: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, distances)``, each (m, k'), nearest first.

        ``allowed`` restricts the search to those labels. ``k'`` is the smaller
        of ``k`` and the number of candidates: a filter never makes a result
        shorter than the candidates allow.
        """

    def set_search_ef(self, ef: int) -> None:
        """Sets the ef (candidate list size) of later searches; an exact index has none to set."""

    @abc.abstractmethod
    def __len__(self) -> int: ...


class Persistent(abc.ABC):
    """An index that can be kept, so that it need not be rebuilt from the DB: in a file beside a
    persistent DB (``chroma.index.saved``), or as bytes in a DB shared by processes (index
    snapshots, which ``chroma.api.Celery``'s workers build). An index without it is rebuilt."""

    @abc.abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to ``path`` atomically."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | os.PathLike) -> Index:
        """The index saved at ``path``, checked before use (raises IndexFileError)."""

    @abc.abstractmethod
    def labels(self) -> np.ndarray:
        """The live labels, ascending: a kept index is checked against the DB's before use."""

    @abc.abstractmethod
    def to_bytes(self) -> bytes:
        """The index as bytes, for keeping it in a shared DB."""

    @classmethod
    @abc.abstractmethod
    def from_bytes(cls, data: bytes) -> Index:
        """The index that :meth:`to_bytes` gave, checked before use (raises IndexFileError)."""


def as_labels(labels: np.ndarray) -> np.ndarray:
    """Labels as the contiguous int64 array the core reads without a copy."""
    return np.ascontiguousarray(labels, dtype=np.int64)


def as_vectors(vectors: np.ndarray) -> np.ndarray:
    """Vectors as the contiguous float32 array the core reads without a copy."""
    return np.ascontiguousarray(vectors, dtype=np.float32)
