"""``chroma.api.FastAPI``: the Python API over HTTP, against ``chroma run``.

Chosen by ``api_impl="fastapi"``; talks to the server at
``server_host``/``server_http_port`` (see ``chroma.server.fastapi`` for the
routes; ``https://`` with ``server_tls``, trusting ``client_tls_ca_file`` or the
system's roots) over one pooled ``requests.Session``, sending ``Authorization: Bearer
<auth_token>`` when that setting is given. Bodies and answers that carry
vectors use the binary frame of :mod:`chroma.wire` (``http_encoding="binary"``,
the default) or plain JSON (``http_encoding="json"``).

The client returns the same types as ``chroma.api.local.Local`` (numpy float32
embeddings) and raises the same exception classes with the same messages: the
server answers ``{"error": <class name>, "message": ...}`` and the client
raises that class again (:mod:`chroma.protocol.error_map`), with ``origin`` the request's URL
and status. Before a request leaves, the client
runs the same input checks as Local (``chroma.validation``, ``chroma.filters``,
which need no stored state), so values that JSON cannot carry faithfully
(tuples, numpy scalars, non-string keys, NaN) get Local's error rather than a
changed meaning on the way; the server then checks everything again.
"""

from __future__ import annotations

import json
import ssl
from typing import Any, Optional
from urllib.parse import quote

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from chroma import errors, tls, wire
from chroma.api.remote import Remote, host_port, numpy_to_json, to_json
from chroma.config import Settings
from chroma.protocol import error_map
from chroma.protocol import operations as ops
from chroma.types import GetResult, QueryResult

ENCODINGS = ("binary", "json")


class _Kept:
    """A pooled connection (HTTP or HTTPS) that knows whether it has carried an answer on its
    current socket."""

    answered = False

    def connect(self) -> None:
        self.answered = False  # a new socket: nothing was kept
        try:
            super().connect()  # type: ignore[misc]
        except ssl.SSLError as exc:
            raise _HandshakeFailed(str(exc)) from exc
        except TimeoutError as exc:
            # A TLS handshake that timed out: urllib3 would report a read timeout, and a write
            # OutcomeUnknown, though no byte of the request left.
            raise ConnectTimeoutError(self, f"the TLS handshake with {self.host}:{self.port} got no answer "
                                            "within client_connect_timeout") from exc


class _KeptConnection(_Kept, HTTPConnection):
    pass


class _KeptTLSConnection(_Kept, HTTPSConnection):
    pass


class _HandshakeFailed(ssl.SSLError):
    """TLS failed while connecting, before any byte of a request left (an SSL error later may
    come after the server received the request)."""

    def __str__(self) -> str:
        return str(self.args[0])  # SSLError would show the tuple of its arguments


class _KeptConnectionReset(ConnectionResetError):
    """A connection the pool had kept was closed or reset before any byte of the answer came:
    the server had most likely closed it while idle, and the request can go again on a new one."""


class _TellsKeptResets:
    """A pool (HTTP or HTTPS) whose requests tell a reset of a kept connection from other failures."""

    def _make_request(self, conn: _Kept, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kept = conn.answered
        try:
            response = super()._make_request(conn, method, url, *args, **kwargs)  # type: ignore[misc]
        except ConnectionResetError as exc:  # http.client's RemoteDisconnected is one: no status line came
            if kept:
                raise _KeptConnectionReset(str(exc)) from exc
            raise
        conn.answered = True
        return response


class _Pool(_TellsKeptResets, HTTPConnectionPool):
    ConnectionCls = _KeptConnection


class _TLSPool(_TellsKeptResets, HTTPSConnectionPool):
    ConnectionCls = _KeptTLSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter over connections that tell a kept one from a new one."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme,
                                                   "http": _Pool, "https": _TLSPool}


def _caused_by(error: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether ``error``, or an exception it wraps (cause, context, argument or urllib3's
    ``reason``), is one of ``kinds``."""
    return _cause(error, kinds) is not None


def _cause(error: BaseException, kinds: tuple[type[BaseException], ...]) -> Optional[BaseException]:
    """``error``, or the first exception it wraps (see :func:`_caused_by`), that is one of ``kinds``."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kinds):
            return current
        wrapped = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        pending.extend(item for item in wrapped if isinstance(item, BaseException))
    return None


class ServerUnavailable(errors.ServerUnavailable, requests.exceptions.ConnectionError):
    """The HTTP client's :class:`chroma.errors.ServerUnavailable`: also a
    ``requests.exceptions.ConnectionError``, which code written for the original
    Chroma's HTTP client catches. Defined here so that ``import chroma`` needs no requests."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.request = self.response = None  # what requests' own exceptions carry


class OutcomeUnknown(errors.OutcomeUnknown, ServerUnavailable):
    """The HTTP client's :class:`chroma.errors.OutcomeUnknown`, a ``requests`` ConnectionError too."""


_CLASSES = {errors.ServerUnavailable: ServerUnavailable, errors.OutcomeUnknown: OutcomeUnknown}
"""The classes this client raises for those of chroma.errors (error_map.Classes)."""


def _name_path(name: str) -> str:
    # Every character but letters and digits escaped, dots included, so that
    # "." or ".." cannot be taken for path segments on the way.
    return quote(name, safe="").replace(".", "%2E")


class FastAPI(Remote):
    """A client of a chroma server."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.http_encoding not in ENCODINGS:
            raise errors.ConfigurationError(
                f"http_encoding must be one of {list(ENCODINGS)}, got {settings.http_encoding!r}")
        self._binary = settings.http_encoding == "binary"
        self._address = host_port(settings.server_host, settings.server_http_port)
        scheme = "https" if settings.server_tls else "http"
        self._base = f"{scheme}://{self._address}/api/v1"
        session = requests.Session()
        # The environment is read once, here: requests would read it on every call (proxy
        # variables, ~/.netrc, CA bundle variables), which costs more than a small query's work.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(self._base)
        self._verify = tls.client_ca_file(settings) or True
        # A TLS server closes a plain connection without a word, like a server that died.
        self._tls_hint = "" if settings.server_tls else "; if that server serves https, set server_tls=true"
        adapter = _Adapter(pool_connections=1, pool_maxsize=64)
        session.mount(f"{scheme}://", adapter)
        session.headers["Content-Type"] = "application/json"
        if settings.auth_token:
            session.headers["Authorization"] = f"Bearer {settings.auth_token}"
        self._session = session
        self._timeout = (settings.client_connect_timeout, settings.client_read_timeout)

    # plumbing
    def _request(self, method: str, path: str, body: Any = None, arrays: Optional[dict] = None,
                 idempotent: bool = False, answers: tuple[int, ...] = ()) -> Any:
        """Sends ``body`` (plus vector ``arrays``, numpy values) and returns the decoded answer.

        With the binary encoding, vectors go out as float32 and come back as
        float32 arrays; with JSON, both ways as lists. An ``idempotent`` call
        (a read) goes again, once, when a connection the pool had kept is
        closed or reset before any byte of its answer; nothing else is sent
        twice, and never after a timeout. A status in ``answers`` is an answer, not an error,
        unless its body names a chroma error.
        """
        data = headers = None
        if self._binary and arrays is not None:
            headers = {"Content-Type": wire.MEDIA_TYPE, "Accept": f"{wire.MEDIA_TYPE}, application/json"}
            try:
                data = wire.encode(body, arrays, json_default=numpy_to_json)
            except (TypeError, ValueError) as exc:
                raise errors.InvalidArgument(str(exc)) from None
        elif body is not None or arrays:
            data = to_json({**(body or {}), **{name: _lists(value) for name, value in (arrays or {}).items()}})
        self._check_open()
        url = self._base + path
        try:
            response = self._send(method, url, data, headers)
        except requests.RequestException as exc:
            if not (idempotent and _caused_by(exc, (_KeptConnectionReset,))):
                raise self._no_answer(method, url, exc, idempotent) from None
            try:
                response = self._send(method, url, data, headers)
            except requests.RequestException as again:
                raise self._no_answer(method, url, again, idempotent) from None
        if response.headers.get("content-type", "").startswith(wire.MEDIA_TYPE):
            return wire.decode(response.content)
        try:
            payload = json.loads(response.content) if response.content else None
        except ValueError:
            payload = None
        if response.status_code >= 400:
            error = error_map.rebuilt(payload, error_map.Origin(f"{method} {url}", response.status_code), _CLASSES)
            if error is not None:
                raise error
            if response.status_code not in answers:
                raise errors.ChromaError(f"HTTP {response.status_code} from {method} {url}: {response.text[:500]}")
        if payload is None and response.status_code != 204:
            raise errors.ChromaError(f"{method} {url} answered something that is not JSON: {response.text[:200]!r}")
        return payload

    def _send(self, method: str, url: str, data: Optional[bytes], headers: Optional[dict]) -> requests.Response:
        # verify given per request: requests lets REQUESTS_CA_BUNDLE override the session's own
        return self._session.request(method, url, data=data, headers=headers, timeout=self._timeout,
                                     verify=self._verify)

    def _no_answer(self, method: str, url: str, error: requests.RequestException,
                   idempotent: bool) -> errors.ServerUnavailable:
        """The error of a call that got no answer: ServerUnavailable, or OutcomeUnknown for a write
        that may have reached the server."""
        handshake = _cause(error, (_HandshakeFailed,))
        if handshake is not None:
            return ServerUnavailable(
                f"the TLS handshake with the chroma server at {self._address} failed ({method} {url}): "
                f"{handshake}; does it serve https (chroma run --tls-certfile), does client_tls_ca_file "
                "hold the certificate authority that signed its certificate, and does that name server_host?")
        server, call = f"the chroma server at {self._address}", f"{method} {url}"
        if _caused_by(error, (NewConnectionError, ConnectTimeoutError)):
            return error_map.unreachable(server, call, error, "is `chroma run` running there (settings "
                                         "server_host, server_http_port)?", _CLASSES)
        if isinstance(error, requests.exceptions.ReadTimeout):
            return error_map.no_answer(server, call, not idempotent, waited=self._timeout[1], classes=_CLASSES)
        return error_map.no_answer(server, call, not idempotent, cause=error, hint=self._tls_hint, classes=_CLASSES)

    def _call(self, operation: ops.Operation, values: dict) -> Any:
        method, template, in_path, in_body, arrays = _ROUTES[operation.name]
        path = template.format_map({name: _name_path(values[name]) if name == "name" else values[name]
                                    for name in in_path}) if in_path else template
        data = self._request(method, path, None if in_body is None else {name: values[name] for name in in_body},
                             None if arrays is None else {name: values[name] for name in arrays},
                             operation.idempotent, operation.answers)
        if operation.result == ops.GET_RESULT:
            return _get_result(data)
        if operation.result == ops.QUERY_RESULT:
            return _query_result(data)
        return data

    def close(self) -> None:
        super().close()
        self._session.close()


def _route(operation: ops.Operation) -> tuple:
    """How the client sends ``operation``: the method, the path template, the arguments in the path,
    those in the JSON (or None: no body) and the vector arrays (or None: no binary frame)."""
    method, template = operation.http
    in_path = ops.path_arguments(operation)
    in_body = None if method in ("GET", "DELETE") else tuple(
        name for name in operation.arguments if name not in operation.arrays and name not in in_path)
    # answers that carry vectors come back in the binary frame too
    binary = operation.arrays or operation.result in (ops.GET_RESULT, ops.QUERY_RESULT)
    return method, template, in_path, in_body, operation.arrays if binary else None


_ROUTES = {name: _route(operation) for name, operation in ops.OPERATIONS.items()}


def _get_result(data: dict) -> GetResult:
    """A get's answer as the server sent it, decoded."""
    return GetResult(
        ids=data["ids"],
        embeddings=_array(data["embeddings"], data.get("dimension")),
        metadatas=data["metadatas"],
        documents=data["documents"],
    )


def _query_result(data: dict) -> QueryResult:
    """A query's answer as the server sent it, decoded."""
    embeddings = data["embeddings"]
    dimension = data.get("dimension")
    distances = data["distances"]
    return QueryResult(
        ids=data["ids"],
        embeddings=None if embeddings is None else [_array(rows, dimension) for rows in embeddings],
        metadatas=data["metadatas"],
        documents=data["documents"],
        distances=None if distances is None else [np.asarray(row, dtype=np.float64).ravel().tolist()
                                                  for row in distances],
    )


def _lists(value: Any) -> Any:
    """An array field as JSON lists (``None`` rows of a gapped write included)."""
    if isinstance(value, wire.Gapped):
        rows = value.rows.tolist()
        for position in np.flatnonzero(value.missing):
            rows[position] = None
        return rows
    return value.tolist() if isinstance(value, np.ndarray) else value


def _array(rows: Any, dimension: Optional[int]) -> Optional[np.ndarray]:
    """A float32 (n, dim) array of JSON rows (or of a decoded array); (0, dim) without rows."""
    if rows is None:
        return None
    if isinstance(rows, np.ndarray):
        return rows
    if not rows:
        return np.empty((0, dimension or 0), dtype=np.float32)
    return np.array(rows, dtype=np.float32)
