"""Fixtures shared by the conformance suite.

``client`` runs a test once per combination of ``combinations.COMBINATIONS``;
``--combination NAME`` (repeatable) restricts a run to some of them.
"""

from __future__ import annotations

import pytest

import chroma
import model_files
from combinations import COMBINATIONS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--combination",
        action="append",
        default=[],
        metavar="NAME",
        help="run client tests only against this (API, DB) combination; repeatable. "
        f"Known: {', '.join(c.name for c in COMBINATIONS)}",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Before any server or worker starts: they inherit CHROMA_EMBEDDING_MODEL_DIR.
    model_files.prepare()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--combination"))
    if not wanted:
        return
    unknown = wanted - {c.name for c in COMBINATIONS}
    if unknown:
        raise pytest.UsageError(f"unknown --combination {sorted(unknown)}")
    selected, deselected = [], []
    for item in items:
        combination = _combination_of(item)
        if combination is None or combination.name in wanted:
            selected.append(item)
        else:
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def _combination_of(item: pytest.Item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("combination") if callspec else None


@pytest.fixture(scope="session", params=COMBINATIONS, ids=lambda combination: combination.name)
def combination(request: pytest.FixtureRequest):
    return request.param


@pytest.fixture(scope="session")
def client_settings(combination, tmp_path_factory) -> dict:
    """The ``chroma.configure`` settings of the combination under test.

    Set up once per session (a server, a data directory), so consecutive tests
    reuse the same client singleton; ``client`` resets it between tests.
    """
    with combination.setup(tmp_path_factory.mktemp(combination.name)) as settings:
        yield dict(settings)


@pytest.fixture
def configured():
    """``configured(**settings)`` configures a client and returns it; every setting is unset afterwards."""
    used: set[str] = set()

    def configure(**settings):
        used.update(settings)
        chroma.configure(**settings)
        return chroma.get_api()

    yield configure
    chroma.configure(**{key: None for key in used})


@pytest.fixture
def client(client_settings):
    """A chroma client of the combination under test, empty; reset and unconfigured afterwards."""
    chroma.configure(**client_settings)
    client = chroma.get_api()
    client.reset()
    try:
        yield client
    finally:
        # A test may have changed the configuration (and so the singleton): go
        # back to this combination's settings before wiping it.
        chroma.configure(**client_settings)
        try:
            with chroma.get_api() as api:
                api.reset()
        finally:
            # Closed now, not when collected: a chDB engine serves one directory per process
            # while any client of it is open, and the next test opens another.
            client.close()
            chroma.configure(**{key: None for key in client_settings})
