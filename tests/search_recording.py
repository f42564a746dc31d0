"""pytest plugin: records every search answer of a run, so runs can be compared.

``pytest -p search_recording --record-searches FILE ...`` writes FILE (JSON)
at the end of the session: per test, in call order, the answer of every
``Collection.query`` (ids, distances) and of every ``Index.search`` of any
index implementation (labels, distances), plus each test's outcome and the
SIMD path the core ran. tests/test_simd_paths.py runs the search tests once
per forced SIMD path this way and compares the files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-searches", metavar="FILE", default=None,
                     help="write every Collection.query and Index.search answer of the run to FILE (JSON)")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--record-searches")
    if path:
        config.pluginmanager.register(SearchRecorder(Path(path)), "search-recorder")


def as_lists(value: Any) -> Any:
    """JSON-ready copy of a result field: arrays become (nested) lists of Python numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [as_lists(v) for v in value]
    return value


class SearchRecorder:
    def __init__(self, path: Path) -> None:
        from chroma.collection import Collection
        from chroma.index import Index

        self.path = path
        self.searches: dict[str, list[dict]] = {}
        self.outcomes: dict[str, str] = {}
        self.current = "<outside a test>"

        Collection.query = self.recording("query", Collection.query,
                                          lambda r: {"ids": r["ids"], "distances": r["distances"]})

        # Every Index implementation, including those imported later (the
        # registry imports them on first use): wrap each class's own search.
        def wrap_search(cls: type) -> None:
            if "search" in vars(cls):
                cls.search = self.recording(f"{cls.__name__}.search", cls.search,
                                            lambda r: {"labels": r[0], "distances": r[1]})

        def subclasses(cls: type):
            for sub in cls.__subclasses__():
                yield sub
                yield from subclasses(sub)

        for existing in list(subclasses(Index)):
            wrap_search(existing)
        Index.__init_subclass__ = classmethod(lambda cls, **kwargs: wrap_search(cls))

    def recording(self, kind: str, method: Callable, fields: Callable[[Any], dict]) -> Callable:
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            result = method(*args, **kwargs)
            answer = {key: as_lists(value) for key, value in fields(result).items()}
            self.searches.setdefault(self.current, []).append({"kind": kind, **answer})
            return result

        return wrapper

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        self.current = item.nodeid
        try:
            return (yield)
        finally:
            self.current = "<outside a test>"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped:
            self.outcomes.setdefault(report.nodeid, "skipped")
        elif report.when == "call":
            self.outcomes.setdefault(report.nodeid, "passed")

    def pytest_sessionfinish(self) -> None:
        from chroma import _core

        self.path.write_text(json.dumps({"simd_path": _core.simd_path(), "outcomes": self.outcomes,
                                         "searches": self.searches}))
