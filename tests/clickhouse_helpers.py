"""A real ``clickhouse-server`` for tests (not a test module itself).

The server itself is started by ``chroma.bench.clickhouse_server``. When the
binary is missing, tests skip, except under ``CI=true``, where ``.ci/run``
installs the Debian package and a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chroma.bench.clickhouse_server import SERVER_BINARY, ClickhouseServer, server_available, start_clickhouse


def require_server() -> None:
    """Skips the calling test without a ClickHouse server; fails instead under CI=true."""
    if server_available():
        return
    message = f"{SERVER_BINARY} is not installed (apt-get install clickhouse-server)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def running_clickhouse(directory: Path) -> Iterator[ClickhouseServer]:
    """A ClickHouse server for the ``with`` block; skips (or fails under CI) without one."""
    require_server()
    server = start_clickhouse(directory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory / "data", ignore_errors=True)
