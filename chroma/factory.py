"""The argument-free factories: one singleton of each part per configuration."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from chroma import registry
from chroma.config import Settings, current_settings

if TYPE_CHECKING:
    from chroma.api import API
    from chroma.db import DB
    from chroma.server import Server

_lock = threading.RLock()
_settings: Settings | None = None
_instances: dict[str, Any] = {}


def _singleton(setting: str) -> Any:
    global _settings
    settings = current_settings()
    with _lock:
        if settings != _settings:
            _close_all()
            _settings = settings
        instance = _instances.get(setting)
        if instance is None:
            cls = registry.lookup(setting, getattr(settings, setting))
            instance = cls(settings)
            _instances[setting] = instance
        return instance


def _close_all() -> None:
    # A new configuration replaces the old parts; closing them releases
    # what they hold (a persistent directory's lock above all). Newest first:
    # a client closes while the DB it was created on is still open (Local
    # records the DB's state beside the indexes it saves).
    for instance in reversed(list(_instances.values())):
        close = getattr(instance, "close", None)
        if close is not None:
            close()
    _instances.clear()


def get_api() -> API:
    """The configured :class:`chroma.API` (``api_impl``), one per configuration.

    Raises:
        ConfigurationError: a setting is unknown or malformed.
        MissingDependency: the implementation's optional package is missing.
    """
    return _singleton("api_impl")


def get_db() -> DB:
    """The configured :class:`chroma.DB` (``db_impl``), one per configuration."""
    return _singleton("db_impl")


def get_server() -> Server:
    """The configured :class:`chroma.Server` (``server_impl``), one per configuration."""
    return _singleton("server_impl")


def Client() -> API:  # noqa: N802 - the contract's name, an alias of get_api()
    """Alias of :func:`get_api`."""
    return get_api()
