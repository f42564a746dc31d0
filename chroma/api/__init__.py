"""``chroma.API``: the user-facing client interface, the same in every mode.

The public methods manage collections; a :class:`chroma.Collection` calls the
underscored per-collection methods, which a remote client implements over its
wire. Implementations (imported on first use by ``chroma.get_api()``):
``chroma.api.Local``. Where ``../shared/API.md`` is silent, the choices made
are listed in ``docs/api-choices.md`` and tested by the conformance suite.
"""

from __future__ import annotations

import abc
import warnings
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from chroma import errors, registry
from chroma.types import EmbeddingFunction, GetResult, QueryResult, Readiness

if TYPE_CHECKING:
    from chroma.collection import Collection


CLIENT_CLOSED = "this chroma client was closed; open another with chroma.Client(...) or chroma.get_api()"
RESET_DISABLED = ("reset() is disabled; enable it with chroma.configure(allow_reset=True) "
                  "or CHROMA_ALLOW_RESET=1")


class API(abc.ABC):
    """A client of a chroma store (in this process or on a server)."""

    @abc.abstractmethod
    def heartbeat(self) -> int:
        """The store's clock in nanoseconds; raises if the store cannot answer."""

    @abc.abstractmethod
    def version(self) -> str:
        """The store's chroma version."""

    @abc.abstractmethod
    def ready(self) -> Readiness:
        """Whether the store takes writes now (``writable``, and the ``problem`` when not) and
        what is loaded; see :class:`chroma.types.Readiness`. A store that cannot take writes
        does not raise here: it answers ``writable=False``."""

    @abc.abstractmethod
    def list_collections(self) -> list["Collection"]:
        """Every collection, sorted by name."""

    @abc.abstractmethod
    def create_collection(
        self,
        name: str,
        metadata: Optional[dict] = None,
        get_or_create: bool = False,
        embedding_function: Optional[EmbeddingFunction] = None,
    ) -> "Collection":
        """Creates a collection.

        Raises:
            InvalidArgument: a bad name or metadata.
            CollectionExists: the name is taken and ``get_or_create`` is false.
        """

    @abc.abstractmethod
    def get_collection(self, name: str, embedding_function: Optional[EmbeddingFunction] = None) -> "Collection":
        """The collection named ``name``. Raises CollectionNotFound."""

    def get_or_create_collection(
        self, name: str, metadata: Optional[dict] = None, embedding_function: Optional[EmbeddingFunction] = None
    ) -> "Collection":
        """The collection named ``name``, created with ``metadata`` if missing (an existing one is unchanged)."""
        return self.create_collection(name, metadata, get_or_create=True, embedding_function=embedding_function)

    @abc.abstractmethod
    def delete_collection(self, name: str) -> None:
        """Deletes a collection and its items. Raises CollectionNotFound."""

    @abc.abstractmethod
    def reset(self) -> bool:
        """Deletes everything; returns True (as the original Chroma did). Raises ResetDisabled
        unless ``allow_reset`` is set."""

    # Per-collection operations, called by Collection.
    @abc.abstractmethod
    def _modify(self, collection_id: str, name: Optional[str], metadata: Optional[dict]) -> tuple[str, Optional[dict]]:
        """Renames and/or replaces metadata; returns the new ``(name, metadata)``."""

    @abc.abstractmethod
    def _count(self, collection_id: str) -> int: ...

    # The writes store what they are given. With ``embed_missing`` (a server's client whose
    # collection leaves documents to the store), documents that come without embeddings are
    # embedded by the store's default model; without it they are stored as documents only.
    @abc.abstractmethod
    def _add(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
             embed_missing: bool = False) -> None: ...

    @abc.abstractmethod
    def _update(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
                embed_missing: bool = False) -> None: ...

    @abc.abstractmethod
    def _upsert(self, collection_id: str, ids: Any, embeddings: Any, metadatas: Any, documents: Any, *,
                embed_missing: bool = False) -> None: ...

    @abc.abstractmethod
    def _delete(self, collection_id: str, ids: Any, where: Any, where_document: Any) -> None: ...

    @abc.abstractmethod
    def _get(
        self,
        collection_id: str,
        ids: Any,
        where: Any,
        where_document: Any,
        limit: Any,
        offset: Any,
        include: Sequence[str],
    ) -> GetResult: ...

    @abc.abstractmethod
    def _query(
        self,
        collection_id: str,
        query_embeddings: Any,
        n_results: Any,
        where: Any,
        where_document: Any,
        include: Sequence[str],
    ) -> QueryResult: ...

    def persist(self) -> None:
        """Chroma 0.3's call to write a ``duckdb+parquet`` store to disk: not needed here (a write is
        durable when it returns), kept as a deprecated no-op."""
        warnings.warn("persist() is not needed: every write is durable when it returns", DeprecationWarning,
                      stacklevel=2)

    def _embed_default(self, collection_id: str, texts: list[str], write: bool,
                       max_tokens: Optional[int] = None) -> np.ndarray:
        """``texts`` embedded by the default model (``chroma.embedding``) in this process, for the
        collection ``collection_id`` (``write``: its documents, else query texts). Local also checks
        and records the collection's model."""
        from chroma import embedding

        return embedding.embed(texts, max_tokens=max_tokens)

    def _query_texts(self, collection_id: str, query_texts: list[str], n_results: Any, where: Any,
                     where_document: Any, include: Sequence[str]) -> QueryResult:
        """A query by texts that the store embeds with its default model (a collection handle with
        ``default_model``: a server's client without a function of its own)."""
        from chroma.collection import NO_EMBEDDING_FUNCTION

        raise errors.InvalidArgument(NO_EMBEDDING_FUNCTION.replace("documents were given", "query_texts were given"))

    def _embeds_documents(self, embedding_function: Optional[EmbeddingFunction], count: int) -> bool:
        """Whether this client computes the embeddings of a write's ``count`` documents itself
        (``chroma.api.Celery``: on its workers) rather than the Collection before the call."""
        return False

    def close(self) -> None:
        """Releases what the client holds (a persistent directory's lock, connections, threads);
        any later call raises ``ClientClosed``. Closing twice is harmless."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a closed client raises ``ClientClosed``)."""
        return False

    def __enter__(self) -> "API":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# chroma.api.<ClassName> imports its implementation on first access only.
__getattr__ = registry.lazy_attributes("api_impl", "chroma.api")
