"""One operation of the table (:mod:`chroma.protocol.operations`) as a server answers it,
whatever the wire: the arguments' defaults, the server's bounds the operation names, the
Local call, and the result as plain values (JSON-able, or a GetResult / QueryResult whose
vectors each transport encodes its own way).

Both servers decode a call into ``(operation, values)`` and encode what :class:`Dispatch`
gives back; nothing else of an operation is written per transport.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from chroma import errors
from chroma.api.local import Local
from chroma.collection import Collection
from chroma.protocol import operations as ops
from chroma.server.bounds import Bounds


def collection(found: Collection) -> dict:
    """A collection as it travels: ``{"id", "name", "metadata"}``."""
    return {"id": found.id, "name": found.name, "metadata": found.metadata}


class Dispatch:
    """Answers operations with ``api`` within ``bounds``."""

    def __init__(self, api: Local, bounds: Bounds) -> None:
        self.api = api
        self.bounds = bounds
        own: dict[str, Callable[..., Any]] = {"limits": bounds.report}  # the server's, not Local's
        self._targets: dict[str, Callable[..., Any]] = {
            name: (functools.partial(api.write_from_remote, name) if operation.flight == ops.PUT
                   else own.get(operation.method) or getattr(api, operation.method))
            for name, operation in ops.OPERATIONS.items()}
        self._defaults = {name: {argument: list(value) if isinstance(value, tuple) else value
                                 for argument, value in operation.defaults}
                          for name, operation in ops.OPERATIONS.items()}

    def values(self, operation: ops.Operation, given: dict) -> list:
        """The operation's arguments in order: those ``given``, else their defaults."""
        defaults = self._defaults[operation.name]
        return [given[name] if name in given else defaults.get(name) for name in operation.arguments]

    def __call__(self, operation: ops.Operation, given: dict) -> Any:
        """The result of ``operation`` called with ``given`` (argument name -> value)."""
        arguments = self.values(operation, given)
        if operation.arguments[:1] == ("collection_id",) and not isinstance(arguments[0], str):
            raise errors.InvalidArgument(f"collection_id must be a string, got {arguments[0]!r}")
        if operation.result == ops.QUERY_RESULT:
            return self._query(*arguments)
        self._check(operation, arguments)
        if operation.result == ops.GET_RESULT:
            limit = operation.arguments.index("limit")
            arguments[limit] = self.bounds.get_limit(arguments[limit])
            result = self._targets[operation.name](*arguments)
            self.bounds.check_get_rows(len(result["ids"]))
            return result
        result = self._targets[operation.name](*arguments)
        if operation.result == ops.NOTHING:
            return {}
        if operation.result == ops.COLLECTION:
            if isinstance(result, tuple):  # modify: the new name and metadata
                return {"id": arguments[0], "name": result[0], "metadata": result[1]}
            return collection(result)
        if operation.result == ops.COLLECTIONS:
            return [collection(found) for found in result]
        if operation.field is not None:
            return {operation.field: result}
        return result

    def _check(self, operation: ops.Operation, arguments: list) -> None:
        """The batch bounds the operation names (the others are the result's: see __call__)."""
        for bound, name in operation.bounds:
            value = arguments[operation.arguments.index(name)]
            if bound == ops.BATCH and isinstance(value, (list, np.ndarray)):
                self.bounds.check_batch(len(value), name)

    def _query(self, collection_id: str, query_embeddings: Any, query_texts: Any, n_results: Any, where: Any,
               where_document: Any, include: Any) -> Any:
        if query_texts is not None:
            if query_embeddings is not None:
                raise errors.InvalidArgument("give exactly one of query_embeddings and query_texts")
            texts = [query_texts] if isinstance(query_texts, str) else query_texts
            if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
                raise errors.InvalidArgument(f"query_texts must be a non-empty list of strings, got {texts!r}")
            self.bounds.check_batch(len(texts), "query_texts")
            self.bounds.check_n_results(n_results)
            self.bounds.check_query(len(texts), n_results)
            return self.api._query_texts(collection_id, texts, n_results, where, where_document, include)
        # a list of numbers is one query; a binary body or a Flight stream always holds a matrix
        queries = 1
        if isinstance(query_embeddings, np.ndarray) or (
                isinstance(query_embeddings, list) and query_embeddings and isinstance(query_embeddings[0], list)):
            self.bounds.check_batch(len(query_embeddings), "query_embeddings")
            queries = len(query_embeddings)
        self.bounds.check_n_results(n_results)
        self.bounds.check_query(queries, n_results)
        return self.api._query(collection_id, query_embeddings, n_results, where, where_document, include)
