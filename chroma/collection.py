"""``chroma.Collection``: a handle on one collection, the same in every mode.

It runs the collection's embedding function in the caller's process (so a
remote server never needs the model) and passes everything else to its client.
A handle with ``default_model`` and no function (a server's client) leaves
documents and query texts to the store, which embeds them with its default
model (``chroma.embedding``); the default model given as the function
(``DefaultEmbeddingFunction``, what Local and Celery use) embeds through the
client, which records and checks the collection's model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from chroma import validation
from chroma.embedding import MODEL_METADATA_KEY, DefaultEmbeddingFunction
from chroma.errors import EmbeddingFunctionMismatch, InvalidArgument
from chroma.types import GET_INCLUDE, EmbeddingFunction, GetResult, QueryResult

if TYPE_CHECKING:
    from chroma.api import API

NO_EMBEDDING_FUNCTION = (
    "documents were given without embeddings and the collection has no embedding function; "
    "pass embeddings=..., or give one with "
    "client.get_or_create_collection(name, embedding_function=f) (f maps a list of texts to vectors), "
    "or set a default with chroma.configure(embedding_function='module:name') "
    "(the built-in default model is off here: embedding_function='none')"
)


class Collection:
    """A named set of items (id, embedding, metadata, document)."""

    def __init__(
        self,
        client: "API",
        id: str,
        name: str,
        metadata: Optional[dict],
        embedding_function: Optional[EmbeddingFunction] = None,
        *,
        default_model: bool = False,
    ) -> None:
        self._client = client
        self.id = id
        self.name = name
        self.metadata = metadata
        self.embedding_function = embedding_function
        self._default_model = default_model and embedding_function is None

    def __repr__(self) -> str:
        return f"Collection(name={self.name!r}, id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collection) and (self.id, self.name, self.metadata) == (other.id, other.name, other.metadata)

    def __hash__(self) -> int:
        return hash(self.id)

    def _embed(self, texts: list[str], what: str, max_tokens: Optional[int] = None) -> Optional[np.ndarray]:
        """Embeddings of ``texts`` by the embedding function, or None without one.

        Raises:
            EmbeddingFunctionMismatch: the collection's vectors came from another model.
        """
        if self.embedding_function is None:
            return None
        if isinstance(self.embedding_function, DefaultEmbeddingFunction):
            return self._client._embed_default(self.id, list(texts), write=what == "documents", max_tokens=max_tokens)
        recorded = (self.metadata or {}).get(MODEL_METADATA_KEY)
        if recorded is not None:
            raise EmbeddingFunctionMismatch(
                f"collection {self.name!r} holds vectors of the default model {recorded}; its {what} cannot be "
                f"embedded by another function ({self.embedding_function!r}); open it without an "
                "embedding function, or pass embeddings=...")
        vectors = self.embedding_function(list(texts))
        array = validation.embeddings(vectors, what=f"embedding function output for {what}")
        if array.shape[0] != len(texts):
            raise InvalidArgument(f"the embedding function returned {array.shape[0]} vectors for {len(texts)} texts")
        return array

    def _documents(self, ids: Any, documents: Any) -> Optional[list]:
        count = len(ids) if isinstance(ids, Sequence) and not isinstance(ids, str) else 1
        return validation.per_item(documents, count, "documents", validation.document)

    def _write_embeddings(self, ids: Any, embeddings: Any, documents: Any, required: bool,
                          max_tokens: Optional[int] = None) -> Any:
        """The embeddings to write: as given, else computed from the documents.

        A ``None`` document gets a ``None`` embedding (for update and upsert:
        that item's vector stays as it is). None when the client embeds the
        documents itself (see ``API._embeds_documents``).
        """
        if embeddings is not None or documents is None:
            return embeddings
        texts = self._documents(ids, documents)
        if self._default_model or self._client._embeds_documents(self.embedding_function, len(texts)):
            return None
        present = [i for i, text in enumerate(texts) if text is not None]
        try:
            computed = self._embed([texts[i] for i in present], "documents", max_tokens) if present else None
        except EmbeddingFunctionMismatch:
            if required or not isinstance(self.embedding_function, DefaultEmbeddingFunction):
                raise
            # An update or upsert of documents alone on a collection of given vectors: the default
            # model embeds nothing there, so the items keep their vectors (a new id still needs one).
            return None
        if computed is None:
            if required and self.embedding_function is None:
                raise InvalidArgument(NO_EMBEDDING_FUNCTION)
            if required:
                raise InvalidArgument("every document is None, so there is nothing to embed; pass embeddings=...")
            return None
        if len(present) == len(texts):
            return computed
        rows: list = [None] * len(texts)
        for row, position in zip(computed, present):
            rows[position] = row
        return rows

    def add(self, ids: Any, embeddings: Any = None, metadatas: Any = None, documents: Any = None) -> None:
        """Adds items. With documents and no embeddings, the embedding function computes them.

        Raises:
            DuplicateIDError: an id exists or repeats in the batch (nothing is written).
            InvalidDimensionError: the dimension differs from the collection's.
            InvalidArgument: malformed input, or documents without embeddings and no embedding function.
        """
        if embeddings is None and documents is None:
            raise InvalidArgument("add needs embeddings, or documents and an embedding function")
        embeddings = self._write_embeddings(ids, embeddings, documents, required=True)
        self._client._add(self.id, ids, embeddings, metadatas, documents, embed_missing=self._default_model)

    def upsert(self, ids: Any, embeddings: Any = None, metadatas: Any = None, documents: Any = None) -> None:
        """Adds new ids as :meth:`add` does and changes existing ones as :meth:`update` does, atomically."""
        embeddings = self._write_embeddings(ids, embeddings, documents, required=False)
        self._client._upsert(self.id, ids, embeddings, metadatas, documents, embed_missing=self._default_model)

    def update(self, ids: Any, embeddings: Any = None, metadatas: Any = None, documents: Any = None) -> None:
        """Changes existing items: given fields replace, missing fields stay.

        Documents given without embeddings are re-embedded when the collection
        has an embedding function. A ``None`` entry in ``metadatas`` or
        ``documents`` leaves that item's field as it is.

        Raises:
            IDNotFoundError: an id is not in the collection (nothing is changed).
        """
        embeddings = self._write_embeddings(ids, embeddings, documents, required=False)
        self._client._update(self.id, ids, embeddings, metadatas, documents, embed_missing=self._default_model)

    def delete(self, ids: Any = None, where: Any = None, where_document: Any = None) -> None:
        """Deletes the items matching every given argument; unknown ids are ignored.

        Raises:
            InvalidArgument: no argument at all (to prevent an accidental wipe), or a malformed filter.
        """
        self._client._delete(self.id, ids, where, where_document)

    def get(
        self,
        ids: Any = None,
        where: Any = None,
        where_document: Any = None,
        limit: Optional[int] = None,
        offset: Optional[int] = None,
        include: Sequence[str] = ("metadatas", "documents"),
    ) -> GetResult:
        """Items by id (in the order asked) or by filter (in insertion order)."""
        return self._client._get(self.id, ids, where, where_document, limit, offset, include)

    def peek(self, limit: int = 10) -> GetResult:
        """The first ``limit`` items, with embeddings, metadatas and documents."""
        return self.get(limit=limit, include=GET_INCLUDE)

    def query(
        self,
        query_embeddings: Any = None,
        query_texts: Any = None,
        n_results: int = 10,
        where: Any = None,
        where_document: Any = None,
        include: Sequence[str] = ("metadatas", "documents", "distances"),
    ) -> QueryResult:
        """The ``n_results`` nearest items to each query, nearest first.

        Give either ``query_embeddings`` or ``query_texts`` (embedded by the
        embedding function). With filters, the nearest among matching items;
        fewer matches give fewer results, never an error.
        """
        if (query_embeddings is None) == (query_texts is None):
            raise InvalidArgument("give exactly one of query_embeddings and query_texts")
        if query_texts is not None:
            if isinstance(query_texts, str):
                query_texts = [query_texts]
            if not isinstance(query_texts, Sequence) or not query_texts or not all(isinstance(t, str) for t in query_texts):
                raise InvalidArgument(f"query_texts must be a non-empty list of strings, got {query_texts!r}")
            if self._default_model:
                return self._client._query_texts(self.id, list(query_texts), n_results, where, where_document,
                                                 include)
            query_embeddings = self._embed(list(query_texts), "query_texts")
            if query_embeddings is None:
                raise InvalidArgument(NO_EMBEDDING_FUNCTION.replace("documents were given", "query_texts were given"))
        return self._client._query(self.id, query_embeddings, n_results, where, where_document, include)

    def count(self) -> int:
        """The number of items."""
        return self._client._count(self.id)

    def modify(self, name: Optional[str] = None, metadata: Optional[dict] = None) -> None:
        """Renames the collection and/or replaces its metadata.

        Raises:
            CollectionExists: ``name`` is taken.
            InvalidArgument: a bad name or metadata, or a different ``hnsw:space``.
        """
        self.name, self.metadata = self._client._modify(self.id, name, metadata)
