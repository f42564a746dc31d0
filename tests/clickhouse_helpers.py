"""A real ``clickhouse-server`` for tests (not a test module itself).

The server itself is started by ``chroma.bench.clickhouse_server``. When the
binary is missing, tests skip, except under ``CI=true``, where ``.ci/run``
installs the Debian package and a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from chroma.bench.clickhouse_server import SERVER_BINARY, ClickhouseServer, server_available, start_clickhouse
from required_services import require_service


def require_server() -> None:
    """Skips the calling test without a ClickHouse server; fails instead under CI=true."""
    require_service(server_available(), f"{SERVER_BINARY} is not installed (apt-get install clickhouse-server)")


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
