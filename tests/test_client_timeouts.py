"""Client timeouts (settings client_connect_timeout, client_read_timeout), over HTTP and Flight.

A server that takes the connection but never answers, a server that stopped (SIGSTOP) with
the clients connected, and a port nobody listens on: a read raises ServerUnavailable, a
write that may have reached the server OutcomeUnknown, a call that never left
ServerUnavailable; none of them hangs (each test has a pytest-timeout bound far above the
configured timeouts).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from chroma import config, errors
from chroma.api.arrowflight import ArrowFlight
from chroma.api.fastapi import FastAPI
from chroma.config import Settings

from server_helpers import free_port, running_server

TIMEOUTS = {"client_connect_timeout": 1.0, "client_read_timeout": 1.0}
COLLECTION_ID = str(uuid.uuid4())
CLIENTS = {
    "http": lambda port, **settings: FastAPI(Settings(server_host="127.0.0.1", server_http_port=port, **settings)),
    "flight": lambda port, **settings: ArrowFlight(Settings(server_host="127.0.0.1", server_flight_port=port,
                                                            **settings)),
}
HANG_BOUND = pytest.mark.timeout(120)


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and reads what comes, but never
    sends a byte: a server process that is hung, as the network shows it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.received = 0
        """Bytes read from all connections: nonzero once a request left the client."""
        self._connections: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            reader = threading.Thread(target=self._read, args=(connection,), daemon=True)
            self._threads.append(reader)
            reader.start()

    def _read(self, connection: socket.socket) -> None:
        while True:
            try:
                chunk = connection.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self.received += len(chunk)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the pending accept()
        self._listener.close()
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        for thread in self._threads:
            thread.join(timeout=10)
            assert not thread.is_alive()


@contextlib.contextmanager
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def a_collection(client):
    """A handle on a collection the client never asked the server about."""
    return client._collection({"id": COLLECTION_ID, "name": "silent", "metadata": None}, None)


def assert_never_sent(client, call: str, message: str) -> None:
    """A read or a write (``call``) of ``client`` raises ServerUnavailable saying ``message``, and
    not OutcomeUnknown: the call never left. Closes ``client``."""
    try:
        with pytest.raises(errors.ServerUnavailable, match=message) as raised:
            if call == "read":
                client.list_collections()
            else:
                client.create_collection("never-sent")
    finally:
        client.close()
    assert not isinstance(raised.value, errors.OutcomeUnknown)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def test_the_defaults_connect_in_10_s_and_wait_330_s_for_an_answer():
    settings = Settings()
    assert (settings.client_connect_timeout, settings.client_read_timeout) == (10.0, 330.0)
    # above the server's own deadline, so a slow call gets DeadlineExceeded, not a client timeout
    assert settings.client_read_timeout > settings.request_timeout


@pytest.mark.parametrize("name", ["client_connect_timeout", "client_read_timeout"])
@pytest.mark.parametrize("value", [0, -1, "soon", float("inf"), True])
def test_a_timeout_that_is_not_a_positive_number_is_a_configuration_error(name, value):
    with pytest.raises(errors.ConfigurationError, match=f"setting {name} must be"):
        config.resolve(**{name: value})


def test_the_timeouts_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("CHROMA_CLIENT_CONNECT_TIMEOUT", "2.5")
    monkeypatch.setenv("CHROMA_CLIENT_READ_TIMEOUT", "45")
    settings = config.resolve()
    assert (settings.client_connect_timeout, settings.client_read_timeout) == (2.5, 45.0)
    monkeypatch.setenv("CHROMA_CLIENT_READ_TIMEOUT", "0")
    with pytest.raises(errors.ConfigurationError,
                       match="setting CHROMA_CLIENT_READ_TIMEOUT must be a positive number, got '0'"):
        config.resolve()


# --------------------------------------------------------------------------
# A server that accepts the connection and never answers
# --------------------------------------------------------------------------


@HANG_BOUND
def test_http_a_read_with_no_answer_in_time_is_server_unavailable():
    with silent_server() as server:
        client = CLIENTS["http"](server.port, **TIMEOUTS)
        with pytest.raises(errors.ServerUnavailable, match="gave no answer to GET .* within "
                           r"client_read_timeout=1 s") as raised:
            a_collection(client).count()
        client.close()
    assert not isinstance(raised.value, errors.OutcomeUnknown)
    assert server.received > 0


@HANG_BOUND
def test_http_a_write_with_no_answer_in_time_is_outcome_unknown():
    with silent_server() as server:
        client = CLIENTS["http"](server.port, **TIMEOUTS)
        with pytest.raises(errors.OutcomeUnknown, match=r"gave no answer within client_read_timeout=1 s: the "
                           "write may or may not have been applied"):
            a_collection(client).add(ids=["a"], embeddings=[[1.0, 2.0]])
        client.close()
    assert server.received > 0


@HANG_BOUND
@pytest.mark.parametrize("call", ["read", "write"])
def test_flight_a_server_that_never_completes_the_connection_is_server_unavailable(call):
    # gRPC waits for the server's HTTP/2 settings before it sends a call: none left, so a write
    # too is known not to have happened. The read timeout is far above the connect timeout, so
    # "cannot reach" shows that the connect bound ended the call.
    with silent_server() as server:
        assert_never_sent(CLIENTS["flight"](server.port, client_connect_timeout=0.5, client_read_timeout=60.0),
                          call, "cannot reach the chroma Flight server")


@HANG_BOUND
@pytest.mark.parametrize("transport", list(CLIENTS))
@pytest.mark.parametrize("call", ["read", "write"])
def test_a_tls_handshake_with_no_answer_is_server_unavailable(tmp_path, transport, call):
    trustme = pytest.importorskip("trustme")
    authority = tmp_path / "authority.pem"
    trustme.CA().cert_pem.write_to_path(str(authority))
    with silent_server() as server:
        assert_never_sent(CLIENTS[transport](server.port, server_tls=True, client_tls_ca_file=str(authority),
                                             client_connect_timeout=0.5, client_read_timeout=60.0),
                          call, "cannot reach the chroma")


# --------------------------------------------------------------------------
# A real server that stops answering with the clients connected
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stopped_server(tmp_path_factory):
    """``chroma run --impl both``, its clients connected with a collection made, then stopped
    (SIGSTOP) for the test and continued after it."""
    with running_server(tmp_path_factory.mktemp("stopped"), impl="both") as server:
        clients = {"http": CLIENTS["http"](server.port, **TIMEOUTS),
                   "flight": CLIENTS["flight"](server.flight_port, **TIMEOUTS)}
        collections = {name: client.create_collection(f"stopped-{name}") for name, client in clients.items()}
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            yield clients, collections
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
            for client in clients.values():
                client.close()


@HANG_BOUND
@pytest.mark.parametrize("transport", list(CLIENTS))
def test_a_read_from_a_stopped_server_is_server_unavailable(stopped_server, transport):
    clients, collections = stopped_server
    with pytest.raises(errors.ServerUnavailable, match=r"gave no answer to .* within client_read_timeout=1 s") \
            as raised:
        collections[transport].get()
    assert not isinstance(raised.value, errors.OutcomeUnknown)


@HANG_BOUND
@pytest.mark.parametrize("transport", list(CLIENTS))
def test_a_write_to_a_stopped_server_is_outcome_unknown(stopped_server, transport):
    clients, collections = stopped_server
    with pytest.raises(errors.OutcomeUnknown, match=r"gave no answer within client_read_timeout=1 s: the write "
                       "may or may not have been applied"):
        collections[transport].add(ids=["a"], embeddings=[[1.0, 2.0]])


# --------------------------------------------------------------------------
# A port nobody listens on
# --------------------------------------------------------------------------


@HANG_BOUND
@pytest.mark.parametrize("transport", list(CLIENTS))
@pytest.mark.parametrize("call", ["read", "write"])
def test_a_port_nobody_listens_on_is_server_unavailable(transport, call):
    assert_never_sent(CLIENTS[transport](free_port(), **TIMEOUTS), call, "cannot reach the chroma")
