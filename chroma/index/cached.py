"""What ``chroma.api.Local`` derives from the DB for one collection, kept together.

The vector index, the label -> id map (so a query for ids and distances needs
no DB statement) and, from the collection's first filtered query on, its
metadata as columns (so ``where`` needs none either). All are derived state:
loaded or rebuilt from the DB, then kept current by the writes, which apply
to all of them under the client's write lock. Queries run without that lock,
so each change is applied in an order that lets a concurrent query see an
item whole or not at all: a new item gets its id before its vector, and a
deleted one loses its vector before its id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

from chroma.db import Changes, StoredItems, WriteResult
from chroma.index import Index
from chroma.index.label_ids import LabelIds
from chroma.index.metadata_columns import MetadataColumns


@dataclass
class CachedCollection:
    index: Index
    ids: LabelIds
    versions: frozenset
    """The DB's committed batch versions this state reflects (see ``DB.changes_since``)."""
    metadata: Optional[MetadataColumns] = None
    """None until a filtered query needs it."""

    def _store(self, items: Optional[StoredItems]) -> None:
        if items is None:
            raise ValueError("the DB did not report the items of a write")
        self.ids.add(items.labels, items.ids)
        if self.metadata is not None and items.metadatas is not None:
            self.metadata.replace(items.labels, items.metadatas)

    def apply_write(self, result: WriteResult, indexing: Optional["IndexingInFlight"] = None) -> None:
        """Applies a write committed through this client; ``indexing``: its vectors are being indexed already.

        Raises:
            ValueError: the result does not report its items (the caller drops this state).
            Whatever indexing the vectors raised (the caller drops this state).
        """
        self._store(result.items)
        if indexing is not None:
            indexing.wait()
        elif result.embeddings is not None and len(result.labels):
            self.index.add(result.labels, result.embeddings)
        if result.version is not None:
            self.versions = self.versions | {result.version}

    def apply_delete(self, labels: np.ndarray) -> None:
        if not len(labels):
            return
        self.index.remove(labels)
        self.ids.remove(labels)
        if self.metadata is not None:
            self.metadata.remove(labels)

    def apply_changes(self, changes: Changes) -> None:
        """Applies the batches other processes committed (``DB.changes_since``)."""
        self.apply_delete(changes.removed)
        self._store(changes.items)
        if len(changes.labels):
            self.index.add(changes.labels, changes.embeddings)
        self.versions = changes.versions


class IndexingInFlight:
    """Vectors going into an index in a thread of their own, while the DB commits their batch.

    The core's add runs without the GIL, so the index grows while the DB
    writes and commits (Python and DuckDB work). Until the batch is
    committed and its ids are mapped, a concurrent query that meets one of
    its labels does not find its id and searches again after the write (see
    ``Local._query``); if the DB fails instead, the index holds vectors the DB
    does not, so the caller drops this derived state.
    """

    def __init__(self, index: Index, labels: np.ndarray, vectors: np.ndarray) -> None:
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(index, labels, vectors), name="chroma-index-add",
                                        daemon=True)
        self._thread.start()

    def _run(self, index: Index, labels: np.ndarray, vectors: np.ndarray) -> None:
        try:
            index.add(labels, vectors)
        except BaseException as exc:  # re-raised by wait()
            self._error = exc

    def wait(self) -> None:
        """Returns once the vectors are in; raises what adding them raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
