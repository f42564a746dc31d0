"""The search conformance tests give the same answers under every SIMD path.

The compiled core picks AVX-512, AVX2 or portable kernels at run time;
``CHROMA_SIMD`` forces one. Each path this CPU can run gets its own pytest
run of the search tests (the query and filter conformance files and, when
present, the HNSW tests) over the in-memory Local combinations, with every
search answer recorded (tests/search_recording.py). Every run must pass, and
every answer must have the same ids in the same order as under the portable
path, with distances equal up to float rounding (the batch kernels use FMA on
the SIMD paths only; the one-query kernel, which graph walks use, sums in one
canonical order everywhere and is bit-identical). The runs use one core thread
(CHROMA_NUM_THREADS=1) so that HNSW builds are reproducible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chroma import _core
from combinations import COMBINATIONS
from python_subprocess import PACKAGE_PARENT

TESTS = Path(__file__).resolve().parent
SEARCH_TEST_FILES = [
    TESTS / name
    for name in ("test_conformance_query.py", "test_conformance_filters.py", "test_hnsw.py")
    if (TESTS / name).exists()
]
# In-memory Local combinations (e.g. local-duckdb and any local-duckdb-<index>):
# no server, no disk, and the DB does not change which vectors are searched.
# Not the hnswlib package's: its kernels are its own (CHROMA_SIMD does not reach
# them) and its parallel build answers differently from run to run.
SEARCH_COMBINATIONS = [c.name for c in COMBINATIONS
                       if c.name.startswith("local-duckdb") and not c.name.endswith("-hnswlib")]
PATHS = _core.available_simd_paths()


def start_run(path: str, out: Path) -> subprocess.Popen:
    """Starts the search tests under ``CHROMA_SIMD=path``, recorded to out/<path>.json."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
    env["CHROMA_SIMD"] = path
    # One core thread: a parallel HNSW build inserts in an order that depends
    # on timing, so only a one-thread build is reproducible run to run.
    env["CHROMA_NUM_THREADS"] = "1"
    # The chroma under test, and this directory for the plugin; run outside
    # the source tree so "-m" cannot put a core-less source checkout first.
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), str(TESTS)])
    args = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-p", "search_recording",
            f"--record-searches={out / path}.json", *(f"--combination={c}" for c in SEARCH_COMBINATIONS),
            *map(str, SEARCH_TEST_FILES)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Per SIMD path, the recording of its run (the runs go side by side: they only read)."""
    out = tmp_path_factory.mktemp("simd-runs")
    started = {path: start_run(path, out) for path in PATHS}
    for path, process in started.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"search tests failed under CHROMA_SIMD={path}:\n{output[-6000:]}"
    return {path: json.loads((out / f"{path}.json").read_text()) for path in PATHS}


def test_search_tests_pass_under_every_simd_path(runs):
    assert SEARCH_COMBINATIONS and "test_conformance_query.py" in [f.name for f in SEARCH_TEST_FILES]
    for path, run in runs.items():
        assert run["simd_path"] == path
        assert run["outcomes"] and set(run["outcomes"].values()) == {"passed"}, (path, run["outcomes"])
        searches = sum(len(answers) for answers in run["searches"].values())
        assert searches >= 50, f"only {searches} searches recorded under {path}"


@pytest.mark.parametrize("path", [p for p in PATHS if p != "portable"] or ["portable"])
def test_every_search_answer_matches_the_portable_path(runs, path):
    if path == "portable":
        pytest.skip("this CPU runs only the portable path: nothing to compare")
    reference, forced = runs["portable"], runs[path]
    assert forced["outcomes"] == reference["outcomes"]
    assert forced["searches"].keys() == reference["searches"].keys()
    for test, answers in reference["searches"].items():
        assert len(forced["searches"][test]) == len(answers), test
        for i, (want, got) in enumerate(zip(answers, forced["searches"][test])):
            where = f"{test}, search {i} ({want['kind']}) under {path}"
            identifiers = "ids" if "ids" in want else "labels"
            assert got[identifiers] == want[identifiers], where
            for got_row, want_row in zip(got["distances"] or [], want["distances"] or []):
                np.testing.assert_allclose(got_row, want_row, rtol=1e-5, atol=1e-6, err_msg=where)
