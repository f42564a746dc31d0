"""``chroma.db.Chdb``: the ClickHouse tables in chDB, a current ClickHouse engine inside this process."""

from __future__ import annotations

import os
from typing import Optional

import chdb  # noqa: F401 - imported here so that a missing package is reported by the registry
import clickhouse_connect

from chroma.config import Settings
from chroma.db import directory_write_problem
from chroma.db.clickhouse import QUERY_SETTINGS, Clickhouse


class Chdb(Clickhouse):
    """The same tables in chDB, a current ClickHouse engine inside this process.

    Data lives in ``persist_directory``; one process at a time (chDB is no
    server), so it is no store to share with other processes. It runs the very
    SQL of :class:`Clickhouse`, which is how the suite checks that SQL against
    a current engine.
    """

    shared = False

    @classmethod
    def store_key(cls, settings: Settings) -> tuple:
        return ("chdb", os.path.realpath(settings.persist_directory))

    def write_problem(self) -> Optional[str]:
        return directory_write_problem(os.path.abspath(self._settings.persist_directory),
                                       self._settings.min_free_disk_bytes)

    def _connect(self):
        directory = os.path.abspath(self._settings.persist_directory)
        os.makedirs(directory, exist_ok=True)
        return clickhouse_connect.get_client(
            dsn=f"chdb://{os.path.join(directory, 'chdb')}", query_limit=0,
            settings=QUERY_SETTINGS,
        )
