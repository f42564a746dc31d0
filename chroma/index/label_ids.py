"""The item id behind each label of a collection's vector index.

Derived from the DB like the index itself and kept beside it, so that a query
asking for nothing but ids and distances is answered without a DB statement:
one DuckDB statement (0.3-0.8 ms) costs several times the HNSW search itself.

The ids loaded from the DB stay in two aligned numpy arrays (labels sorted),
which costs one array conversion instead of a dict entry per item, so a
reopened collection answers its first query sooner. Later additions go to a
dict and are folded into the arrays once the dict holds as many entries as
the arrays, which keeps every write O(batch) amortized.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

_FOLD_AT_LEAST = 4096
"""Additions kept in the dict before folding them into the arrays, whatever the arrays' size."""


class _Arrays:
    """The sorted labels, their ids and which are still alive; replaced as a whole by a fold."""

    __slots__ = ("labels", "ids", "alive", "added")

    def __init__(self, labels: np.ndarray, ids: np.ndarray) -> None:
        self.labels = labels
        self.ids = ids
        self.alive = np.ones(len(labels), dtype=bool)
        self.added: dict[int, str] = {}
        """Labels mapped since the arrays were built."""

    def positions(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, found)``: where each label sits in the arrays, and whether it is there and alive."""
        if not len(self.labels):
            return np.zeros(len(labels), dtype=np.int64), np.zeros(len(labels), dtype=bool)
        positions = np.minimum(np.searchsorted(self.labels, labels), len(self.labels) - 1)
        return positions, (self.labels[positions] == labels) & self.alive[positions]


class LabelIds:
    """label -> id of the items of one collection. Writers hold the client's write lock.

    Lookups may run while a writer changes the map; a lookup then sees each
    label either before or after the change, never a wrong id.
    """

    def __init__(self, labels: np.ndarray, ids: Sequence[str]) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        ids = np.asarray(ids, dtype=object)
        if len(labels) != len(ids):
            raise ValueError(f"{len(labels)} labels but {len(ids)} ids")
        if len(labels) > 1 and not bool(np.all(labels[1:] > labels[:-1])):
            order = np.argsort(labels, kind="stable")
            labels, ids = labels[order], ids[order]
        self._arrays = _Arrays(labels, ids)
        self._dead = 0

    def __len__(self) -> int:
        arrays = self._arrays
        return len(arrays.labels) - self._dead + len(arrays.added)

    def labels(self) -> np.ndarray:
        """Every mapped label, ascending."""
        arrays = self._arrays
        added = np.fromiter(arrays.added.keys(), dtype=np.int64, count=len(arrays.added))
        if not len(added) and not self._dead:
            return arrays.labels
        return np.sort(np.concatenate([arrays.labels[arrays.alive], added]))

    def ids_of(self, labels: np.ndarray) -> list[Optional[str]]:
        """The id of each label, None for a label not in the map (a concurrent delete removed it)."""
        labels = np.asarray(labels, dtype=np.int64)
        arrays = self._arrays  # one snapshot: a fold replaces it as a whole
        if not len(arrays.labels):
            return [arrays.added.get(label) for label in labels.tolist()]
        positions, found = arrays.positions(labels)
        mapped = arrays.ids[positions].tolist()
        if arrays.added or not found.all():
            added = arrays.added
            return [item_id if hit else added.get(label)
                    for label, item_id, hit in zip(labels.tolist(), mapped, found.tolist())]
        return mapped

    def add(self, labels: np.ndarray, ids: Sequence[str]) -> None:
        """Maps each label to its id (a label already mapped keeps it: labels never change ids)."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        arrays = self._arrays
        _, known = arrays.positions(labels)
        arrays.added.update((label, item_id) for label, item_id, old in zip(labels.tolist(), ids, known.tolist())
                            if not old)
        if len(arrays.added) >= max(_FOLD_AT_LEAST, len(arrays.labels) - self._dead):
            self._fold()

    def remove(self, labels: np.ndarray) -> None:
        """Unmaps labels; unknown ones are ignored."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        arrays = self._arrays
        for label in labels.tolist():
            arrays.added.pop(label, None)
        positions, found = arrays.positions(labels)
        gone = np.unique(positions[found])
        if len(gone):
            arrays.alive[gone] = False
            self._dead += len(gone)
            if self._dead > max(_FOLD_AT_LEAST, len(arrays.labels) // 2):
                self._fold()

    def _fold(self) -> None:
        """Rebuilds the arrays from their live entries and the additions (lookups keep the old ones)."""
        old = self._arrays
        added_labels = np.fromiter(old.added.keys(), dtype=np.int64, count=len(old.added))
        added_ids = np.empty(len(old.added), dtype=object)
        added_ids[:] = list(old.added.values())
        labels = np.concatenate([old.labels[old.alive], added_labels])
        ids = np.concatenate([old.ids[old.alive], added_ids])
        order = np.argsort(labels, kind="stable")
        self._arrays = _Arrays(labels[order], ids[order])
        self._dead = 0
