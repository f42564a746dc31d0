"""The dependency split of pyproject.toml against the registry of implementations.

The base install runs every implementation registered without an extra (Local,
DuckDB, PersistentDuckDB, the flat index, the HTTP client); one registered with
an extra raises ``MissingDependency`` naming that extra when the packages of
the extra are absent. Absence is simulated in a fresh interpreter by an import
hook that refuses those packages, so the check runs wherever the tests run.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from chroma import registry
from python_subprocess import run_python

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]

IMPLEMENTATIONS = [
    (setting, name, impl) for setting, table in registry.TABLES.items() for name, impl in table.items()
]


def requirements(extra: str | None) -> set[str]:
    """Normalized distribution names of the base install (None) or of an extra, extras expanded."""
    names: set[str] = set()
    pending = list(PROJECT["dependencies"] if extra is None else EXTRAS[extra])
    while pending:
        requirement = Requirement(pending.pop())
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name == PROJECT["name"]:
            pending.extend(dep for included in requirement.extras for dep in EXTRAS[included])
        else:
            names.add(name)
    return names


def import_names(distributions: set[str]) -> set[str]:
    """Top-level modules the given distributions provide (their own name when not installed here)."""
    provided: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provided.setdefault(re.sub(r"[-_.]+", "-", dist).lower(), set()).add(module)
    return {module for dist in distributions for module in provided.get(dist, {dist.replace("-", "_")})}


def lookups_without(blocked: set[str], cases: list[tuple[str, str]]) -> dict[str, str]:
    """``registry.lookup`` of each (setting, name) in an interpreter where ``blocked`` cannot be imported.

    Returns "ok" or the MissingDependency message per "setting=name".
    """
    return json.loads(run_python(f"""
        import importlib.abc, json, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {sorted(blocked)!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Refuse())
        from chroma import errors, registry
        outcome = {{}}
        for setting, name in {cases!r}:
            try:
                registry.lookup(setting, name)
                outcome[f"{{setting}}={{name}}"] = "ok"
            except errors.MissingDependency as exc:
                outcome[f"{{setting}}={{name}}"] = str(exc)
        print(json.dumps(outcome))
    """))


def optional_modules() -> set[str]:
    """Modules of every extra that the base install does not bring."""
    every_extra = set().union(*(requirements(extra) for extra in EXTRAS))
    return import_names(every_extra - requirements(None)) - import_names(requirements(None))


def test_base_implementations_load_without_any_extra():
    cases = [(setting, name) for setting, name, impl in IMPLEMENTATIONS if impl.extra is None]
    assert ("api_impl", "local") in cases and ("db_impl", "persistent_duckdb") in cases
    assert ("api_impl", "fastapi") in cases, "the HTTP client belongs to the base install"
    blocked = optional_modules()
    assert {"fastapi", "uvicorn", "pytest"} <= blocked
    outcome = lookups_without(blocked, cases)
    assert outcome == {f"{setting}={name}": "ok" for setting, name in cases}


@pytest.mark.parametrize("extra", sorted({impl.extra for _, _, impl in IMPLEMENTATIONS if impl.extra}))
def test_an_implementation_without_its_extra_names_the_extra(extra):
    assert extra in EXTRAS, f"the registry names extra {extra!r}, which pyproject.toml does not define"
    cases = [(setting, name) for setting, name, impl in IMPLEMENTATIONS if impl.extra == extra]
    blocked = import_names(requirements(extra) - requirements(None)) - import_names(requirements(None))
    outcome = lookups_without(blocked, cases)
    for case, message in outcome.items():
        assert f"pip install 'chroma[{extra}]'" in message, (case, message)
        assert case.split("=")[0] in message and any(module in message for module in blocked), message


def test_all_extra_includes_every_other_extra():
    every_other = set().union(*(requirements(extra) for extra in EXTRAS if extra != "all"))
    assert requirements("all") == every_other
