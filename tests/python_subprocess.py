"""Running code in a fresh interpreter that imports the chroma under test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import chroma

PACKAGE_PARENT = Path(chroma.__file__).resolve().parent.parent


def run_python(code: str, timeout: float = 60) -> str:
    """Runs ``code`` in a fresh interpreter with default settings; returns its stdout.

    The interpreter imports the same chroma as this test process (a source
    tree or the installed package) and sees no ``CHROMA_*`` variables.
    Fails the calling test when the code exits non-zero.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PACKAGE_PARENT), env.get("PYTHONPATH", "")] if p)
    # cwd beside the package under test: "-c" puts the cwd first on sys.path
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=PACKAGE_PARENT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
