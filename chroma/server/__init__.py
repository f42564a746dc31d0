"""``chroma.Server``: exposes a ``chroma.API`` to remote clients.

Implementations are registered in ``chroma.registry.SERVER_IMPLS`` and
imported on first use by ``chroma.get_server()``.
"""

from __future__ import annotations

import abc

from chroma import registry


class Server(abc.ABC):
    """A network front end of the configured API."""

    left_running: int = 0
    """Calls still running when ``run()`` returned: cut off at the end of the shutdown grace
    period, in code that could not be interrupted. The process exits without waiting for them."""

    @abc.abstractmethod
    def urls(self) -> list[str]:
        """Binds the listening sockets now (if not yet); returns where it serves, e.g. ``http://HOST:PORT``."""

    @abc.abstractmethod
    def run(self) -> None:
        """Serves until stopped (SIGTERM/SIGINT), then stops taking calls, lets the running ones
        finish within the ``shutdown_grace`` setting, cuts off the rest and returns."""


# chroma.server.<ClassName> imports its implementation on first access only.
__getattr__ = registry.lazy_attributes("server_impl", "chroma.server")
