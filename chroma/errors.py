"""Every exception chroma raises on purpose.

All derive from :class:`ChromaError`. Input errors also derive from
:class:`ValueError`, missing things from :class:`KeyError` (through
:class:`NotFoundError`), so ``except ValueError`` keeps working for callers who
do not know chroma's classes. Each class carries the HTTP status a server
answers with, and :func:`from_name` rebuilds an exception that crossed the
wire, so a remote client raises the same class with the same message as Local.
"""

from __future__ import annotations


class ChromaError(Exception):
    """Base class of every chroma error."""

    status_code = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        # KeyError quotes its argument; chroma messages are prose, shown as is.
        return self.message


class InvalidArgument(ChromaError, ValueError):
    """A call's argument is malformed or out of range; nothing was changed."""

    status_code = 400


class ConfigurationError(ChromaError, ValueError):
    """A setting has an unknown name or a bad value."""

    status_code = 400


class InvalidDimensionError(InvalidArgument):
    """An embedding's dimension differs from the collection's."""


class DuplicateIDError(InvalidArgument):
    """An id is repeated in a batch, or added when it already exists."""

    status_code = 409


class CollectionExists(ChromaError, ValueError):
    """A collection of that name exists already."""

    status_code = 409


class NotFoundError(ChromaError, KeyError):
    """Something named by the caller does not exist."""

    status_code = 404


class CollectionNotFound(NotFoundError):
    """No collection has that name (or id)."""


class IDNotFoundError(NotFoundError):
    """An id given to ``update`` is not in the collection."""


class ResetDisabled(ChromaError, PermissionError):
    """``reset()`` was called while the ``allow_reset`` setting is false."""

    status_code = 403


class PersistentDirectoryLocked(ChromaError):
    """Another process holds the persistent directory open for writing."""

    status_code = 409


class IndexFileError(ChromaError, ValueError):
    """A saved vector index cannot be loaded: truncated, corrupted, of another format version, or not an index file."""

    status_code = 500


class MissingDependency(ChromaError, ImportError):
    """An implementation was chosen whose optional dependency is not installed."""

    status_code = 500


class EmbeddingModelUnavailable(ChromaError):
    """The default embedding model's files cannot be had: not in CHROMA_EMBEDDING_MODEL_DIR
    nor the cache, and no download (offline, or a file failed its SHA-256 check)."""

    status_code = 503


class EmbeddingFunctionMismatch(InvalidArgument):
    """Texts would be embedded by another model than the one that made the collection's vectors."""


class Unauthorized(ChromaError):
    """A server refused the request for lack of a valid token."""

    status_code = 401


class PayloadTooLarge(InvalidArgument):
    """A request exceeds a server's size or batch limits."""

    status_code = 413


class DeadlineExceeded(ChromaError, TimeoutError):
    """A server gave up on a call that ran past its ``request_timeout``. A write's outcome is
    then unknown: it may still have been committed."""

    status_code = 504


class StorageFull(ChromaError):
    """The store's disk is full: the write changed nothing. Reads keep working, and
    writes work again once space is freed, with no restart."""

    status_code = 507


class StorageCorrupt(ChromaError):
    """A store's file cannot be read back: the message names the file and what to do."""

    status_code = 500


class ServerUnavailable(ChromaError, ConnectionError):
    """A client could not reach its server (not running, wrong host or port, network down)."""

    status_code = 503


class OutcomeUnknown(ServerUnavailable):
    """A write was sent but its answer never came (the connection broke, the server stopped):
    it may or may not have been applied. Read back what it wrote before sending it again."""


class ClientClosed(ChromaError):
    """A client (or the DB under it) was used after ``close()``, after leaving its ``with``
    block, or after the interpreter began to exit."""

    status_code = 500


class WorkerError(ChromaError):
    """Work handed to Celery workers did not finish: no worker took it, or the
    workers stopped making progress (one died and none took its task again)."""

    status_code = 503


def _all_error_classes() -> dict[str, type[ChromaError]]:
    found: dict[str, type[ChromaError]] = {}
    stack: list[type[ChromaError]] = [ChromaError]
    while stack:
        cls = stack.pop()
        if cls.__module__ == __name__:  # not a client's subclass of the same name (chroma.api.fastapi)
            found[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return found


def from_name(name: str, message: str) -> ChromaError:
    """Rebuild the exception named ``name`` (a class of this module).

    An unknown name gives a plain :class:`ChromaError` that keeps the name in
    its message, so nothing a server said is lost.
    """
    cls = _all_error_classes().get(name)
    if cls is None:
        return ChromaError(f"{name}: {message}")
    return cls(message)
