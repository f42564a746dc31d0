"""The Flight server and client beyond the conformance suite: auth, bounds,
streams that fail mid-way, errors as Local's, and ``chroma run --impl flight``
(and ``--impl both``) stopping cleanly.

Every server here is a real ``chroma run`` subprocess (see server_helpers).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests

from chroma import errors
from chroma import flight_protocol as protocol
from chroma.protocol import error_map
from chroma.collection import Collection
from server_helpers import PACKAGE_ROOT, free_port, local_error, running_server, server_env, start_server

TOKEN = "s3cret-token"


def client_of(configured, server, **settings):
    return configured(api_impl="arrowflight", server_host="127.0.0.1", server_flight_port=server.flight_port,
                      **settings)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with a token (reset not allowed)."""
    with running_server(tmp_path_factory.mktemp("guarded"), impl="flight", auth_token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    """A server with small bounds."""
    with running_server(tmp_path_factory.mktemp("bounded"), impl="flight", allow_reset="1",
                        max_request_bytes="100000", max_batch_size="10", max_n_results="5") as server:
        yield server


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("plain"), impl="flight", allow_reset="1") as server:
        yield server


@pytest.fixture
def fresh(plain, configured):
    """A client of ``plain``, reset, and an empty collection ``streams``."""
    client = client_of(configured, plain, allow_reset=True)
    client.reset()
    return client, client.create_collection("streams")


def raw_put(server, command: dict, batches: list, schema: pa.Schema, token: str | None = None) -> None:
    """A DoPut as any Flight client could send it (no chroma client checks)."""
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())] if token else [])
    with flight.FlightClient(server.flight_url) as client:
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(json.dumps(command).encode()), schema,
                                  options=options)
        for batch in batches:
            writer.write_batch(batch)
        writer.close()


def id_batch(ids: list[str], vectors: np.ndarray) -> pa.RecordBatch:
    return pa.record_batch([pa.array(ids, pa.string()), protocol.embedding_column(vectors)],
                           names=["ids", "embeddings"])


def chroma_error_of(raised: pytest.ExceptionInfo) -> errors.ChromaError:
    """The chroma error a raw Flight call's error carries."""
    error = error_map.from_flight(raised.value, "test")
    assert error is not None, raised.value
    return error


# --------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------


def test_every_call_but_heartbeat_needs_the_bearer_token(guarded, configured):
    good = client_of(configured, guarded, auth_token=TOKEN)
    collection = good.get_or_create_collection("guarded")
    collection.upsert(ids=["a"], embeddings=[[1.0, 2.0]])
    for token in [None, "wrong"]:
        bad = client_of(configured, guarded, auth_token=token)
        assert bad.heartbeat() > 10**9  # open: health checks; reveals nothing stored
        for call in [bad.list_collections, bad.version, lambda: bad.create_collection("refused"),
                     lambda: bad.get_collection("guarded"), lambda: bad.delete_collection("guarded")]:
            with pytest.raises(errors.Unauthorized, match="authorization: Bearer"):
                call()
        handle = Collection(bad, collection.id, collection.name, None)
        for call in [lambda: handle.add(ids=["b"], embeddings=[[3.0, 4.0]]),
                     lambda: handle.upsert(ids=["a"], embeddings=[[9.0, 9.0]]),
                     lambda: handle.update(ids=["a"], embeddings=[[9.0, 9.0]]),
                     lambda: handle.get(), lambda: handle.query(query_embeddings=[[1.0, 2.0]]),
                     lambda: handle.delete(ids=["a"]), handle.count]:
            with pytest.raises(errors.Unauthorized):
                call()
    # a raw stream without the token is refused before it is read
    with pytest.raises(flight.FlightUnauthenticatedError) as raised:
        raw_put(guarded, {"op": "add", "collection_id": collection.id, "rows": 1},
                [id_batch(["sneaky"], np.ones((1, 2), np.float32))], id_batch(["x"], np.ones((1, 2))).schema)
    assert isinstance(chroma_error_of(raised), errors.Unauthorized)
    good = client_of(configured, guarded, auth_token=TOKEN)  # configuring the others closed it
    got = good.get_collection("guarded").get(include=["embeddings"])
    assert got["ids"] == ["a"] and np.array_equal(got["embeddings"], [[1.0, 2.0]])
    assert [c.name for c in good.list_collections()] == ["guarded"]
    good.delete_collection("guarded")


# --------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------


def test_limits_are_reported_and_enforced(bounded, configured):
    client = client_of(configured, bounded, allow_reset=True)
    client.reset()
    assert client.limits() == {"max_request_bytes": 100000, "max_json_request_bytes": 4194304,
                               "max_batch_size": 10, "max_n_results": 5, "max_response_rows": 50000,
                               "max_embedding_tokens": 1_000_000}
    collection = client.create_collection("bounded")
    collection.add(ids=[f"id{i}" for i in range(10)], embeddings=np.eye(10, dtype=np.float32))  # at the bound
    for write in (collection.add, collection.upsert):
        with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=10"):
            write(ids=[f"new{i}" for i in range(11)], embeddings=np.ones((11, 10)))
    with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=10"):
        collection.update(ids=[f"id{i}" for i in range(11)], embeddings=np.ones((11, 10)))
    with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=10"):
        collection.get(ids=[f"id{i}" for i in range(11)])
    with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=10"):
        collection.delete(ids=[f"id{i}" for i in range(11)])
    with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=10"):
        collection.query(query_embeddings=np.ones((11, 10)), n_results=1)
    with pytest.raises(errors.PayloadTooLarge, match="max_n_results=5"):
        collection.query(query_embeddings=np.ones((1, 10)), n_results=6)
    big = ["x" * 20_000] * 10  # 10 ids (within the batch bound), about 200 kB
    with pytest.raises(errors.PayloadTooLarge, match="max_request_bytes=100000"):
        collection.upsert(ids=[f"id{i}" for i in range(10)], embeddings=np.ones((10, 10)), documents=big)
    after = collection.get(include=["embeddings", "documents"])
    assert after["ids"] == [f"id{i}" for i in range(10)]
    assert np.array_equal(after["embeddings"], np.eye(10, dtype=np.float32))
    assert after["documents"] == [None] * 10
    assert len(collection.query(query_embeddings=np.ones((10, 10)), n_results=5)["ids"][0]) == 5


def test_a_stream_over_the_byte_bound_is_refused_mid_way(bounded, configured):
    client = client_of(configured, bounded, allow_reset=True)
    client.reset()
    collection = client.create_collection("bounded")
    # 10 rows (within the batch bound) in 10 chunks of 16 kB: the bound trips in the 7th
    vectors = np.ones((10, 4000), np.float32)
    batches = [id_batch([f"id{i}"], vectors[i:i + 1]) for i in range(10)]
    with pytest.raises(flight.FlightServerError) as raised:
        raw_put(bounded, {"op": "add", "collection_id": collection.id, "rows": 10}, batches, batches[0].schema)
    error = chroma_error_of(raised)
    assert isinstance(error, errors.PayloadTooLarge) and "max_request_bytes=100000" in str(error)
    assert collection.count() == 0


# --------------------------------------------------------------------------
# A stream that fails mid-way writes nothing
# --------------------------------------------------------------------------


def test_a_stream_ending_short_of_its_rows_writes_nothing(fresh, plain):
    client, collection = fresh
    vectors = np.random.default_rng(0).standard_normal((500, 8), dtype=np.float32)
    batches = [id_batch([f"id{i}" for i in range(s, s + 100)], vectors[s:s + 100]) for s in range(0, 500, 100)]
    with pytest.raises(flight.FlightServerError) as raised:
        raw_put(plain, {"op": "add", "collection_id": collection.id, "rows": 1000}, batches, batches[0].schema)
    error = chroma_error_of(raised)
    assert isinstance(error, errors.InvalidArgument)
    assert str(error) == "the stream ended after 500 of 1000 rows; nothing was written"
    assert collection.count() == 0
    # the same rows, announced right, are written
    raw_put(plain, {"op": "add", "collection_id": collection.id, "rows": 500}, batches, batches[0].schema)
    assert collection.count() == 500
    assert np.array_equal(collection.get(ids=["id499"], include=["embeddings"])["embeddings"], vectors[499:])


def test_a_bad_row_in_the_last_chunk_writes_nothing_of_the_earlier_chunks(fresh, plain):
    client, collection = fresh
    collection.add(ids=["keep"], embeddings=[[0.5] * 128])
    rows = 3 * protocol.rows_per_chunk(4 * 128 + 64)  # the client sends several chunks
    ids = [f"id{i}" for i in range(rows - 1)] + ["keep"]  # the last id exists already
    vectors = np.random.default_rng(1).standard_normal((rows, 128), dtype=np.float32)
    with pytest.raises(errors.DuplicateIDError, match="'keep'") as raised:
        collection.add(ids=ids, embeddings=vectors)

    def add_twice(local):
        same = local.create_collection("same")
        same.add(ids=["keep"], embeddings=[[0.5] * 128])
        same.add(ids=ids, embeddings=vectors)

    assert str(raised.value) == str(local_error(add_twice))
    assert collection.get()["ids"] == ["keep"]
    # a bad value only the server sees (sent raw, past the client's checks) in the last chunk
    ids[-1] = "fresh"
    vectors[-2, 5] = np.nan
    batches = [id_batch(ids[s:s + 1000], vectors[s:s + 1000]) for s in range(0, rows, 1000)]
    with pytest.raises(flight.FlightServerError) as raw:
        raw_put(plain, {"op": "add", "collection_id": collection.id, "rows": rows}, batches, batches[0].schema)
    error = chroma_error_of(raw)
    assert isinstance(error, errors.InvalidArgument) and f"row {rows - 2} holds NaN" in str(error)
    assert collection.get()["ids"] == ["keep"]


def test_a_client_killed_mid_stream_writes_nothing(fresh, plain, tmp_path):
    client, collection = fresh
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys, time
        import numpy as np, pyarrow as pa, pyarrow.flight as flight
        from chroma import flight_protocol as protocol
        client = flight.FlightClient({plain.flight_url!r})
        command = {{"op": "add", "collection_id": {collection.id!r}, "rows": 2000}}
        batch = pa.record_batch([pa.array([f"id{{i}}" for i in range(1000)]),
                                 protocol.embedding_column(np.ones((1000, 8), np.float32))], names=["ids", "embeddings"])
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(json.dumps(command).encode()), batch.schema)
        writer.write_batch(batch)
        print("sent", flush=True)
        time.sleep(60)
    """))
    writer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env=server_env(), cwd=PACKAGE_ROOT)
    try:
        assert writer.stdout.readline().strip() == "sent"
    finally:
        writer.kill()
        writer.wait()
    assert collection.count() == 0
    # the server is well and takes the same ids
    collection.add(ids=[f"id{i}" for i in range(2000)], embeddings=np.ones((2000, 8)))
    assert collection.count() == 2000


# --------------------------------------------------------------------------
# Errors: Local's class and message, also for what only the server checks
# --------------------------------------------------------------------------


def test_errors_carry_locals_class_and_message(fresh, plain, configured):
    client, collection = fresh
    with pytest.raises(errors.CollectionNotFound) as raised:
        client.get_collection("absent")
    assert str(raised.value) == str(local_error(lambda c: c.get_collection("absent")))
    with pytest.raises(errors.CollectionExists):
        client.create_collection("streams")
    with flight.FlightClient(plain.flight_url) as raw:
        # values the Python client would refuse before sending reach the server's (Local's) checks
        with pytest.raises(flight.FlightServerError) as bad_name:
            list(raw.do_action(flight.Action("create_collection", b'{"name": "a b"}')))
        assert str(chroma_error_of(bad_name)) == str(local_error(lambda c: c.create_collection("a b")))
        command = {"op": "get", "collection_id": collection.id, "ids": False, "include": ["nope"]}
        writer, reader = raw.do_exchange(flight.FlightDescriptor.for_command(json.dumps(command).encode()))
        writer.begin(pa.schema([("ids", pa.string())]))
        writer.done_writing()
        with pytest.raises(flight.FlightServerError) as bad_include:
            reader.read_all()
        expected = local_error(lambda c: c.create_collection("errs").get(include=["nope"]))
        assert type(chroma_error_of(bad_include)) is type(expected)
        assert str(chroma_error_of(bad_include)) == str(expected)
        with pytest.raises(flight.FlightServerError) as unknown:
            list(raw.do_action(flight.Action("drop_everything", b"{}")))
        assert "unknown action 'drop_everything'" in str(chroma_error_of(unknown))
        assert {a.type for a in raw.list_actions()} == set(protocol.ACTIONS)


def test_unreachable_server_is_server_unavailable_naming_the_address(configured):
    port = free_port()  # nothing listens there
    client = configured(api_impl="arrowflight", server_host="127.0.0.1", server_flight_port=port)
    with pytest.raises(errors.ServerUnavailable, match=f"127.0.0.1:{port}"):
        client.heartbeat()


# --------------------------------------------------------------------------
# chroma run --impl flight / both: SIGTERM, SIGINT, restart on the same --path
# --------------------------------------------------------------------------


def test_sigterm_stops_cleanly_and_a_restart_has_everything(tmp_path, configured):
    data = tmp_path / "data"
    server = start_server(tmp_path, "--path", str(data), name="first", impl="flight")
    try:
        collection = client_of(configured, server).create_collection("durable", metadata={"v": 1})
        vectors = np.arange(300, dtype=np.float32).reshape(100, 3)
        collection.add(ids=[f"id{i}" for i in range(100)], embeddings=vectors, metadatas=[{"i": i} for i in range(100)])
        collection.delete(ids=["id0"])
    finally:
        status = server.stop()
    assert status == 0, server.output()
    assert server.stdout.read_text().splitlines() == [
        f"chroma server listening on grpc://127.0.0.1:{server.flight_port}", "chroma server stopped"]

    with running_server(tmp_path, "--path", str(data), name="second", impl="flight") as again:
        collection = client_of(configured, again).get_collection("durable")
        assert collection.metadata == {"v": 1}
        got = collection.get(include=["embeddings", "metadatas"])
        assert got["ids"] == [f"id{i}" for i in range(1, 100)]
        assert np.array_equal(got["embeddings"], vectors[1:])
        assert got["metadatas"] == [{"i": i} for i in range(1, 100)]


def test_sigint_also_stops_cleanly(tmp_path):
    server = start_server(tmp_path, "--path", str(tmp_path / "data"), impl="flight")
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=20) == 0, server.output()
    assert "chroma server stopped" in server.stdout.read_text()


def test_a_taken_port_is_a_clear_error(plain, tmp_path):
    done = subprocess.run([sys.executable, "-m", "chroma", "run", "--impl", "flight", "--port", str(plain.flight_port)],
                          capture_output=True, text=True, env=server_env(), cwd=PACKAGE_ROOT, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{plain.flight_port}" in done.stderr


def test_both_serves_http_and_flight_over_one_database(tmp_path, configured):
    server = start_server(tmp_path, "--path", str(tmp_path / "data"), impl="both")
    try:
        assert server.stdout.read_text().splitlines() == [
            f"chroma server listening on http://127.0.0.1:{server.port}",
            f"chroma server listening on grpc://127.0.0.1:{server.flight_port}"]
        collection = client_of(configured, server).create_collection("shared")
        collection.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["apple", "banana"])
        over_http = configured(api_impl="fastapi", server_host="127.0.0.1", server_http_port=server.port)
        seen = over_http.get_collection("shared").query(query_embeddings=[[0.9, 0.1]], n_results=1)
        assert seen["ids"] == [["a"]] and seen["documents"] == [["apple"]]
        assert requests.get(f"{server.url}/api/v1/collections/shared").json()["id"] == collection.id
    finally:
        status = server.stop()
    assert status == 0, server.output()
    assert server.stdout.read_text().splitlines()[-1] == "chroma server stopped"


def test_small_and_streamed_gets_and_queries_answer_alike(fresh, monkeypatch):
    # A small get or query goes as one action, a larger one as a stream; the answers agree.
    import chroma.api.arrowflight as flight_client

    _, collection = fresh
    rng = np.random.default_rng(3)
    count = 300
    collection.add(ids=[f"i{n}" for n in range(count)], embeddings=rng.random((count, 16), dtype=np.float32),
                   metadatas=[{"n": n, "half": n < count // 2} for n in range(count)],
                   documents=[f"text {n} " + "\u00e9" * (n % 5) for n in range(count)])
    queries = rng.random((3, 16), dtype=np.float32)
    full = ["embeddings", "metadatas", "documents", "distances"]
    calls = {
        "query": lambda: collection.query(query_embeddings=queries, n_results=7, where={"half": True}, include=full),
        "query of one": lambda: collection.query(query_embeddings=queries[:1], n_results=3),
        "get by ids": lambda: collection.get(ids=["i5", "absent", "i299", "i0"], include=full[:3]),
    }
    answers = {}
    default = flight_client.SMALL_ROWS
    for small_rows in (default, 0):  # 0: everything streams
        monkeypatch.setattr(flight_client, "SMALL_ROWS", small_rows)
        answers[small_rows] = {name: call() for name, call in calls.items()}
    small, streamed = answers[default], answers[0]
    for name in calls:
        for field, value in streamed[name].items():
            if isinstance(value, np.ndarray) or (isinstance(value, list) and value and isinstance(value[0], np.ndarray)):
                np.testing.assert_array_equal(np.asarray(small[name][field]), np.asarray(value), err_msg=name)
            else:
                assert small[name][field] == value, (name, field)
    assert streamed["get by ids"]["ids"] == ["i5", "i299", "i0"]
    assert len(streamed["query"]["ids"][0]) == 7
