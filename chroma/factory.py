"""The factories: the argument-free singletons of each part per configuration, and
``Client(**settings)``, a client of its own."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

from chroma import config, registry
from chroma.config import Settings, current_settings

if TYPE_CHECKING:
    from chroma.api import API
    from chroma.api.shared import SharedStore
    from chroma.db import DB
    from chroma.server import Server

_lock = threading.RLock()
_settings: Settings | None = None
_instances: dict[str, Any] = {}
_db_store: Optional["SharedStore"] = None
"""The factory's reference on the store behind ``get_db()`` (for this configuration)."""


def _singleton(setting: str) -> Any:
    global _settings, _db_store
    settings = current_settings()
    with _lock:
        if settings != _settings:
            _forget_all()
            _settings = settings
        instance = _instances.get(setting)
        if instance is None or getattr(instance, "closed", False):
            if setting == "db_impl":
                from chroma.api import shared

                if _db_store is not None:
                    shared.release(_db_store)
                _db_store = None  # before acquire: a failure to open leaves nothing held
                _db_store = shared.acquire(settings)
                instance = _db_store.db
            else:
                cls = registry.lookup(setting, getattr(settings, setting))
                instance = cls(settings)
            _instances[setting] = instance
        return instance


def _forget_all() -> None:
    # A new configuration gives new parts. A client obtained before keeps working on its own
    # settings until it is closed (or collected); the factory's own reference on the old store is
    # given back, which closes it when no client uses it any more (a persistent directory's lock
    # is released then). A server is closed, newest part first.
    global _db_store
    _instances.pop("api_impl", None)
    _instances.pop("db_impl", None)
    for instance in reversed(list(_instances.values())):
        close = getattr(instance, "close", None)
        if close is not None:
            close()
    _instances.clear()
    if _db_store is not None:
        from chroma.api import shared

        store, _db_store = _db_store, None
        shared.release(store)


def get_api() -> API:
    """The configured :class:`chroma.API` (``api_impl``), one per configuration.

    Raises:
        ConfigurationError: a setting is unknown or malformed.
        MissingDependency: the implementation's optional package is missing.
    """
    return _singleton("api_impl")


def get_db() -> DB:
    """The configured :class:`chroma.DB` (``db_impl``), one per configuration: the very DB the
    configuration's clients in this process use (closing it closes it for them too)."""
    return _singleton("db_impl")


def get_server() -> Server:
    """The configured :class:`chroma.Server` (``server_impl``), one per configuration."""
    return _singleton("server_impl")


def Client(**settings: Any) -> API:  # noqa: N802 - the contract's name
    """Without arguments, :func:`get_api` (the configured singleton). With settings, a new
    client of its own over the configured settings for everything it does not name,
    independent of the singleton and of other clients; ``close()`` it, or use it in a
    ``with`` block, to release what it holds. Clients of one store in this process (one
    persistent directory, one ClickHouse database) share it and see each other's writes at once.

    Raises:
        ConfigurationError: a setting is unknown or malformed.
        MissingDependency: the implementation's optional package is missing.
    """
    if not settings:
        return get_api()
    resolved = config.resolve(**settings)
    return registry.lookup("api_impl", resolved.api_impl)(resolved)


def PersistentClient(path: Optional[str] = None, **settings: Any) -> API:  # noqa: N802 - chromadb's name
    """A new local client of the persistent directory ``path`` (default: ``persist_directory``).
    Alias for chromadb users: ``Client(api_impl="local", db_impl="persistent_duckdb", ...)``."""
    return Client(**{"api_impl": "local", "db_impl": "persistent_duckdb", "persist_directory": path, **settings})


def HttpClient(host: Optional[str] = None, port: Optional[int] = None, **settings: Any) -> API:  # noqa: N802
    """A new client of the chroma server at ``host``:``port`` (defaults: ``server_host``,
    ``server_http_port``). Alias for chromadb users: ``Client(api_impl="fastapi", ...)``."""
    return Client(**{"api_impl": "fastapi", "server_host": host, "server_http_port": port, **settings})


def EphemeralClient(**settings: Any) -> API:  # noqa: N802 - chromadb's name
    """A new in-memory client, a store of its own. Alias for chromadb users:
    ``Client(api_impl="local", db_impl="duckdb")``."""
    return Client(**{"api_impl": "local", "db_impl": "duckdb", **settings})
