"""The one error map (chroma.protocol.error_map): every chroma.errors class crosses each
transport's wire and comes back as the same class, with the same message and its origin.

The first tests go through the map's two halves as each transport uses them (the HTTP
answer's status and JSON body, the Flight error's kind and extra_info, the Celery task's
msgpack result); the last ones through real servers (``chroma run --impl both``).
"""

from __future__ import annotations

import msgpack
import pyarrow.flight as flight
import pytest
import requests

from chroma import errors
from chroma.api.fastapi import _CLASSES as HTTP_CLASSES
from chroma.protocol import error_map
from server_helpers import running_server

ERROR_CLASSES = sorted(
    (cls for cls in vars(errors).values()
     if isinstance(cls, type) and issubclass(cls, errors.ChromaError) and cls.__module__ == errors.__name__),
    key=lambda cls: cls.__name__)
MESSAGE = "a message with 'quotes', \"double\", ünïcode and\na new line"


def test_every_error_class_has_a_row():
    assert set(ERROR_CLASSES) == set(error_map.TABLE)
    assert len(ERROR_CLASSES) > 20


def assert_rebuilt(error, cls, origin):
    assert type(error) is cls or (type(error) in HTTP_CLASSES.values() and isinstance(error, cls)), error
    assert str(error) == MESSAGE
    assert error.origin == origin
    assert any(origin.location in note for note in error.__notes__)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_http_round_trip(cls):
    status, content = error_map.http(cls(MESSAGE))
    assert status == error_map.TABLE[cls].status and 400 <= status < 600
    origin = error_map.Origin("POST http://127.0.0.1:1/api/v1/x", status)
    assert_rebuilt(error_map.from_json(content, origin, HTTP_CLASSES), cls, origin)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_flight_round_trip(cls):
    sent = error_map.flight_error(cls(MESSAGE))
    assert isinstance(sent, flight.FlightError) and str(MESSAGE) in str(sent)
    kind = error_map.TABLE[cls].flight
    assert type(sent).__name__ == error_map.FLIGHT_CLASSES[kind]
    assert_rebuilt(error_map.from_flight(sent, "grpc://127.0.0.1:1 count"), cls,
                   error_map.Origin("grpc://127.0.0.1:1 count", kind))


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_celery_round_trip(cls):
    # a task's result travels as msgpack, the serializer chroma.worker configures
    result = msgpack.unpackb(msgpack.packb(error_map.body(cls(MESSAGE))))
    origin = error_map.Origin("redis://broker task chroma.query 1", "reported")
    assert_rebuilt(error_map.rebuilt(result, origin), cls, origin)


def test_an_unexpected_exception_keeps_its_name():
    status, content = error_map.http(RuntimeError("boom"))
    assert status == 500
    error = error_map.from_json(content, error_map.Origin("GET http://h/x", status))
    assert type(error) is errors.ChromaError and str(error) == "RuntimeError: boom"
    sent = error_map.flight_error(RuntimeError("boom"))
    assert isinstance(sent, flight.FlightInternalError)
    assert str(error_map.from_flight(sent, "grpc://h")) == "RuntimeError: boom"


def test_a_client_subclass_travels_as_its_chroma_class():
    from chroma.api.fastapi import OutcomeUnknown, ServerUnavailable

    assert error_map.body(OutcomeUnknown("m")) == {"error": "OutcomeUnknown", "message": "m"}
    assert error_map.http(ServerUnavailable("m"))[0] == 503
    rebuilt = error_map.rebuilt({"error": "ServerUnavailable", "message": "m"}, error_map.Origin("u", 503),
                                HTTP_CLASSES)
    assert isinstance(rebuilt, requests.exceptions.ConnectionError)


def test_a_body_that_names_no_error_is_none():
    origin = error_map.Origin("u", 500)
    for data in (b"", b"not json", b"[1]", b'{"message": "x"}', b'{"error": 3}'):
        assert error_map.from_json(data, origin) is None


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("both"), impl="both") as server:
        yield server


def test_a_server_error_carries_its_origin_over_http(both, configured):
    client = configured(api_impl="fastapi", server_host="127.0.0.1", server_http_port=both.port)
    with pytest.raises(errors.CollectionNotFound) as raised:
        client.get_collection("no-such-collection")
    origin = raised.value.origin
    assert origin == error_map.Origin(f"GET {both.url}/api/v1/collections/no-such-collection", 404)


def test_a_server_error_carries_its_origin_over_flight(both, configured):
    client = configured(api_impl="arrowflight", server_host="127.0.0.1", server_flight_port=both.flight_port)
    with pytest.raises(errors.CollectionNotFound) as raised:
        client.get_collection("no-such-collection")
    assert raised.value.origin == error_map.Origin(f"grpc://127.0.0.1:{both.flight_port} get_collection",
                                                   error_map.SERVER_ERROR)
