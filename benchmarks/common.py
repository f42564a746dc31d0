"""Small pieces the benchmark scripts share (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import platform
import time
from typing import Callable


def cpu_model() -> str:
    """The CPU's model name, for the header of a results table."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(action: Callable[[], object]) -> tuple[float, object]:
    """``(seconds, result)`` of one call."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"
