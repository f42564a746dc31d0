"""Starting ``chroma run`` in a subprocess for tests (not a test module itself)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

import chroma

# The directory holding the chroma package under test (the source tree or
# site-packages), so the server runs the same code as the tests.
PACKAGE_ROOT = Path(chroma.__file__).resolve().parent.parent
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def stop_process(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, then SIGKILL if it does not stop within ``timeout`` s; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_until_answers(process: subprocess.Popen, url: str, timeout: float, what: str, output: Callable[[], str]) -> None:
    """Waits until ``GET url`` answers 200; stops ``process`` and raises if it exits or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}\n{output()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            stop_process(process, STOP_TIMEOUT)
            raise RuntimeError(f"{what} did not answer {url} within {timeout} s\n{output()}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit status."""
        return stop_process(self.process, STOP_TIMEOUT)


def server_env(**settings: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHROMA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")] if p)
    for key, value in settings.items():
        env[f"CHROMA_{key.upper()}"] = str(value)
    return env


def start_server(workdir: Path, *args: str, name: str = "server", **settings: str) -> RunningServer:
    """Starts ``python -m chroma run`` on a free port and waits for its heartbeat.

    ``settings`` become ``CHROMA_<SETTING>`` environment variables of the server.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stdout, stderr = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "chroma", "run", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=out, stderr=err, env=server_env(**settings), cwd=PACKAGE_ROOT,
        )
    server = RunningServer(process, port, stdout, stderr)
    wait_until_answers(process, f"{server.url}/api/v1/heartbeat", STARTUP_TIMEOUT, "chroma run", server.output)
    return server


@contextlib.contextmanager
def running_server(workdir: Path, *args: str, name: str = "server", **settings: str) -> Iterator[RunningServer]:
    server = start_server(workdir, *args, name=name, **settings)
    try:
        yield server
    finally:
        status = server.stop()
    if status != 0:  # a crash (e.g. a signal) must not pass unseen
        raise RuntimeError(f"chroma run ended with status {status}\n{server.output()}")
