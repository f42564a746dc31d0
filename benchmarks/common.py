"""Small pieces the benchmark scripts share (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import requests

from chroma.bench.report import cpu_model  # noqa: F401 - shared with the scripts


def timed(action: Callable[[], object]) -> tuple[float, object]:
    """``(seconds, result)`` of one call."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


# --------------------------------------------------------------------------
# A `chroma run` subprocess (the approach of tests/server_helpers.py)
# --------------------------------------------------------------------------

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


@dataclass
class Server:
    """A ``chroma run`` subprocess; ``port`` is its HTTP port, ``flight_port`` its Flight port (None: not served)."""

    process: subprocess.Popen
    port: Optional[int]
    flight_port: Optional[int]
    log: Path

    def stop(self) -> int:
        """SIGTERM to its PID, SIGKILL if it does not stop in time; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def answers(self) -> bool:
        """Whether its servers answer their heartbeats."""
        try:
            if self.port is not None:
                requests.get(f"http://127.0.0.1:{self.port}/api/v1/heartbeat", timeout=1).raise_for_status()
            if self.flight_port is not None:
                import pyarrow.flight as flight

                with flight.FlightClient(f"grpc://127.0.0.1:{self.flight_port}") as client:
                    list(client.do_action(flight.Action("heartbeat", b""), options=flight.FlightCallOptions(timeout=1)))
        except Exception:  # not up yet, whatever the client says
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(workdir: Path, impl: str = "fastapi") -> Server:
    """``python -m chroma run --impl IMPL`` (in-memory DuckDB) on free ports, once its heartbeats answer."""
    import chroma

    package_root = Path(chroma.__file__).resolve().parent.parent  # the server runs the code measured
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHROMA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(package_root), env.get("PYTHONPATH", "")] if p)
    port = None if impl == "flight" else free_port()
    flight_port = None if impl == "fastapi" else free_port()
    ports = {"fastapi": ["--port", str(port)], "flight": ["--port", str(flight_port)],
             "both": ["--port", str(port), "--flight-port", str(flight_port)]}[impl]
    log = workdir / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chroma", "run", "--impl", impl, "--host", "127.0.0.1", *ports],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=package_root,
        )
    server = Server(process, port, flight_port, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.answers():
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited with status {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"chroma run gave no heartbeat within {STARTUP_TIMEOUT} s:\n{log.read_text()}")
        time.sleep(0.05)
    return server


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]
