"""The rule for tests that need a server binary (not a test module itself): without it they
skip, except under ``CI=true``, where ``.ci/run`` installs it and a missing one is a failure."""

from __future__ import annotations

import os

import pytest


def require_service(available: bool, message: str) -> None:
    """Returns if ``available``; else skips the calling test with ``message`` (fails under CI=true)."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
