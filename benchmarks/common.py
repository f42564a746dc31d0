"""Small pieces the benchmark scripts share (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from chroma.bench.server_process import ServerProcess
from chroma.bench.report import cpu_model  # noqa: F401 - shared with the scripts
from chroma.bench.workload import seconds_until_answered  # noqa: F401 - shared with the scripts


def timed(action: Callable[[], object]) -> tuple[float, object]:
    """``(seconds, result)`` of one call."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


TRANSPORT_INDEX = "flat"
"""The index of the transport benchmarks, in process and in the server: exact, so both sides
answer alike and only the transport differs (a parallel HNSW build is not reproducible)."""


def start_server(workdir: Path, impl: str = "fastapi") -> ServerProcess:
    """``python -m chroma run --impl IMPL`` (in-memory DuckDB, TRANSPORT_INDEX) on free ports, once it answers.

    JSON bodies are not bounded apart (``max_json_request_bytes=0``): the benchmarks time the
    JSON encoding with the same batches as the binary one, beyond the default JSON bound."""
    return ServerProcess(workdir, impl=impl, settings={"index_impl": TRANSPORT_INDEX,
                                                        "max_json_request_bytes": 0}).start()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]
