"""``chroma.server.Both``: a server of each transport at once, over one API.

The servers are the registry's (``chroma.registry.SERVER_IMPLS``: the first of each
transport this implementation ``serves``). They share one :class:`chroma.api.local.Local`
over one opened DB, so a write through either is seen by the other at once (a persistent
directory can be opened by one process only, so two servers could not share it otherwise).
"""

from __future__ import annotations

from typing import Optional

from chroma import registry
from chroma.api.local import Local
from chroma.config import Settings
from chroma.server import Server


class Both(Server):
    """HTTP on ``server_http_port`` and Flight on ``server_flight_port``.

    ``run()`` serves until SIGTERM/SIGINT: then every server stops taking calls, the
    running HTTP requests and Flight calls finish (within the ``shutdown_grace``
    setting), and the DB is closed. The first server serves in the foreground (uvicorn
    takes the signals there) and stops the others when a signal starts its shutdown.
    """

    limits_at = "GET /api/v1/limits or the Flight action 'limits'"

    def __init__(self, settings: Settings, api: Optional[Local] = None) -> None:
        super().__init__(settings, api)
        self.servers: list[Server] = [registry.server_of(transport)(settings, api=self.api)
                                      for transport in registry.SERVER_IMPLS["both"].serves]
        self.front, *self.others = self.servers
        self.front.on_stop.extend(server.stop_taking_calls for server in self.others)

    def urls(self) -> list[str]:
        return [url for server in self.servers for url in server.urls()]

    def serve(self) -> None:
        self.front.serve()  # returns on SIGTERM/SIGINT, once running calls are answered or cut off

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def shutdown(self) -> int:
        return sum(server.shutdown() for server in self.servers)
