"""SIGTERM to ``chroma run`` with a call in flight: no new call is taken, the running one
finishes within the ``shutdown_grace`` setting (or is cut off with OutcomeUnknown past it),
and the process exits with status 0 without waiting for the statement to end."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import numpy as np
import pytest

from chroma import errors
from chroma.api.arrowflight import ArrowFlight
from chroma.api.fastapi import FastAPI
from chroma.config import Settings
from chroma.db import Batch
from chroma.db.duckdb import DuckDB
from chroma.filters import parse_where_document
from chroma.server.calls import UNWIND_SECONDS

from server_helpers import start_server

DOCUMENTS = 5_000
SHORT_TERMS = 4_000
"""``$or`` terms of a get that runs a second or two here."""
LONG_TERMS = 24_000
"""``$or`` terms of a get that runs far longer than the test waits (mostly in DuckDB's planner,
which its interrupt does not stop)."""
EXIT_MARGIN = 4.0


def _client(server, impl: str):
    if impl == "fastapi":
        return FastAPI(Settings(server_host="127.0.0.1", server_http_port=server.port))
    return ArrowFlight(Settings(server_host="127.0.0.1", server_flight_port=server.flight_port))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _scan(collection, terms: int) -> dict:
    """A get whose where_document makes the DB test every document against ``terms`` substrings."""
    return collection.get(where_document={"$or": [{"$contains": f"number {i} "} for i in range(terms)]},
                          include=[])


def _sigterm_mid_call(server, collection, terms: int, impl: str) -> tuple[dict, float]:
    """Starts the scan, sends SIGTERM once the server is busy with it; returns (outcome, time of
    SIGTERM). ``outcome["refused"]``: whether a new connection was refused while the scan still ran."""
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["result"] = _scan(collection, terms)
        except errors.ChromaError as exc:
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    pid = server.process.pid
    busy_from = _cpu_seconds(pid)
    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 30
    while _cpu_seconds(pid) < busy_from + 0.3:  # the server works on the call
        assert caller.is_alive(), f"the call ended before the signal: {outcome}"
        assert time.monotonic() < deadline, "the server never started on the call"
        time.sleep(0.02)
    assert caller.is_alive(), f"the call ended before the signal: {outcome}"
    server.process.send_signal(signal.SIGTERM)
    outcome["signalled"] = time.monotonic()
    outcome["refused"] = False
    port = server.port if impl == "fastapi" else server.flight_port
    while caller.is_alive() and not outcome["refused"]:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            outcome["refused"] = caller.is_alive()
        time.sleep(0.05)
    caller.join(timeout=120)
    return outcome, outcome["signalled"]


@pytest.fixture(params=["fastapi", "flight"])
def impl(request) -> str:
    return request.param


def _seeded(tmp_path, impl: str, grace: float):
    server = start_server(tmp_path, impl=impl, shutdown_grace=str(grace))
    client = _client(server, impl)
    collection = client.create_collection("documents")
    collection.add(ids=[f"d{i}" for i in range(DOCUMENTS)], embeddings=np.zeros((DOCUMENTS, 2), np.float32),
                   documents=[f"document number {i} of the shutdown test" for i in range(DOCUMENTS)])
    return server, client


def test_sigterm_lets_a_running_call_finish_then_exits_0(tmp_path, impl):
    server, client = _seeded(tmp_path, impl, grace=60)
    try:
        collection = client.get_collection("documents")
        outcome, _ = _sigterm_mid_call(server, collection, SHORT_TERMS, impl)
        status = server.process.wait(timeout=60)
    finally:
        server.stop()
    assert "error" not in outcome, outcome.get("error")
    assert sorted(outcome["result"]["ids"]) == sorted(f"d{i}" for i in range(SHORT_TERMS))
    assert status == 0, server.output()
    assert outcome["refused"], "a new call was taken while the running one finished"


def test_sigterm_cuts_off_a_call_longer_than_the_grace_then_exits_0(tmp_path, impl):
    grace = 1.0
    server, client = _seeded(tmp_path, impl, grace=grace)
    try:
        collection = client.get_collection("documents")
        outcome, signalled = _sigterm_mid_call(server, collection, LONG_TERMS, impl)
        status = server.process.wait(timeout=60)
        exited = time.monotonic()
    finally:
        server.stop()
    assert status == 0, server.output()
    # not when the statement would have ended
    assert exited - signalled < grace + UNWIND_SECONDS + EXIT_MARGIN, server.output()
    # over HTTP the cut-off call is answered OutcomeUnknown; a Flight call sees its server go
    assert isinstance(outcome.get("error"), errors.OutcomeUnknown if impl == "fastapi" else errors.ServerUnavailable)


def test_interrupt_ends_a_running_duckdb_statement_and_the_db_goes_on(tmp_path):
    # Past the grace period a server interrupts the statements still running (DB.interrupt).
    db = DuckDB(Settings())
    record = db.create_collection("documents", None)
    count = 40_000
    db.add(record.id, Batch(ids=[f"d{i}" for i in range(count)], embeddings=np.zeros((count, 2), np.float32),
                            metadatas=None, documents=[f"word{i} " * 150 for i in range(count)]))
    scan = parse_where_document({"$or": [{"$contains": f"absent term {i}"} for i in range(600)]})
    outcome: list = []

    def call() -> None:
        try:
            outcome.append(db.get(record.id, None, scan, None, None, []))
        except Exception as exc:  # noqa: BLE001 - the interrupt's own exception is expected
            outcome.append(exc)

    caller = threading.Thread(target=call)
    started = time.monotonic()
    caller.start()
    while caller.is_alive():  # until the statement has begun and been stopped
        db.interrupt()
        time.sleep(0.05)
    interrupted_after = time.monotonic() - started
    natural_started = time.monotonic()
    assert db.get(record.id, None, scan, None, None, []).ids == []  # later statements run normally
    natural = time.monotonic() - natural_started
    assert "Interrupt" in type(outcome[0]).__name__, outcome
    assert interrupted_after < natural / 2
    assert db.count(record.id) == count
    db.close()
