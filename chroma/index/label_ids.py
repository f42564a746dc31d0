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

    __slots__ = ("labels", "ids", "alive", "added", "added_ids", "by_id")

    def __init__(self, labels: np.ndarray, ids: np.ndarray) -> None:
        self.labels = labels
        self.ids = ids
        self.alive = np.ones(len(labels), dtype=bool)
        self.added: dict[int, str] = {}
        """Labels mapped since the arrays were built."""
        self.added_ids: dict[str, int] = {}
        """``added`` the other way round."""
        self.by_id: Optional[tuple[np.ndarray, np.ndarray]] = None
        """``(hashes of the ids sorted, their positions)``, built by the first lookup by id."""

    def id_order(self) -> tuple[np.ndarray, np.ndarray]:
        """``(hashes of the ids sorted, their positions)``; a race builds it twice, to the same value."""
        by_id = self.by_id
        if by_id is None:
            hashes = _hashes(self.ids)
            order = np.argsort(hashes, kind="stable")
            by_id = self.by_id = (hashes[order], order)
        return by_id

    def find(self, ids: Sequence[str]) -> np.ndarray:
        """The position of each id in the arrays (alive or not), -1 where it is not there."""
        hashes, order = self.id_order()
        asked = np.empty(len(ids), dtype=object)
        asked[:] = ids
        wanted = _hashes(asked)
        positions = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
        rows = order[positions]
        found = np.where(self.ids[rows] == asked, rows, -1)
        # ids whose hash another id shares sit further along the run of that hash
        for at in np.flatnonzero((found < 0) & (hashes[positions] == wanted)).tolist():
            position = int(positions[at]) + 1
            while position < len(hashes) and hashes[position] == wanted[at]:
                if self.ids[order[position]] == ids[at]:
                    found[at] = order[position]
                    break
                position += 1
        return found

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

    def labels_of(self, ids: Sequence[str]) -> np.ndarray:
        """The label of each id, -1 for an id not in the map."""
        arrays = self._arrays  # one snapshot: a fold replaces it as a whole
        out = np.full(len(ids), -1, dtype=np.int64)
        if len(arrays.labels) and len(ids):
            rows = arrays.find(ids)
            hit = rows >= 0
            hit[hit] = arrays.alive[rows[hit]]
            out[hit] = arrays.labels[rows[hit]]
        if arrays.added_ids:
            added = arrays.added_ids
            for position, item_id in enumerate(ids):
                label = added.get(item_id)
                if label is not None:
                    out[position] = label
        return out

    def add(self, labels: np.ndarray, ids: Sequence[str]) -> None:
        """Maps each label to its id (a label already mapped keeps it: labels never change ids)."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        arrays = self._arrays
        _, known = arrays.positions(labels)
        fresh = [(label, item_id) for label, item_id, old in zip(labels.tolist(), ids, known.tolist()) if not old]
        # the id first: a lookup by label that finds the label also finds it by id
        arrays.added_ids.update((item_id, label) for label, item_id in fresh)
        arrays.added.update(fresh)
        if len(arrays.added) >= max(_FOLD_AT_LEAST, len(arrays.labels) - self._dead):
            self._fold()

    def remove(self, labels: np.ndarray) -> None:
        """Unmaps labels; unknown ones are ignored."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        arrays = self._arrays
        for label in labels.tolist():
            item_id = arrays.added.pop(label, None)
            if item_id is not None and arrays.added_ids.get(item_id) == label:
                del arrays.added_ids[item_id]
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


def _hashes(ids: np.ndarray) -> np.ndarray:
    """Python's hash of each id (a str caches its own), for finding ids without a sort of strings."""
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
