"""What ``chroma.api.Local`` derives from the DB for one collection, kept together.

The vector index, the label -> id map (so a query for ids and distances needs
no DB statement, nor a count), from the collection's first filtered query on,
its metadata as columns (so ``where`` needs none either), and from its first
read of documents or metadatas on, those texts (``chroma.index.item_texts``,
so ``get`` by ids and ``query`` with documents need none). All are derived state:
loaded or rebuilt from the DB, then kept current by the writes, which apply
to all of them one at a time in commit order (on the client's derived-update
thread, ``chroma.api.behind``). Queries run beside them,
so each change is applied in an order that lets a concurrent query see an
item whole or not at all: a new item gets its texts before its id and its id
before its vector, and a deleted one loses its vector before its id and its id
before its texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from chroma.db import UNCHANGED, Changes, Records, StoredItems, WriteResult
from chroma.index import DEFAULT_SEARCH_EF, Index
from chroma.index.item_texts import ItemTexts
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
    texts: Optional[ItemTexts] = None
    """None until a read of documents or metadatas needs them."""

    def _store(self, items: Optional[StoredItems]) -> None:
        if items is None:
            raise ValueError("the DB did not report the items of a write")
        if self.texts is not None:
            self.texts.store(items.labels, items.documents, items.metadatas)
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
        if self.texts is not None:
            self.texts.remove(labels)

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

    def records(self, labels: np.ndarray, include: Sequence[str],
                stored_vectors: Callable[[np.ndarray], Records]) -> Records:
        """The items with these labels, in the order given (labels not stored are left out), with
        the fields of ``include``: documents and metadatas from ``texts`` (load it first when asking
        for them), embeddings from ``stored_vectors`` (the DB's ``get_by_labels``): the index may
        hold normalised copies, and the user's vectors come back exactly as stored.

        A concurrent delete may remove an item between its lookups; it is then left out.
        """
        labels = np.asarray(labels, dtype=np.int64)
        ids = self.ids.ids_of(labels)
        known = np.fromiter((item_id is not None for item_id in ids), dtype=bool, count=len(ids))
        documents = metadatas = None
        if "documents" in include or "metadatas" in include:
            assert self.texts is not None, "load the texts first"
            found, documents, metadatas = self.texts.read(labels[known], "documents" in include,
                                                          "metadatas" in include)
            if not found.all():  # deleted between the two lookups
                known[np.flatnonzero(known)[~found]] = False
        records = Records(ids=[item_id for item_id, keep in zip(ids, known.tolist()) if keep], labels=labels[known],
                          documents=documents, metadatas=metadatas)
        if "embeddings" not in include:
            return records
        if not len(records.labels):
            records.embeddings = np.empty((0, self.index.dim), dtype=np.float32)
            return records
        vectors = stored_vectors(records.labels)
        if len(vectors.labels) != len(records.labels):  # deleted since: keep the items both have
            records = _kept(records, np.isin(records.labels, vectors.labels))
        records.embeddings = vectors.embeddings
        return records

    def select(self, ids: Optional[list[str]], allowed: Optional[np.ndarray], limit: Optional[int],
               offset: Optional[int]) -> np.ndarray:
        """The labels a ``get`` returns, in its order: those of ``ids`` in the order given (else every
        item, in insertion order, i.e. by label), within ``allowed`` if given, then ``offset`` and
        ``limit`` applied."""
        if ids is None:
            labels = self.ids.labels()
        else:
            labels = self.ids.labels_of(ids)
            labels = labels[labels >= 0]
        if allowed is not None:
            labels = labels[np.isin(labels, allowed)]
        start = offset or 0
        return labels[start : None if limit is None else start + limit]


def _kept(records: Records, keep: np.ndarray) -> Records:
    """The rows of ``records`` flagged in ``keep``."""
    flags = keep.tolist()
    return Records(ids=[i for i, k in zip(records.ids, flags) if k], labels=records.labels[keep],
                   documents=None if records.documents is None else [d for d, k in zip(records.documents, flags) if k],
                   metadatas=None if records.metadatas is None else [m for m, k in zip(records.metadatas, flags) if k])
