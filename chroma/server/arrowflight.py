"""``chroma.server.ArrowFlight``: the local API over Arrow Flight (``grpc://HOST:PORT``, or
``grpc+tls://`` with ``server_tls_certfile`` and ``server_tls_keyfile``).

Like the HTTP server, it runs :class:`chroma.api.local.Local` over the
configured ``chroma.DB`` (or a Local it is given, to serve beside the HTTP
server) and passes every value to the Local method the Python API calls, so
validation, error classes and messages are Local's own. The protocol (actions
for small calls, record batches with ``fixed_size_list<float32>`` embeddings
for bulk data) is described in :mod:`chroma.flight_protocol`.

Bounds, as over HTTP (:class:`chroma.config.Settings`): with ``auth_token``
set, every call but the ``heartbeat`` action needs the call header
``authorization: Bearer <token>``; ``max_batch_size`` bounds the rows of a
write, the ids of a get or delete and the query embeddings of a query;
``max_n_results`` bounds ``n_results``; ``max_response_rows`` bounds a query's
queries x ``n_results`` and a get's rows; ``max_request_bytes`` bounds the
Arrow bytes of one incoming stream (and the JSON of an action, which
``max_json_request_bytes`` bounds too). All are listed in docs/limits.md.

Memory: a write's stream is read whole, checked against those bounds as it
arrives, and only then handed to Local as one batch, which the DB writes in
one transaction. So a stream that fails or ends early writes nothing, and the
server holds at most ``max_request_bytes`` of one write's rows (plus the
converted batch) at a time. Results go back in chunks of about
``chroma.flight_protocol.CHUNK_BYTES``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from chroma import errors, tls
from chroma import flight_protocol as protocol
from chroma.api.local import Local
from chroma.api.remote import host_port, to_json
from chroma.config import Settings
from chroma.protocol import error_map
from chroma.protocol import operations as ops
from chroma.server import Server
from chroma.server.bounds import Bounds, token_matches, unauthorized
from chroma.server.calls import RunningCalls
from chroma.server.dispatch import Dispatch
from chroma.types import GetResult, QueryResult

log = logging.getLogger(__name__)

LIMITS_AT = "the Flight action 'limits'"
TOKEN_HEADER = "call header 'authorization: Bearer <token>'"
CALL_THREADS = 32
"""Threads that run the Local calls of Flight requests (so that a call's deadline can end the
wait for it); a call past its deadline keeps its thread until it ends."""


@contextlib.contextmanager
def _as_flight_errors() -> Iterator[None]:
    """Raises any error of the block as the Flight error :mod:`chroma.protocol.error_map` gives it."""
    try:
        yield
    except flight.FlightError:
        raise
    except Exception as exc:
        if not isinstance(exc, errors.ChromaError):
            log.exception("unexpected error in a Flight call")
        raise error_map.flight_error(exc) from None


class _Token(flight.ServerMiddleware):
    """Marks a call that carried the right token."""


class _TokenCheck(flight.ServerMiddlewareFactory):
    """Refuses calls without the bearer token before their stream is read.

    An action's name is not known here, so actions pass unmarked and
    ``do_action`` refuses them unless they are open.
    """

    def __init__(self, token: Optional[str]) -> None:
        self.token = token

    def start_call(self, info, headers) -> Optional[_Token]:
        if any(token_matches(self.token, value) for value in headers.get("authorization", [])) or not self.token:
            return _Token()
        if info.method in (flight.FlightMethod.DO_ACTION, flight.FlightMethod.LIST_ACTIONS):
            return None
        raise error_map.flight_error(unauthorized(TOKEN_HEADER))


def _collection_id(command: dict) -> str:
    collection_id = command.get("collection_id")
    if not isinstance(collection_id, str):
        raise errors.InvalidArgument(f"collection_id must be a string, got {collection_id!r}")
    return collection_id


def _answer_table(operation: ops.Operation, result: Any) -> pa.Table:
    """The answer of a get or query as the table its exchange streams."""
    return _query_table(result) if operation.result == ops.QUERY_RESULT else _get_table(result)


def _get_table(result: GetResult) -> pa.Table:
    columns = {"ids": pa.array(result["ids"], type=pa.string())}
    if result["embeddings"] is not None:
        columns["embeddings"] = protocol.embedding_column(result["embeddings"])
    if result["metadatas"] is not None:
        columns["metadatas"] = protocol.json_column(result["metadatas"])
    if result["documents"] is not None:
        columns["documents"] = pa.array(result["documents"], type=pa.string())
    return pa.table(columns)


def _query_table(result: QueryResult) -> pa.Table:
    counts = [len(ids) for ids in result["ids"]]

    def flat(name: str) -> list:
        return [value for row in result[name] for value in row]

    columns = {
        "query": pa.array(np.repeat(np.arange(len(counts), dtype=np.int32), counts)),
        "ids": pa.array(flat("ids"), type=pa.string()),
    }
    if result["distances"] is not None:
        columns["distances"] = pa.array(flat("distances"), type=pa.float64())
    if result["embeddings"] is not None:
        dimension = result["embeddings"][0].shape[1] if result["embeddings"] else 0
        matrix = (np.concatenate(result["embeddings"]) if sum(counts)
                  else np.empty((0, dimension), dtype=np.float32))
        columns["embeddings"] = protocol.embedding_column(matrix)
    if result["metadatas"] is not None:
        columns["metadatas"] = protocol.json_column(flat("metadatas"))
    if result["documents"] is not None:
        columns["documents"] = pa.array(flat("documents"), type=pa.string())
    return pa.table(columns)


def _pem_pair(certificate: tls.ServerCertificate) -> flight.CertKeyPair:
    """The certificate and key files' contents, as gRPC takes them."""
    with open(certificate.certfile, "rb") as cert, open(certificate.keyfile, "rb") as key:
        return flight.CertKeyPair(cert.read(), key.read())


class _Service(flight.FlightServerBase):
    """The Flight handlers: each turns a call into one Local call."""

    def __init__(self, location: flight.Location, api: Local, bounds: Bounds, token: Optional[str],
                 calls: RunningCalls, certificate: Optional[tls.ServerCertificate]) -> None:
        super().__init__(location, middleware={"token": _TokenCheck(token)},
                         tls_certificates=[_pem_pair(certificate)] if certificate else None)
        self.api = api
        self.bounds = bounds
        self.calls = calls
        self._call_threads = concurrent.futures.ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="chroma-flight-call")
        self.dispatch = Dispatch(api, bounds)

    def _deadline(self) -> float:
        return time.monotonic() + self.bounds.request_timeout

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise self.bounds.deadline_exceeded(what)

    def _in_time(self, deadline: float, what: str, call: Callable[[], Any]) -> Any:
        """``call()`` run on a call thread, waited for until ``deadline`` at most: then a queued
        call is dropped, a running one is left to end on its thread, and DeadlineExceeded raised."""
        self._check_deadline(deadline, what)
        future = self._call_threads.submit(call)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise self.bounds.deadline_exceeded(what) from None

    def close_calls(self) -> None:
        """Waits for the calls still running (those past their deadline too), then frees their threads."""
        self._call_threads.shutdown(wait=True, cancel_futures=True)

    # actions
    def list_actions(self, context) -> list[tuple[str, str]]:
        return list(protocol.ACTIONS.items())

    def do_action(self, context, action: flight.Action) -> list[flight.Result]:
        deadline = self._deadline()
        with _as_flight_errors(), self.calls.running():
            name = action.type
            if name not in protocol.OPEN_ACTIONS and context.get_middleware("token") is None:
                raise unauthorized(TOKEN_HEADER)
            operation = ops.of_flight_action(name)
            if operation is None:
                raise errors.InvalidArgument(
                    f"unknown action {name!r}; known actions: {', '.join(protocol.ACTIONS)}")
            body = action.body.to_pybytes() if action.body is not None else b""
            self.bounds.check_bytes(len(body))
            self.bounds.check_json_bytes(len(body))
            args = protocol.decode_json(body, f"the body of action {name!r}")
            if not isinstance(args, dict):
                raise errors.InvalidArgument(f"the body of action {name!r} must be a JSON object, got {args!r}")
            answer = self._in_time(deadline, f"action {name!r}", lambda: self.dispatch(operation, args))
            if operation.flight == ops.EXCHANGE:  # a small get or query: its stream's table, in one message
                return [flight.Result(protocol.ipc_stream(_answer_table(operation, answer)))]
            return [flight.Result(to_json(answer))]

    # streams
    def _command(self, descriptor: flight.FlightDescriptor, operations: tuple[str, ...]) -> dict:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise errors.InvalidArgument("the Flight descriptor must be a command (JSON)")
        self.bounds.check_bytes(len(descriptor.command))
        self.bounds.check_json_bytes(len(descriptor.command))
        command = protocol.decode_json(descriptor.command, "the descriptor's command")
        if not isinstance(command, dict) or command.get("op") not in operations:
            raise errors.InvalidArgument(
                f"the descriptor's command must be a JSON object with \"op\" one of {list(operations)}")
        return command

    def _receive(self, reader: flight.MetadataRecordBatchReader, what: str, deadline: float) -> pa.Table:
        """The whole incoming stream, within the bounds, each batch checked as it arrives.

        gRPC hands over a whole message at a time (pyarrow sets no receive
        limit), so the bytes are counted per message, with every buffer it
        brought (not only the part its arrays use), and reading stops at
        the first message past ``max_request_bytes``. Each batch is then
        validated in full: offsets, lengths and UTF-8 from a peer are not
        trusted by anything that reads them later. The deadline is checked
        between messages (a message gRPC is still receiving is waited for).
        """
        names = reader.schema.names
        if len(set(names)) != len(names):
            raise errors.InvalidArgument(f"a stream's columns must have distinct names, got {names}")
        batches, size, rows = [], 0, 0
        for number, chunk in enumerate(reader):
            self._check_deadline(deadline, "reading the stream")
            batch = chunk.data
            size += chunk.app_metadata.size if chunk.app_metadata is not None else 0
            size += batch.get_total_buffer_size() if batch is not None else 0
            if self.bounds.max_request_bytes and size > self.bounds.max_request_bytes:
                raise self.bounds.too_large(None)
            if batch is None:
                continue
            rows += batch.num_rows
            self.bounds.check_batch(rows, what)
            try:
                batch.validate(full=True)
            except pa.ArrowException as exc:
                raise errors.InvalidArgument(
                    f"record batch {number} of the stream is not valid Arrow data: {exc}") from None
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)

    def do_put(self, context, descriptor, reader, writer) -> None:
        deadline = self._deadline()
        with _as_flight_errors(), self.calls.running():
            command = self._command(descriptor, protocol.WRITES)
            collection_id = _collection_id(command)
            declared = command.get("rows")
            if isinstance(declared, int) and not isinstance(declared, bool):
                self.bounds.check_batch(declared, "ids")  # refused before the stream is read
            else:
                raise errors.InvalidArgument(f"the command's \"rows\" must be the number of rows sent, got {declared!r}")
            table = self._receive(reader, "ids", deadline)
            if table.num_rows != declared:
                raise errors.InvalidArgument(
                    f"the stream ended after {table.num_rows} of {declared} rows; nothing was written")
            unknown = set(table.column_names) - {"ids", "embeddings", "metadatas", "documents"}
            if unknown or "ids" not in table.column_names:
                raise errors.InvalidArgument(
                    f"a write's columns are ids and any of embeddings, metadatas, documents; got {table.column_names}")
            ids = protocol.strings(table.column("ids"), "ids")
            embeddings: Any = None
            if "embeddings" in table.column_names:
                matrix, missing = protocol.embedding_matrix(table.column("embeddings"))
                embeddings = matrix if missing is None else [None if gap else row for row, gap in zip(matrix, missing)]
            metadatas = protocol.json_values(table.column("metadatas")) if "metadatas" in table.column_names else None
            documents = (protocol.strings(table.column("documents"), "documents")
                         if "documents" in table.column_names else None)
            operation = ops.OPERATIONS[command["op"]]
            values = {"collection_id": collection_id, "ids": ids, "embeddings": embeddings, "metadatas": metadatas,
                      "documents": documents}
            if "embed_missing" in command:
                values["embed_missing"] = command["embed_missing"]
            self._in_time(deadline, operation.name, lambda: self.dispatch(operation, values))

    def do_exchange(self, context, descriptor, reader, writer) -> None:
        deadline = self._deadline()
        with _as_flight_errors(), self.calls.running():
            command = self._command(descriptor, ("get", "query"))
            collection_id = _collection_id(command)
            values = {name: command[name] for name in ("where", "where_document", "limit", "offset", "include",
                                                       "n_results") if name in command}
            values["collection_id"] = collection_id
            if command["op"] == "get":
                table = self._receive(reader, "ids", deadline)
                if command.get("ids"):
                    if "ids" not in table.column_names:
                        raise errors.InvalidArgument("a get by ids sends a stream with the column 'ids'")
                    values["ids"] = protocol.strings(table.column("ids"), "ids")
                out = _answer_table(ops.GET, self._in_time(deadline, "get", lambda: self.dispatch(ops.GET, values)))
            else:
                self.bounds.check_n_results(command.get("n_results", 10))  # before the stream is read
                table = self._receive(reader, "query_embeddings", deadline)
                if "texts" in table.column_names:  # query_texts, for the default model here
                    values["query_texts"] = protocol.strings(table.column("texts"), "query_texts")
                elif "embeddings" in table.column_names:
                    queries, missing = protocol.embedding_matrix(table.column("embeddings"), "query_embeddings")
                    if missing is not None:
                        raise errors.InvalidArgument(f"query_embeddings row {int(np.argmax(missing))} is null")
                    values["query_embeddings"] = queries
                else:
                    raise errors.InvalidArgument("a query sends a stream with the column 'embeddings' or 'texts'")
                out = _answer_table(ops.QUERY, self._in_time(deadline, "query", lambda: self.dispatch(ops.QUERY, values)))
            writer.begin(out.schema)
            for batch in protocol.table_chunks(out):
                self._check_deadline(deadline, f"sending the answer of {command['op']}")
                writer.write_batch(batch)


class ArrowFlight(Server):
    """Serves ``chroma.api.local.Local`` over Arrow Flight.

    ``listen()`` starts the Flight server (``server_host``/``server_flight_port``;
    port 0 picks a free one) and returns the address; ``run()`` (:class:`chroma.server.Server`)
    serves until SIGTERM/SIGINT (or :meth:`stop`), lets running calls finish, then closes
    the DB it opened.
    """

    limits_at = LIMITS_AT

    def __init__(self, settings: Settings, api: Optional[Local] = None) -> None:
        super().__init__(settings, api)
        self._service: Optional[_Service] = None
        self._stop = threading.Event()
        self._stopping: Optional[threading.Thread] = None
        """Stops the service (it takes no new call, and returns once the running ones end)."""
        self._grace_ends = 0.0

    def listen(self) -> tuple[str, int]:
        """Starts answering calls now; returns ``(host, port)``.

        Raises:
            OSError: the address cannot be listened on.
        """
        host = self._settings.server_host
        if self._service is None:
            port = self._settings.server_flight_port
            try:
                for_grpc = flight.Location.for_grpc_tls if self._certificate else flight.Location.for_grpc_tcp
                location = for_grpc(host, port)
                self._service = _Service(location, self.api, self.bounds, self._settings.auth_token, self.calls,
                                         self._certificate)
            except (pa.ArrowException, OSError) as exc:
                raise OSError(f"cannot listen on {host_port(host, port)}: {exc}") from None
        return host, self._service.port

    def urls(self) -> list[str]:
        host, port = self.listen()
        return [f"{'grpc+tls' if self._certificate else 'grpc'}://{host_port(host, port)}"]

    def serve(self) -> None:
        self._stop.wait()  # the service answers on gRPC's threads meanwhile

    def stop(self) -> None:
        self._stop.set()

    def stop_taking_calls(self) -> None:
        if self._service is not None and self._stopping is None:
            self._grace_ends = time.monotonic() + self._settings.shutdown_grace
            self._stopping = threading.Thread(target=self._service.shutdown, name="chroma-flight-shutdown",
                                              daemon=True)
            self._stopping.start()

    def shutdown(self) -> int:
        self.stop_taking_calls()
        if self._stopping is None:
            return 0
        self._stopping.join(max(0.0, self._grace_ends - time.monotonic()))
        left = self.calls.cut_off(self.api)
        if not left:
            self._stopping.join()
            self._service.close_calls()
        self._service = None
        return left
