"""Issue 16, item 2: the vector codec of the HTTP body (``chroma.wire``) and of the Celery
messages (``chroma.worker.pack_matrix``) against an Arrow IPC stream, in one process.

The Arrow candidate is the layout a switch would use: one record batch, the fields without
vectors as JSON in the schema's metadata, each vector field a ``fixed_size_list<float32>``
column (a list of per-query arrays back to back, cut apart by counts in the metadata), written
as pyarrow's stream writer writes it. Its decoder does what a server must do with a peer's
body: it reads the framing and the record batch's declared rows and compression from the
flatbuffers before pyarrow builds anything, refuses more rows than the body's bytes or
``max_rows``, reads the messages from the body's bytes only, checks the column types and
validates the batch in full, then copies the vectors out (writable, as ``wire`` gives them).
``ipc-raw`` is pyarrow's own floor: ``open_stream`` and ``read_next_batch``, no check at all.

Cases: a single query's request (1 x 128) and its answer (10 rows, default include, and with
embeddings), an add of 10,000 x 128 with ids, metadatas and documents, and a Celery chunk of
1,000 x 128. Every codec runs in every round, in alternating order, so that a burst of load on
a shared machine hits them alike; the table gives the medians over the rounds.

    python benchmarks/bench_body_codec.py             # 25 rounds
    python benchmarks/bench_body_codec.py --rounds 3  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import time
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from chroma import errors, wire
from chroma.api.remote import numpy_to_json
from chroma.worker import pack_matrix, unpack_matrix

END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"
HEADER, LISTS = b"chroma.header", b"chroma.lists"


# --------------------------------------------------------------------------
# The Arrow IPC candidate
# --------------------------------------------------------------------------


def _column(array: np.ndarray) -> pa.Array:
    flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
    values = pa.Array.from_buffers(pa.float32(), len(flat), [None, pa.py_buffer(flat)])
    if array.ndim == 1:
        return values
    return pa.Array.from_buffers(pa.list_(pa.float32(), array.shape[1]), len(array), [None], children=[values])


def ipc_encode(header: dict, arrays: dict[str, Any], json_default: Callable = numpy_to_json) -> bytes:
    header, names, columns, lists = dict(header), [], [], {}
    for name, value in arrays.items():
        if value is None:
            header[name] = None
            continue
        if isinstance(value, list):
            parts = [np.asarray(item, dtype=np.float32) for item in value]
            lists[name] = [len(part) for part in parts]
            value = np.concatenate(parts)
        names.append(name)
        columns.append(_column(np.asarray(value, dtype=np.float32)))
    metadata = {HEADER: json.dumps(header, default=json_default, separators=(",", ":"))}
    if lists:
        metadata[LISTS] = json.dumps(lists)
    schema = pa.schema([pa.field(name, column.type) for name, column in zip(names, columns)], metadata=metadata)
    batch = pa.RecordBatch.from_arrays(columns, schema=schema)
    return b"".join([schema.serialize(), batch.serialize(), END_OF_STREAM])


_FRAME, _U8, _U16, _U32, _I32, _I64 = (struct.Struct(f) for f in ("<Ii", "<B", "<H", "<I", "<i", "<q"))


def _field(data: memoryview, table: int, index: int) -> Any:
    vtable = table - _I32.unpack_from(data, table)[0]
    if vtable < 0 or 4 + 2 * index + 2 > _U16.unpack_from(data, vtable)[0]:
        return None
    offset = _U16.unpack_from(data, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _message(data: memoryview, start: int) -> tuple[int, memoryview, int]:
    """(header type, flatbuffer metadata, end) of the message at ``start``; type -1: end of stream."""
    continuation, size = _FRAME.unpack_from(data, start)
    if continuation != 0xFFFFFFFF or size < 0 or start + 8 + size > len(data):
        raise ValueError(f"no message at byte {start}")
    if size == 0:
        return -1, data[0:0], start + 8
    metadata = data[start + 8:start + 8 + size]
    root = _U32.unpack_from(metadata, 0)[0]
    at = _field(metadata, root, 1)
    kind = 0 if at is None else _U8.unpack_from(metadata, at)[0]
    at = _field(metadata, root, 3)
    end = start + 8 + size + (0 if at is None else _I64.unpack_from(metadata, at)[0])
    if not start < end <= len(data):
        raise ValueError(f"the message at byte {start} runs past the body")
    return kind, metadata, end


def ipc_decode(body: bytes, max_rows: int = 0) -> dict:
    data = memoryview(body)
    try:
        kind, _, schema_end = _message(data, 0)
        kind_2, metadata, batch_end = _message(data, schema_end)
        if (kind, kind_2) != (1, 3) or (batch_end < len(data) and _message(data, batch_end)[0] != -1):
            raise ValueError("not one schema and one record batch")
        at = _field(metadata, _U32.unpack_from(metadata, 0)[0], 2)
        table = at + _U32.unpack_from(metadata, at)[0]
        at = _field(metadata, table, 0)
        rows = 0 if at is None else _I64.unpack_from(metadata, at)[0]
        if _field(metadata, table, 3) is not None or not 0 <= rows <= len(body):
            raise ValueError(f"compressed, or {rows} rows")
        if max_rows and rows > max_rows:
            raise errors.PayloadTooLarge(f"{rows} rows")
        buffer = pa.py_buffer(body)
        schema = pa.ipc.read_schema(buffer.slice(0, schema_end))
        for field in schema:
            kind = field.type
            if not (kind == pa.float32() or pa.types.is_fixed_size_list(kind) and kind.value_type == pa.float32()):
                raise ValueError(f"column {field.name} of {kind}")
        batch = pa.ipc.read_record_batch(buffer.slice(schema_end, batch_end - schema_end), schema)
        if batch.num_rows != rows or len(set(schema.names)) != len(schema.names):
            raise ValueError("rows or names")
        batch.validate(full=True)
        header = json.loads(schema.metadata[HEADER].decode())
        lists = json.loads(schema.metadata.get(LISTS, b"{}").decode())
    except (pa.ArrowException, ValueError, struct.error, KeyError) as exc:
        if isinstance(exc, errors.PayloadTooLarge):
            raise
        raise errors.InvalidArgument(f"malformed body: {exc}") from None
    for name, column in zip(schema.names, batch.columns):
        fixed = pa.types.is_fixed_size_list(column.type)
        width = column.type.list_size if fixed else 1
        values = column.values if fixed else column
        if values.null_count:
            raise errors.InvalidArgument("null component")
        start = column.offset * width + (values.offset if fixed else 0)
        matrix = np.frombuffer(values.buffers()[1], np.float32, len(column) * width, start * 4).copy()
        matrix = matrix.reshape(len(column), width) if fixed else matrix
        if name in lists:
            ends = np.cumsum(lists[name]).tolist()
            matrix = [matrix[end - count:end] for count, end in zip(lists[name], ends)]
        header[name] = matrix
    return header


def ipc_raw_decode(body: bytes, max_rows: int = 0) -> dict:
    reader = pa.ipc.open_stream(body)
    batch = reader.read_next_batch()
    header = json.loads(reader.schema.metadata[HEADER])
    for name, column in zip(batch.schema.names, batch.columns):
        values = column.flatten() if pa.types.is_fixed_size_list(column.type) else column
        header[name] = np.frombuffer(values.buffers()[1], np.float32).copy()
    return header


def same_answers(header: dict, arrays: dict) -> None:
    """The candidate gives back what wire gives back."""
    ours = ipc_decode(ipc_encode(header, arrays))
    theirs = wire.decode(wire.encode(header, arrays, json_default=numpy_to_json))
    for name in {**header, **arrays}:
        if isinstance(theirs[name], list) and theirs[name] and isinstance(theirs[name][0], np.ndarray):
            assert all(np.array_equal(a.ravel(), b.ravel()) for a, b in zip(ours[name], theirs[name])), name
        elif isinstance(theirs[name], np.ndarray):
            assert np.array_equal(ours[name], theirs[name]), name
        else:
            assert ours[name] == theirs[name], name


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


def cases() -> list[tuple[str, dict, dict, int, int]]:
    rng = np.random.default_rng(0)
    query = {"n_results": 10, "where": None, "where_document": None,
             "include": ["metadatas", "documents", "distances"], "query_texts": None}
    answer = {"ids": [[f"id{i}" for i in range(10)]], "metadatas": [[{"i": i, "tag": "x"} for i in range(10)]],
              "documents": [[f"document number {i}" for i in range(10)]], "dimension": None}
    distances = [[float(np.float32(0.1 * i)) for i in range(10)]]
    n = 10_000
    add = {"ids": [f"id{i}" for i in range(n)], "metadatas": [{"i": i, "tag": "x"} for i in range(n)],
           "documents": [f"document number {i}" for i in range(n)], "embed_missing": True}
    return [
        ("query request, 1 x 128", query, {"query_embeddings": rng.random((1, 128), dtype=np.float32)}, 500, 100_000),
        ("query answer, 10 rows, default include", answer, {"embeddings": None, "distances": distances}, 500, 0),
        ("query answer, 10 rows with embeddings", answer,
         {"embeddings": [rng.random((10, 128), dtype=np.float32)], "distances": distances}, 500, 0),
        ("add, 10,000 x 128 + ids, metadatas, documents", add,
         {"embeddings": rng.random((n, 128), dtype=np.float32)}, 5, 100_000),
    ]


def per_call_us(action: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(repeat):
        action()
    return (time.perf_counter_ns() - start) / repeat / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25)
    rounds = parser.parse_args().rounds
    codecs = {"wire": (wire.encode, wire.decode), "ipc": (ipc_encode, ipc_decode),
              "ipc-raw": (ipc_encode, ipc_raw_decode)}
    chunk = np.random.default_rng(1).random((1_000, 128), dtype=np.float32)
    celery = {"pack_matrix": (lambda: pack_matrix(chunk), unpack_matrix),
              "ipc": (lambda: ipc_encode({}, {"embeddings": chunk}), ipc_decode)}
    for _, header, arrays, _, _ in cases():
        same_answers(header, arrays)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    sizes: dict[tuple[str, str], int] = {}
    for number in range(rounds):
        for name, header, arrays, repeat, max_rows in cases():
            for codec in sorted(codecs, reverse=bool(number % 2)):
                encode, decode = codecs[codec]
                body = encode(header, arrays, json_default=numpy_to_json)
                sizes[name, codec] = len(body)
                times.setdefault((name, codec), []).append(
                    (per_call_us(lambda: encode(header, arrays, json_default=numpy_to_json), repeat),
                     per_call_us(lambda: decode(body, max_rows), repeat)))
        for codec in sorted(celery, reverse=bool(number % 2)):
            encode, decode = celery[codec]
            body = encode()
            sizes["Celery chunk, 1,000 x 128", codec] = len(body) if isinstance(body, bytes) else len(body["data"])
            times.setdefault(("Celery chunk, 1,000 x 128", codec), []).append(
                (per_call_us(encode, 100), per_call_us(lambda: decode(body), 100)))
    print(f"medians of {rounds} interleaved rounds, microseconds per call; pyarrow {pa.__version__}")
    print("| body | codec | bytes | encode | decode | both |")
    print("|---|---|---|---|---|---|")
    for (name, codec), rows in times.items():
        print(f"| {name} | {codec} | {sizes[name, codec]:,} | {statistics.median(r[0] for r in rows):,.1f} | "
              f"{statistics.median(r[1] for r in rows):,.1f} | {statistics.median(sum(r) for r in rows):,.1f} |")
    print("\nsingle query, default include (request and answer, both ways), per codec:")
    for codec in codecs:
        path = [statistics.median(sum(r) for r in times[name, codec])
                for name in ("query request, 1 x 128", "query answer, 10 rows, default include")]
        print(f"  {codec}: {sum(path):.1f} us")


if __name__ == "__main__":
    main()
