"""Starting ``chroma run`` in a subprocess for tests (not a test module itself).

``impl`` chooses the server as ``chroma run --impl`` does: ``fastapi`` (HTTP on
``port``), ``flight`` (Arrow Flight on ``flight_port``) or ``both``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pyarrow.flight as flight
import pytest
import requests

import chroma
from chroma import errors
from chroma.api.local import Local
from chroma.config import Settings
from chroma.db.duckdb import DuckDB

# The directory holding the chroma package under test (the source tree or
# site-packages), so the server runs the same code as the tests.
PACKAGE_ROOT = Path(chroma.__file__).resolve().parent.parent
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen
    port: Optional[int]
    """The HTTP port (None for a Flight-only server)."""
    stdout: Path
    stderr: Path
    flight_port: Optional[int] = None
    """The Flight port (None for an HTTP-only server)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def flight_url(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    def answers(self) -> bool:
        """Whether every server of the process answers its heartbeat."""
        try:
            if self.port is not None and requests.get(f"{self.url}/api/v1/heartbeat", timeout=1).status_code != 200:
                return False
            if self.flight_port is not None:
                with flight.FlightClient(self.flight_url) as client:
                    list(client.do_action(flight.Action("heartbeat", b""), options=flight.FlightCallOptions(timeout=1)))
        except (requests.RequestException, flight.FlightError):
            return False
        return True

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def local_error(call) -> errors.ChromaError:
    """The error Local raises for ``call(local_client)``, on a fresh in-memory store."""
    settings = Settings(allow_reset=True)
    client = Local(settings, db=DuckDB(settings))
    with pytest.raises(errors.ChromaError) as raised:
        call(client)
    return raised.value


def server_env(**settings: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHROMA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")] if p)
    for key, value in settings.items():
        env[f"CHROMA_{key.upper()}"] = str(value)
    return env


def start_server(workdir: Path, *args: str, name: str = "server", impl: str = "fastapi",
                 **settings: str) -> RunningServer:
    """Starts ``python -m chroma run --impl IMPL`` and waits for its heartbeats.

    The server picks free ports itself (``--port 0``) and the ones it prints
    are used, so no other process can take a port between its choice and
    the bind. ``settings`` become ``CHROMA_<SETTING>`` environment variables
    of the server.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ports = ["--port", "0"] + (["--flight-port", "0"] if impl == "both" else [])
    stdout, stderr = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "chroma", "run", "--impl", impl, "--host", "127.0.0.1", *ports, *args],
            stdout=out, stderr=err, env=server_env(**settings), cwd=PACKAGE_ROOT,
        )
    server = RunningServer(process, None, stdout, stderr)
    schemes = {"fastapi": {"http"}, "flight": {"grpc"}, "both": {"http", "grpc"}}[impl]
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited with status {process.returncode}\n{server.output()}")
        listening = dict(re.findall(r"^chroma server listening on (\w+)://127\.0\.0\.1:(\d+)$",
                                    stdout.read_text(), flags=re.MULTILINE))
        if set(listening) == schemes:
            server.port = int(listening["http"]) if "http" in listening else None
            server.flight_port = int(listening["grpc"]) if "grpc" in listening else None
            if server.answers():
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"chroma run gave no heartbeat within {STARTUP_TIMEOUT} s\n{server.output()}")
        time.sleep(0.05)


@contextlib.contextmanager
def running_server(workdir: Path, *args: str, name: str = "server", impl: str = "fastapi",
                   **settings: str) -> Iterator[RunningServer]:
    server = start_server(workdir, *args, name=name, impl=impl, **settings)
    try:
        yield server
    finally:
        status = server.stop()
    if status != 0:  # a crash (e.g. a signal) must not pass unseen
        raise RuntimeError(f"chroma run ended with status {status}\n{server.output()}")
