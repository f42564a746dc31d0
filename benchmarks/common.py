"""Small pieces the benchmark scripts share (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time
from typing import Callable

from chroma.bench.report import cpu_model  # noqa: F401 - shared with the scripts


def timed(action: Callable[[], object]) -> tuple[float, object]:
    """``(seconds, result)`` of one call."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"
