"""What every client of a chroma server shares, whatever its wire.

The base class checks the whole configuration as every mode does, loads the
embedding function the settings name (it runs in the caller's process; with
none named, the server's default model embeds documents and query texts, so
a thin client needs no model) and runs Local's checks of collection-level
arguments before a request leaves; per-collection arguments are checked by
``chroma.api.arguments``. Subclasses carry the calls over their wire.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np

from chroma import embedding, errors, registry, validation
from chroma.api import API, CLIENT_CLOSED, RESET_DISABLED
from chroma.collection import Collection
from chroma.config import Settings
from chroma.types import EmbeddingFunction


def to_json(value: Any) -> bytes:
    """``value`` as compact JSON; numpy arrays and scalars become lists and numbers.

    Raises:
        InvalidArgument: something JSON cannot carry.
    """
    try:
        return json.dumps(value, default=numpy_to_json, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise errors.InvalidArgument(str(exc)) from None


def numpy_to_json(value: Any) -> Any:
    """``json.dumps``' fallback: numpy arrays and scalars as lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} cannot be sent as JSON")


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Remote(API):
    """The parts of a server's client that do not depend on the wire."""

    def __init__(self, settings: Settings) -> None:
        # The whole configuration is checked as in every mode, even the parts
        # only the server uses.
        registry.check("db_impl", settings.db_impl)
        registry.check("index_impl", settings.index_impl)
        self._settings = settings
        self._closed = False
        self._default_embedding_function: Optional[EmbeddingFunction] = None
        # Unset: the server's default model embeds documents and query texts, so this
        # process needs no model.
        self._server_default_model = settings.embedding_function is None
        if settings.embedding_function and settings.embedding_function != embedding.DISABLED:
            from chroma.api.local import load_embedding_function

            self._default_embedding_function = load_embedding_function(settings.embedding_function)

    def _collection(self, data: dict, embedding_function: Optional[EmbeddingFunction]) -> Collection:
        """A handle on the collection a server described as ``{"id", "name", "metadata"}``."""
        if embedding_function == embedding.DISABLED:
            return Collection(self, data["id"], data["name"], data["metadata"], None)
        function = embedding_function or self._default_embedding_function
        return Collection(self, data["id"], data["name"], data["metadata"], function,
                          default_model=function is None and self._server_default_model)

    @staticmethod
    def _creation(name: Any, metadata: Any) -> Optional[dict]:
        """Local's checks of ``create_collection``'s arguments; the metadata to send."""
        validation.collection_name(name)
        return validation.collection_metadata(metadata)

    @staticmethod
    def _modification(name: Any, metadata: Any) -> Optional[dict]:
        """Local's checks of ``modify``'s arguments; the metadata to send."""
        if name is not None:
            validation.collection_name(name)
        return None if metadata is None else validation.collection_metadata(metadata)

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        """Raises ClientClosed once :meth:`close` was called."""
        if self._closed:
            raise errors.ClientClosed(CLIENT_CLOSED)

    def _check_reset(self) -> None:
        """Both sides must allow ``reset()``: this client's setting first, then the server's."""
        if not self._settings.allow_reset:
            raise errors.ResetDisabled(RESET_DISABLED)
