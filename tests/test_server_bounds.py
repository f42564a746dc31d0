"""Hostile sizes against a real ``chroma run`` server: each request is answered
or refused, the server stays up, and its memory stays bounded.

The memory rule (issue 19): for any single request, accepted or refused, the
server's peak RSS grows by at most the size of what the request stores plus
64 MB. The peak is the kernel's VmHWM, reset before each request through
``/proc/PID/clear_refs``, so one request's peak is not hidden by an earlier one.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import requests

from server_helpers import running_server

MB = 2**20
SLACK = 64 * MB
"""What one request may add to the server's peak RSS beyond what it stores."""


def rss(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class PeakGrowth:
    """``with PeakGrowth(server) as growth:`` one request; ``growth.bytes`` is how far the server's
    peak RSS rose above its resident size before the request."""

    def __init__(self, server) -> None:
        self.pid = server.process.pid

    def __enter__(self) -> "PeakGrowth":
        with open(f"/proc/{self.pid}/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
        self.before = rss(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.bytes = rss(self.pid, "VmHWM") - self.before
        print(f"server peak RSS: +{self.bytes / MB:.1f} MB over {self.before / MB:.0f} MB")  # shown with -s


def collection_of(server, name: str, count: int, dim: int = 8) -> str:
    """A new collection of ``count`` items (JSON over HTTP); returns its id."""
    api = f"{server.url}/api/v1"
    created = requests.post(f"{api}/collections", json={"name": name})
    assert created.status_code == 200, created.text
    collection_id = created.json()["id"]
    rng = np.random.default_rng(0)
    added = requests.post(f"{api}/collections/{collection_id}/add", json={
        "ids": [f"id{i}" for i in range(count)], "embeddings": rng.random((count, dim)).round(3).tolist(),
        "metadatas": [{"even": i % 2 == 0} for i in range(count)]})
    assert added.status_code == 200, added.text
    return collection_id


@pytest.fixture(scope="module")
def unbounded(tmp_path_factory):
    """A server with no bound on n_results ("0": none)."""
    with running_server(tmp_path_factory.mktemp("unbounded"), allow_reset="1", max_n_results="0") as server:
        yield server


@pytest.mark.parametrize("n_results", [2**62, 10**12])
def test_query_of_four_with_huge_n_results_over_http_without_a_bound(unbounded, n_results):
    collection_id = collection_of(unbounded, f"huge-{n_results}", 10)
    queries = np.random.default_rng(1).random((4, 8)).round(3).tolist()
    with PeakGrowth(unbounded) as growth:
        answer = requests.post(f"{unbounded.url}/api/v1/collections/{collection_id}/query",
                               json={"query_embeddings": queries, "n_results": n_results, "include": ["distances"],
                                     "where": {"even": True}})
    assert answer.status_code == 200, answer.text
    assert [len(row) for row in answer.json()["ids"]] == [5] * 4
    assert growth.bytes < SLACK
    assert unbounded.answers()


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    """A server with the default bounds."""
    with running_server(tmp_path_factory.mktemp("defaults"), allow_reset="1") as server:
        yield server


def test_binary_frame_of_104_bytes_declaring_ten_million_rows(defaults):
    collection_id = collection_of(defaults, "frame-bomb", 10)
    header = {"ids": ["a"], "$arrays": {"embeddings": {"offset": 0, "rows": 10_000_000, "dim": 0, "missing": [0]}}}
    text = json.dumps(header, separators=(",", ":")).encode()
    body = len(text).to_bytes(4, "little") + text + b"\0" * (-(4 + len(text)) % 4)
    assert len(body) <= 104
    with PeakGrowth(defaults) as growth:
        answer = requests.post(f"{defaults.url}/api/v1/collections/{collection_id}/add", data=body,
                               headers={"Content-Type": "application/x-chroma-binary"})
    assert answer.status_code == 400 and answer.json()["error"] == "InvalidArgument", answer.text
    assert "10000000 rows" in answer.json()["message"]
    assert growth.bytes < SLACK
    count = requests.get(f"{defaults.url}/api/v1/collections/{collection_id}/count")
    assert count.json() == {"count": 10}
