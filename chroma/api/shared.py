"""What the clients of one store share in one process: its DB and its derived state.

Two clients of one persistent directory or of one ClickHouse database in one
process must each see the other's writes at once, and DuckDB opens a file
once. So a :class:`chroma.api.local.Local` owns neither its DB nor its derived
state (``chroma.engine``: vector indexes, label -> id maps, metadata
columns): it holds a reference on a :class:`SharedStore`, found in a table by
``DB.store_key``, and the last reference released closes it (saving the
indexes of a persistent DB, then closing the DB). A store without a key (an
in-memory DB) is never shared: each client has a store of its own.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Hashable
from typing import Optional

from chroma import errors, registry
from chroma.config import Settings
from chroma.db import DB
from chroma.engine import Engine


class SharedStore:
    """One DB and the engine that owns what is derived from it (``chroma.engine``)."""

    def __init__(self, key: Optional[Hashable], settings: Settings, db: DB, owns_db: bool) -> None:
        self.key = key
        self.db = db
        self.index_impl = settings.index_impl
        self.index_class = registry.lookup("index_impl", settings.index_impl)
        self.engine = Engine(db, self.index_class, type(db).index_files_directory(settings))
        self.closed = False
        self._owns_db = owns_db
        self._users = 0
        self._close_lock = threading.Lock()

    def close(self) -> None:
        """Closes the engine (which saves the loaded indexes of a persistent DB), then the DB if
        this store opened it. Closing twice is harmless."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.engine.close()
            finally:
                if self._owns_db:
                    self.db.close()


_lock = threading.RLock()
_by_key: dict[Hashable, SharedStore] = {}
_open: "weakref.WeakSet[SharedStore]" = weakref.WeakSet()


def acquire(settings: Settings) -> SharedStore:
    """A reference on the store of ``settings`` (opened now if no client in this process has it open).

    Raises:
        ConfigurationError: a bad setting, or the store is open in this process with another
            ``index_impl`` (one derived state per store).
        MissingDependency: the DB's optional package is missing.
    """
    db_class = registry.lookup("db_impl", settings.db_impl)
    key = db_class.store_key(settings)
    with _lock:
        store = None if key is None else _by_key.get(key)
        if store is None:
            store = SharedStore(key, settings, db_class(settings), owns_db=True)
            if key is not None:
                _by_key[key] = store
            _open.add(store)
        elif store.index_impl != settings.index_impl:
            raise errors.ConfigurationError(
                f"this store is open in this process with index_impl={store.index_impl!r}; a client on it with "
                f"index_impl={settings.index_impl!r} would keep a second vector index that misses the first's writes"
            )
        store._users += 1
        return store


def private(settings: Settings, db: DB) -> SharedStore:
    """A store of its own over ``db``, which the caller opened and closes (a server, a worker)."""
    store = SharedStore(None, settings, db, owns_db=False)
    store._users = 1
    with _lock:
        _open.add(store)
    return store


def release(store: SharedStore) -> None:
    """Gives back a reference from :func:`acquire` or :func:`private`; the last one closes the store."""
    with _lock:  # held while closing: a client opening the same store meanwhile waits, then reopens it
        store._users -= 1
        if store._users > 0:
            return
        if store.key is not None and _by_key.get(store.key) is store:
            del _by_key[store.key]
        store.close()


@atexit.register
def _close_at_exit() -> None:
    # Every store still open at interpreter exit is closed as a last release would, so that a
    # persistent DB keeps its indexes for the next process however many clients were left open.
    with _lock:
        stores = list(_open)
        _by_key.clear()
    for store in stores:
        store.close()
