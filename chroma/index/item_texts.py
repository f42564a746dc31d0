"""Each item's document and metadata (as its stored JSON) in one byte arena per collection.

Derived state like the vector index (``chroma.index.cached``), so that ``get``
and ``query`` return documents and metadatas without a DB statement, which
costs several times the search it follows.

Layout, chosen for memory and for the read path: the UTF-8 bytes of every text
go into one ``bytearray`` (appended to, never changed in place); per row, a
start (int64) and a length (int32, -1 for "no value") per field, and the row's
label. Rows are found by label by a binary search over the rows' labels, which
are ascending as long as items come in label order (labels only grow), or else
over a sorted copy of them. So at rest there is no Python object per item:
about 12 bytes per field and 8 per row beside the text itself. Reading n items slices n byte ranges; the metadatas
of a read are parsed by one ``json.loads`` of one JSON array, a fraction of
the cost of one parse per item. An update appends its new text and points the
row to it; a delete marks the row dead; once dead rows or stale bytes make up
half of the store it is rewritten compactly.

Thread-safe: one lock covers every write and every read, so a reader sees each
item's fields all before or all after a write.
"""

from __future__ import annotations

import json
import threading
from typing import Iterable, Optional, Sequence

import numpy as np

NO_VALUE = -1
_DEAD = -2
"""Length of a field of a deleted row (its bytes are garbage)."""
_JSON = json.JSONEncoder(separators=(",", ":"))
_INITIAL_ROWS = 1024
_COMPACT_AT_LEAST_ROWS = 1024
"""Dead rows kept before a rewrite, however few are live."""
_COMPACT_AT_LEAST_BYTES = 1 << 20
"""Stale arena bytes kept before a rewrite, however few are live."""


class ItemTexts:
    """label -> (document, metadata) of one collection's items."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._empty()

    def _empty(self) -> None:
        self._arena = bytearray()
        self._labels = np.zeros(_INITIAL_ROWS, dtype=np.int64)
        self._starts = np.zeros((_INITIAL_ROWS, 2), dtype=np.int64)
        self._lengths = np.full((_INITIAL_ROWS, 2), _DEAD, dtype=np.int32)
        self._size = 0
        """Rows in use, dead ones included."""
        self._live = 0
        self._garbage = 0
        """Arena bytes no live row points to."""
        self._ascending = True
        """Whether the rows' labels ascend (dead rows included): then they are their own index."""
        self._sorted_labels: Optional[np.ndarray] = None
        self._sorted_rows: Optional[np.ndarray] = None
        """The live rows sorted by label, while the rows' labels do not ascend."""

    @classmethod
    def from_columns(cls, labels: np.ndarray, documents: Sequence[Optional[str]],
                     metadata_json: Sequence[Optional[str]]) -> "ItemTexts":
        """A store of ``labels[i]`` with ``documents[i]`` and the stored metadata JSON ``metadata_json[i]``."""
        return cls.from_chunks([(labels, documents, metadata_json)])

    @classmethod
    def from_chunks(cls, chunks: Iterable[tuple[np.ndarray, Sequence[Optional[str]], Sequence[Optional[str]]]],
                    rows: int = 0) -> "ItemTexts":
        """A store of the ``(labels, documents, metadata JSON)`` of each chunk in turn (see
        ``DB.load_texts``), so that only one chunk of texts exists as Python strings at a time.
        ``rows``: how many the chunks hold, if known; the arrays are then made at that size once,
        rather than doubled as they fill (the old and new copies both held, and slack after)."""
        texts = cls()
        if rows > len(texts._labels):
            texts._labels = _grown(texts._labels, rows, 0)
            texts._starts = _grown(texts._starts, rows, 0)
            texts._lengths = _grown(texts._lengths, rows, _DEAD)
        for labels, documents, metadata_json in chunks:
            texts._append_rows(np.asarray(labels, dtype=np.int64), [documents, metadata_json])
        texts._reindex()
        return texts

    def __len__(self) -> int:
        return self._live

    # writes
    def store(self, labels: np.ndarray, documents: Optional[Sequence[Optional[str]]],
              metadatas: Optional[Sequence[Optional[dict]]]) -> None:
        """Gives each label (distinct, as in one write) its document and metadata; a None entry (or
        None for all) leaves a stored item's field as it was, and leaves a new item without one."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        metadata_json = None if metadatas is None else [None if m is None else _JSON.encode(m) for m in metadatas]
        with self._lock:
            rows, found = self._rows_of(labels)
            new = np.flatnonzero(~found)
            old = np.flatnonzero(found)
            if len(old):
                self._replace(rows[old], [_pick(documents, old), _pick(metadata_json, old)])
            if len(new):
                self._append_rows(labels[new], [_pick(documents, new, fill=True), _pick(metadata_json, new, fill=True)])
                self._reindex()

    def remove(self, labels: np.ndarray) -> None:
        """Forgets the labels; unknown ones are ignored."""
        labels = np.asarray(labels, dtype=np.int64)
        with self._lock:
            rows, found = self._rows_of(labels)
            rows = np.unique(rows[found])
            rows = rows[self._lengths[rows, 0] != _DEAD]
            if not len(rows):
                return
            self._garbage += int(np.maximum(self._lengths[rows], 0).sum())
            self._lengths[rows] = _DEAD
            self._live -= len(rows)
            if self._size - self._live > max(_COMPACT_AT_LEAST_ROWS, self._live):
                self._compact()

    # reads
    def read(self, labels: np.ndarray, documents: bool, metadatas: bool
             ) -> tuple[np.ndarray, Optional[list[Optional[str]]], Optional[list[Optional[dict]]]]:
        """``(found, documents, metadatas)``: a mask of the labels stored, and the fields asked
        for of those, in the order given (None for a field not asked for)."""
        labels = np.asarray(labels, dtype=np.int64)
        with self._lock:
            rows, found = self._rows_of(labels)
            rows = rows[found]
            docs = self._slices(rows, 0) if documents else None
            pieces = self._slices(rows, 1) if metadatas else None
        if documents:
            docs = [None if piece is None else piece.decode() for piece in docs]
        metas = None
        if metadatas:
            metas = json.loads(b"[" + b",".join(b"null" if piece is None else piece for piece in pieces) + b"]")
        return found, docs, metas

    def containing(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``(labels of every stored item, whether its document contains text)``; a missing
        document is "". UTF-8 is self-synchronizing, so a byte search finds exactly the substrings."""
        needle = text.encode()
        with self._lock:
            rows = np.flatnonzero(self._lengths[: self._size, 0] != _DEAD)
            labels = self._labels[rows]
            if not needle:
                return labels, np.ones(len(rows), dtype=bool)
            lengths = self._lengths[rows, 0].astype(np.int64)
            with_text = np.flatnonzero(lengths >= len(needle))
            starts = self._starts[rows[with_text], 0]
            order = np.argsort(starts, kind="stable")
            starts, ends, at_rows = starts[order], starts[order] + lengths[with_text][order], with_text[order]
            arena, found, position = self._arena, [], self._arena.find(needle)
            while position >= 0:  # every occurrence, overlapping ones too
                found.append(position)
                position = arena.find(needle, position + 1)
        hit = np.zeros(len(rows), dtype=bool)
        if found and len(starts):
            occurrences = np.asarray(found, dtype=np.int64)
            which = np.searchsorted(starts, occurrences, side="right") - 1
            inside = which >= 0
            inside[inside] = occurrences[inside] + len(needle) <= ends[which[inside]]
            hit[at_rows[which[inside]]] = True
        return labels, hit

    def _slices(self, rows: np.ndarray, field: int) -> list[Optional[bytearray]]:
        """The bytes of ``field`` in ``rows`` (None for no value), copied out of the arena."""
        arena = self._arena
        starts, lengths = self._starts[rows, field], self._lengths[rows, field]
        ends = starts + np.maximum(lengths, 0)
        return [None if length < 0 else arena[start:end]
                for start, end, length in zip(starts.tolist(), ends.tolist(), lengths.tolist())]

    def nbytes(self) -> int:
        """Memory held (the arena's allocation aside from its slack)."""
        return (len(self._arena) + self._labels.nbytes + self._starts.nbytes + self._lengths.nbytes
                + (0 if self._sorted_labels is None else self._sorted_labels.nbytes + self._sorted_rows.nbytes))

    # internals (under the lock)
    def _rows_of(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, found)``: each label's row, and whether it is there and alive."""
        if self._sorted_labels is None:
            sorted_labels, sorted_rows = self._labels[: self._size], None
        else:
            sorted_labels, sorted_rows = self._sorted_labels, self._sorted_rows
        if not len(sorted_labels) or not len(labels):
            return np.zeros(len(labels), dtype=np.int64), np.zeros(len(labels), dtype=bool)
        positions = np.minimum(np.searchsorted(sorted_labels, labels), len(sorted_labels) - 1)
        rows = positions if sorted_rows is None else sorted_rows[positions]
        found = (sorted_labels[positions] == labels) & (self._lengths[rows, 0] != _DEAD)
        return rows, found

    def _encode(self, values: Sequence[Optional[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Appends the texts to the arena: ``(starts, lengths)``."""
        starts = np.zeros(len(values), dtype=np.int64)
        lengths = np.full(len(values), NO_VALUE, dtype=np.int32)
        present = [i for i, value in enumerate(values) if value is not None]
        if present:
            encoded = [values[i].encode() for i in present]
            sizes = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
            offsets = len(self._arena) + np.concatenate([[0], np.cumsum(sizes)[:-1]])
            self._arena += b"".join(encoded)
            starts[present] = offsets
            lengths[present] = sizes
        return starts, lengths

    def _append_rows(self, labels: np.ndarray, fields: list[Sequence[Optional[str]]]) -> None:
        count = len(labels)
        needed = self._size + count
        if needed > len(self._labels):
            capacity = max(needed, 2 * len(self._labels))
            self._labels = _grown(self._labels, capacity, 0)
            self._starts = _grown(self._starts, capacity, 0)
            self._lengths = _grown(self._lengths, capacity, _DEAD)
        stop = self._size + count
        if count and self._ascending:
            after = labels[0] > self._labels[self._size - 1] if self._size else True
            self._ascending = bool(after) and bool(np.all(labels[1:] > labels[:-1]))
        for field, values in enumerate(fields):
            starts, lengths = self._encode(values)
            self._starts[self._size : stop, field] = starts
            self._lengths[self._size : stop, field] = lengths
        self._labels[self._size : stop] = labels
        self._size = stop
        self._live += count

    def _replace(self, rows: np.ndarray, fields: list[Optional[Sequence[Optional[str]]]]) -> None:
        for field, values in enumerate(fields):
            if values is None:
                continue
            given = np.flatnonzero([value is not None for value in values])
            if not len(given):
                continue
            starts, lengths = self._encode([values[i] for i in given])
            targets = rows[given]
            self._garbage += int(np.maximum(self._lengths[targets, field], 0).sum())
            self._starts[targets, field] = starts
            self._lengths[targets, field] = lengths
        if self._garbage > max(_COMPACT_AT_LEAST_BYTES, len(self._arena) // 2):
            self._compact()

    def _reindex(self) -> None:
        """Sorts the live rows by label, unless the rows' labels ascend (a label removed and stored
        again has a dead row too)."""
        if self._ascending:
            self._sorted_labels = self._sorted_rows = None
            return
        rows = np.arange(self._size, dtype=np.int64)
        if self._live != self._size:
            rows = rows[self._lengths[: self._size, 0] != _DEAD]
        labels = self._labels[rows]
        if len(labels) > 1 and not bool(np.all(labels[1:] > labels[:-1])):
            order = np.argsort(labels, kind="stable")
            labels, rows = labels[order], rows[order]
        self._sorted_labels, self._sorted_rows = labels, rows

    def _compact(self) -> None:
        """Rewrites the live rows and the bytes they point to."""
        rows = np.flatnonzero(self._lengths[: self._size, 0] != _DEAD)
        arena, starts, lengths = self._arena, self._starts[rows], self._lengths[rows]
        fields = [[None if length < 0 else arena[start : start + length].decode()
                   for start, length in zip(starts[:, field].tolist(), lengths[:, field].tolist())]
                  for field in range(2)]
        labels = self._labels[rows]
        self._empty()
        self._append_rows(labels, fields)
        self._reindex()


def _grown(array: np.ndarray, capacity: int, fill: int) -> np.ndarray:
    grown = np.full((capacity,) + array.shape[1:], fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _pick(values: Optional[Sequence], positions: np.ndarray, fill: bool = False) -> Optional[list]:
    """``values`` at ``positions``; None stays None (or becomes all-None entries with ``fill``)."""
    if values is None:
        return [None] * len(positions) if fill else None
    return [values[i] for i in positions.tolist()]
