"""What the benchmark runs over: (API, DB, index) combinations, and the servers they need.

A combination is written ``API-DB-INDEX``, e.g. ``local-duckdb-flat`` or
``fastapi-persistent_duckdb-flat``; each part is a name from
``chroma.registry``. ``running(combination, workdir)`` starts what the
combination needs on 127.0.0.1 (a ``chroma run`` subprocess for a remote API)
and yields the ``chroma.configure`` settings of its client.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from chroma import errors, registry
from chroma.bench.server_process import ServerProcess

REMOTE_APIS = {"fastapi": ("fastapi", "server_http_port"), "arrowflight": ("flight", "server_flight_port")}
"""Remote API implementations: the ``chroma run --impl`` serving them, the client setting taking its port."""
PERSISTENT_DBS = ("persistent_duckdb", "clickhouse", "chdb")
"""DBs whose data outlives the process: the reopen phase runs on them."""
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
CELERY_WORKERS = 2
"""``chroma worker`` processes started for a celery combination."""


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
                registry.lookup("server_impl", REMOTE_APIS[self.api][0])
            except errors.MissingDependency as exc:
                return str(exc)
        if self.db == "clickhouse":
            from chroma.bench.clickhouse_server import SERVER_BINARY, server_available

            if not server_available():
                return f"{SERVER_BINARY} is not installed (apt-get install clickhouse-server)"
        if self.api == "celery":
            from chroma.bench.celery_processes import REDIS_BINARY, redis_available

            if not registry.lookup("db_impl", self.db).shared:
                return f"api_impl='celery' needs a DB its workers share (clickhouse), not {self.db!r}"
            if not redis_available():
                return f"{REDIS_BINARY} is not installed (apt-get install redis-server)"
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
    with contextlib.ExitStack() as stack:
        db_settings: dict = {"db_impl": combination.db}
        if combination.db == "clickhouse":
            from chroma.bench.clickhouse_server import start_clickhouse

            clickhouse = start_clickhouse(workdir / "clickhouse")
            stack.callback(clickhouse.stop)
            db_settings = clickhouse.settings
        elif combination.persistent:
            db_settings["persist_directory"] = str(workdir / "data")
        settings = {"api_impl": combination.api, "index_impl": combination.index, "allow_reset": True,
                    **db_settings}
        if combination.api == "celery":
            from chroma.bench.celery_processes import WorkerProcess, start_redis

            redis = start_redis(workdir / "redis")
            stack.callback(redis.stop)
            settings.update(celery_broker_url=redis.url, celery_result_backend=redis.url)
            worker_settings = {key: value for key, value in settings.items() if key != "api_impl"}
            for number in range(CELERY_WORKERS):
                stack.callback(WorkerProcess(workdir, worker_settings, name=f"worker{number}").start().stop)
        if combination.api not in REMOTE_APIS:
            yield Setup(settings, None)
            return
        args = ["--db", combination.db]
        if "persist_directory" in db_settings:
            args += ["--path", db_settings["persist_directory"]]
        server_settings = {key: str(value) for key, value in db_settings.items()
                           if key.startswith("clickhouse_")}
        server = ServerProcess(workdir, *args, impl=REMOTE_APIS[combination.api][0],
                               settings={"index_impl": combination.index, "allow_reset": "1", **server_settings},
                               startup_timeout=STARTUP_TIMEOUT, stop_timeout=STOP_TIMEOUT).start()
        stack.callback(server.stop)
        port = server.port if server.port is not None else server.flight_port
        yield Setup({**settings, "server_host": "127.0.0.1", REMOTE_APIS[combination.api][1]: port}, server)


@dataclass
class Setup:
    settings: dict
    server: Optional[ServerProcess]


def own_peak_memory_bytes() -> int:
    """This process's peak resident memory."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
