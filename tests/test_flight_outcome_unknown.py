"""The Flight client: a write whose answer never came raises OutcomeUnknown; a read, or a
call that never reached a server, raises ServerUnavailable. (gRPC itself sends a call again
on a new connection only when it never left, so the client adds no retry of its own.)"""

from __future__ import annotations

import pytest

from chroma import errors
from chroma.api.arrowflight import ArrowFlight
from chroma.config import Settings

from server_helpers import free_port, kill_with_a_call_in_flight, start_server

CALLS = {
    "add": lambda client, collection: collection.add(ids=["a"], embeddings=[[1.0, 2.0]]),
    "delete": lambda client, collection: collection.delete(ids=["a"]),
    "create_collection": lambda client, collection: client.create_collection("another"),
    "get": lambda client, collection: collection.get(),
    "count": lambda client, collection: collection.count(),
}
WRITES = {"add", "delete", "create_collection"}


@pytest.mark.parametrize("call", list(CALLS))
def test_a_flight_server_killed_with_a_call_in_flight(tmp_path, call):
    server = start_server(tmp_path, impl="flight")
    client = ArrowFlight(Settings(server_host="127.0.0.1", server_flight_port=server.flight_port))
    collection = client.create_collection("in-flight")  # the channel is connected
    outcome: list = []

    def send() -> None:
        try:
            CALLS[call](client, collection)
            outcome.append("answered")
        except errors.ChromaError as exc:
            outcome.append(exc)

    kill_with_a_call_in_flight(server, server.flight_port, send)
    assert len(outcome) == 1
    expected = errors.OutcomeUnknown if call in WRITES else errors.ServerUnavailable
    assert type(outcome[0]) is expected, outcome[0]


def test_a_flight_write_to_a_server_not_listening_is_server_unavailable():
    client = ArrowFlight(Settings(server_host="127.0.0.1", server_flight_port=free_port()))
    with pytest.raises(errors.ServerUnavailable, match="cannot reach") as raised:
        client.create_collection("never-sent")
    assert not isinstance(raised.value, errors.OutcomeUnknown)
