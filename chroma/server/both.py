"""``chroma.server.Both``: the HTTP and the Flight server at once, over one API.

Both front ends share one :class:`chroma.api.local.Local` over one opened DB,
so a write through either is seen by the other at once (a persistent
directory can be opened by one process only, so two servers could not share
it otherwise).
"""

from __future__ import annotations

from chroma import registry
from chroma.api.local import Local
from chroma.config import Settings
from chroma.server import Server
from chroma.server.arrowflight import ArrowFlight
from chroma.server.fastapi import FastAPI


class Both(Server):
    """HTTP on ``server_http_port`` and Flight on ``server_flight_port``.

    ``run()`` serves until SIGTERM/SIGINT: then both stop taking calls, the
    running HTTP requests and Flight calls finish (within the ``shutdown_grace``
    setting), and the DB is closed.
    """

    def __init__(self, settings: Settings) -> None:
        self._db = registry.lookup("db_impl", settings.db_impl)(settings)
        self.api = Local(settings, db=self._db)
        self.http = FastAPI(settings, api=self.api)
        self.flight = ArrowFlight(settings, api=self.api)
        self.http.on_stop.append(self.flight.stop_taking_calls)

    def urls(self) -> list[str]:
        return self.http.urls() + self.flight.urls()

    def run(self) -> None:
        self.urls()
        try:
            self.http.run()  # returns on SIGTERM/SIGINT, once running requests are answered or cut off
        finally:
            self.flight.shutdown()
            self.left_running = self.http.left_running + self.flight.left_running
            if not self.left_running:  # else a call may still be inside the DB
                self._db.close()
