"""The one map between ``chroma.errors`` and every wire, both ways.

:data:`TABLE` gives each error class its HTTP status and its Flight error kind. Every
transport carries an error as the same body, ``{"error": <class name>, "message": <text>}``:
the JSON answer of the HTTP server (with the status), the ``extra_info`` of a Flight error
(of the kind), the result of a Celery task. A client rebuilds the same class with the same
message from that body, and records where it came from in the error's ``origin``
(:class:`chroma.errors.Origin`: the URL, Flight location or Celery task, and the status),
also shown as a note under the traceback; the message itself stays the one Local gives.

An exception that is not a chroma error (a server bug) travels the same way under its own
class name, with status 500 or the Flight kind ``internal``; a client raises it as a plain
:class:`chroma.errors.ChromaError` whose message starts with that name.

The rules for calls that got no answer (:func:`unreachable`, :func:`no_answer`) live here
too: ``ServerUnavailable`` when the call cannot have been applied, or is a read;
``OutcomeUnknown`` for a write that may have reached the server.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, NamedTuple, Optional, Union

from chroma import errors

UNAUTHENTICATED = "unauthenticated"
UNAUTHORIZED = "unauthorized"
TIMED_OUT = "timed_out"
SERVER_ERROR = "server_error"
INTERNAL = "internal"
FLIGHT_CLASSES = {UNAUTHENTICATED: "FlightUnauthenticatedError", UNAUTHORIZED: "FlightUnauthorizedError",
                  TIMED_OUT: "FlightTimedOutError", SERVER_ERROR: "FlightServerError",
                  INTERNAL: "FlightInternalError"}
"""Each Flight error kind and the ``pyarrow.flight`` class that raises it."""


class Wire(NamedTuple):
    status: int
    """The HTTP status the server answers with."""
    flight: str = SERVER_ERROR
    """The Flight error kind (a key of :data:`FLIGHT_CLASSES`)."""


TABLE: dict[type[errors.ChromaError], Wire] = {
    errors.ChromaError: Wire(500),
    errors.InvalidArgument: Wire(400),
    errors.ConfigurationError: Wire(400),
    errors.InvalidDimensionError: Wire(400),
    errors.EmbeddingFunctionMismatch: Wire(400),
    errors.DuplicateIDError: Wire(409),
    errors.CollectionExists: Wire(409),
    errors.PersistentDirectoryLocked: Wire(409),
    errors.NotFoundError: Wire(404),
    errors.CollectionNotFound: Wire(404),
    errors.IDNotFoundError: Wire(404),
    errors.Unauthorized: Wire(401, UNAUTHENTICATED),
    errors.ResetDisabled: Wire(403, UNAUTHORIZED),
    errors.PayloadTooLarge: Wire(413),
    errors.DeadlineExceeded: Wire(504, TIMED_OUT),
    errors.StorageFull: Wire(507),
    errors.StorageCorrupt: Wire(500),
    errors.IndexFileError: Wire(500),
    errors.MissingDependency: Wire(500),
    errors.ClientClosed: Wire(500),
    errors.EmbeddingModelUnavailable: Wire(503),
    errors.ServerUnavailable: Wire(503),
    errors.OutcomeUnknown: Wire(503),
    errors.WorkerError: Wire(503),
}
"""Every class of ``chroma.errors`` and how it crosses the wire."""

UNEXPECTED = Wire(500, INTERNAL)
"""How an exception that is not a chroma error crosses the wire."""

_BY_NAME = {cls.__name__: cls for cls in TABLE}

Classes = Mapping[type, type]
"""A client's own subclasses to raise instead of a class of ``chroma.errors`` (the HTTP client's
``ServerUnavailable`` is also a requests ``ConnectionError``)."""


def wire(error: BaseException) -> Wire:
    """How ``error`` crosses the wire: its class's row, or its nearest base class's (a client's
    subclass), or :data:`UNEXPECTED`."""
    for cls in type(error).__mro__:
        row = TABLE.get(cls)
        if row is not None:
            return row
    return UNEXPECTED


def body(error: BaseException) -> dict:
    """The body every transport carries ``error`` as."""
    name = next((cls.__name__ for cls in type(error).__mro__ if cls in TABLE), type(error).__name__)
    return {"error": name, "message": str(error)}


def encoded(error: BaseException) -> bytes:
    """:func:`body` as JSON, with a final newline (a shell prompt after curl stays on its own line)."""
    return (json.dumps(body(error)) + "\n").encode()


def http(error: BaseException) -> tuple[int, bytes]:
    """The HTTP status and JSON body of the answer carrying ``error``."""
    return wire(error).status, encoded(error)


def flight_error(error: BaseException) -> Exception:
    """The ``pyarrow.flight`` error carrying ``error``: its kind, its message, the body in ``extra_info``."""
    import pyarrow.flight as flight

    cls = getattr(flight, FLIGHT_CLASSES[wire(error).flight])
    return cls(str(error), extra_info=encoded(error))


class Origin(NamedTuple):
    """Where an error a client raises came from."""

    location: str
    """The URL of the HTTP request, the Flight location and call, or the Celery task."""
    status: Union[int, str]
    """The HTTP status, the Flight error kind, or ``"reported"`` by a Celery task."""


def rebuilt(payload: Any, origin: Origin, classes: Classes = {}) -> Optional[errors.ChromaError]:
    """The error a peer sent as ``payload`` (:func:`body`), from ``origin``; None when ``payload``
    names none. An unknown class name gives a :class:`chroma.errors.ChromaError` whose message
    keeps the name."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), str):
        return None
    name, message = payload["error"], str(payload.get("message", ""))
    cls = _BY_NAME.get(name)
    error = errors.ChromaError(f"{name}: {message}") if cls is None else classes.get(cls, cls)(message)
    error.origin = origin
    error.add_note(f"raised by the chroma server: {origin.location} (status {origin.status})")
    return error


def from_json(data: Union[bytes, str, None], origin: Origin, classes: Classes = {}) -> Optional[errors.ChromaError]:
    """The error carried by the JSON text ``data`` (an HTTP answer, a Flight ``extra_info``), or None."""
    if not data:
        return None
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    return rebuilt(payload, origin, classes)


def from_flight(error: BaseException, location: str) -> Optional[errors.ChromaError]:
    """The chroma error a Flight server sent as ``error`` (a ``pyarrow.flight`` error), or None."""
    kind = next((kind for kind, name in FLIGHT_CLASSES.items() if type(error).__name__ == name), type(error).__name__)
    return from_json(getattr(error, "extra_info", None), Origin(location, kind))


# --------------------------------------------------------------------------
# Calls that got no answer
# --------------------------------------------------------------------------

UNKNOWN_OUTCOME = "the write may or may not have been applied; read back what it wrote before sending it again"


def _made(cls: type, classes: Classes, message: str) -> errors.ServerUnavailable:
    return classes.get(cls, cls)(message)


def unreachable(server: str, what: str, cause: Any, advice: str, classes: Classes = {}) -> errors.ServerUnavailable:
    """The error of a call ``what`` that never reached ``server`` (it cannot have been applied)."""
    return _made(errors.ServerUnavailable, classes, f"cannot reach {server} ({what}): {cause}; {advice}")


def no_answer(server: str, what: str, write: bool, cause: Any = None, waited: Optional[float] = None,
              hint: str = "", classes: Classes = {}) -> errors.ServerUnavailable:
    """The error of a call ``what`` that was sent to ``server`` and got no answer: within the read
    timeout ``waited`` (seconds), or because the connection broke (``cause``). A ``write`` may have
    been applied: ``OutcomeUnknown``; a read: ``ServerUnavailable``."""
    if waited is not None:
        within = f"within client_read_timeout={waited:g} s"
        if write:
            return _made(errors.OutcomeUnknown, classes,
                         f"{what} reached {server}, but it gave no answer {within}: {UNKNOWN_OUTCOME}")
        return _made(errors.ServerUnavailable, classes,
                     f"{server} gave no answer to {what} {within}; is it overloaded or stopped? "
                     "(raise client_read_timeout for calls that legitimately take longer)")
    if write:
        return _made(errors.OutcomeUnknown, classes,
                     f"{what} reached {server}, but its answer never came ({cause}): {UNKNOWN_OUTCOME}{hint}")
    return _made(errors.ServerUnavailable, classes, f"{server} gave no answer to {what}: {cause}{hint}")
