"""Exact search: every query compared with every (allowed) vector, in C++."""

from __future__ import annotations

from typing import Any

from chroma import _core
from chroma.index.core import CoreIndex


class FlatIndex(CoreIndex):
    """Exact nearest neighbours by the compiled core's SIMD kernels."""

    def __init__(self, dim: int, space: str, params: dict[str, Any]) -> None:
        super().__init__(dim, space, params)
        self._core = _core.FlatIndex(dim, space)
