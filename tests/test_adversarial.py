"""Hostile clients against one running server (HTTP and Flight in one process):
schemathesis over /openapi.json, malformed binary frames, malformed Flight calls,
and bodies past the size and depth bounds. No input may get a 5xx (or a Flight
internal error), the server must answer its heartbeat after every input, and the
stored collection must stay as it was."""

from __future__ import annotations

import json
import struct

import hypothesis
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests
import schemathesis

import chroma
from chroma import wire
from chroma.filters import MAX_DEPTH
from conformance_helpers import collection_snapshot, assert_same_collection_snapshot
from server_helpers import running_server

PREFIX = "/api/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("adversarial"), impl="both") as process:
        yield process


@pytest.fixture(scope="module")
def kept(server):
    """The collection every input must leave as it was, and its snapshot now."""
    chroma.configure(api_impl="fastapi", server_host="127.0.0.1", server_http_port=server.port)
    try:
        collection = chroma.get_api().create_collection("kept")
        collection.add(ids=["a", "b", "c"], embeddings=[[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
                       metadatas=[{"k": 1}, {"k": "x"}, None], documents=["first", None, "third"])
        yield collection, collection_snapshot(collection)
    finally:
        chroma.configure(api_impl=None, server_host=None, server_http_port=None)


def assert_alive_and_unchanged(server, kept) -> None:
    assert requests.get(f"{server.url}{PREFIX}/heartbeat", timeout=10).status_code == 200
    collection, before = kept
    assert_same_collection_snapshot(before, collection_snapshot(collection))


# --------------------------------------------------------------------------
# schemathesis over the OpenAPI schema
# --------------------------------------------------------------------------


EXAMPLES_PER_OPERATION = 15


def test_generated_requests_get_no_server_error(server, kept):
    """Schemathesis' cases for every operation of /openapi.json, derandomized (one fixed
    seed), so that every run sends the same requests."""
    web_schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    sent = []
    for result in web_schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
        def send(case) -> None:
            response = case.call(base_url=server.url, timeout=30)
            sent.append(operation.label)
            assert response.status_code < 500, (operation.label, response.status_code, response.text[:500])
            assert_alive_and_unchanged(server, kept)

        send()
    assert len(set(sent)) >= 13 and len(sent) >= 13 * EXAMPLES_PER_OPERATION // 2, sent
    print(f"{len(sent)} schemathesis cases over {len(set(sent))} operations")


# --------------------------------------------------------------------------
# Hand-made bodies: binary frames, JSON past the bounds
# --------------------------------------------------------------------------


def frame(header: bytes, vectors: bytes = b"") -> bytes:
    return struct.pack("<I", len(header)) + header + b"\0" * (-(4 + len(header)) % 4) + vectors


def nested_json(depth: int) -> bytes:
    return b'{"where": ' + b'{"$and": [' * depth + b'{"k": 1}' + b"]}" * depth + b"}"


def deep_list(depth: int) -> bytes:
    return b'{"ids": ' + b"[" * depth + b"]" * depth + b"}"


BINARY_BODIES = {
    "empty": b"",
    "short prefix": b"\x01\x00",
    "length past the end": struct.pack("<I", 2**32 - 1) + b"{}",
    "header not JSON": frame(b"\xff\xfe not json"),
    "header invalid UTF-8 in a string": frame(b'{"ids": ["\xff\xfe"]}'),
    "header a list": frame(b"[1, 2]"),
    "arrays not an object": frame(b'{"$arrays": 7}'),
    "spec past the vectors": frame(b'{"ids": ["z"], "$arrays": {"embeddings": {"offset": 0, "rows": 1, "dim": 4}}}'),
    "negative rows": frame(b'{"ids": ["z"], "$arrays": {"embeddings": {"offset": 0, "rows": -1, "dim": 2}}}'),
    "10**7 rows of dim 0": frame(b'{"ids": ["z"], "$arrays": {"embeddings": {"offset": 0, "rows": 10000000, '
                                 b'"dim": 0, "missing": [0]}}}'),
    "vectors not whole floats": frame(b'{"ids": ["z"]}', b"\0\0\0"),
    "NaN vector": frame(b'{"ids": ["z"], "$arrays": {"embeddings": {"offset": 0, "rows": 1, "dim": 2}}}',
                        np.array([np.nan, 1], "<f4").tobytes()),
    "lone surrogate id": frame(b'{"ids": ["\\ud800"], "$arrays": {"embeddings": {"offset": 0, "rows": 1, "dim": 2}}}',
                               np.zeros(2, "<f4").tobytes()),
    "where nested 2000 deep": frame(nested_json(2000)[:-1] + b"}"),
    "ids nested 2000 deep": frame(deep_list(2000)),
}

JSON_BODIES = {
    "where nested past the limit": nested_json(MAX_DEPTH + 1),
    "where nested 350 deep": nested_json(350),
    "where nested 100,000 deep": nested_json(100_000),
    "ids nested 100,000 deep": deep_list(100_000),
    "metadata nested 5,000 deep": b'{"ids": ["z"], "embeddings": [[0, 0]], "metadatas": [{"k": '
                                  + b"[" * 5000 + b"]" * 5000 + b"}]}",
    "lone surrogate in where": b'{"where": {"k": "\\ud800"}}',
    "lone surrogate key": b'{"where": {"\\udfff": 1}}',
    "lone surrogate document filter": b'{"where_document": {"$contains": "a\\ud800"}}',
    "limit 2**63": b'{"limit": 9223372036854775808}',
    "offset 2**64": b'{"offset": 18446744073709551616}',
    "limit 10**400": b'{"limit": 1' + b"0" * 400 + b"}",
    "invalid UTF-8": b'{"ids": ["\xff"]}',
    "zero queries": b'{"query_embeddings": []}',
}

OPERATIONS = ("add", "update", "delete", "get", "query")
"""upsert reads its body as add and update do."""


@pytest.mark.parametrize("body", BINARY_BODIES.values(), ids=BINARY_BODIES.keys())
@pytest.mark.parametrize("operation", OPERATIONS)
def test_malformed_binary_frame(server, kept, operation, body):
    response = requests.post(f"{server.url}{PREFIX}/collections/{kept[0].id}/{operation}", data=body,
                             headers={"Content-Type": wire.MEDIA_TYPE}, timeout=60)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    # the others refuse array fields they do not take, as any field
    assert response.json()["error"] in ("InvalidArgument", "PayloadTooLarge", "InvalidDimensionError")
    assert_alive_and_unchanged(server, kept)


@pytest.mark.parametrize("body", JSON_BODIES.values(), ids=JSON_BODIES.keys())
@pytest.mark.parametrize("operation", OPERATIONS)
def test_hostile_json_body(server, kept, operation, body):
    response = requests.post(f"{server.url}{PREFIX}/collections/{kept[0].id}/{operation}", data=body,
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert_alive_and_unchanged(server, kept)


# --------------------------------------------------------------------------
# Flight
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flight_client(server):
    client = flight.FlightClient(server.flight_url)
    yield client
    client.close()


def command(**fields) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(json.dumps(fields).encode())


def invalid_utf8_ids() -> pa.Table:
    # Arrow builds it as given; only a full validation sees the bytes are not UTF-8
    offsets = pa.array([0, 2], pa.int32())
    ids = pa.StringArray.from_buffers(1, offsets.buffers()[1], pa.py_buffer(b"\xff\xfe"))
    return pa.table({"ids": ids})


def duplicate_ids_columns() -> pa.Table:
    return pa.Table.from_arrays([pa.array(["z"]), pa.array(["y"])], names=["ids", "ids"])


def put(client, descriptor, table: pa.Table) -> None:
    writer, _ = client.do_put(descriptor, table.schema)
    writer.write_table(table)
    writer.close()


def exchange(client, descriptor, table: pa.Table) -> None:
    writer, reader = client.do_exchange(descriptor)
    writer.begin(table.schema)
    writer.write_table(table)
    writer.done_writing()
    reader.read_all()
    writer.close()


def flight_calls(collection_id: str) -> dict:
    deep_where = json.loads(nested_json(350))["where"]
    return {
        "put invalid UTF-8 ids": lambda c: put(c, command(op="add", collection_id=collection_id, rows=1),
                                              invalid_utf8_ids()),
        "put duplicate columns": lambda c: put(c, command(op="add", collection_id=collection_id, rows=1),
                                              duplicate_ids_columns()),
        "put invalid UTF-8 documents": lambda c: put(
            c, command(op="upsert", collection_id=collection_id, rows=1),
            pa.table({"ids": ["a"], "documents": invalid_utf8_ids().column("ids")})),
        "put lone surrogate in the command": lambda c: put(
            c, flight.FlightDescriptor.for_command(b'{"op": "add", "collection_id": "\\ud800", "rows": 1}'),
            pa.table({"ids": ["z"]})),
        "get by invalid UTF-8 ids": lambda c: exchange(c, command(op="get", collection_id=collection_id, ids=True),
                                                       invalid_utf8_ids()),
        "get by duplicate columns": lambda c: exchange(c, command(op="get", collection_id=collection_id, ids=True),
                                                       duplicate_ids_columns()),
        "get where nested 350 deep": lambda c: exchange(
            c, command(op="get", collection_id=collection_id, where=deep_where), pa.table({"ids": pa.array([], pa.string())})),
        "get limit 2**63": lambda c: exchange(
            c, command(op="get", collection_id=collection_id, limit=2**63), pa.table({"ids": pa.array([], pa.string())})),
        "command nested 100,000 deep": lambda c: put(
            c, flight.FlightDescriptor.for_command(b"[" * 100_000 + b"]" * 100_000), pa.table({"ids": ["z"]})),
        "action body invalid UTF-8": lambda c: list(c.do_action(flight.Action("delete", b'{"ids": ["\xff"]}'))),
        "action where 100,000 deep": lambda c: list(c.do_action(flight.Action(
            "delete", b'{"collection_id": "' + collection_id.encode() + b'", ' + nested_json(100_000)[1:]))),
        "action lone surrogate id": lambda c: list(c.do_action(flight.Action(
            "delete", json.dumps({"collection_id": collection_id, "ids": ["\ud800"]}).encode()))),
    }


FLIGHT_CALL_NAMES = list(flight_calls("x"))


@pytest.mark.parametrize("name", FLIGHT_CALL_NAMES)
def test_malformed_flight_call(server, kept, flight_client, name):
    call = flight_calls(kept[0].id)[name]
    with pytest.raises(flight.FlightError) as failure:
        call(flight_client)
    assert not isinstance(failure.value, flight.FlightInternalError), str(failure.value)[:500]
    assert isinstance(failure.value, flight.FlightServerError), repr(failure.value)[:500]
    assert_alive_and_unchanged(server, kept)
