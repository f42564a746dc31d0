"""A ``python -m chroma run`` subprocess on 127.0.0.1, for the benchmarks and the tests.

The server binds free ports itself (``--port 0``) and prints them; the ports
are read back from its ``chroma server listening on URL`` lines, so no other
process can take a port between its choice and the bind. It runs the chroma
package this process imported (a source tree or site-packages) and sees
``settings`` as ``CHROMA_<SETTING>`` variables, no other ``CHROMA_*``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import chroma
from chroma.embedding.files import LOCATION_VARIABLES

PACKAGE_ROOT = Path(chroma.__file__).resolve().parent.parent
SCHEMES = {"fastapi": {"http"}, "flight": {"grpc"}, "both": {"http", "grpc"}}
"""``chroma run --impl`` choices and the URL schemes each one listens on (``https`` and ``grpc+tls``
over TLS)."""
_LISTENING = re.compile(r"^chroma server listening on (http|grpc)(s|\+tls)?://127\.0\.0\.1:(\d+)$", re.MULTILINE)


class ServerProcess:
    """``chroma run --impl IMPL ARGS`` in ``workdir``; ``start()`` returns once every heartbeat answers."""

    def __init__(self, workdir: Path, *args: str, impl: str = "fastapi", name: str = "server",
                 settings: Optional[dict] = None, startup_timeout: float = 30.0, stop_timeout: float = 30.0) -> None:
        self.workdir, self.args, self.impl, self.name = Path(workdir), args, impl, name
        self.settings = dict(settings or {})
        self.startup_timeout, self.stop_timeout = startup_timeout, stop_timeout
        self.stdout, self.stderr = self.workdir / f"{name}.stdout", self.workdir / f"{name}.stderr"
        self.process: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        """The HTTP port (None for a Flight-only server)."""
        self.flight_port: Optional[int] = None
        """The Flight port (None for an HTTP-only server)."""
        self.tls = False
        """Whether it serves TLS (``https``, ``grpc+tls``), as it said when it started."""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def flight_url(self) -> str:
        return f"{'grpc+tls' if self.tls else 'grpc'}://127.0.0.1:{self.flight_port}"

    def environment(self) -> dict:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("CHROMA_") or key in LOCATION_VARIABLES}
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")] if p)
        env.update({f"CHROMA_{key.upper()}": str(value) for key, value in self.settings.items()})
        return env

    def start(self) -> "ServerProcess":
        """Starts the process; returns once it listens and answers. Raises RuntimeError if it does not."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = ["--port", "0"] + (["--flight-port", "0"] if self.impl == "both" else [])
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chroma", "run", "--impl", self.impl, "--host", "127.0.0.1", *ports,
                 *self.args], stdout=out, stderr=err, env=self.environment(), cwd=PACKAGE_ROOT)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma run exited with status {self.process.returncode}\n{self.output()}")
            found = _LISTENING.findall(self.stdout.read_text())
            listening = {scheme: port for scheme, _, port in found}
            if set(listening) == SCHEMES[self.impl]:
                self.tls = any(tls for _, tls, _ in found)
                self.port = int(listening["http"]) if "http" in listening else None
                self.flight_port = int(listening["grpc"]) if "grpc" in listening else None
                if self.answers():
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"chroma run gave no heartbeat within {self.startup_timeout} s\n{self.output()}")
            time.sleep(0.05)

    def answers(self) -> bool:
        """Whether every server of the process answers its heartbeat (over TLS, whatever its certificate:
        the clients under test check it)."""
        import requests
        import urllib3

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                answer = None if self.port is None else requests.get(f"{self.url}/api/v1/heartbeat", timeout=1,
                                                                     verify=False)
            if answer is not None and answer.status_code != 200:
                return False
            if self.flight_port is not None:
                import pyarrow.flight as flight

                with flight.FlightClient(self.flight_url, disable_server_verification=self.tls) as client:
                    list(client.do_action(flight.Action("heartbeat", b""), options=flight.FlightCallOptions(timeout=1)))
        except Exception:  # not up yet, whichever client says so
            return False
        return True

    def output(self) -> str:
        read = lambda path: path.read_text() if path.exists() else ""  # noqa: E731
        return f"stdout:\n{read(self.stdout)}\nstderr:\n{read(self.stderr)}"

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL if it does not stop in time; the exit status (None if never started)."""
        return None if self.process is None else stop_process(self.process, self.stop_timeout)

    def restart(self) -> "ServerProcess":
        self.stop()
        return self.start()

    def peak_memory_bytes(self) -> int:
        """The process's peak resident memory (VmHWM; 0 where /proc does not tell)."""
        if self.process is None:
            return 0
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


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


def wait_until_answers(process: subprocess.Popen, url: str, timeout: float, what: str,
                       output: Callable[[], str]) -> None:
    """Waits until ``GET url`` answers 200; stops ``process`` and raises RuntimeError if it exits or times out."""
    import requests

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
            stop_process(process, 5.0)
            raise RuntimeError(f"{what} did not answer {url} within {timeout} s\n{output()}")
        time.sleep(0.05)


def free_port() -> int:
    """A port of 127.0.0.1 free right now (for servers that cannot bind port 0 and report it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
