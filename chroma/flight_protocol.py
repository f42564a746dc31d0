"""chroma's Arrow Flight protocol, shared by the client (``chroma.api.arrowflight``)
and the server (``chroma.server.arrowflight``).

Small calls are Flight actions: the action type is the call's name, its body
a JSON object of the arguments, its one result a JSON value::

    heartbeat          {}                                       -> {"heartbeat": ns}  (no token needed)
    version            {}                                       -> {"version": "0.1.0"}
    limits             {}                                       -> {"max_request_bytes", "max_json_request_bytes", "max_batch_size", "max_n_results",
                                                                    "max_response_rows"}
    list_collections   {}                                       -> [collection, ...]
    create_collection  {name, metadata, get_or_create}          -> collection
    get_collection     {name}                                   -> collection
    delete_collection  {name}                                   -> {}
    modify             {collection_id, name, metadata}          -> collection
    count              {collection_id}                          -> {"count": n}
    delete             {collection_id, ids, where, where_document} -> {}
    reset              {}                                       -> {}

A collection is ``{"id", "name", "metadata"}``.

Bulk data travels as Arrow record batches, sent in chunks of about
``CHUNK_BYTES``. Columns (each present only when the call carries it):
``ids`` utf8; ``embeddings`` fixed_size_list<float32>[dim] (a null row: no
vector); ``metadatas`` utf8, one JSON object per row (null: none);
``documents`` utf8; ``distances`` float64; ``query`` int32 (which query a
result row answers).

- add, upsert, update: ``DoPut``; the descriptor's command is JSON
  ``{"op", "collection_id", "rows"}``, the stream holds ``ids`` and the given
  fields. ``rows`` is the number of rows the client sends: a stream that ends
  short of it (a client gone mid-way) is refused, so a batch is written whole
  or not at all.
- get: ``DoExchange`` with command ``{"op": "get", "collection_id", "ids"
  (bool: whether ids are sent), "where", "where_document", "limit", "offset",
  "include"}``; the client sends an ``ids`` stream (empty when ``ids`` is
  false) and reads back ``ids`` plus the included columns.
- query: ``DoExchange`` with command ``{"op": "query", "collection_id",
  "n_results", "where", "where_document", "include"}``; the client sends the
  query ``embeddings`` and reads back one row per result, ``query`` and
  ``ids`` plus the included columns, nearest first within each query.
- get and query are actions too: the body is the JSON object of the call's
  arguments (``ids``, ``query_embeddings`` as lists), the one result the
  bytes of an Arrow IPC stream of the table the exchange would send back.
  The Python client sends a get by at most 1,000 ids, and a query of at most
  1,000 answer rows, that way (one message each way; a stream costs its
  setup), and streams the rest.

The width of the ``embeddings`` type is the dimension also when no row comes
back. Errors are Flight errors of the kind :mod:`chroma.protocol.error_map` gives
their class (Unauthenticated for ``Unauthorized``, Unauthorized for ``ResetDisabled``,
TimedOut for ``DeadlineExceeded``, else a server error) whose ``extra_info`` is JSON
``{"error": "<chroma.errors class>", "message": ...}``.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa

from chroma import errors
from chroma.protocol.operations import ACTION, EXCHANGE, OPERATIONS, PUT
from chroma.validation import json_loads

CHUNK_BYTES = 4 * 2**20
"""About how many bytes of rows one record batch carries."""

ACTIONS = {name: operation.summary for name, operation in OPERATIONS.items() if operation.flight in (ACTION, EXCHANGE)}
"""The actions (chroma.protocol.operations) and what each does. A get or query action answers
with an Arrow IPC stream (the table its exchange streams), the others with JSON."""
OPEN_ACTIONS = frozenset(name for name, operation in OPERATIONS.items() if operation.open)
"""Actions served without a token: they reveal no stored data."""

WRITES = tuple(name for name, operation in OPERATIONS.items() if operation.flight == PUT)


def decode_json(data: bytes, what: str) -> Any:
    """The JSON value in ``data``. Raises InvalidArgument naming ``what``."""
    try:
        return json_loads(data) if data else {}
    except ValueError as exc:
        raise errors.InvalidArgument(f"{what} must be JSON: {exc}") from None


# --------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------


def embedding_type(dimension: int) -> pa.DataType:
    return pa.list_(pa.float32(), dimension)


def embedding_column(matrix: np.ndarray, missing: Optional[np.ndarray] = None) -> pa.Array:
    """A (n, dim) float32 array as fixed_size_list<float32>[dim] (no copy); rows in ``missing`` are null."""
    dimension = matrix.shape[1]
    if len(matrix) == 0:
        return pa.array([], type=embedding_type(dimension))
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    mask = None if missing is None else pa.array(missing, type=pa.bool_())
    return pa.FixedSizeListArray.from_arrays(values, type=embedding_type(dimension), mask=mask)


def embedding_matrix(column: Any, what: str = "embeddings") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``(matrix, missing)`` of a fixed_size_list<float> column: a writable (n, dim)
    float32 array (the one copy made) and the mask of null rows (None when there are none).

    Raises:
        InvalidArgument: the column has another type.
    """
    kind = column.type
    if not pa.types.is_fixed_size_list(kind) or not pa.types.is_floating(kind.value_type):
        raise errors.InvalidArgument(f"column {what!r} must be fixed_size_list<float32>[dimension], got {kind}")
    dimension = kind.list_size
    matrix = np.empty((len(column), dimension), dtype=np.float32)
    row = 0
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        count = len(chunk)
        values = chunk.values.slice(chunk.offset * dimension, count * dimension)
        # a view where Arrow allows one; a null inside a vector comes back as NaN, which the checks refuse
        matrix[row:row + count] = values.to_numpy(zero_copy_only=False).reshape(count, dimension)
        row += count
    missing = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
    return matrix, missing


def json_column(values: Sequence[Optional[dict]]) -> pa.Array:
    """One JSON text per entry (null for None)."""
    return pa.array([None if v is None else json.dumps(v, separators=(",", ":")) for v in values], type=pa.string())


def json_values(column: Any, what: str = "metadatas") -> list:
    """The values of a JSON text column (None for null). Raises InvalidArgument for text that is not JSON."""
    try:
        return [None if text is None else json_loads(text) for text in column.to_pylist()]
    except (ValueError, TypeError) as exc:
        raise errors.InvalidArgument(f"column {what!r} must hold one JSON object per row: {exc}") from None


def strings(column: Any, what: str) -> list:
    """The values of a utf8 column. Raises InvalidArgument for another type."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise errors.InvalidArgument(f"column {what!r} must be utf8, got {column.type}")
    try:
        return column.to_pylist()
    except UnicodeDecodeError as exc:
        raise errors.InvalidArgument(f"column {what!r} must hold valid UTF-8: {exc}") from None


def string_column(values: Sequence[Optional[str]], what: str) -> pa.Array:
    """A utf8 column. Raises InvalidArgument for text UTF-8 cannot carry (lone surrogates)."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowException, UnicodeError) as exc:
        raise errors.InvalidArgument(f"{what} must be valid Unicode text: {exc}") from None


# --------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------


def rows_per_chunk(bytes_per_row: int) -> int:
    return max(1, CHUNK_BYTES // max(1, bytes_per_row))


def chunks(schema: pa.Schema, rows: int, bytes_per_row: int, column_of) -> Iterator[pa.RecordBatch]:
    """Record batches of ``schema`` over ``rows`` rows, built one chunk at a time.

    ``column_of(name, start, end)`` gives the column ``name`` for rows
    ``start:end``, so no more than one chunk is held in Arrow form at once.
    """
    step = rows_per_chunk(bytes_per_row)
    for start in range(0, rows, step):
        end = min(rows, start + step)
        yield pa.record_batch([column_of(field.name, start, end) for field in schema], schema=schema)


def table_chunks(table: pa.Table) -> list[pa.RecordBatch]:
    """``table`` as record batches of about ``CHUNK_BYTES`` each."""
    bytes_per_row = table.nbytes // table.num_rows if table.num_rows else 1
    return table.to_batches(max_chunksize=rows_per_chunk(bytes_per_row))


def ipc_stream(table: pa.Table) -> pa.Buffer:
    """``table`` as the bytes of an Arrow IPC stream (one message body)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def ipc_table(body: pa.Buffer) -> pa.Table:
    """The table of an Arrow IPC stream's bytes, not yet validated."""
    return pa.ipc.open_stream(body).read_all()
