"""Saved indexes of a persistent DB, so a reopened collection is not rebuilt.

A collection's index is saved under ``<persist_directory>/indexes/`` when the
client closes (or the process exits) and is loaded instead of rebuilt from the
DB on the next first query. Beside it, ``<collection id>.json`` records the
DB's state marker (``DB.state_marker``: the label counter and the
collection's write counter) at the time of saving.

A file is never trusted blindly: it is loaded only if the DB's marker is still
the recorded one and the index holds exactly the DB's labels; otherwise it is
stale (the DB changed behind it, or files were restored from elsewhere) and
is removed with a warning, and the index is rebuilt. Besides, both files are
removed *before* every write to their collection, so a crash at any point
leaves no file or a file that matches the committed DB.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import warnings
from typing import Callable, Optional

import numpy as np

from chroma import errors
from chroma.index import Index, Persistent


class SavedIndexes:
    """The index files of one persist directory (``directory=None``: nothing is ever saved).

    An index class takes part if it is ``chroma.index.Persistent``; others are always rebuilt.
    """

    def __init__(self, directory: Optional[str]) -> None:
        self._directory = None if directory is None else os.path.join(os.path.abspath(directory), "indexes")
        self._current: set[str] = set()
        """Collections whose file matches the index in memory."""

    def _path(self, collection_id: str) -> str:
        assert self._directory is not None
        return os.path.join(self._directory, f"{collection_id}.hnsw")

    def _marker_path(self, collection_id: str) -> str:
        return self._path(collection_id)[: -len(".hnsw")] + ".json"

    def start_load(self, index_class: type, collection_id: str) -> Optional["PendingLoad"]:
        """Starts reading the collection's saved index in another thread; None when there is none to read.

        The file is read while the caller reads the DB state that
        :meth:`finish_load` checks it against (the core's load runs without the GIL).
        """
        if (self._directory is None or not issubclass(index_class, Persistent)
                or not os.path.exists(self._path(collection_id))):
            return None
        return PendingLoad(index_class.load, self._path(collection_id))

    def finish_load(self, pending: Optional["PendingLoad"], collection_id: str, params: dict,
                    marker: Optional[list], labels: np.ndarray) -> Optional[Index]:
        """The index ``pending`` read, if it matches the DB: its ``marker`` and ascending ``labels``.

        None when nothing was read, and (after a RuntimeWarning, the files
        removed) when the file could not be read or is stale: then rebuild.
        """
        if pending is None:
            return None
        try:
            index = self._current_index(pending, collection_id, marker, labels)
        except (OSError, ValueError, errors.IndexFileError) as exc:
            warnings.warn(f"saved index of collection {collection_id} ignored, rebuilding: {exc}", RuntimeWarning,
                          stacklevel=3)
            self.forget(collection_id)
            return None
        if "hnsw:search_ef" in params:  # the one setting that modify() may have changed since
            index.set_search_ef(int(params["hnsw:search_ef"]))
        self._current.add(collection_id)
        return index

    def _current_index(self, pending: "PendingLoad", collection_id: str, marker: Optional[list],
                       labels: np.ndarray) -> Index:
        """The index read. Raises ValueError (stale), IndexFileError, OSError."""
        index = pending.wait()
        if marker is None:
            raise ValueError("the DB keeps no state marker to check it against")
        try:
            with open(self._marker_path(collection_id), encoding="utf-8") as file:
                recorded = json.load(file).get("marker")
        except FileNotFoundError:
            raise ValueError("it has no record of the DB state it was saved at") from None
        if recorded != marker:
            raise ValueError(f"it is stale: saved at DB state {recorded}, the DB is at {marker}")
        if not np.array_equal(index.labels(), labels):
            raise ValueError(f"it is stale: it holds {len(index)} items, not the DB's {len(labels)}")
        return index

    def forget(self, collection_id: str) -> None:
        """Removes the collection's files; call before writing to the collection."""
        self._current.discard(collection_id)
        if self._directory is not None:
            for path in (self._path(collection_id), self._marker_path(collection_id)):
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass

    def clear(self) -> None:
        """Removes every saved index (the DB was reset)."""
        self._current.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def save_all(self, indexes: dict[str, tuple[Index, Optional[list]]]) -> None:
        """Saves each ``collection id -> (index, DB state marker)`` whose file is not current.

        Indexes without ``save`` and those without a marker are skipped.
        """
        if self._directory is None:
            return
        for collection_id, (index, marker) in list(indexes.items()):
            if not isinstance(index, Persistent) or marker is None or collection_id in self._current:
                continue
            os.makedirs(self._directory, exist_ok=True)
            try:  # no marker may sit beside an index while it is replaced
                os.remove(self._marker_path(collection_id))
            except FileNotFoundError:
                pass
            index.save(self._path(collection_id))
            # the marker last: a crash between the two leaves a file without one, which is not trusted
            temporary = self._marker_path(collection_id) + ".tmp"
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump({"marker": marker}, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._marker_path(collection_id))
            self._current.add(collection_id)


class PendingLoad:
    """An index file being read in a thread of its own."""

    def __init__(self, load: Callable[[str], Index], path: str) -> None:
        self._index: Optional[Index] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(load, path), name="chroma-index-load", daemon=True)
        self._thread.start()

    def _run(self, load: Callable[[str], Index], path: str) -> None:
        try:
            self._index = load(path)
        except BaseException as exc:  # re-raised in the waiting thread
            self._error = exc

    def wait(self) -> Index:
        """The index read; raises what reading it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._index is not None
        return self._index
