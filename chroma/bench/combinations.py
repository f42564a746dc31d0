"""What the benchmark runs over: (API, DB, index) combinations, and the servers they need.

A combination is written ``API-DB-INDEX``, e.g. ``local-duckdb-flat`` or
``fastapi-persistent_duckdb-flat``; each part is a name from
``chroma.registry``. ``running(combination, workdir)`` starts what the
combination needs on 127.0.0.1 (a ``chroma run`` subprocess for a remote API)
and yields the ``chroma.configure`` settings of its client.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from chroma import errors, registry

REMOTE_APIS = {"fastapi": ("fastapi", "server_http_port"), "arrowflight": ("flight", "server_flight_port")}
"""Remote API implementations: the ``chroma run --impl`` serving them, the client setting taking its port."""
PERSISTENT_DBS = ("persistent_duckdb",)
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_LISTENING = re.compile(r"listening on \w+://[^\s]*:(\d+)")


@dataclass(frozen=True)
class Combination:
    api: str
    db: str
    index: str

    @property
    def name(self) -> str:
        return f"{self.api}-{self.db}-{self.index}"

    @property
    def persistent(self) -> bool:
        return self.db in PERSISTENT_DBS

    @classmethod
    def parse(cls, text: str) -> "Combination":
        """``API-DB-INDEX`` (the index may be left out: the default index)."""
        from chroma.config import Settings

        parts = text.strip().split("-")
        if len(parts) == 2:
            parts.append(Settings().index_impl)
        if len(parts) != 3:
            raise errors.InvalidArgument(f"combination {text!r} is not API-DB-INDEX, e.g. local-duckdb-flat")
        combination = cls(*parts)
        registry.check("api_impl", combination.api)
        registry.check("db_impl", combination.db)
        registry.check("index_impl", combination.index)
        return combination

    def missing(self) -> Optional[str]:
        """Why this combination cannot run here (a missing extra), or None."""
        for setting, name in (("api_impl", self.api), ("db_impl", self.db), ("index_impl", self.index)):
            try:
                registry.lookup(setting, name)
            except errors.MissingDependency as exc:
                return str(exc)
        if self.api in REMOTE_APIS:
            try:
                registry.lookup("server_impl", self.api)
            except errors.MissingDependency as exc:
                return str(exc)
        return None


def every_combination() -> list[Combination]:
    """Each registered API over each DB with the default index, then each other index on local-duckdb."""
    from chroma.config import Settings

    default_index = Settings().index_impl
    combinations = [Combination(api, db, default_index) for api in registry.API_IMPLS for db in registry.DB_IMPLS]
    combinations += [Combination("local", "duckdb", index) for index in registry.INDEX_IMPLS if index != default_index]
    return combinations


@contextlib.contextmanager
def running(combination: Combination, workdir: Path) -> Iterator["Setup"]:
    """Starts what ``combination`` needs; yields its :class:`Setup`; stops it all afterwards."""
    settings = {"api_impl": combination.api, "db_impl": combination.db, "index_impl": combination.index,
                "allow_reset": True}
    data = workdir / "data"
    if combination.persistent:
        settings["persist_directory"] = str(data)
    if combination.api not in REMOTE_APIS:
        yield Setup(settings, None)
        return
    server = Server(combination, workdir, data)
    server.start()
    try:
        yield Setup({**settings, "server_host": "127.0.0.1", REMOTE_APIS[combination.api][1]: server.port}, server)
    finally:
        server.stop()


@dataclass
class Setup:
    settings: dict
    server: Optional["Server"]


class Server:
    """``python -m chroma run`` for one combination, on a free port of 127.0.0.1."""

    def __init__(self, combination: Combination, workdir: Path, data: Path) -> None:
        self.combination = combination
        self.workdir = workdir
        self.data = data
        self.process: Optional[subprocess.Popen] = None
        self.port = 0

    def start(self) -> None:
        import chroma

        package_root = str(Path(chroma.__file__).resolve().parent.parent)
        env = {key: value for key, value in os.environ.items() if not key.startswith("CHROMA_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in [package_root, env.get("PYTHONPATH", "")] if p)
        env.update(CHROMA_INDEX_IMPL=self.combination.index, CHROMA_ALLOW_RESET="1")
        command = [sys.executable, "-m", "chroma", "run", "--impl", REMOTE_APIS[self.combination.api][0],
                   "--host", "127.0.0.1", "--port", "0", "--db", self.combination.db]
        if self.combination.persistent:
            command += ["--path", str(self.data)]
        log = self.workdir / "server.log"
        self.log = log
        with open(log, "a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            match = _LISTENING.search(log.read_text())
            if match:
                self.port = int(match.group(1))
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise errors.ServerUnavailable(f"chroma run for {self.combination.name} did not start:\n"
                                               f"{log.read_text()}")
            time.sleep(0.02)

    def peak_memory_bytes(self) -> int:
        """The server process's peak resident memory (VmHWM), 0 if unknown."""
        return _peak_memory_of(self.process.pid) if self.process else 0

    def restart(self) -> None:
        self.stop()
        self.log.write_text("")
        self.start()

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL if it does not stop in time; the exit status (None if never started)."""
        return terminate(self.process) if self.process is not None else None


def terminate(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM to ``process``, SIGKILL if it is still running after ``timeout`` seconds; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _peak_memory_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def own_peak_memory_bytes() -> int:
    """This process's peak resident memory."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
