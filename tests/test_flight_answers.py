"""The Flight client checks what a server answers before it reads it: a stream whose text is
not UTF-8, whose columns are missing, or an action body that is not JSON gives a
``chroma.errors.ChromaError`` naming the server, never a raw pyarrow or JSON error."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from chroma import errors
from chroma.api.arrowflight import ArrowFlight
from chroma.config import Settings

COLLECTION = {"id": str(uuid.uuid4()), "name": "answers", "metadata": None}


def invalid_utf8_ids() -> pa.Table:
    # Arrow builds it as given; only a full validation sees the bytes are not UTF-8
    offsets = pa.array([0, 2], pa.int32())
    return pa.table({"ids": pa.StringArray.from_buffers(1, offsets.buffers()[1], pa.py_buffer(b"\xff\xfe"))})


ANSWERS = {
    "ids that are not UTF-8": (invalid_utf8_ids(), json.dumps(COLLECTION).encode()),
    "a stream without the ids column": (pa.table({"other": pa.array(["a"])}), json.dumps(COLLECTION).encode()),
    "an action body that is not JSON": (pa.table({"ids": pa.array(["a"])}), b"\xff{"),
}


class AnsweringServer(flight.FlightServerBase):
    """Answers every action with ``body`` and every exchange with ``table``, whatever was asked."""

    def __init__(self, table: pa.Table, body: bytes) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self._table, self._body = table, body

    def do_action(self, context, action):
        return iter([flight.Result(pa.py_buffer(self._body))])

    def do_exchange(self, context, descriptor, reader, writer):
        reader.read_all()
        writer.begin(self._table.schema)
        writer.write_table(self._table)


@pytest.fixture(params=list(ANSWERS))
def answering(request) -> Iterator[tuple[str, ArrowFlight, int]]:
    server = AnsweringServer(*ANSWERS[request.param])
    client = ArrowFlight(Settings(server_host="127.0.0.1", server_flight_port=server.port))
    try:
        yield request.param, client, server.port
    finally:
        client.close()
        server.shutdown()


@pytest.mark.timeout(60)
def test_a_server_answer_that_is_not_valid(answering):
    what, client, port = answering
    with pytest.raises(errors.ChromaError, match="not a valid answer") as raised:
        collection = client.get_collection("answers")
        collection.get(ids=["a"])
    assert f"127.0.0.1:{port}" in str(raised.value), what
