"""Hostile sizes against a real ``chroma run`` server: each request is answered
or refused, the server stays up, and its memory stays bounded.

The memory rule (issue 19): for any single request, accepted or refused, the
server's peak RSS grows by at most the size of what the request stores plus
64 MB. The peak is the kernel's VmHWM, reset before each request through
``/proc/PID/clear_refs``, so one request's peak is not hidden by an earlier one;
the servers return freed memory to the system at once, so no request reuses
what an earlier one left resident.
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


@pytest.fixture(autouse=True, scope="module")
def memory_returned_on_free():
    """Servers of this module give freed memory back to the system at once (glibc keeps it
    otherwise, and a request reusing it would show no growth)."""
    saved = {name: os.environ.get(name) for name in RETURN_FREED_MEMORY}
    os.environ.update(RETURN_FREED_MEMORY)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name)
        else:
            os.environ[name] = value


RETURN_FREED_MEMORY = {"MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_MMAP_THRESHOLD_": "131072"}


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
    """A server with no bound on n_results nor on the rows of an answer ("0": none)."""
    with running_server(tmp_path_factory.mktemp("unbounded"), allow_reset="1", max_n_results="0",
                        max_response_rows="0") as server:
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


def json_add(rows: int, dim: int) -> bytes:
    return json.dumps({"ids": [f"j{i}" for i in range(rows)],
                       "embeddings": np.random.default_rng(6).random((rows, dim)).tolist()}).encode()


def test_json_add_at_and_past_the_json_bound(defaults):
    collection_id = collection_of(defaults, "json-add", 1, dim=256)
    url = f"{defaults.url}/api/v1/collections/{collection_id}/add"
    at_bound = json_add(800, 256)
    assert 3 * MB < len(at_bound) <= 4 * MB
    with PeakGrowth(defaults) as growth:
        answer = requests.post(url, data=at_bound, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    stored = 800 * 256 * 4
    assert growth.bytes < stored + SLACK
    past = json_add(2000, 256)  # 10 MB, accepted before the JSON bound
    with PeakGrowth(defaults) as growth:
        answer = requests.post(url, data=past, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "max_json_request_bytes=4194304" in answer.json()["message"], answer.text
    assert growth.bytes < SLACK
    assert requests.get(f"{defaults.url}/api/v1/collections/{collection_id}/count").json() == {"count": 801}


def test_query_of_30000_queries_with_n_results_10000_against_10_items(defaults):
    collection_id = collection_of(defaults, "many-queries", 10, dim=1)
    body = json.dumps({"query_embeddings": [[0.5]] * 30_000, "n_results": 10_000})
    assert len(body) < 300_000
    with PeakGrowth(defaults) as growth:
        answer = requests.post(f"{defaults.url}/api/v1/collections/{collection_id}/query", data=body,
                               headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"] == "PayloadTooLarge", answer.text
    assert "max_response_rows=50000" in answer.json()["message"]
    assert growth.bytes < SLACK


@pytest.fixture(scope="module")
def full(defaults):
    """A collection of 50,000 items (the default max_response_rows) on the default server: its id."""
    import chroma

    chroma.configure(api_impl="fastapi", server_host="127.0.0.1", server_http_port=defaults.port)
    try:
        collection = chroma.get_api().create_collection("full")
        rng = np.random.default_rng(2)
        for start in range(0, 50_000, 25_000):
            ids = range(start, start + 25_000)
            collection.add(ids=[f"id{i}" for i in ids], embeddings=rng.random((25_000, 8), dtype=np.float32),
                           metadatas=[{"i": i} for i in ids], documents=[f"document {i}" for i in ids])
    finally:
        chroma.configure(api_impl=None, server_host=None, server_http_port=None)
    return collection.id


def test_largest_query_the_bounds_allow(defaults, full):
    queries = np.random.default_rng(3).random((5, 8)).round(3).tolist()
    with PeakGrowth(defaults) as growth:
        answer = requests.post(f"{defaults.url}/api/v1/collections/{full}/query",
                               json={"query_embeddings": queries, "n_results": 10_000})
    assert answer.status_code == 200, answer.text
    assert [len(row) for row in answer.json()["documents"]] == [10_000] * 5
    assert growth.bytes < SLACK


def test_largest_get_the_bounds_allow_and_one_row_more(defaults, full):
    url = f"{defaults.url}/api/v1/collections/{full}/get"
    with PeakGrowth(defaults) as growth:
        answer = requests.post(url, json={"include": ["metadatas", "documents", "embeddings"]})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["ids"]) == 50_000
    assert growth.bytes < SLACK
    requests.post(f"{defaults.url}/api/v1/collections/{full}/add",
                  json={"ids": ["one-more"], "embeddings": [[0.0] * 8]}).raise_for_status()
    with PeakGrowth(defaults) as growth:
        refused = requests.post(url, json={"include": ["metadatas", "documents", "embeddings"]})
    assert refused.status_code == 413 and "page with limit and offset" in refused.json()["message"], refused.text
    assert growth.bytes < SLACK
    paged = requests.post(url, json={"include": [], "limit": 50_000, "offset": 1})
    assert paged.status_code == 200 and paged.json()["ids"][-1] == "one-more"
    requests.post(f"{defaults.url}/api/v1/collections/{full}/delete", json={"ids": ["one-more"]}).raise_for_status()


# --------------------------------------------------------------------------
# Arrow Flight
# --------------------------------------------------------------------------

FLIGHT_TOKEN = "flight-token"


@pytest.fixture(scope="module")
def flight_1mib(tmp_path_factory):
    """A Flight server with a token and max_request_bytes of 1 MiB."""
    with running_server(tmp_path_factory.mktemp("flight"), impl="flight", auth_token=FLIGHT_TOKEN,
                        max_request_bytes=str(MB), allow_reset="1") as server:
        yield server


def flight_options(token):
    import pyarrow.flight as flight

    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())] if token else [])


def flight_collection(server, name: str) -> str:
    import pyarrow.flight as flight

    with flight.FlightClient(server.flight_url) as client:
        [result] = client.do_action(flight.Action("create_collection", json.dumps({"name": name}).encode()),
                                    options=flight_options(FLIGHT_TOKEN))
    return json.loads(result.body.to_pybytes())["id"]


def flight_put(server, collection_id: str, batch, token) -> None:
    """One DoPut of ``batch`` as one message, as any Flight client could send it."""
    import pyarrow.flight as flight

    command = json.dumps({"op": "add", "collection_id": collection_id, "rows": batch.num_rows}).encode()
    with flight.FlightClient(server.flight_url) as client:
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(command), batch.schema,
                                  options=flight_options(token))
        writer.write_batch(batch)
        writer.close()


def flight_count(server, collection_id: str) -> int:
    import pyarrow.flight as flight

    with flight.FlightClient(server.flight_url) as client:
        [result] = client.do_action(flight.Action("count", json.dumps({"collection_id": collection_id}).encode()),
                                    options=flight_options(FLIGHT_TOKEN))
    return json.loads(result.body.to_pybytes())["count"]


def batch_of_mib(mib: int):
    import pyarrow as pa

    from chroma import flight_protocol as protocol

    rows = mib * MB // (4096 * 4)
    return pa.record_batch([pa.array([f"i{i}" for i in range(rows)]),
                            protocol.embedding_column(np.ones((rows, 4096), np.float32))], names=["ids", "embeddings"])


@pytest.fixture(scope="module")
def batch_of_400_mib():
    return batch_of_mib(400)


def test_flight_batch_of_400_mib_without_the_token(flight_1mib, batch_of_400_mib):
    import pyarrow.flight as flight

    collection_id = flight_collection(flight_1mib, "no-token")
    with PeakGrowth(flight_1mib) as growth:
        with pytest.raises(flight.FlightUnauthenticatedError):
            flight_put(flight_1mib, collection_id, batch_of_400_mib, None)
    assert growth.bytes < SLACK  # refused when the call starts, before gRPC reads its stream
    assert flight_count(flight_1mib, collection_id) == 0


def test_flight_batch_of_400_mib_with_the_token_against_a_1_mib_bound(flight_1mib, batch_of_400_mib):
    import pyarrow.flight as flight

    from chroma.protocol import error_map

    collection_id = flight_collection(flight_1mib, "over-bound")
    with PeakGrowth(flight_1mib) as growth:
        with pytest.raises(flight.FlightServerError) as raised:
            flight_put(flight_1mib, collection_id, batch_of_400_mib, FLIGHT_TOKEN)
    error = error_map.from_flight(raised.value, "test")
    assert type(error).__name__ == "PayloadTooLarge" and "max_request_bytes=1048576" in str(error)
    # pyarrow's Flight server sets no gRPC receive limit: gRPC buffers the whole
    # message and Arrow copies it into one buffer before our code can count it
    # (docs/limits.md). Nothing beyond those two copies may be added.
    assert growth.bytes < 2 * batch_of_400_mib.get_total_buffer_size() + SLACK
    assert flight_count(flight_1mib, collection_id) == 0
    assert flight_1mib.answers()


def test_flight_batch_with_invalid_utf8_ids(flight_1mib):
    import pyarrow as pa
    import pyarrow.flight as flight

    from chroma import flight_protocol as protocol
    from chroma.protocol import error_map

    collection_id = flight_collection(flight_1mib, "bad-utf8")
    offsets = pa.py_buffer(np.array([0, 2], np.int32).tobytes())
    ids = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(b"\xff\xfe")])
    batch = pa.record_batch([ids, protocol.embedding_column(np.ones((1, 4), np.float32))],
                            names=["ids", "embeddings"])
    with pytest.raises(flight.FlightServerError) as raised:
        flight_put(flight_1mib, collection_id, batch, FLIGHT_TOKEN)
    error = error_map.from_flight(raised.value, "test")
    assert type(error).__name__ == "InvalidArgument" and "not valid Arrow data" in str(error), raised.value
    assert flight_count(flight_1mib, collection_id) == 0


# --------------------------------------------------------------------------
# The deadline of one request
# --------------------------------------------------------------------------

DEADLINE = 0.2


@pytest.fixture(scope="module")
def hurried(tmp_path_factory):
    """HTTP and Flight with request_timeout=DEADLINE, over a stored collection "slow" of 5,000 items
    (written before, by a server without a short deadline); yields (server, collection id)."""
    workdir = tmp_path_factory.mktemp("hurried")
    data = workdir / "data"
    with running_server(workdir, "--path", str(data), name="filling") as server:
        collection_id = collection_of(server, "slow", 5000)
    with running_server(workdir, "--path", str(data), name="hurried", impl="both",
                        request_timeout=str(DEADLINE)) as server:
        yield server, collection_id


def until_answering(server) -> None:
    """Waits (30 s at most) until the server answers again: an abandoned call may still hold the GIL."""
    import time

    deadline = time.monotonic() + 30
    while not server.answers():
        assert time.monotonic() < deadline, "the server no longer answers"
        time.sleep(0.1)


def test_flight_stream_sent_slower_than_the_deadline(hurried):
    # first of these tests: no abandoned call competes for the server's time yet
    import time

    import pyarrow.flight as flight

    from chroma.protocol import error_map

    server, collection_id = hurried
    one = pa_batch_of_ids(["late-1"])
    command = json.dumps({"op": "add", "collection_id": collection_id, "rows": 2}).encode()
    with flight.FlightClient(server.flight_url) as client:
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(command), one.schema)
        writer.write_batch(one)
        time.sleep(5 * DEADLINE)
        with pytest.raises(flight.FlightTimedOutError) as raised:
            writer.write_batch(pa_batch_of_ids(["late-2"]))
            writer.close()
    error = error_map.from_flight(raised.value, "test")
    assert type(error).__name__ == "DeadlineExceeded" and "reading the stream" in str(error)
    until_answering(server)
    assert flight_count_of(server, collection_id) == 5000


HEAVY_QUERY = {"n_results": 5000, "include": ["embeddings", "metadatas", "documents", "distances"]}
"""50,000 results of 5,000 items with everything included: seconds of work, past DEADLINE."""


def test_http_query_running_past_the_deadline(hurried):
    server, collection_id = hurried
    queries = np.random.default_rng(4).random((10, 8)).round(3).tolist()
    answer = requests.post(f"{server.url}/api/v1/collections/{collection_id}/query",
                           json={"query_embeddings": queries, **HEAVY_QUERY})
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"] == "DeadlineExceeded" and "request_timeout=0.2 s" in answer.json()["message"]
    until_answering(server)


def test_http_body_sent_slower_than_the_deadline(hurried):
    import socket
    import time

    server, collection_id = hurried
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(f"POST /api/v1/collections/{collection_id}/get HTTP/1.1\r\nHost: x\r\n"
                           "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
        started = time.monotonic()
        answer = ""  # the other 999 bytes never come
        while "DeadlineExceeded" not in answer and (received := connection.recv(4096)):
            answer += received.decode()
        waited = time.monotonic() - started
    assert answer.startswith("HTTP/1.1 504") and "DeadlineExceeded" in answer, answer
    assert waited < 10
    until_answering(server)


def test_flight_query_running_past_the_deadline(hurried):
    import pyarrow as pa
    import pyarrow.flight as flight

    from chroma import flight_protocol as protocol
    from chroma.protocol import error_map

    server, collection_id = hurried
    command = json.dumps({"op": "query", "collection_id": collection_id, **HEAVY_QUERY}).encode()
    queries = np.random.default_rng(5).random((10, 8), dtype=np.float32)
    batch = pa.record_batch([protocol.embedding_column(queries)], names=["embeddings"])
    with flight.FlightClient(server.flight_url) as client:
        writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(command))
        writer.begin(batch.schema)
        writer.write_batch(batch)
        writer.done_writing()
        with pytest.raises(flight.FlightTimedOutError) as raised:
            reader.read_all()
        with pytest.raises(flight.FlightTimedOutError):
            writer.close()
    error = error_map.from_flight(raised.value, "test")
    assert type(error).__name__ == "DeadlineExceeded" and "request_timeout=0.2 s" in str(error)
    until_answering(server)


def pa_batch_of_ids(ids: list[str]):
    import pyarrow as pa

    from chroma import flight_protocol as protocol

    return pa.record_batch([pa.array(ids), protocol.embedding_column(np.zeros((len(ids), 8), np.float32))],
                           names=["ids", "embeddings"])


def flight_count_of(server, collection_id: str) -> int:
    import pyarrow.flight as flight

    with flight.FlightClient(server.flight_url) as client:
        [result] = client.do_action(flight.Action("count", json.dumps({"collection_id": collection_id}).encode()))
    return json.loads(result.body.to_pybytes())["count"]
