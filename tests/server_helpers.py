"""Starting ``chroma run`` in a subprocess for tests (not a test module itself).

``impl`` chooses the server as ``chroma run --impl`` does: ``fastapi`` (HTTP on
``port``), ``flight`` (Arrow Flight on ``flight_port``) or ``both``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chroma import errors
from chroma.api.local import Local
from chroma.bench.server_process import (  # noqa: F401 - re-exported for the tests
    PACKAGE_ROOT,
    ServerProcess,
    free_port,
    stop_process,
)
from chroma.config import Settings
from chroma.db.duckdb import DuckDB

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def local_error(call) -> errors.ChromaError:
    """The error Local raises for ``call(local_client)``, on a fresh in-memory store."""
    settings = Settings(allow_reset=True)
    client = Local(settings, db=DuckDB(settings))
    with pytest.raises(errors.ChromaError) as raised:
        call(client)
    return raised.value


def server_env(**settings: str) -> dict:
    """The environment of a server started with ``settings`` (``CHROMA_<SETTING>`` variables)."""
    return ServerProcess(Path("."), settings=settings).environment()


def start_server(workdir: Path, *args: str, name: str = "server", impl: str = "fastapi",
                 **settings: str) -> ServerProcess:
    """Starts ``python -m chroma run --impl IMPL ARGS`` and waits for its heartbeats (see ServerProcess)."""
    return ServerProcess(workdir, *args, impl=impl, name=name, settings=settings,
                         startup_timeout=STARTUP_TIMEOUT, stop_timeout=STOP_TIMEOUT).start()


@contextlib.contextmanager
def running_server(workdir: Path, *args: str, name: str = "server", impl: str = "fastapi",
                   **settings: str) -> Iterator[ServerProcess]:
    server = start_server(workdir, *args, name=name, impl=impl, **settings)
    try:
        yield server
    finally:
        status = server.stop()
    if status != 0:  # a crash (e.g. a signal) must not pass unseen
        raise RuntimeError(f"chroma run ended with status {status}\n{server.output()}")


def kill_with_a_call_in_flight(server: ServerProcess, port: int, call: Callable[[], None]) -> None:
    """Stops the server (SIGSTOP), runs ``call`` in a thread until its request has left for the
    server's ``port`` (unread there), then kills the server (SIGKILL) and waits for ``call`` to end."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 20
        while not bytes_in_flight_to(port):
            assert time.monotonic() < deadline, "the request never reached the server"
            time.sleep(0.01)
    finally:
        server.process.kill()
        os.kill(server.process.pid, signal.SIGCONT)
        server.process.wait()
    caller.join(timeout=30)
    assert not caller.is_alive(), "the call still waits for the killed server"


def bytes_in_flight_to(port: int) -> int:
    """Bytes sent to ``port`` on 127.0.0.1 and not yet read by the process listening there: waiting
    in its sockets' receive queues, or still in the senders' send queues."""
    waiting = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                sent, received = (int(queue, 16) for queue in fields[4].split(":"))
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    waiting += received
                elif int(fields[2].rsplit(":", 1)[1], 16) == port:
                    waiting += sent
    return waiting
