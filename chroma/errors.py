"""Every exception chroma raises on purpose.

All derive from :class:`ChromaError`. Input errors also derive from
:class:`ValueError`, missing things from :class:`KeyError` (through
:class:`NotFoundError`), so ``except ValueError`` keeps working for callers who
do not know chroma's classes. How each crosses the wire (HTTP status, Flight
error kind) and is rebuilt on the other side is :mod:`chroma.protocol.error_map`,
so a remote client raises the same class with the same message as Local.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from chroma.protocol.error_map import Origin


class ChromaError(Exception):
    """Base class of every chroma error."""

    origin: Optional["Origin"] = None
    """Where a client's error came from (the server's URL or Flight location, and the status);
    None for an error raised in this process."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        # KeyError quotes its argument; chroma messages are prose, shown as is.
        return self.message


class InvalidArgument(ChromaError, ValueError):
    """A call's argument is malformed or out of range; nothing was changed."""


class ConfigurationError(ChromaError, ValueError):
    """A setting has an unknown name or a bad value."""


class InvalidDimensionError(InvalidArgument):
    """An embedding's dimension differs from the collection's."""


class DuplicateIDError(InvalidArgument):
    """An id is repeated in a batch, or added when it already exists."""


class CollectionExists(ChromaError, ValueError):
    """A collection of that name exists already."""


class NotFoundError(ChromaError, KeyError):
    """Something named by the caller does not exist."""


class CollectionNotFound(NotFoundError):
    """No collection has that name (or id)."""


class IDNotFoundError(NotFoundError):
    """An id given to ``update`` is not in the collection."""


class ResetDisabled(ChromaError, PermissionError):
    """``reset()`` was called while the ``allow_reset`` setting is false."""


class PersistentDirectoryLocked(ChromaError):
    """Another process holds the persistent directory open for writing."""


class IndexFileError(ChromaError, ValueError):
    """A saved vector index cannot be loaded: truncated, corrupted, of another format version, or not an index file."""


class MissingDependency(ChromaError, ImportError):
    """An implementation was chosen whose optional dependency is not installed."""


class EmbeddingModelUnavailable(ChromaError):
    """The default embedding model's files cannot be had: not in CHROMA_EMBEDDING_MODEL_DIR
    nor the cache, and no download (offline, or a file failed its SHA-256 check)."""


class EmbeddingFunctionMismatch(InvalidArgument):
    """Texts would be embedded by another model than the one that made the collection's vectors."""


class Unauthorized(ChromaError):
    """A server refused the request for lack of a valid token."""


class PayloadTooLarge(InvalidArgument):
    """A request exceeds a server's size or batch limits."""


class DeadlineExceeded(ChromaError, TimeoutError):
    """A server gave up on a call that ran past its ``request_timeout``. A write's outcome is
    then unknown: it may still have been committed."""


class StorageFull(ChromaError):
    """The store's disk is full: the write changed nothing. Reads keep working, and
    writes work again once space is freed, with no restart."""


class StorageCorrupt(ChromaError):
    """A store's file cannot be read back: the message names the file and what to do."""


class ServerUnavailable(ChromaError, ConnectionError):
    """A client could not reach its server (not running, wrong host or port, network down)."""


class OutcomeUnknown(ServerUnavailable):
    """A write was sent but its answer never came (the connection broke, the server stopped):
    it may or may not have been applied. Read back what it wrote before sending it again."""


class ClientClosed(ChromaError):
    """A client (or the DB under it) was used after ``close()``, after leaving its ``with``
    block, or after the interpreter began to exit."""


class WorkerError(ChromaError):
    """Work handed to Celery workers did not finish: no worker took it, or the
    workers stopped making progress (one died and none took its task again)."""
