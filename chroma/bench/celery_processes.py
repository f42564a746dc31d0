"""A real ``redis-server`` and ``chroma worker`` processes on 127.0.0.1, for the tests and the benchmarks.

Redis (the Debian package's ``redis-server``) runs on a free port with no
persistence, its files in one directory; workers are ``python -m chroma
worker`` subprocesses configured like the server processes of
``chroma.bench.server_process`` (``CHROMA_<SETTING>`` variables, nothing else
of this process's ``CHROMA_*``). Both are stopped by PID.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from chroma.bench.server_process import PACKAGE_ROOT, free_port, stop_process
from chroma.embedding.files import LOCATION_VARIABLES

REDIS_BINARY = "/usr/bin/redis-server"
STARTUP_TIMEOUT = 30.0
_READY = re.compile(r"\bready\.", re.MULTILINE)


def redis_available() -> bool:
    return os.access(REDIS_BINARY, os.X_OK)


@dataclass
class RedisServer:
    process: subprocess.Popen
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.process, 5.0)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(directory: Path) -> RedisServer:
    """Starts ``redis-server`` on a free port of 127.0.0.1 (no persistence); waits until it answers PING."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(directory / "redis.log", "w") as log:
        process = subprocess.Popen(
            [REDIS_BINARY, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _answers_ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process, 5.0)
            raise RuntimeError(f"redis-server did not start:\n{(directory / 'redis.log').read_text()[-3000:]}")
        time.sleep(0.02)
    return RedisServer(process, port, directory)


@dataclass
class WorkerProcess:
    """``python -m chroma worker`` in ``workdir`` with ``settings`` as its only ``CHROMA_*`` variables."""

    workdir: Path
    settings: dict
    name: str = "worker"
    concurrency: int = 1
    python_path: list = field(default_factory=list)
    """More import paths for the worker (a module its ``embedding_function`` names)."""
    process: Optional[subprocess.Popen] = field(default=None, init=False)

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> "WorkerProcess":
        """Starts the worker; returns once it reports itself ready. Raises RuntimeError if it does not."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("CHROMA_") or key in LOCATION_VARIABLES}
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PACKAGE_ROOT), *self.python_path,
                                                         env.get("PYTHONPATH", "")] if p)
        env.update({f"CHROMA_{key.upper()}": str(value) for key, value in self.settings.items()})
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chroma", "worker", "--concurrency", str(self.concurrency),
                 "--name", f"{self.name}-{os.getpid()}@%h"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PACKAGE_ROOT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _READY.search(self.log.read_text()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"chroma worker did not become ready:\n{self.output()}")
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.log.read_text()[-6000:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the worker dies at once, mid-task if it runs one."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> Optional[int]:
        return None if self.process is None else stop_process(self.process, 10.0)
