"""``chroma.api.ArrowFlight``: the Python API over Arrow Flight, against
``chroma run --impl flight`` (or ``--impl both``).

Chosen by ``api_impl="arrowflight"``; talks to ``grpc://server_host:server_flight_port``
(``grpc+tls://`` with ``server_tls``, trusting ``client_tls_ca_file`` or the system's roots;
the protocol is in :mod:`chroma.flight_protocol`), sending the call header
``authorization: Bearer <auth_token>`` when that setting is given.

Embeddings travel as Arrow ``fixed_size_list<float32>`` columns, without a
text encoding on either side. A write streams its rows in record batches of
about ``chroma.flight_protocol.CHUNK_BYTES``, built one at a time from the
checked batch (the caller's own array when it is C-contiguous float32; the
embedding chunks are views of it), so the client holds one chunk in Arrow
form beyond that; the server writes the batch only once the whole stream has
arrived (see ``chroma.server.arrowflight`` for its bound).

The client returns the same types as ``chroma.api.local.Local`` (numpy float32
embeddings) and raises the same exception classes with the same messages:
before a call leaves it runs Local's input checks (``chroma.api.arguments``),
and an error of the server arrives as a Flight error naming the
``chroma.errors`` class, which is raised here again (:mod:`chroma.protocol.error_map`).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from chroma import errors, tls, wire
from chroma import flight_protocol as protocol
from chroma.api.remote import Remote, host_port, to_json
from chroma.config import Settings
from chroma.db import Batch
from chroma.protocol import error_map
from chroma.protocol import operations as ops
from chroma.types import GetResult, QueryResult

_IDS_ONLY = pa.schema([("ids", pa.string())])
_NEVER_SENT = "failed to connect to all addresses"
"""gRPC's words for a call that found no connection, so never reached a server."""


def _pem(path: Optional[str]) -> Optional[bytes]:
    """The contents of a PEM file (None: gRPC's own roots)."""
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


class ArrowFlight(Remote):
    """A client of a chroma Flight server."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._address = host_port(settings.server_host, settings.server_flight_port)
        self._url = f"{'grpc+tls' if settings.server_tls else 'grpc'}://{self._address}"
        connect_ms = max(1, round(settings.client_connect_timeout * 1000))
        # gRPC gives a connection attempt max(min_reconnect_backoff, backoff) before it fails the
        # calls waiting on it: bounding both makes a silent or dead server a ServerUnavailable
        # after client_connect_timeout, rather than after gRPC's own 20 s (or the read timeout).
        self._client = flight.FlightClient(
            self._url, tls_root_certs=_pem(tls.client_ca_file(settings)),
            generic_options=[("grpc.min_reconnect_backoff_ms", connect_ms),
                             ("grpc.initial_reconnect_backoff_ms", connect_ms),
                             ("grpc.max_reconnect_backoff_ms", connect_ms)])
        self._read_timeout = settings.client_read_timeout
        self._tls_hint = (" Over TLS, does it serve grpc+tls (chroma run --tls-certfile), does client_tls_ca_file "
                          "hold the certificate authority that signed its certificate, and does that name "
                          "server_host?" if settings.server_tls else " If it serves grpc+tls, set server_tls=true.")
        headers = [(b"authorization", f"Bearer {settings.auth_token}".encode())] if settings.auth_token else []
        self._options = flight.FlightCallOptions(headers=headers, timeout=settings.client_read_timeout)

    # plumbing
    def _error(self, exc: Exception, what: str, write: bool = False) -> errors.ChromaError:
        """The chroma error behind a failed Flight call (``write``: one that changes the store)."""
        call = f"the Flight call {what}"
        error = error_map.from_flight(exc, f"{self._url} {what}")
        if error is not None:
            return error
        server = f"the chroma Flight server at {self._url}"
        sent = _NEVER_SENT not in str(exc)
        if isinstance(exc, flight.FlightTimedOutError) and sent:
            return error_map.no_answer(server, call, write, waited=self._read_timeout)
        if isinstance(exc, flight.FlightUnavailableError) and write and sent:
            return error_map.no_answer(server, call, write, cause=exc)
        if isinstance(exc, flight.FlightUnavailableError):
            return error_map.unreachable(
                server, what, exc, "is `chroma run --impl flight` running there (settings server_host, "
                "server_flight_port)?" + self._tls_hint)
        return errors.ChromaError(f"Flight call {what} to {self._url} failed: {exc}")

    def _call(self, operation: ops.Operation, values: dict) -> Any:
        self._check_open()
        try:
            if operation.flight == ops.ACTION:
                return self._action(operation, values)
            if operation.flight == ops.PUT:
                return self._put(operation, values)
            if _small(operation, values):
                body = to_json(values)
                if len(body) <= SMALL_BODY_BYTES:
                    return self._small_exchange(operation, values, body)
            return self._exchange(operation, values)
        except (flight.FlightError, pa.ArrowException) as exc:
            raise self._error(exc, operation.name, write=not operation.idempotent) from None

    def _action(self, operation: ops.Operation, values: dict) -> Any:
        body = self._action_result(operation, to_json(values))
        try:
            return json.loads(body.to_pybytes())
        except ValueError as exc:
            raise self._invalid_answer(operation, exc) from None

    def _action_result(self, operation: ops.Operation, body: bytes) -> pa.Buffer:
        """The body of the one result the action ``operation`` answers to ``body``."""
        results = list(self._client.do_action(flight.Action(operation.name, body), options=self._options))
        if not results:
            raise self._invalid_answer(operation, ValueError("no result"))
        return results[0].body

    def _invalid_answer(self, operation: ops.Operation, exc: Exception) -> errors.ChromaError:
        return errors.ChromaError(f"the Flight server at {self._url} answered {operation.name} with something "
                                  f"that is not a valid answer: {exc}")

    def _put(self, operation: ops.Operation, values: dict) -> dict:
        vectors = values["embeddings"]
        gapped = isinstance(vectors, wire.Gapped)
        batch = Batch(ids=values["ids"], embeddings=vectors.rows if gapped else vectors,
                      metadatas=values["metadatas"], documents=values["documents"],
                      missing=vectors.missing if gapped else None)
        schema, bytes_per_row = _write_schema(batch)
        command = {"op": operation.name, "collection_id": values["collection_id"], "rows": len(batch.ids),
                   "embed_missing": values["embed_missing"]}
        batches = protocol.chunks(schema, len(batch.ids), bytes_per_row,
                                  lambda name, start, end: _write_column(batch, name, start, end))
        descriptor = flight.FlightDescriptor.for_command(to_json(command))
        writer, _ = self._client.do_put(descriptor, schema, options=self._options)
        broken: Optional[Exception] = None
        try:
            for chunk in batches:
                writer.write_batch(chunk)
        except pa.ArrowException as exc:
            broken = exc  # the server ended the call early; close() says why
        except BaseException:
            # Failed here mid-stream (a chunk's text, an interrupt): end the call; the
            # server refuses a stream shorter than the rows announced, so nothing is written.
            with contextlib.suppress(pa.ArrowException):
                writer.close()
            raise
        writer.close()
        if broken is not None:
            raise broken
        return {}

    def _exchange(self, operation: ops.Operation, values: dict) -> Any:
        # The arguments that have a column go in the stream (the command says whether each was
        # sent); the others in the command.
        command: dict = {"op": operation.name}
        columns, names = [], []
        for name in operation.arguments:
            value = values[name]
            column = _STREAMED.get(name)
            if column is None:
                command[name] = value
                continue
            command[name] = value is not None
            if value is not None:
                columns.append(column[1](value, name))
                names.append(column[0])
        batch = pa.record_batch(columns, names=names) if columns else None
        schema = batch.schema if batch is not None else _IDS_ONLY
        descriptor = flight.FlightDescriptor.for_command(to_json(command))
        writer, reader = self._client.do_exchange(descriptor, options=self._options)
        writer.begin(schema)
        if batch is not None:
            for chunk in protocol.table_chunks(pa.Table.from_batches([batch])):
                writer.write_batch(chunk)
        writer.done_writing()
        table = reader.read_all()
        writer.close()
        return self._answer(operation, table, batch.num_rows if batch is not None else 0)

    def _small_exchange(self, operation: ops.Operation, values: dict, body: bytes) -> Any:
        """A get or query sent as one action (``body``: its values as JSON), answered by one
        message: a stream's setup costs more than a small call's work."""
        answer = self._action_result(operation, body)  # a Flight error goes to _call's map
        try:
            table = protocol.ipc_table(answer)
        except pa.ArrowException as exc:
            raise self._invalid_answer(operation, exc) from None
        queries = values.get("query_embeddings")
        return self._answer(operation, table, len(queries) if queries is not None else 0)

    def _answer(self, operation: ops.Operation, table: pa.Table, queries: int) -> Any:
        """The result of a get or query from the table the server answered (``queries``: how many
        queries a query asked)."""
        try:
            # a peer's offsets, lengths and UTF-8 are checked before anything reads them
            table.validate(full=True)
            if operation.result == ops.QUERY_RESULT:
                return _query_result(table, queries)
            return GetResult(
                ids=table.column("ids").to_pylist(),
                embeddings=_column(table, "embeddings", _matrix),
                metadatas=_column(table, "metadatas", protocol.json_values),
                documents=_column(table, "documents", lambda column: column.to_pylist()),
            )
        except (pa.ArrowException, KeyError, TypeError, ValueError) as exc:
            raise self._invalid_answer(operation, exc) from None

    def close(self) -> None:
        super().close()
        self._client.close()


SMALL_ROWS = 1_000
"""Rows a get by ids, or a query's queries x n_results, may answer at most to go as one action."""
SMALL_FLOATS = 16_384
"""Components of the query vectors at most in a query sent as one action (as JSON)."""
SMALL_BODY_BYTES = 512 * 2**10
"""Bytes of JSON at most in the body of a get or query sent as one action (long ids stream):
well within the server's JSON bound (max_json_request_bytes)."""


def _small(operation: ops.Operation, values: dict) -> bool:
    """Whether a get or query is small enough for one action: a get by at most ``SMALL_ROWS`` ids,
    a query by vectors of at most ``SMALL_ROWS`` answer rows and ``SMALL_FLOATS`` components.
    The rest (and text queries, of any length) stream."""
    if operation.result == ops.GET_RESULT:
        return values["ids"] is not None and len(values["ids"]) <= SMALL_ROWS
    queries, n_results = values["query_embeddings"], values["n_results"]
    # no rows: JSON cannot tell an empty (0, d) matrix from one empty vector
    return (queries is not None and isinstance(n_results, int) and 0 < queries.size <= SMALL_FLOATS
            and len(queries) * n_results <= SMALL_ROWS)


_STREAMED = {"ids": ("ids", protocol.string_column),
             "query_embeddings": ("embeddings", lambda matrix, name: protocol.embedding_column(matrix)),
             "query_texts": ("texts", protocol.string_column)}
"""The arguments of an exchange that travel as a column of its stream: the column's name, and
how it is made from the argument's value."""


def _query_result(table: pa.Table, queries: int) -> QueryResult:
    """A query's answer as the server streamed it, one list per query."""
    counts = np.bincount(table.column("query").to_numpy(), minlength=queries)
    ends = np.cumsum(counts)
    starts = ends - counts

    def per_query(values):
        return [values[start:end] for start, end in zip(starts, ends)]

    return QueryResult(
        ids=per_query(table.column("ids").to_pylist()),
        embeddings=_column(table, "embeddings", lambda column: per_query(_matrix(column))),
        metadatas=_column(table, "metadatas", lambda column: per_query(protocol.json_values(column))),
        documents=_column(table, "documents", lambda column: per_query(column.to_pylist())),
        distances=_column(table, "distances", lambda column: per_query(column.to_pylist())),
    )


def _matrix(column: Any) -> np.ndarray:
    return protocol.embedding_matrix(column)[0]


def _column(table: pa.Table, name: str, convert) -> Any:
    """``convert(column)`` of a result column, or None when the server sent none (not included)."""
    return convert(table.column(name)) if name in table.column_names else None


def _write_schema(batch: Batch) -> tuple[pa.Schema, int]:
    """The schema of a write's stream and about how many bytes one row takes."""
    fields = [pa.field("ids", pa.string())]
    bytes_per_row = 64
    if batch.embeddings is not None:
        fields.append(pa.field("embeddings", protocol.embedding_type(batch.embeddings.shape[1])))
        bytes_per_row += 4 * batch.embeddings.shape[1]
    if batch.metadatas is not None:
        fields.append(pa.field("metadatas", pa.string()))
        bytes_per_row += 128
    if batch.documents is not None:
        fields.append(pa.field("documents", pa.string()))
        bytes_per_row += 512
    return pa.schema(fields), bytes_per_row


def _write_column(batch: Batch, name: str, start: int, end: int) -> pa.Array:
    if name == "embeddings":
        missing = None if batch.missing is None else batch.missing[start:end]
        return protocol.embedding_column(batch.embeddings[start:end], missing)
    if name == "metadatas":
        return protocol.json_column(batch.metadatas[start:end])
    return protocol.string_column(getattr(batch, name)[start:end], name)
