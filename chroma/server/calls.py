"""The calls a server is running, so that a shutdown lets them finish within a grace period.

On SIGTERM or SIGINT a server stops taking calls and waits up to
``shutdown_grace`` seconds for the running ones. Past that, it interrupts
their DB statements (:meth:`chroma.api.local.Local.interrupt`), gives them a
few seconds to unwind, and leaves behind any that still run (native code that
cannot be interrupted): the process then exits without waiting for them. A
call cut off this way fails with ``OutcomeUnknown``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterator

from chroma import errors
from chroma.api.local import Local

log = logging.getLogger(__name__)

UNWIND_SECONDS = 2.0
"""How long calls whose DB statements were interrupted get to end."""


class RunningCalls:
    """Counts the calls in progress; thread-safe."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()
        self._cut_off = False

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Counts the block as a running call; an error it raises once cut off is OutcomeUnknown."""
        with self._changed:
            self._count += 1
        try:
            yield
        except Exception as exc:
            if self._cut_off:
                raise cut_off_error() from exc
            raise
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait(self, timeout: float) -> int:
        """Waits up to ``timeout`` seconds for every call to end; returns how many still run."""
        with self._changed:
            self._changed.wait_for(lambda: self._count == 0, timeout)
            return self._count

    def cut_off(self, api: Local) -> int:
        """Ends the calls still running once the grace period is over: interrupts their DB
        statements and waits a little; returns how many are left running (to abandon)."""
        if not self.wait(0):
            return 0
        self._cut_off = True
        api.interrupt()
        left = self.wait(UNWIND_SECONDS)
        if left:
            log.warning("%d call(s) still running after the shutdown grace period are abandoned", left)
        return left


def cut_off_error() -> errors.OutcomeUnknown:
    """The error of a call that the server's shutdown cut off."""
    return errors.OutcomeUnknown(
        "the server stopped (SIGTERM/SIGINT) and cut this call off at the end of its shutdown grace period "
        "(setting shutdown_grace): a write may or may not have been applied")
