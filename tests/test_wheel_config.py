"""The wheel build configuration, checked as far as it can be without the platforms.

cibuildwheel needs a container engine (Linux) or the platform itself, so the
builds run only on a hosted CI (.github/workflows/wheels.yml); here the same
cibuildwheel reads pyproject.toml and lists what it would build, and the
workflow is checked to give every configured architecture a runner of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# cibuildwheel runs on Python 3.11+, and so does tomllib.
pytest.importorskip("cibuildwheel", reason="cibuildwheel needs Python 3.11 or later")
import tomllib  # noqa: E402

SOURCE_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = SOURCE_ROOT / ".github" / "workflows" / "wheels.yml"
PYTHONS = ("cp310", "cp311", "cp312", "cp313")
ARCHS = {"linux": ("manylinux_x86_64", "manylinux_aarch64"), "macos": ("macosx_x86_64", "macosx_arm64"),
         "windows": ("win_amd64",)}
RUNNER_PLATFORM = {"ubuntu": "linux", "macos": "macos", "windows": "windows"}


def build_identifiers(platform: str, archs: str | None = None) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    if archs:
        env["CIBW_ARCHS"] = archs
    done = subprocess.run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform],
                          capture_output=True, text=True, cwd=SOURCE_ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("platform", sorted(ARCHS))
def test_cibuildwheel_builds_cpython_310_to_313_for_every_arch(platform):
    assert build_identifiers(platform) == {f"{py}-{tag}" for py in PYTHONS for tag in ARCHS[platform]}


def test_workflow_builds_every_configured_wheel_on_its_own_runner():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    jobs = workflow["jobs"]
    built: set[str] = set()
    for entry in jobs["wheels"]["strategy"]["matrix"]["include"]:
        platform = RUNNER_PLATFORM[entry["os"].split("-")[0]]
        identifiers = build_identifiers(platform, entry["arch"])
        assert identifiers and all(i.endswith(entry["arch"].lower()) for i in identifiers), (entry, identifiers)
        assert not identifiers & built, f"{entry} builds wheels another runner builds too"
        built |= identifiers
    assert built == {f"{py}-{tag}" for py in PYTHONS for tags in ARCHS.values() for tag in tags}
    assert jobs["publish"]["needs"] == ["wheels", "sdist"]
    assert jobs["publish"]["permissions"] == {"id-token": "write"}


def test_smoke_test_is_shipped_to_the_wheel_tests():
    cibuildwheel = tomllib.loads((SOURCE_ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    script = cibuildwheel["test-command"].split()[-1]
    assert script in cibuildwheel["test-sources"] and (SOURCE_ROOT / script).is_file()
