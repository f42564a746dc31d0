"""chDB holds one engine per process, at one path, while any connection to it is open.

So a connection that outlives the store that opened it keeps every later store in
this process (another client, the next test) from opening a different directory.
"""

from __future__ import annotations

import threading

from chroma import errors
from chroma.config import Settings
from chroma.db.chdb import Chdb


def test_a_list_collections_that_connects_while_the_store_closes_leaves_no_engine_open(tmp_path):
    connecting, go_on = threading.Event(), threading.Event()

    class ConnectsSlowlyOffTheMainThread(Chdb):
        def _connect(self):
            if threading.current_thread() is not threading.main_thread():
                connecting.set()
                go_on.wait(30)
            return super()._connect()

    store = ConnectsSlowlyOffTheMainThread(Settings(db_impl="chdb", persist_directory=str(tmp_path / "first")))
    outcome: list[str] = []

    def list_collections() -> None:
        try:
            store.list_collections()
            outcome.append("answered")
        except errors.ClientClosed:
            outcome.append("closed")

    reader = threading.Thread(target=list_collections)
    reader.start()
    assert connecting.wait(30)
    store.close()
    go_on.set()
    reader.join(30)
    assert outcome == ["closed"]
    # opens only if no connection to the first directory's engine is left
    Chdb(Settings(db_impl="chdb", persist_directory=str(tmp_path / "second"))).close()
