"""A built wheel installs and runs with no compiler anywhere and only the base dependencies.

Builds the manylinux wheel with scripts/build_wheel.sh (once per run, about a
minute on 2 cores), installs it with pip's binary-only mode into a fresh venv
whose PATH holds no C/C++ compiler and whose CC/CXX are ``false``, and runs
the README quickstart and the wheel smoke test there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parent.parent
COMPILERS = ("gcc", "g++", "cc", "c++", "clang", "clang++")
# Packages of the extras that must stay out of a base install.
NOT_IN_BASE = ("fastapi", "uvicorn", "celery", "clickhouse_connect", "pytest", "hypothesis")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),  # a core build on a busy 2-core machine
    pytest.mark.skipif(sys.platform != "linux", reason="auditwheel repairs Linux wheels only"),
]


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd)
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(["bash", str(SOURCE_ROOT / "scripts" / "build_wheel.sh"), str(out)], cwd=SOURCE_ROOT,
        env={**os.environ, "PYTHON": sys.executable})
    (built,) = out.glob("chroma-*-manylinux_*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    # No pip inside: the outer pip installs into it (--python), so the venv
    # holds nothing but the interpreter, chroma and its base dependencies.
    venv = tmp_path_factory.mktemp("base") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    return venv


def without_compiler(venv: Path) -> dict[str, str]:
    """This environment with PATH reduced to the venv, no compiler, and no way back to the source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHROMA_", "PYTHON"))}
    env.update(PATH=str(venv / "bin"), CC="false", CXX="false")
    return env


def test_wheel_installs_and_runs_the_quickstart_without_a_compiler(wheel, venv, tmp_path):
    env = without_compiler(venv)
    for compiler in COMPILERS:
        assert shutil.which(compiler, path=env["PATH"]) is None, compiler
    python = str(venv / "bin" / "python")

    run([sys.executable, "-m", "pip", "--python", python, "install", "--only-binary=:all:", str(wheel)], env=env)

    # Copies outside the source tree, run in isolated mode: only the installed chroma can be imported.
    for script in ("examples/quickstart.py", "scripts/wheel_smoke.py"):
        shutil.copy(SOURCE_ROOT / script, tmp_path)
    probe = ("import importlib.util, chroma; "
             f"print(chroma.__file__); print([m for m in {NOT_IN_BASE!r} if importlib.util.find_spec(m)])")
    location, extras_present = run([python, "-I", "-c", probe], env=env, cwd=tmp_path).splitlines()
    assert location.startswith(str(venv)), location
    assert extras_present == "[]"

    quickstart = run([python, "-I", "quickstart.py"], env=env, cwd=tmp_path)
    assert "count: 10000" in quickstart
    assert "query 0: nearest ['item-0'" in quickstart and "query 1: nearest ['item-1'" in quickstart
    assert "filtered: [('item-" in quickstart
    assert ": ok (SIMD paths portable" in run([python, "-I", "wheel_smoke.py"], env=env, cwd=tmp_path)

    # Shown with `pytest -rP`: the figures docs/install.md quotes.
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    installed = sum(f.stat().st_size for f in site_packages.rglob("*") if f.is_file())
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e3:.0f} kB; base install: {installed / 1e6:.0f} MB")
