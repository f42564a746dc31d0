"""What ``chroma.api.Local`` derives from the DB for one collection, kept together.

The vector index, the label -> id map (so a query for ids and distances needs
no DB statement) and, from the collection's first filtered query on, its
metadata as columns (so ``where`` needs none either). All are derived state:
loaded or rebuilt from the DB, then kept current by the writes, which apply
to all of them one at a time in commit order (on the client's derived-update
thread, ``chroma.api.behind``). Queries run beside them,
so each change is applied in an order that lets a concurrent query see an
item whole or not at all: a new item gets its id before its vector, and a
deleted one loses its vector before its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from chroma.db import UNCHANGED, Changes, StoredItems, WriteResult
from chroma.index import DEFAULT_SEARCH_EF, Index
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

    def apply_write(self, result: WriteResult) -> None:
        """Applies a write committed through this client.

        Raises:
            ValueError: the result does not report its items (the caller drops this state).
        """
        self._store(result.items)
        if result.embeddings is not None and len(result.labels):
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

    def apply_settings(self, metadata: Optional[dict]) -> None:
        """Applies the index settings of the collection's ``metadata`` that may change after
        creation: ``hnsw:search_ef`` (its default when the key is gone)."""
        self.index.set_search_ef(int((metadata or {}).get("hnsw:search_ef", DEFAULT_SEARCH_EF)))

    def apply_changes(self, changes: Changes) -> None:
        """Applies the batches other processes committed (``DB.changes_since``)."""
        self.apply_delete(changes.removed)
        self._store(changes.items)
        if len(changes.labels):
            self.index.add(changes.labels, changes.embeddings)
        if changes.metadata is not UNCHANGED:
            self.apply_settings(changes.metadata)
        self.versions = changes.versions
