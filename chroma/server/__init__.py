"""``chroma.Server``: exposes a ``chroma.API`` to remote clients.

Implementations are registered in ``chroma.registry.SERVER_IMPLS`` and
imported on first use by ``chroma.get_server()``. The base class owns what
every server does alike: it is built over a :class:`chroma.api.local.Local`
(opening the configured DB, or serving one it is given), checks its TLS
certificate and the default model at start-up, holds the bounds and the
running calls, and runs a server's life: serve until SIGTERM/SIGINT (or
:meth:`Server.stop`), stop taking calls, let the running ones finish within
``shutdown_grace``, cut off the rest (``chroma.server.calls``), close the DB.
A subclass says how it listens and serves (:meth:`Server.urls`,
:meth:`Server.serve`) and how it stops (:meth:`Server.shutdown`).
"""

from __future__ import annotations

import abc
import signal
import threading
from typing import TYPE_CHECKING, Callable, Optional

from chroma import registry

if TYPE_CHECKING:
    from chroma.api.local import Local
    from chroma.config import Settings


class Server(abc.ABC):
    """A network front end of the configured API."""

    left_running: int = 0
    """Calls still running when ``run()`` returned: cut off at the end of the shutdown grace
    period, in code that could not be interrupted. The process exits without waiting for them."""

    limits_at: str = ""
    """Where a client reads this server's bounds (named in the errors of the bounds)."""

    def __init__(self, settings: "Settings", api: Optional["Local"] = None) -> None:
        from chroma import embedding, tls
        from chroma.api.local import Local
        from chroma.server.bounds import Bounds
        from chroma.server.calls import RunningCalls

        self._certificate = tls.server_certificate(settings)
        embedding.ensure_available_for(settings.embedding_function)  # fail at start-up, not per request
        self._settings = settings
        # Without ``api``, the server opens (and on close closes) the configured DB itself.
        self._db = registry.lookup("db_impl", settings.db_impl)(settings) if api is None else None
        self.api = api if api is not None else Local(settings, db=self._db)
        self.bounds = Bounds(settings, self.limits_at)
        self.calls = RunningCalls()
        self.on_stop: list[Callable[[], None]] = []
        """Run when a signal starts the shutdown (``chroma.server.Both`` stops its other servers)."""

    @abc.abstractmethod
    def urls(self) -> list[str]:
        """Binds the listening sockets now (if not yet); returns where it serves, e.g. ``http://HOST:PORT``."""

    @abc.abstractmethod
    def serve(self) -> None:
        """Answers calls until stopped (a signal, :meth:`stop`)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Makes :meth:`serve` return (from a signal handler or another thread)."""

    def stop_taking_calls(self) -> None:
        """Refuses new calls from now on; the running ones go on (see :meth:`shutdown`)."""

    @abc.abstractmethod
    def shutdown(self) -> int:
        """Once :meth:`serve` returned: stops taking calls, lets the running ones finish within
        ``shutdown_grace`` and cuts off the rest; returns how many still run (abandoned)."""

    def run(self, on_listening: Callable[[list[str]], None] = lambda urls: None) -> None:
        """Serves until stopped (SIGTERM/SIGINT), then stops taking calls, lets the running ones
        finish within the ``shutdown_grace`` setting, cuts off the rest, closes the DB it opened
        (unless a call was left inside it) and returns.

        ``on_listening`` gets the server's addresses once they take calls. The signals are this
        server's before that, so a client that acts on the announcement (a signal the moment it
        is out) finds them handled: a signal in between would raise KeyboardInterrupt past the
        shutdown and leave the service's threads holding the process.
        """
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda number, frame: self.stop())
        try:
            on_listening(self.urls())
            self.serve()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.left_running = self.shutdown()
            if not self.left_running:  # else a call may still be inside the DB
                self.close()

    def close(self) -> None:
        """Closes the DB it opened, if any (a persistent directory's lock is released)."""
        if self._db is not None:
            self._db.close()


# chroma.server.<ClassName> imports its implementation on first access only.
__getattr__ = registry.lazy_attributes("server_impl", "chroma.server")
