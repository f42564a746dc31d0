"""The HTTP server keeps a connection open after a 500, so the call after one is answered."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import requests
import uvicorn

from chroma.config import Settings
from chroma.server.fastapi import FastAPI as FastAPIServer

ROUNDS = 20


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
