"""Approximate search: the compiled core's HNSW graph (``csrc/hnsw.h``)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from chroma import _core, errors
from chroma.index import DEFAULT_SEARCH_EF, Persistent
from chroma.index.core import CoreIndex

DEFAULT_M = 16
DEFAULT_CONSTRUCTION_EF = 100


def index_params(params: dict[str, Any]) -> tuple[int, int, int]:
    """``(M, construction_ef, search_ef)`` from ``hnsw:*`` collection metadata, defaults filled in."""
    return (
        int(params.get("hnsw:M", DEFAULT_M)),
        int(params.get("hnsw:construction_ef", DEFAULT_CONSTRUCTION_EF)),
        int(params.get("hnsw:search_ef", DEFAULT_SEARCH_EF)),
    )


class HnswIndex(CoreIndex, Persistent):
    """HNSW in the compiled core: parallel build, in-walk filtering, and a
    planner that answers exactly when the candidates are few (a small
    collection, or a filter that allows few items), so those answers are exact."""

    def __init__(self, dim: int, space: str, params: dict[str, Any]) -> None:
        super().__init__(dim, space, params)
        M, construction_ef, search_ef = index_params(params)
        self._core = _core.HnswIndex(dim, space, M, construction_ef, search_ef)

    def set_search_ef(self, ef: int) -> None:
        """Sets the default ef of later searches."""
        self._core.ef_search = ef
        self.params = {**self.params, "hnsw:search_ef": ef}

    def labels(self) -> np.ndarray:
        """The live labels, ascending."""
        return self._core.labels()

    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to ``path`` atomically (a temporary file beside it, flushed, then renamed).

        Raises:
            OSError: the file cannot be written.
        """
        self._core.save(os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HnswIndex":
        """The index saved at ``path``, read in one read and checked completely before use.

        Raises:
            IndexFileError: the file is truncated, corrupted (a checksum or
                an internal count does not match), of another format version, or
                not an index file.
            OSError: the file cannot be read.
        """
        try:
            core = _core.HnswIndex.load(os.fspath(path))
        except _core.IndexFileError as exc:
            raise errors.IndexFileError(str(exc)) from None
        params = {"hnsw:M": core.M, "hnsw:construction_ef": core.ef_construction, "hnsw:search_ef": core.ef_search}
        index = cls.__new__(cls)
        super(HnswIndex, index).__init__(core.dim, core.space, params)
        index._core = core
        return index

    def to_bytes(self) -> bytes:
        """The index in its file format (what :meth:`save` writes), for keeping it in a shared DB."""
        with tempfile.TemporaryDirectory(prefix="chroma-index-") as directory:
            path = os.path.join(directory, "index.hnsw")
            self.save(path)
            with open(path, "rb") as file:
                return file.read()

    @classmethod
    def from_bytes(cls, data: bytes) -> "HnswIndex":
        """The index that :meth:`to_bytes` gave, checked completely before use.

        Raises:
            IndexFileError: the bytes are not a valid index file.
        """
        with tempfile.TemporaryDirectory(prefix="chroma-index-") as directory:
            path = os.path.join(directory, "index.hnsw")
            with open(path, "wb") as file:
                file.write(data)
            return cls.load(path)
