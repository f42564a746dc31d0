"""Saved indexes of a persistent DB, so a reopened collection is not rebuilt.

A collection's index is saved under ``<persist_directory>/indexes/`` when the
client closes (or the process exits) and is loaded instead of rebuilt from the
DB on the next first query. The file is valid only while the DB has not
changed since: it is removed *before* every write to that collection, so a
crash at any point leaves either no file (rebuild) or a file that matches the
committed DB.
"""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Optional

from chroma import errors
from chroma.index import Index


class SavedIndexes:
    """The index files of one persist directory (``directory=None``: nothing is ever saved)."""

    def __init__(self, directory: Optional[str]) -> None:
        self._directory = None if directory is None else os.path.join(os.path.abspath(directory), "indexes")
        self._current: set[str] = set()
        """Collections whose file matches the index in memory."""

    def _path(self, collection_id: str) -> str:
        assert self._directory is not None
        return os.path.join(self._directory, f"{collection_id}.hnsw")

    def load(self, index_class: type, collection_id: str, params: dict) -> Optional[Index]:
        """The saved index of the collection, or None (no file, or a file that cannot be read: rebuild)."""
        load = getattr(index_class, "load", None)
        if self._directory is None or load is None or not os.path.exists(self._path(collection_id)):
            return None
        try:
            index = load(self._path(collection_id))
        except (OSError, errors.IndexFileError) as exc:
            warnings.warn(f"saved index of collection {collection_id} ignored, rebuilding: {exc}", RuntimeWarning,
                          stacklevel=3)
            self.forget(collection_id)
            return None
        if "hnsw:search_ef" in params:  # the one setting that modify() may have changed since
            index.set_search_ef(int(params["hnsw:search_ef"]))
        self._current.add(collection_id)
        return index

    def forget(self, collection_id: str) -> None:
        """Removes the collection's file; call before writing to the collection."""
        self._current.discard(collection_id)
        if self._directory is not None:
            try:
                os.remove(self._path(collection_id))
            except FileNotFoundError:
                pass

    def clear(self) -> None:
        """Removes every saved index (the DB was reset)."""
        self._current.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def save_all(self, indexes: dict[str, Index]) -> None:
        """Saves every index whose file is not current (indexes without ``save`` are skipped)."""
        if self._directory is None:
            return
        for collection_id, index in list(indexes.items()):
            save = getattr(index, "save", None)
            if save is None or collection_id in self._current:
                continue
            os.makedirs(self._directory, exist_ok=True)
            save(self._path(collection_id))
            self._current.add(collection_id)
