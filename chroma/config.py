"""Settings: from ``chroma.configure(...)``, else ``CHROMA_<SETTING>``, else defaults."""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from typing import Any, Optional

from chroma.errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclasses.dataclass(frozen=True)
class Settings:
    """One complete, validated configuration. Frozen, so it can key a cache."""

    api_impl: str = "local"
    db_impl: str = "duckdb"
    index_impl: str = "hnsw"
    server_impl: str = "fastapi"
    persist_directory: str = "./chroma_data"
    clickhouse_host: str = "127.0.0.1"
    clickhouse_port: int = 8123
    """HTTP port of the ClickHouse server (``db_impl="clickhouse"``)."""
    clickhouse_user: str = "default"
    clickhouse_password: Optional[str] = None
    clickhouse_database: str = "chroma"
    """ClickHouse database holding chroma's tables; created when missing."""
    server_host: str = "127.0.0.1"
    server_http_port: int = 8000
    server_flight_port: int = 8815
    """The Arrow Flight server's port (``chroma run --impl flight|both``); the ``arrowflight`` client's too."""
    celery_broker_url: Optional[str] = None
    """``api_impl="celery"``: the broker clients and workers share, e.g. ``redis://host:6379/0``."""
    celery_result_backend: Optional[str] = None
    """``api_impl="celery"``: where workers leave task results; defaults to the broker URL."""
    celery_write_threshold: int = 10_000
    """Celery: adds, upserts and updates of at least this many ids go to the workers, as do
    index builds of collections with at least this many items."""
    celery_chunk_size: int = 5_000
    """Celery: ids per worker task of a large write."""
    celery_query_threshold: int = 1_000
    """Celery: query batches of at least this many queries go to the workers."""
    celery_query_chunk_size: int = 250
    """Celery: queries per worker task of a large query batch."""
    celery_timeout: float = 120.0
    """Celery: seconds a call waits without any progress of its tasks before it fails with
    ``WorkerError`` (no worker running, or a worker died and none took its task again)."""
    celery_visibility_timeout: int = 60
    """Celery over Redis: seconds after which a task whose worker died unacknowledged is given
    to another worker. Keep it below ``celery_timeout`` so that such a call still succeeds."""
    server_tls_certfile: Optional[str] = None
    """Server: PEM file of the certificate (chain) to serve TLS with (``https://``,
    ``grpc+tls://``); needs ``server_tls_keyfile``. Unset: plain HTTP and gRPC."""
    server_tls_keyfile: Optional[str] = None
    """Server: PEM file of the private key of ``server_tls_certfile``."""
    server_tls: bool = False
    """Client: connect over TLS (``https://``, ``grpc+tls://``), checking the server's
    certificate and host name. A server with this set refuses to start without a certificate."""
    client_tls_ca_file: Optional[str] = None
    """Client: PEM bundle of the certificate authorities to trust (e.g. the one that signed a
    self-signed server certificate); unset, the system's trust store. Needs ``server_tls``."""
    client_connect_timeout: float = 10.0
    """Client (HTTP, Flight): seconds to wait for a connection to the server; past it the call
    raises ``ServerUnavailable`` and was never sent."""
    client_read_timeout: float = 330.0
    """Client (HTTP, Flight): seconds a call waits for its answer. Past it, a read raises
    ``ServerUnavailable`` and a write ``OutcomeUnknown`` (it may have been applied). Above the
    server's ``request_timeout``, so that a slow call gets the server's ``DeadlineExceeded``
    first: keep it above the longest legitimate call (a 1M-vector add takes about a minute)."""
    min_free_disk_bytes: int = 64 * 2**20
    """Readiness (``ready()``): a persistent store whose disk has less free space than this
    reports itself not writable (0: only a disk with no space left at all)."""
    auth_token: Optional[str] = None
    """Server: when set, every route except ``GET /api/v1/heartbeat``, ``/docs`` and
    ``/openapi.json`` needs ``Authorization: Bearer <auth_token>`` (401 ``Unauthorized``
    otherwise). Client: the token it sends."""
    shutdown_grace: float = 30.0
    """Server: seconds that running calls get to finish after SIGTERM or SIGINT (no new call is
    taken meanwhile); calls still running then are cut off (``OutcomeUnknown``) and the server
    exits with status 0."""
    allow_reset: bool = False
    """``reset()`` deletes everything only when true. Over HTTP, both the client's and
    the server's setting must be true."""
    embedding_function: Optional[str] = None
    """The embedding function of collections opened without one. Unset: the built-in default
    model, all-MiniLM-L6-v2 (``chroma.embedding``; on the server for HTTP and Flight clients);
    ``none``: no default (documents need embeddings); else the dotted path
    ``package.module:name`` of a callable, or of a class instantiated without arguments."""
    duckdb_memory_limit: str = "64MB"
    """``persistent_duckdb``: the most memory DuckDB's buffer pool (its cache of the DB file and
    the working memory of its statements) may take, as DuckDB writes sizes: ``64MB``, ``1GiB``
    (units KB/MB/GB/TB, or KiB/MiB/GiB/TiB). The file holds the data, so this bounds a cache;
    the in-memory ``duckdb``, whose data is that memory, takes no cap (docs/limits.md)."""
    num_threads: int = 0
    """Threads for index search; 0 means every core."""
    max_request_bytes: int = 256 * 2**20
    """Server: largest request body accepted (413 ``PayloadTooLarge`` above); 0 means no bound."""
    max_json_request_bytes: int = 4 * 2**20
    """Server: largest JSON request body (413 ``PayloadTooLarge`` above); 0 means no bound. Parsing
    JSON makes each number a Python object, many times the body's size, so JSON bodies get a
    bound of their own; the binary frame the Python client sends is bounded by
    ``max_request_bytes`` only. Reported by ``GET /api/v1/limits``."""
    max_batch_size: int = 100_000
    """Server: most ids (add/upsert/update/get/delete) or query embeddings in one request
    (413 ``PayloadTooLarge`` above); 0 means no bound. Reported by ``GET /api/v1/limits``."""
    max_n_results: int = 10_000
    """Server: largest ``n_results`` of a query (413 ``PayloadTooLarge`` above); 0 means no
    bound. Reported by ``GET /api/v1/limits``."""
    max_response_rows: int = 50_000
    """Server: most rows one answer may hold: a query's queries x ``n_results`` (as asked,
    checked before the search) and a get's rows (a get matching more is refused; page it
    with ``limit`` and ``offset``). 413 ``PayloadTooLarge`` above; 0 means no bound.
    Reported by ``GET /api/v1/limits``."""
    request_timeout: float = 300.0
    """Server: seconds one request may take, from its first byte to its answer; past it the
    server answers 504 ``DeadlineExceeded`` (Flight: TimedOut) and stops waiting for it
    (docs/limits.md says what stops). Generous by default: a collection's first query may
    build its index."""
    max_embedding_tokens: int = 1_000_000
    """Server: most tokens the default model embeds for one request (documents of a write or
    query texts; 413 ``PayloadTooLarge`` above); 0 means no bound. Reported by ``GET /api/v1/limits``."""
    cors_origins: Optional[str] = None
    """Server: comma-separated origins allowed by CORS (``*`` for any); none by default."""
    http_encoding: str = "binary"
    """HTTP client: how vectors travel, ``binary`` (raw float32, see ``chroma.wire``) or
    ``json`` (what curl sends; slower). The server understands both."""


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(Settings))
_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}

RENAMED_SETTINGS = {
    "chroma_api_impl": "api_impl",
    "chroma_db_impl": "db_impl",
    "chroma_server_host": "server_host",
    "chroma_server_http_port": "server_http_port",
}
"""Chroma 0.3's setting names that have another name here (deprecated aliases, see
docs/coming-from-chromadb.md for the policy)."""
RENAMED_VALUES = {
    ("api_impl", "rest"): "fastapi",
    ("db_impl", "duckdb+parquet"): "persistent_duckdb",
}
"""Chroma 0.3's setting values that have another name here (deprecated aliases)."""

_overrides: dict[str, Any] = {}
_overrides_lock = threading.Lock()
_warned: set[tuple[str, str]] = set()
"""Deprecated aliases read from the environment already warned about (once per process)."""


def configure(**settings: Any) -> None:
    """Set settings for this process, on top of earlier ``configure`` calls.

    A value of ``None`` removes that override, so the environment variable or
    the default applies again. The next ``get_api()``/``get_db()`` returns a
    new singleton when the resulting settings differ; a client obtained before
    keeps working on its own settings until it is closed.

    Raises:
        ConfigurationError: a setting name is unknown or a value is malformed.
    """
    checked = _checked(settings)
    with _overrides_lock:
        for name, value in checked.items():
            if value is None:
                _overrides.pop(name, None)
            else:
                _overrides[name] = value


def resolve(**settings: Any) -> Settings:
    """The settings in force now, with ``settings`` (not ``None``) on top; changes nothing.

    Raises:
        ConfigurationError: a setting name is unknown or a value is malformed.
    """
    checked = _checked(settings)
    return dataclasses.replace(current_settings(), **{name: _coerce(name, value)
                                                      for name, value in checked.items() if value is not None})


def _checked(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` under their current names, deprecated value names translated; raises
    ConfigurationError for an unknown name or a malformed value."""
    checked: dict[str, Any] = {}
    for name, value in settings.items():
        if name in RENAMED_SETTINGS:
            new_name = RENAMED_SETTINGS[name]
            warnings.warn(f"setting {name!r} is deprecated; use {new_name!r}", DeprecationWarning, stacklevel=4)
            name = new_name
        if name not in _TYPES:
            raise ConfigurationError(
                f"unknown setting {name!r}; known settings: {', '.join(SETTING_NAMES)}"
            )
        if value is not None:
            new_value = RENAMED_VALUES.get((name, value)) if isinstance(value, str) else None
            if new_value is not None:
                warnings.warn(f"setting {name}={value!r} is deprecated; use {name}={new_value!r}",
                              DeprecationWarning, stacklevel=4)
                value = new_value
            _coerce(name, value)
        checked[name] = value
    return checked


def current_settings() -> Settings:
    """The settings in force now: overrides, then environment, then defaults."""
    values: dict[str, Any] = {}
    with _overrides_lock:
        overrides = dict(_overrides)
    for name in SETTING_NAMES:
        if name in overrides:
            values[name] = _coerce(name, overrides[name])
            continue
        env = os.environ.get(f"CHROMA_{name.upper()}")
        if env is not None:
            values[name] = _coerce(name, _renamed_from_env(name, env), from_env=True)
    return Settings(**values)


def _renamed_from_env(name: str, value: str) -> str:
    """``CHROMA_<NAME>``'s value, a deprecated value name translated (warned once per process)."""
    new_value = RENAMED_VALUES.get((name, value.strip()))
    if new_value is None:
        return value
    if (name, value) not in _warned:
        _warned.add((name, value))
        warnings.warn(f"CHROMA_{name.upper()}={value!r} is deprecated; use CHROMA_{name.upper()}={new_value!r}",
                      DeprecationWarning, stacklevel=4)
    return new_value


def _coerce(name: str, value: Any, from_env: bool = False) -> Any:
    kind = _TYPES[name]
    source = f"CHROMA_{name.upper()}" if from_env else name
    if kind in ("bool", bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigurationError(f"setting {source} must be a boolean, got {value!r}")
    if kind in ("int", int):
        return _number(value, int, source, "an integer", lambda n: n >= 0, ">= 0")
    if kind in ("float", float):
        return _number(value, float, source, "a number", lambda n: 0 < n < float("inf"), "a positive number")
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"setting {source} must be a string, got {value!r}")
    text = os.fspath(value)
    if from_env and text == "" and "Optional" in str(kind):
        return None
    return text


def _number(value: Any, parse: type, source: str, kind: str, allowed: Any, bound: str) -> Any:
    """``value`` as ``parse`` (int or float), checked against ``allowed``; booleans are not numbers here."""
    if isinstance(value, bool):
        raise ConfigurationError(f"setting {source} must be {kind}, got {value!r}")
    try:
        number = parse(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"setting {source} must be {kind}, got {value!r}") from None
    if not allowed(number):
        raise ConfigurationError(f"setting {source} must be {bound}, got {value!r}")
    return number
