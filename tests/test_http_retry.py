"""The HTTP client's retry rule, against real servers on 127.0.0.1.

A call goes again only if it is idempotent (a read), only once, and only when
a connection the pool had kept is closed or reset before any byte of the
answer; never after a timeout. A write whose answer never came raises
OutcomeUnknown. And the server itself keeps a connection open after a 500,
so the call after one is answered.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Optional

import pytest
import requests
import uvicorn

from chroma import errors
from chroma.api.fastapi import FastAPI as FastAPIClient
from chroma.api.fastapi import _Adapter, _caused_by, _KeptConnectionReset
from chroma.config import Settings
from chroma.server.fastapi import FastAPI as FastAPIServer

from server_helpers import free_port, kill_with_a_call_in_flight, start_server

COLLECTION_ID = str(uuid.uuid4())
ROUNDS = 20


class ScriptedServer:
    """An HTTP/1.1 server on 127.0.0.1 that follows a script: for its n-th connection, one action
    per request read on it. ``answer`` sends a 200 (the connection stays open), ``close`` closes
    the connection and ``reset`` resets it before any byte of an answer, ``silent`` never answers.
    With ``context``, it speaks TLS (test_tls.py)."""

    def __init__(self, script: list[list[str]], context: Optional[ssl.SSLContext] = None) -> None:
        self.script = script
        self.requests: list[tuple[int, str]] = []
        """(connection number, request line) of every request read."""
        listener = socket.create_server(("127.0.0.1", 0))
        self._listener = listener if context is None else context.wrap_socket(listener, server_side=True)
        self.port = self._listener.getsockname()[1]
        self._done = threading.Event()
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for number, actions in enumerate(self.script):
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            for action in actions:
                line = self._read_request(connection)
                if line is None:
                    break
                self.requests.append((number, line))
                if action == "answer":
                    connection.sendall(_answer(line))
                elif action == "close":
                    connection.close()
                    break
                elif action == "reset":
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    connection.close()
                    break
                else:  # silent
                    self._done.wait()
                    break

    @staticmethod
    def _read_request(connection: socket.socket) -> Optional[str]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")), 0)
        while len(body) < length:
            body += connection.recv(65536)
        return lines[0]

    def close(self) -> None:
        self._done.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a pending accept()
        self._listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.close()
        self._thread.join(timeout=10)


def _answer(request_line: str) -> bytes:
    path = request_line.split()[1]
    if path.endswith("/heartbeat"):
        body = {"heartbeat": 1}
    elif "/collections/" in path and request_line.startswith("GET") and not path.endswith("/count"):
        body = {"id": COLLECTION_ID, "name": "kept", "metadata": None}
    else:
        body = {}
    data = json.dumps(body).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)


@contextlib.contextmanager
def scripted(*script: list[str], context: Optional[ssl.SSLContext] = None,
             **client_settings: object) -> Iterator[tuple[ScriptedServer, FastAPIClient]]:
    server = ScriptedServer(list(script), context)
    client = FastAPIClient(Settings(server_host="127.0.0.1", server_http_port=server.port, **client_settings))
    try:
        yield server, client
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("ending", ["close", "reset"])
def test_a_read_on_a_kept_connection_ended_before_its_answer_goes_again_once(ending):
    with scripted(["answer", ending], ["answer"]) as (server, client):
        assert client.heartbeat() == 1
        assert client.heartbeat() == 1
    assert [number for number, _ in server.requests] == [0, 0, 1]


@pytest.mark.parametrize("ending", ["close", "reset"])
def test_a_read_ended_again_on_its_new_connection_is_server_unavailable(ending):
    with scripted(["answer", ending], [ending], ["answer"]) as (server, client):
        client.heartbeat()
        with pytest.raises(errors.ServerUnavailable) as raised:
            client.heartbeat()
    assert not isinstance(raised.value, errors.OutcomeUnknown)
    assert [number for number, _ in server.requests] == [0, 0, 1]


@pytest.mark.parametrize("ending", ["close", "reset"])
def test_a_read_on_a_new_connection_ended_before_its_answer_is_not_sent_again(ending):
    with scripted([ending], ["answer"]) as (server, client):
        with pytest.raises(errors.ServerUnavailable):
            client.heartbeat()
    assert [number for number, _ in server.requests] == [0]


@pytest.mark.parametrize("kept", [True, False], ids=["kept-connection", "new-connection"])
@pytest.mark.parametrize("ending", ["close", "reset"])
def test_a_write_whose_answer_never_came_is_outcome_unknown_and_sent_once(ending, kept):
    collection = None
    first = ["answer", ending] if kept else ["answer"]
    script = [first, ["answer"]] if kept else [first, [ending], ["answer"]]
    with scripted(*script) as (server, client):
        collection = client.get_collection("kept")
        if not kept:  # the write goes from a client with no connection yet: it opens a new one
            fresh = FastAPIClient(Settings(server_host="127.0.0.1", server_http_port=server.port))
            collection = fresh._collection({"id": COLLECTION_ID, "name": "kept", "metadata": None}, None)
        with pytest.raises(errors.OutcomeUnknown, match="may or may not have been applied"):
            collection.add(ids=["a"], embeddings=[[1.0, 2.0]])
    writes = [line for _, line in server.requests if line.startswith("POST")]
    assert writes == [f"POST /api/v1/collections/{COLLECTION_ID}/add HTTP/1.1"]


def test_a_write_to_a_server_not_listening_is_server_unavailable_not_outcome_unknown():
    client = FastAPIClient(Settings(server_host="127.0.0.1", server_http_port=free_port()))
    collection = client._collection({"id": COLLECTION_ID, "name": "kept", "metadata": None}, None)
    with pytest.raises(errors.ServerUnavailable, match="cannot reach") as raised:
        collection.add(ids=["a"], embeddings=[[1.0, 2.0]])
    assert not isinstance(raised.value, errors.OutcomeUnknown)


def test_a_kept_connection_that_times_out_is_not_taken_for_a_reset():
    # The adapter's connections under a read timeout (the client's is client_read_timeout).
    with scripted(["answer", "silent"], ["answer"]) as (server, _):
        session = requests.Session()
        session.mount("http://", _Adapter())
        url = f"http://127.0.0.1:{server.port}/api/v1/heartbeat"
        session.get(url, timeout=5)
        with pytest.raises(requests.Timeout) as raised:
            session.get(url, timeout=0.5)
        session.close()
    assert not _caused_by(raised.value, (_KeptConnectionReset,))
    assert [number for number, _ in server.requests] == [0, 0]


# --------------------------------------------------------------------------
# A real uvicorn server: killed with a request in flight, and after a 500
# --------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["write", "read"])
def test_a_server_killed_with_a_call_in_flight(tmp_path, call):
    server = start_server(tmp_path)
    client = FastAPIClient(Settings(server_host="127.0.0.1", server_http_port=server.port))
    collection = client.create_collection("in-flight")  # the pool now keeps a connection
    outcome: list = []
    sends: list[str] = []
    send_once = client._send

    def counted_send(method, url, data, headers):
        sends.append(url)
        return send_once(method, url, data, headers)

    client._send = counted_send  # counts what goes out; every send still reaches the real server

    def send() -> None:
        try:
            if call == "write":
                collection.add(ids=["a"], embeddings=[[1.0, 2.0]])
            else:
                collection.get()
            outcome.append("answered")
        except errors.ChromaError as exc:
            outcome.append(exc)

    kill_with_a_call_in_flight(server, server.port, send)
    client.close()
    assert len(outcome) == 1
    if call == "write":
        assert isinstance(outcome[0], errors.OutcomeUnknown)
        assert len(sends) == 1
    else:
        # Sent again once, on a new connection. That one finds no server ("cannot reach"), or,
        # when the dying server's kernel still completes the handshake on its listening socket
        # before closing it, is reset too ("gave no answer"): which comes first is the kernel's
        # order of closing the killed process's sockets, not the client's.
        assert isinstance(outcome[0], errors.ServerUnavailable)
        assert not isinstance(outcome[0], errors.OutcomeUnknown)
        assert len(sends) == 2
        assert "cannot reach" in str(outcome[0]) or "gave no answer" in str(outcome[0])


@contextlib.contextmanager
def serving_with_a_failing_route() -> Iterator[str]:
    """The server's real app under uvicorn in this process, plus one route that fails unexpectedly."""
    app_server = FastAPIServer(Settings())
    app = app_server.app

    @app.get("/api/v1/fails")
    def fails() -> None:
        raise RuntimeError("an unexpected failure")

    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))  # as chroma run
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
        app_server.close()


def test_the_call_after_a_500_is_answered_on_the_same_connection():
    failed_next: list[Exception] = []
    with serving_with_a_failing_route() as base, requests.Session() as session:
        for _ in range(ROUNDS):
            answer = session.get(f"{base}/fails")
            assert answer.status_code == 500
            assert answer.json() == {"error": "RuntimeError", "message": "an unexpected failure"}
            try:
                assert session.get(f"{base}/heartbeat").status_code == 200
            except requests.ConnectionError as exc:
                failed_next.append(exc)
    assert failed_next == []
