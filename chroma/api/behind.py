"""Work that follows a committed write, run in commit order on one thread of its own.

Bringing a collection's derived state (``chroma.index.cached``) up to a write
costs about as much as the write's DB transaction when the index is a graph
(HNSW insertion). Run by the caller, the two take turns; handed to this thread,
the derived update of one batch runs while the caller sends the next batch to
the DB, which is how bulk loads in batches spend their time. Readers of the
derived state call ``settle()`` first, so they see every write that returned.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional

MAX_PENDING = 2
"""Steps queued at most; a write beyond waits for the oldest, so a bulk load that outruns the
index holds at most this many batches in memory, and overlaps the DB with the index all the same."""


class Behind:
    """One thread that runs the submitted steps one after another, in order of submission."""

    def __init__(self) -> None:
        self._executor: Optional[ThreadPoolExecutor] = None
        self._pid = os.getpid()
        self._pending: deque[Future] = deque()
        """The submitted steps not yet known to have run (for the bound), oldest first."""
        self._last: Optional[Future] = None
        """The step submitted last, which settle() waits for (readers do not take the callers' lock)."""
        self._lost = False

    def submit(self, step: Callable[[], None]) -> None:
        """Queues ``step`` behind the steps submitted before it. Callers submit under one lock,
        the order of their commits."""
        self._forked()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-derived")
        while self._pending and (self._pending[0].done() or len(self._pending) >= MAX_PENDING):
            self._pending.popleft().result()
        self._last = self._executor.submit(step)
        self._pending.append(self._last)

    def settle(self) -> bool:
        """Waits until every step submitted so far has run. False in a process forked while steps
        were pending: they were lost with the parent's thread, and the caller must drop what they
        would have updated."""
        self._forked()
        if self._lost:
            self._lost = False
            return False
        last = self._last
        if last is not None:
            last.result()  # one thread: the last submitted is the last to finish
        return True

    def close(self) -> None:
        """Stops the thread once the pending steps have run (a later submit starts another)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _forked(self) -> None:
        if self._pid != os.getpid():
            self._pid, self._executor = os.getpid(), None
            self._lost = self._lost or not all(step.done() for step in self._pending)
            self._pending, self._last = deque(), None
