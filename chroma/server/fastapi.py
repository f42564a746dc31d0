"""``chroma.server.FastAPI``: the local API as a JSON REST API under ``/api/v1``.

The server always runs :class:`chroma.api.local.Local` over the configured
``chroma.DB`` (``db_impl``), whatever ``api_impl`` says. Its routes are the rows of
:mod:`chroma.protocol.operations`: each row's ``http`` is its method and path under
``/api/v1`` (``{collection_id}`` a UUID, ``{name}`` a collection's name), and a body is
an object of the row's other arguments. The body schemas in ``/openapi.json`` (interactive
docs at ``/docs``) are generated from the table's declarations: strict types, no other
field. Each route passes the values through unchanged to the Local method the Python API
calls, so validation, error classes and messages are Local's own; ``"10"`` is not 10.
The server adds only its safety bounds (``auth_token``, ``max_request_bytes``,
``max_json_request_bytes``, ``max_batch_size``, ``max_n_results``, ``max_response_rows``, ``cors_origins``;
see :class:`chroma.config.Settings` and docs/limits.md).

Errors come back as ``{"error": "<chroma.errors class name>", "message": "..."}``
with the status :mod:`chroma.protocol.error_map` gives the class.

A collection is ``{"id", "name", "metadata"}``. Results carry embeddings as
lists of lists plus ``"dimension"`` (the embeddings' width, also when there
are no rows), so a client can rebuild ``(0, dim)`` arrays.

Vectors on the wire: every body is JSON unless its ``Content-Type`` is
``application/x-chroma-binary`` (:mod:`chroma.wire`: a JSON header plus the
vectors as raw little-endian float32), and every answer is JSON unless the
request's ``Accept`` names that type. The Python client uses the binary form
both ways (setting ``http_encoding``); curl and other languages use JSON.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import socket
import typing
from typing import Annotated, Any, Callable, Optional

import numpy as np
import uvicorn
from fastapi import Request
from fastapi import FastAPI as _FastAPIApp
from fastapi.openapi.utils import get_openapi
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

import chroma
from chroma import errors, validation, wire
from chroma.api.local import Local
from chroma.config import Settings
from chroma.protocol import error_map
from chroma.protocol import operations as ops
from chroma.server import Server
from chroma.server.bounds import Bounds, token_matches, unauthorized
from chroma.server.calls import RunningCalls, cut_off_error
from chroma.server.dispatch import Dispatch
from chroma.types import Metadata

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
OPEN_PATHS = frozenset({PREFIX + operation.http[1] for operation in ops.OPERATIONS.values() if operation.open}
                       | {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
"""Paths served without a token: they reveal no stored data."""

CALL_THREADS = 40
"""Threads running the routes' work: a call in the core releases the GIL, so calls of several
clients run on several cores at once."""


# --------------------------------------------------------------------------
# Request bodies, generated from the table's argument declarations: strict (a
# value of another type is refused, never converted) and closed (no other
# field), as the server reads them (see _reader).
# --------------------------------------------------------------------------


_STRICT = ConfigDict(strict=True, extra="forbid")


def _admits_none(annotation: Any) -> bool:
    return annotation is Any or type(None) in typing.get_args(annotation)


def _body_field(operation: ops.Operation, name: str) -> tuple[Any, Any]:
    """The model field of the operation's argument ``name``: its declared type (an int within
    its bounds), its default, its description; required when it has no default and null is
    not one of its values."""
    declared = ops.declaration(operation, name)
    annotation = declared.type
    if declared.minimum is not None:
        bounded = Annotated[int, Field(ge=declared.minimum, le=validation.INT64_MAX)]
        annotation = Optional[bounded] if _admits_none(annotation) else bounded
    default = dict(operation.defaults).get(name)
    if isinstance(default, tuple):
        default = list(default)
    if default is None and not _admits_none(declared.type):
        default = ...
    return annotation, Field(default, description=declared.description)


def _body_models() -> dict[str, type[BaseModel]]:
    """The body model of every operation that takes a body, by operation name; operations that
    name one schema share its model (their bodies must agree)."""
    made: dict[str, type[BaseModel]] = {}
    models: dict[str, type[BaseModel]] = {}
    for operation in ops.OPERATIONS.values():
        names = ops.body_arguments(operation)
        if not names:
            continue
        schema = ops.body_schema(operation)
        model = create_model(schema, __config__=_STRICT,
                             **{name: _body_field(operation, name) for name in names})
        if schema in made and made[schema].model_json_schema() != model.model_json_schema():
            raise ValueError(f"{operation.name} names the body {schema!r} of another operation but takes "
                             "other arguments")
        models[operation.name] = made.setdefault(schema, model)
    return models


BODY_MODELS = _body_models()
"""The request body of each operation that takes one, by name (``/openapi.json`` shows them)."""


# Response shapes, for the documentation only (responses are written directly).
class CollectionOut(BaseModel):
    id: str
    name: str
    metadata: Optional[Metadata]


class GetResultOut(BaseModel):
    ids: list[str]
    embeddings: Optional[list[list[float]]]
    metadatas: Optional[list[Optional[Metadata]]]
    documents: Optional[list[Optional[str]]]
    dimension: Optional[int] = Field(description="Width of the embeddings (also with no rows), null if not included.")


class QueryResultOut(BaseModel):
    ids: list[list[str]]
    embeddings: Optional[list[list[list[float]]]]
    metadatas: Optional[list[list[Optional[Metadata]]]]
    documents: Optional[list[list[Optional[str]]]]
    distances: Optional[list[list[float]]]
    dimension: Optional[int] = Field(description="Width of the embeddings, null if not included.")


_ANSWERS: dict[str, Any] = {ops.COLLECTION: CollectionOut, ops.COLLECTIONS: list[CollectionOut],
                            ops.GET_RESULT: GetResultOut, ops.QUERY_RESULT: QueryResultOut}
"""The documented answer of each result kind that has a model."""


class ErrorOut(BaseModel):
    error: str = Field(description="Name of the chroma.errors class, e.g. InvalidArgument.")
    message: str


_ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 504)}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


NOT_AN_OBJECT = "the request body must be a JSON object sent with 'Content-Type: application/json'"


def _body_documentation(model: type[BaseModel]) -> dict:
    """The OpenAPI request body of a route that reads ``model`` as JSON or as the binary frame."""
    reference = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": reference},
        wire.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary",
                                     "description": "The same object with its vectors as float32: see chroma.wire."}},
    }}}


def _reader(operation: ops.Operation, bounds: Bounds) -> Callable[[Request], Any]:
    """Reads the request body, JSON or the binary frame (whose declared rows are checked against
    ``max_batch_size`` before any is built), as the operation's arguments.

    Nothing here converts or checks a value: Local checks every one, as it does for the Python
    API and the other transports, so a bad value's answer is Local's class and message (a model
    validation would give its own message, and walk every float of a JSON write once more). The
    strict model says what Local takes; tests/test_fastapi_server.py keeps the two in agreement.
    A field that is not one of the operation's arguments is refused, as the model's
    ``extra="forbid"`` says; an argument left out gets its default in the dispatch."""
    taken = ops.body_arguments(operation)
    known = frozenset(taken)

    async def read(request: Request) -> dict:
        raw = await request.body()
        media_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media_type == wire.MEDIA_TYPE:
            data = wire.decode(raw, bounds.max_batch_size)
        elif media_type == "application/json" or media_type.endswith("+json"):
            bounds.check_json_bytes(len(raw))
            try:
                data = validation.json_loads(raw) if raw else {}
            except ValueError as exc:
                raise errors.InvalidArgument(f"{NOT_AN_OBJECT}: invalid JSON ({exc})") from None
        else:
            raise errors.InvalidArgument(f"{NOT_AN_OBJECT} (or {wire.MEDIA_TYPE}), got Content-Type {media_type!r}")
        if not isinstance(data, dict):
            raise errors.InvalidArgument(f"{NOT_AN_OBJECT}, got {type(data).__name__}")
        if not known.issuperset(data):
            unknown = next(name for name in data if name not in known)
            raise errors.InvalidArgument(f"{operation.name} got an unexpected argument {unknown!r}; "
                                         f"it takes {', '.join(taken)}")
        return data

    return read


def _path_parameter(operation: ops.Operation, name: str, schema: dict) -> dict:
    """The OpenAPI description of the operation's path parameter ``name``, as FastAPI writes it
    for an endpoint argument (the routes take only the request, so FastAPI does not see it)."""
    return {"in": "path", "name": name, "required": True,
            "description": ops.declaration(operation, name).description,
            "schema": {"title": name.replace("_", " ").title(), **schema}}


def _tag(operation: ops.Operation) -> str:
    """The operation's group in the documentation, by its path."""
    path = operation.http[1]
    if path.startswith("/collections/{collection_id}/"):
        return "records"
    return "collections" if path.startswith("/collections") else "server"


_PATH_SCHEMAS = {"uuid": {}, "path": {"type": "string"}}
"""The OpenAPI schema of a path parameter, by its Starlette convertor."""


def _answer(request: Request, content: dict, arrays: dict[str, Any]) -> Response:
    """``content`` plus its ``arrays`` (numpy values) in the encoding the request's ``Accept`` names."""
    if wire.MEDIA_TYPE in request.headers.get("accept", ""):
        return Response(wire.encode(content, arrays), media_type=wire.MEDIA_TYPE)
    as_lists = {name: None if value is None else
                ([np.asarray(item).tolist() for item in value] if isinstance(value, list) else value.tolist())
                for name, value in arrays.items()}
    return _json({**content, **as_lists})


def _json(content: Any, status_code: int = 200) -> Response:
    # a final newline keeps a shell prompt (curl) on its own line
    return Response(json.dumps(content, separators=(",", ":")) + "\n", status_code=status_code,
                    media_type="application/json")


def _error(error: BaseException, status: Optional[int] = None) -> Response:
    """The answer carrying ``error`` (:mod:`chroma.protocol.error_map`); ``status`` overrides its own."""
    own, content = error_map.http(error)
    return Response(content, status_code=status or own, media_type="application/json")


async def _send_error(send, error: BaseException) -> None:
    """Answers ``error`` as :mod:`chroma.protocol.error_map` says."""
    status, body = error_map.http(error)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _Guard:
    """ASGI middleware: the bearer token, then the request size bound.

    A refused request's body is still read (and dropped), so the client gets
    the 401/413 answer rather than a connection reset in mid-upload.
    """

    def __init__(self, app, token: Optional[str], bounds: Bounds) -> None:
        self.app = app
        self.token = token
        self.bounds = bounds
        self.max_bytes = bounds.max_request_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["path"] not in OPEN_PATHS and not token_matches(self.token, headers.get(b"authorization")):
            await self._drain(receive)
            await _send_error(send, unauthorized("header 'Authorization: Bearer <token>'"))
            return
        if not self.max_bytes:
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._drain(receive)
            await _send_error(send, self.bounds.too_large(int(declared)))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    # after the last chunk, receive() would wait for a disconnect
                    await self._drain(receive)
                await _send_error(send, self.bounds.too_large(None))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        buffered = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return buffered.pop() if buffered else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


class _Deadline:
    """ASGI middleware: a request still running ``request_timeout`` seconds after it began is
    answered 504 ``DeadlineExceeded`` and abandoned.

    Abandoning cancels the request where it awaits (reading its body, waiting for a worker
    thread); a call already running in a worker thread cannot be interrupted, so it runs to
    its end and what it then sends is dropped.
    """

    def __init__(self, app, bounds: Bounds) -> None:
        self.app = app
        self.bounds = bounds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = abandoned = False

        async def send_unless_abandoned(message) -> None:
            nonlocal started
            if abandoned:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.current_task()

        def abandon() -> None:
            nonlocal abandoned
            abandoned = True
            task.cancel()

        # A timer cancelling the request's own task: a task per request awaited with a timeout
        # costs its creation and wake-ups on every call.
        timer = asyncio.get_running_loop().call_later(self.bounds.request_timeout, abandon)
        try:
            await self.app(scope, receive, send_unless_abandoned)
        except asyncio.CancelledError:
            if not abandoned:
                raise  # the server cuts off what still runs past the shutdown grace (OutcomeUnknown)
            if hasattr(task, "uncancel"):  # Python 3.11+: the cancellation asked for here is handled
                task.uncancel()
            if not started:
                await _send_error(send, self.bounds.deadline_exceeded(f"{scope['method']} {scope['path']}"))
        finally:
            timer.cancel()


class _Unexpected:
    """ASGI middleware: an exception no handler answered becomes a 500 on a connection kept open.

    Starlette answers such an exception and raises it again, and uvicorn then
    closes the connection; a client that had already sent its next request on
    it would see a reset instead of an answer.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs at the end of the shutdown grace period
            if not started:
                await _send_error(send, cut_off_error())
            raise
        except Exception as exc:
            if started:
                raise  # half an answer: only closing the connection ends it
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            await _send_error(send, exc)


def _encoded(operation: ops.Operation, request: Request, result: Any) -> Response:
    """The answer carrying ``result``, encoded as the operation's result kind says."""
    if operation.result == ops.GET_RESULT:
        embeddings = result["embeddings"]
        return _answer(request, {
            "ids": result["ids"], "metadatas": result["metadatas"], "documents": result["documents"],
            "dimension": None if embeddings is None else int(embeddings.shape[1]),
        }, {"embeddings": embeddings})
    if operation.result == ops.QUERY_RESULT:
        embeddings = result["embeddings"]
        return _answer(request, {
            "ids": result["ids"], "metadatas": result["metadatas"], "documents": result["documents"],
            "dimension": None if embeddings is None else (int(embeddings[0].shape[1]) if embeddings else 0),
        }, {"embeddings": embeddings, "distances": result["distances"]})
    # ready: a store that takes no writes answers its other status, with the same body
    status = operation.answers[0] if operation.answers and not result["writable"] else 200
    return _json(result, status)


# --------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------


def create_app(api: Local, settings: Settings, calls: Optional[RunningCalls] = None,
               bounds: Optional[Bounds] = None) -> _FastAPIApp:
    """The FastAPI application serving ``api`` with ``settings``' bounds (or ``bounds``); each
    route's work counts in ``calls``."""
    calls = calls or RunningCalls()
    bounds = bounds or Bounds(settings, reported_at=FastAPI.limits_at)
    app = _FastAPIApp(
        title="chroma",
        version=chroma.__version__,
        description=(
            "The chroma embedding database over HTTP. Every route calls the same method as the Python API. "
            "Bodies are strict: a value is never converted (`\"10\"` is not 10), a field the route does not "
            "take is refused, and a bad value gets the Python API's error. "
            "Errors: `{\"error\": \"<chroma.errors class>\", \"message\": ...}` with status 400 (InvalidArgument), "
            "401 (Unauthorized), 403 (ResetDisabled), 404 (CollectionNotFound, IDNotFoundError), "
            "409 (CollectionExists, DuplicateIDError), 413 (PayloadTooLarge), 504 (DeadlineExceeded). "
            "With an auth_token set, send "
            "`Authorization: Bearer <token>` (heartbeat, /docs and /openapi.json are open). Request bodies are "
            "JSON with `Content-Type: application/json`; the Python client sends `" + wire.MEDIA_TYPE + "` "
            "(the same object with its vectors as raw float32, see chroma.wire) and asks for it in `Accept`."
        ),
    )

    @app.exception_handler(errors.ChromaError)
    async def chroma_error(request: Request, exc: errors.ChromaError) -> Response:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def unparsable(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
            + (f" ({e['ctx']['error']})" if isinstance(e.get("ctx"), dict) and "error" in e["ctx"] else "")
            for e in exc.errors()
        )
        return _error(errors.InvalidArgument(
            f"the request body must be a JSON object sent with 'Content-Type: application/json': {problems}"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        cls = errors.NotFoundError if exc.status_code == 404 else errors.InvalidArgument
        return _error(cls(f"{exc.detail}: {request.method} {request.url.path}"), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return _error(exc)

    threads = concurrent.futures.ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="chroma-http-call")

    dispatch = Dispatch(api, bounds)

    def counted(operation: ops.Operation, request: Request, values: dict) -> Response:
        with calls.running():
            return _encoded(operation, request, dispatch(operation, values))

    def route(operation: ops.Operation) -> None:
        """Registers the operation's route at ``PREFIX`` + its path (``collection_id`` a UUID, ``name`` any rest).

        Its work runs on one of ``threads``, counted as a running call, with the values of the
        path's parameters and the body's fields (JSON or the binary frame). FastAPI sees a route
        that takes only the request: its dependency and validation machinery, and the thread
        hand-off of anyio, cost more per call than the work of a small query, and Local checks
        the fields."""
        method, path = operation.http
        path = path.replace("{collection_id}", "{collection_id:uuid}").replace("{name}", "{name:path}")
        body = BODY_MODELS.get(operation.name)
        extra = _body_documentation(body) if body is not None else {}
        parameters = [_path_parameter(operation, name, _PATH_SCHEMAS[convertor])
                      for name, convertor in re.findall(r"{(\w+):(\w+)}", path)]
        if parameters:
            extra["parameters"] = parameters
        read = _reader(operation, bounds) if body is not None else None

        async def call(request: Request) -> Response:
            values = {name: str(value) for name, value in request.path_params.items()}
            if read is not None:
                values.update(await read(request))
            return await asyncio.get_running_loop().run_in_executor(threads, counted, operation, request, values)

        call.__name__ = call.__qualname__ = operation.name
        call.__doc__ = operation.summary
        answer = _ANSWERS.get(operation.result)
        responses = {200: {"model": answer}, **_ERRORS} if answer is not None else _ERRORS
        app.api_route(PREFIX + path, methods=[method], openapi_extra=extra or None, tags=[_tag(operation)],
                      responses=responses)(call)

    def openapi() -> dict:
        # The bodies are read by _reader (JSON or binary), so FastAPI does not
        # see their models: add them to the schema's components by hand.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in dict.fromkeys(BODY_MODELS.values()):
                components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi

    # Routes by id first: "{id:uuid}" matches only UUIDs, and the name routes take any rest
    # of the path (a bad name gets Local's error).
    for operation in sorted(ops.OPERATIONS.values(), key=lambda operation: "{name}" in operation.http[1]):
        route(operation)

    # Routes are tried in order: the single calls first (a stable sort keeps the rest's order).
    hot = {f"{PREFIX}/collections/{{collection_id:uuid}}/{name}" for name in ("query", "get", "count")}
    app.router.routes.sort(key=lambda entry: getattr(entry, "path", None) not in hot)
    app.add_middleware(_Unexpected)  # innermost: a refused request never reaches it
    app.add_middleware(_Guard, token=settings.auth_token, bounds=bounds)
    app.add_middleware(_Deadline, bounds=bounds)  # outside the guard: a slow upload counts too
    origins = [o.strip() for o in (settings.cors_origins or "").split(",") if o.strip()]
    if origins:  # outermost: preflights are answered before the token check
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"])
    return app


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, which also runs ``on_stop`` when a signal starts its shutdown."""

    def __init__(self, config: uvicorn.Config, on_stop: list[Callable[[], None]]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        for hook in self._on_stop:
            hook()


class FastAPI(Server):
    """Serves ``chroma.api.local.Local`` over the configured DB with uvicorn.

    ``listen()`` binds the socket (``server_host``/``server_http_port``; port
    0 picks a free one) and returns the address; ``run()`` (:class:`chroma.server.Server`)
    serves until SIGTERM/SIGINT, lets running requests finish, then closes the DB.
    """

    limits_at = f"GET {PREFIX}/limits"

    def __init__(self, settings: Settings, api: Optional[Local] = None) -> None:
        super().__init__(settings, api)
        self.app = create_app(self.api, settings, self.calls, self.bounds)
        self._socket: Optional[socket.socket] = None
        self._uvicorn: Optional[_Uvicorn] = None
        self._stop_asked = False

    def listen(self) -> tuple[str, int]:
        """Binds the listening socket now; returns ``(host, port)``."""
        if self._socket is None:
            host, port = self._settings.server_host, self._settings.server_http_port
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            # proto IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted
            # connections (else each response waits ~40 ms for a delayed ACK)
            sock = socket.socket(info[0], socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(info[4])
                sock.listen(2048)
            except OSError as exc:
                sock.close()
                raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
            self._socket = sock
        address = self._socket.getsockname()
        return self._settings.server_host, address[1]

    def urls(self) -> list[str]:
        host, port = self.listen()
        return [f"{'https' if self._certificate else 'http'}://{host}:{port}"]

    def serve(self) -> None:
        certificate = self._certificate
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=self._settings.shutdown_grace,
                                ssl_certfile=certificate and certificate.certfile,
                                ssl_keyfile=certificate and certificate.keyfile)
        # uvicorn takes SIGTERM/SIGINT while it serves, answers the running requests within the
        # grace period, then raises the signal again under the handler run() installed.
        self._uvicorn = _Uvicorn(config, self.on_stop)
        self._uvicorn.should_exit = self._stop_asked
        self._uvicorn.run(sockets=[self._socket])

    def stop(self) -> None:
        self._stop_asked = True
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    def shutdown(self) -> int:
        if self._socket is not None:
            self._socket.close()
        return self.calls.cut_off(self.api)
