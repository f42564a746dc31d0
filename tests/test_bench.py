"""``chroma bench``: a real quick run over one combination, its JSON and table, and its argument errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import chroma
from chroma import errors
from chroma.bench import data
from chroma.bench.combinations import Combination
from server_helpers import PACKAGE_ROOT


def test_a_quick_run_reports_every_phase_with_exact_recall(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "chroma", "bench", "--quick", "--combinations", "local-persistent_duckdb-flat",
         "--output", str(tmp_path), "--no-plots", "--selectivities", "0.5,0.01"],
        capture_output=True, text=True, timeout=240, cwd=PACKAGE_ROOT)
    assert done.returncode == 0, done.stderr
    assert "local-persistent_duckdb-flat" in done.stdout and "filtered 1%: recall@10" in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["environment"]["simd"] and results["environment"]["versions"]["chroma"]
    (run,) = results["results"]
    phases = run["phases"]
    assert set(phases) == {"add", "single query", "batch query", "filtered 0.5", "filtered 0.01", "get by ids",
                           "update", "delete", "reopen"}
    for phase in ("single query", "batch query", "filtered 0.5", "filtered 0.01"):
        assert phases[phase]["recall"] == 1.0, phase  # the flat index is exact
    assert phases["add"]["per_second"] > 0 and phases["reopen"]["seconds"] > 0
    assert run["peak_memory_bytes"] > 10 * 2**20


def test_combination_names_are_checked():
    assert Combination.parse("local-duckdb") == Combination("local", "duckdb", chroma.current_settings().index_impl)
    with pytest.raises(errors.InvalidArgument, match="API-DB-INDEX"):
        Combination.parse("local")
    with pytest.raises(errors.ConfigurationError, match="nosuchdb"):
        Combination.parse("local-nosuchdb-flat")


def test_clustered_data_and_recall():
    dataset = data.clustered(2_000, 16, 50, clusters=10, seed=3)
    assert dataset.vectors.shape == (2_000, 16) and dataset.queries.shape == (50, 16)
    assert 0.05 < np.mean(dataset.buckets < 100) < 0.15  # 10% of BUCKETS
    truth = data.ground_truth(dataset, dataset.queries, 10)
    assert data.recall([[f"id{r}" for r in row] for row in truth], truth) == 1.0
    assert data.recall([[f"id{r}" for r in row[:5]] for row in truth], truth) == 0.5


def test_npy_data_holds_out_queries(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    dataset = data.from_npy(str(tmp_path / "v.npy"), None, 100)
    assert np.array_equal(dataset.vectors, vectors[:200]) and np.array_equal(dataset.queries, vectors[200:])
    with pytest.raises(errors.InvalidArgument, match="too few"):
        data.from_npy(str(tmp_path / "v.npy"), None, 300)
    np.save(tmp_path / "flat.npy", vectors[0])
    with pytest.raises(errors.InvalidArgument, match="2-D"):
        data.from_npy(str(tmp_path / "flat.npy"), None, 1)
