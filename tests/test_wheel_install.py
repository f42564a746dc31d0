"""A built wheel installs and runs with no compiler anywhere and only the base dependencies.

Builds the manylinux wheel with scripts/build_wheel.sh (once per run, about a
minute on 2 cores), installs it with pip's binary-only mode into a fresh venv
whose PATH holds no C/C++ compiler and whose CC/CXX are ``false``, and runs
the README quickstart and the wheel smoke test there. In the same venv,
``chroma models fetch --dir DIR`` downloads the default model from a local hub
(tests/model_hub.py), and a process with no network (``unshare --net``) embeds
with ``CHROMA_EMBEDDING_MODEL_DIR=DIR``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chroma.embedding import files
from model_hub import REPO_PREFIX, hub
from required_services import require_service

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


@pytest.fixture(scope="module")
def installed(wheel, venv) -> Path:
    """The venv with the wheel installed, binary-only, by a pip that can find no compiler."""
    env = without_compiler(venv)
    for compiler in COMPILERS:
        assert shutil.which(compiler, path=env["PATH"]) is None, compiler
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--only-binary=:all:",
         str(wheel)], env=env)
    return venv


def test_wheel_installs_and_runs_the_quickstart_without_a_compiler(wheel, installed, tmp_path):
    venv = installed
    env = without_compiler(venv)
    python = str(venv / "bin" / "python")

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


# Run in the fresh venv under `unshare --net`. It first tries the hub that served the model (the
# URL of one of its files, argv[1]): in a new network namespace even 127.0.0.1 is unreachable,
# so that attempt must fail in this very process before anything is embedded.
OFFLINE_SCRIPT = """
import sys, urllib.error, urllib.request

import chroma

try:
    urllib.request.urlopen(sys.argv[1], timeout=60)
except urllib.error.HTTPError as exc:
    sys.exit(f"the hub answered ({exc.code}): the network is not blocked")
except OSError as exc:
    print(f"hub unreachable: {exc}", flush=True)
else:
    sys.exit("the hub answered: the network is not blocked")

notes = chroma.get_api().create_collection("notes", metadata={"hnsw:space": "cosine"})
notes.add(ids=["w", "s"], documents=["The weather is lovely today.", "He drove to the stadium."])
print("nearest:", notes.query(query_texts=["Is it sunny?"], n_results=1)["ids"][0])
"""


@pytest.fixture(scope="module")
def network_blocked() -> list[str]:
    """The command prefix that runs a process in a new network namespace (no interface up)."""
    unshare = shutil.which("unshare")
    problem = "unshare (util-linux) is not installed" if unshare is None else None
    if unshare is not None:
        done = subprocess.run([unshare, "--net", "true"], capture_output=True, text=True)
        if done.returncode != 0:
            problem = f"`unshare --net` is not permitted here (it needs root): {done.stderr.strip()}"
    require_service(problem is None, f"the offline run blocks the network with `unshare --net`; {problem}")
    return [unshare, "--net"]


def test_fresh_install_fetches_the_model_then_embeds_with_the_network_blocked(
        network_blocked, installed, tmp_path, monkeypatch):
    venv = installed
    (tmp_path / "embed_offline.py").write_text(OFFLINE_SCRIPT)
    models = tmp_path / "models"
    # Empty caches and no HF_HUB_OFFLINE: only the model directory and the block decide.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = without_compiler(venv)
    env.update(CHROMA_CACHE_DIR=str(tmp_path / "chroma-cache"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
               HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1")

    with hub("good", monkeypatch) as server:
        env["HF_ENDPOINT"] = server.url
        fetched = run([str(venv / "bin" / "chroma"), "models", "fetch", "--dir", str(models)], env=env, cwd=tmp_path)
        assert files.MODEL_DIR_VARIABLE in fetched
        assert f"GET {REPO_PREFIX}model.safetensors" in server.requests
        files.check_files(models)
        served = len(server.requests)

        probe = [str(venv / "bin" / "python"), "-I", "embed_offline.py", f"{server.url}{REPO_PREFIX}config.json"]
        offline = run([*network_blocked, *probe], env={**env, files.MODEL_DIR_VARIABLE: str(models)}, cwd=tmp_path)
        assert "hub unreachable" in offline
        assert "nearest: ['w']" in offline

        # Without the directory, the same blocked run tries the (live) hub and cannot reach it.
        failed = subprocess.run([*network_blocked, *probe], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert failed.returncode != 0, failed.stdout
        assert "hub unreachable" in failed.stdout
        assert "chroma.errors.EmbeddingModelUnavailable" in failed.stderr, failed.stderr[-4000:]
        assert files.MODEL_DIR_VARIABLE in failed.stderr and "downloading config.json failed" in failed.stderr
        assert len(server.requests) == served  # nothing from the blocked processes reached the hub
