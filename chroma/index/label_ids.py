"""The item id behind each label of a collection's vector index.

Derived from the DB like the index itself and kept beside it, so that a query
asking for nothing but ids and distances is answered without a DB statement:
one DuckDB statement (0.3-0.8 ms) costs several times the HNSW search itself.

Layout, chosen for memory (at 1M items a Python str per id cost about 110 MiB
with its array and dict entries): the labels sorted, each with an alive flag,
and the UTF-8 bytes of the ids one after the other in one byte arena, with the
end of each id's bytes. About 17 bytes per item beside the id's own bytes, and
16 more for the index by id (the ids' hashes sorted, and their rows), built by
the first lookup by id and extended as ids come. Labels only grow, so a write
appends in place beyond what readers look at; a label that comes out of order,
or enough deleted entries, make the arrays rebuilt as a whole.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from chroma import heap

_FOLD_AT_LEAST = 4096
"""Deleted entries kept before the arrays are rebuilt without them, however few are alive."""
_INITIAL_CAPACITY = 1024
_GATHER_AT_LEAST = 64
"""Ids read at once from which one gather and one decode beat a decode per id."""
_HASH_CHUNK = 8_192
"""Ids decoded at a time to hash them, or their bytes moved at a time in a rebuild: a gather
makes two int64 indexes per byte of the chunk's ids besides a str per id, so a chunk of 65,536
ids of 7 bytes made a transient of about 10 MB, which set the process's peak at the first get
by id (``bench_vs_chromadb.py``, 100,000 items)."""


class _Arrays:
    """Sorted labels, their alive flags and their ids' bytes; appended to in place beyond ``size``
    (which readers read first), replaced as a whole when rebuilt or grown."""

    __slots__ = ("labels", "alive", "ends", "arena", "size", "by_id")

    def __init__(self, capacity: int, arena_capacity: int) -> None:
        self.labels = np.empty(capacity, dtype=np.int64)
        self.alive = np.zeros(capacity, dtype=bool)
        self.ends = np.empty(capacity, dtype=np.int64)
        """Where each id's bytes end in ``arena`` (and the next one's start)."""
        self.arena = np.empty(arena_capacity, dtype=np.uint8)
        self.size = 0
        self.by_id: Optional[tuple[np.ndarray, np.ndarray, int]] = None
        """``(hashes of the ids of rows 0 .. covered sorted, their rows, covered)``."""

    @classmethod
    def of(cls, labels: np.ndarray, encoded: Sequence[bytes], alive: Optional[np.ndarray] = None,
           spare: int = 0) -> "_Arrays":
        """Arrays holding ``labels`` (ascending) with the ids ``encoded``, room for ``spare`` more."""
        data = b"".join(encoded)
        arrays = cls(max(_INITIAL_CAPACITY, len(labels) + spare), max(1024, len(data) * (len(labels) + spare)
                                                                      // max(1, len(labels))))
        arrays.put(labels, encoded, data)
        if alive is not None:
            arrays.alive[: len(labels)] = alive
        return arrays

    def used_bytes(self) -> int:
        return int(self.ends[self.size - 1]) if self.size else 0

    def fits(self, count: int, nbytes: int) -> bool:
        return self.size + count <= len(self.labels) and self.used_bytes() + nbytes <= len(self.arena)

    def put(self, labels: np.ndarray, encoded: Sequence[bytes], data: bytes) -> None:
        """Appends (call ``fits`` first); ``size`` moves last, so readers see all of it or none."""
        start, stop, used = self.size, self.size + len(labels), self.used_bytes()
        self.arena[used : used + len(data)] = np.frombuffer(data, dtype=np.uint8)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        np.cumsum(lengths, out=self.ends[start:stop])
        self.ends[start:stop] += used
        self.labels[start:stop] = labels
        self.alive[start:stop] = True
        self.size = stop

    def gathered(self, rows: np.ndarray, spare: int, spare_bytes: int = 0) -> "_Arrays":
        """New arrays of the entries of ``rows`` (ascending, alive), with room for ``spare`` more
        and at least ``spare_bytes`` more bytes of ids; their bytes are copied a chunk of rows at
        a time, with no object per id."""
        count = len(rows)
        ends = self.ends[rows]
        starts = np.where(rows > 0, self.ends[np.maximum(rows - 1, 0)], 0)
        lengths = ends - starts
        total = int(lengths.sum())
        out = _Arrays(max(_INITIAL_CAPACITY, count + spare),
                      max(1024, total * (count + spare) // max(1, count), total + spare_bytes))
        out.labels[:count] = self.labels[rows]
        out.alive[:count] = True
        np.cumsum(lengths, out=out.ends[:count])
        contiguous = count == self.size and (not count or int(rows[-1]) == count - 1)
        if contiguous:
            out.arena[:total] = self.arena[:total]
            out.by_id = self.by_id  # the same rows: the index by id still holds
        else:
            for at in range(0, count, _HASH_CHUNK):
                stop = min(count, at + _HASH_CHUNK)
                chunk_lengths = lengths[at:stop]
                first, last = (int(out.ends[at - 1]) if at else 0), int(out.ends[stop - 1])
                shift = np.repeat(starts[at:stop] - (out.ends[at:stop] - chunk_lengths), chunk_lengths)
                out.arena[first:last] = self.arena[np.arange(first, last, dtype=np.int64) + shift]
        out.size = count
        return out

    def id_at(self, row: int) -> str:
        start = int(self.ends[row - 1]) if row else 0
        return str(self.arena[start : self.ends[row]].data, "utf-8")

    def ids_at(self, rows: np.ndarray) -> list[str]:
        if len(rows) < _GATHER_AT_LEAST:
            data, ends = self.arena.data, self.ends
            return [str(data[(ends[row - 1] if row else 0) : ends[row]], "utf-8") for row in rows.tolist()]
        ends = self.ends[rows]
        starts = np.where(rows > 0, self.ends[np.maximum(rows - 1, 0)], 0)
        # many ids: gather their bytes into one buffer and decode it once
        lengths = ends - starts
        out_ends = np.cumsum(lengths)
        out_starts = out_ends - lengths
        gathered = self.arena[np.arange(int(out_ends[-1]), dtype=np.int64) + np.repeat(starts - out_starts, lengths)]
        data = gathered.tobytes()
        text = data.decode()
        bounds = zip(out_starts.tolist(), out_ends.tolist())
        if len(text) == len(data):  # all ASCII: byte offsets are character offsets
            return [text[start:end] for start, end in bounds]
        return [data[start:end].decode() for start, end in bounds]

    def encoded(self, rows: np.ndarray) -> list[bytes]:
        ends = self.ends[rows]
        starts = np.where(rows > 0, self.ends[np.maximum(rows - 1, 0)], 0)
        arena = self.arena
        return [arena[start:end].tobytes() for start, end in zip(starts.tolist(), ends.tolist())]

    def positions(self, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, found)``: where each label sits in rows ``0 .. size``, and whether it is there and alive."""
        if not size:
            return np.zeros(len(labels), dtype=np.int64), np.zeros(len(labels), dtype=bool)
        stored = self.labels[:size]
        rows = np.minimum(np.searchsorted(stored, labels), size - 1)
        return rows, (stored[rows] == labels) & self.alive[rows]

    def id_order(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(hashes of the ids of rows 0 .. size sorted, their rows)`` (or of more rows: extra rows
        are told apart by their row number); a race builds it twice, to the same value."""
        by_id = self.by_id
        hashes, order, covered = by_id if by_id is not None else (np.empty(0, np.int64), np.empty(0, np.int64), 0)
        if covered >= size:
            return hashes, order
        rows = np.arange(covered, size, dtype=np.int64)
        new = np.concatenate([_hashes(self.ids_at(rows[at : at + _HASH_CHUNK]))
                              for at in range(0, len(rows), _HASH_CHUNK)])
        sort = np.argsort(new, kind="stable")
        new, rows = new[sort], rows[sort]
        if len(hashes):
            at = np.searchsorted(hashes, new)
            hashes, order = np.insert(hashes, at, new), np.insert(order, at, rows)
        else:  # the first lookup by id: nothing to merge into, so no copies of all of them
            hashes, order = new, rows
        self.by_id = (hashes, order, size)
        heap.give_back(len(rows))  # the decoded ids and the arrays replaced
        return hashes, order


class LabelIds:
    """label -> id of the items of one collection. Writers hold the client's write lock.

    Lookups may run while a writer changes the map; a lookup then sees each
    label either before or after the change, never a wrong id.
    """

    def __init__(self, labels: np.ndarray, ids: Sequence[str]) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(ids):
            raise ValueError(f"{len(labels)} labels but {len(ids)} ids")
        order = None
        if len(labels) > 1 and not bool(np.all(labels[1:] > labels[:-1])):
            order = np.argsort(labels, kind="stable")
            labels = labels[order]
        encoded = [item_id.encode() for item_id in (ids if order is None else [ids[i] for i in order.tolist()])]
        self._arrays = _Arrays.of(labels, encoded)
        self._dead = 0

    def __len__(self) -> int:
        return self._arrays.size - self._dead

    def nbytes(self) -> int:
        arrays = self._arrays
        by_id = arrays.by_id
        return (arrays.labels.nbytes + arrays.alive.nbytes + arrays.ends.nbytes + arrays.arena.nbytes
                + (0 if by_id is None else by_id[0].nbytes + by_id[1].nbytes))

    def labels(self) -> np.ndarray:
        """Every mapped label, ascending."""
        arrays = self._arrays
        size = arrays.size
        return arrays.labels[:size][arrays.alive[:size]]

    def ids_of(self, labels: np.ndarray) -> list[Optional[str]]:
        """The id of each label, None for a label not in the map (a concurrent delete removed it)."""
        labels = np.asarray(labels, dtype=np.int64)
        arrays = self._arrays  # one snapshot: a rebuild replaces it as a whole
        rows, found = arrays.positions(labels, arrays.size)
        if found.all():
            return arrays.ids_at(rows)
        out: list[Optional[str]] = [None] * len(labels)
        hits = np.flatnonzero(found)
        for at, item_id in zip(hits.tolist(), arrays.ids_at(rows[hits])):
            out[at] = item_id
        return out

    def labels_of(self, ids: Sequence[str]) -> np.ndarray:
        """The label of each id, -1 for an id not in the map."""
        arrays = self._arrays  # one snapshot: a rebuild replaces it as a whole
        size = arrays.size
        out = np.full(len(ids), -1, dtype=np.int64)
        if not size or not len(ids):
            return out
        hashes, order = arrays.id_order(size)
        wanted = _hashes(ids)
        first = np.searchsorted(hashes, wanted, side="left")
        last = np.searchsorted(hashes, wanted, side="right")
        alive = arrays.alive
        # most ids have a hash of their own: check each one's first candidate at once
        hits = np.flatnonzero(last > first)
        rows = order[first[hits]]
        usable = (rows < size) & alive[np.minimum(rows, size - 1)]
        checked, rows = hits[usable], rows[usable]
        same = np.fromiter((found == ids[at] for found, at in zip(arrays.ids_at(rows), checked.tolist())),
                           dtype=bool, count=len(checked))
        out[checked[same]] = arrays.labels[rows[same]]
        settled = np.zeros(len(ids), dtype=bool)
        settled[checked[same]] = True
        for at in hits[~settled[hits] & (last[hits] - first[hits] > 1)].tolist():
            # a deleted entry may hold the same id as a live one: only a live one answers
            for row in order[first[at] : last[at]].tolist():
                if row < size and alive[row] and arrays.id_at(row) == ids[at]:
                    out[at] = arrays.labels[row]
                    break
        return out

    def add(self, labels: np.ndarray, ids: Sequence[str]) -> None:
        """Maps each label to its id (a label already mapped keeps it: labels never change ids)."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        arrays = self._arrays
        rows, known = arrays.positions(labels, arrays.size)
        fresh = np.flatnonzero(~known)
        if not len(fresh):
            return
        fresh_labels, fresh_positions = np.unique(labels[fresh], return_index=True)
        fresh_ids = [ids[i] for i in fresh[fresh_positions].tolist()]
        encoded = [item_id.encode() for item_id in fresh_ids]
        size = arrays.size
        if not size or fresh_labels[0] > arrays.labels[size - 1]:
            data = b"".join(encoded)
            if not arrays.fits(len(encoded), len(data)):
                # room for as many entries again, and their ids' bytes at least at this batch's length
                spare = max(len(encoded), size - self._dead)
                arrays = self._rebuilt(spare, spare_bytes=len(data) * spare // len(encoded))
            arrays.put(fresh_labels, encoded, data)
            return
        # out of order, or a deleted label come back: rebuild with them in place
        kept = np.flatnonzero(arrays.alive[:size] & ~np.isin(arrays.labels[:size], fresh_labels))
        all_labels = np.concatenate([arrays.labels[kept], fresh_labels])
        all_ids = arrays.encoded(kept) + encoded
        order = np.argsort(all_labels, kind="stable")
        self._arrays = _Arrays.of(all_labels[order], [all_ids[i] for i in order.tolist()])
        self._dead = 0

    def remove(self, labels: np.ndarray) -> None:
        """Unmaps labels; unknown ones are ignored."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        arrays = self._arrays
        rows, found = arrays.positions(labels, arrays.size)
        gone = np.unique(rows[found])
        if len(gone):
            arrays.alive[gone] = False
            self._dead += len(gone)
            if self._dead > max(_FOLD_AT_LEAST, arrays.size - self._dead):
                self._rebuilt(0)

    def _rebuilt(self, spare: int, spare_bytes: int = 0) -> _Arrays:
        """Replaces the arrays by their live entries, with room for ``spare`` more and ``spare_bytes``
        more bytes of ids (lookups keep the old ones)."""
        old = self._arrays
        arrays = old.gathered(np.flatnonzero(old.alive[: old.size]), spare, spare_bytes)
        self._arrays = arrays
        self._dead = 0
        return arrays


def _hashes(ids: Sequence[str]) -> np.ndarray:
    """Python's hash of each id (a str caches its own), for finding ids without a sort of strings."""
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
