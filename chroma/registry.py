"""Which class implements each configurable part, imported only when chosen.

Each table maps a setting value to the dotted path of its class and, for an
implementation that needs an optional package, the extra that installs it. A
lookup imports the class on first use, so ``import chroma`` pulls in none of
the heavy dependencies of implementations that are not configured.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from chroma.errors import ConfigurationError, MissingDependency


class Implementation(NamedTuple):
    path: str
    """``package.module.ClassName``"""
    extra: str | None = None
    """The ``pip install 'chroma[EXTRA]'`` that brings its dependencies."""
    serves: tuple[str, ...] = ()
    """A server's transports (``"http"``, ``"flight"``), in the order ``chroma run`` gives their ports."""


API_IMPLS: dict[str, Implementation] = {
    "local": Implementation("chroma.api.local.Local"),
    # The HTTP client needs only requests, a base dependency; the Flight client pyarrow.
    "fastapi": Implementation("chroma.api.fastapi.FastAPI"),
    "arrowflight": Implementation("chroma.api.arrowflight.ArrowFlight"),
    "celery": Implementation("chroma.api.celery.Celery", extra="server"),
}

DB_IMPLS: dict[str, Implementation] = {
    "duckdb": Implementation("chroma.db.duckdb.DuckDB"),
    "persistent_duckdb": Implementation("chroma.db.duckdb.PersistentDuckDB"),
    "clickhouse": Implementation("chroma.db.clickhouse.Clickhouse", extra="server"),
    "chdb": Implementation("chroma.db.chdb.Chdb", extra="chdb"),
}

SERVER_IMPLS: dict[str, Implementation] = {
    "fastapi": Implementation("chroma.server.fastapi.FastAPI", extra="server", serves=("http",)),
    "arrowflight": Implementation("chroma.server.arrowflight.ArrowFlight", serves=("flight",)),
    "flight": Implementation("chroma.server.arrowflight.ArrowFlight", serves=("flight",)),
    # the first server above of each transport, over one Local
    "both": Implementation("chroma.server.both.Both", extra="server", serves=("http", "flight")),
}

INDEX_IMPLS: dict[str, Implementation] = {
    "hnsw": Implementation("chroma.index.hnsw.HnswIndex"),
    "flat": Implementation("chroma.index.flat.FlatIndex"),
    "hnswlib": Implementation("chroma.index.hnswlib.Hnswlib", extra="hnswlib"),
}

TABLES: dict[str, dict[str, Implementation]] = {
    "api_impl": API_IMPLS,
    "db_impl": DB_IMPLS,
    "server_impl": SERVER_IMPLS,
    "index_impl": INDEX_IMPLS,
}


def check(setting: str, name: str) -> Implementation:
    """The registration of ``name`` for ``setting``, without importing anything.

    Raises:
        ConfigurationError: ``name`` is not registered for ``setting``.
    """
    table = TABLES[setting]
    impl = table.get(name)
    if impl is None:
        allowed = ", ".join(repr(n) for n in table) or "none in this version"
        raise ConfigurationError(f"setting {setting}={name!r} is not known; allowed values: {allowed}")
    return impl


def server_of(transport: str) -> type:
    """The first server class of ``SERVER_IMPLS`` that serves ``transport`` alone, imported now."""
    name = next(name for name, impl in SERVER_IMPLS.items() if impl.serves == (transport,))
    return lookup("server_impl", name)


def lookup(setting: str, name: str) -> type:
    """The class registered as ``name`` for ``setting``, imported now.

    Raises:
        ConfigurationError: ``name`` is not registered for ``setting``.
        MissingDependency: its optional dependency is not installed; the
            message names the extra to install.
    """
    impl = check(setting, name)
    module_name, _, class_name = impl.path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "chroma":
            raise
        hint = f"pip install 'chroma[{impl.extra}]'" if impl.extra else f"pip install {exc.name}"
        raise MissingDependency(
            f"{setting}={name!r} needs the package {exc.name!r}, which is not installed; install it with: {hint}"
        ) from exc
    if len(impl.serves) > 1:
        # a server of several transports is usable only if each transport's server can be imported
        for transport in impl.serves:
            try:
                server_of(transport)
            except MissingDependency as exc:
                raise MissingDependency(f"{setting}={name!r} serves {transport} with another server: {exc}") from exc
    return getattr(module, class_name)


def lazy_attributes(setting: str, module: str):
    """A module ``__getattr__`` that resolves class names of ``setting``'s table.

    ``chroma.db.DuckDB`` then imports ``chroma.db.duckdb`` on first access only.
    """

    def __getattr__(name: str) -> type:
        for key, impl in TABLES[setting].items():
            if impl.path.rsplit(".", 1)[1] == name:
                return lookup(setting, key)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
