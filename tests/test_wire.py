"""The binary frame of ``chroma.wire``: round trips and malformed bodies."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from chroma import errors, wire


def test_round_trip_keeps_header_values_and_exact_float32_arrays():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((5, 7), dtype=np.float32)
    per_query = [rng.standard_normal((3, 7), dtype=np.float32), np.empty((0, 7), np.float32)]
    body = wire.encode({"ids": ["a", "b"], "n_results": 3, "where": {"k": "ü"}},
                       {"embeddings": matrix, "per_query": per_query, "distances": [[0.5, 0.25], []],
                        "absent": None})
    decoded = wire.decode(body)
    assert decoded["ids"] == ["a", "b"] and decoded["n_results"] == 3 and decoded["where"] == {"k": "ü"}
    assert decoded["absent"] is None
    assert decoded["embeddings"].dtype == np.float32 and np.array_equal(decoded["embeddings"], matrix)
    assert [m.shape for m in decoded["per_query"]] == [(3, 7), (0, 7)]
    assert np.array_equal(decoded["per_query"][0], per_query[0])
    assert [d.ravel().tolist() for d in decoded["distances"]] == [[0.5, 0.25], []]
    decoded["embeddings"][0, 0] = 42.0  # writable, like Local's arrays
    assert wire.ARRAYS_KEY not in decoded


def test_gapped_rows_come_back_as_none():
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    missing = np.array([False, True, False, True])
    decoded = wire.decode(wire.encode({}, {"embeddings": wire.Gapped(rows, missing)}))["embeddings"]
    assert decoded[1] is None and decoded[3] is None
    assert np.array_equal(decoded[0], rows[0]) and np.array_equal(decoded[2], rows[2])


def test_vectors_start_aligned_whatever_the_header_length():
    for name in ["a", "ab", "abc", "abcd"]:
        body = wire.encode({name: 1}, {"v": np.ones((1, 1), np.float32)})
        (length,) = struct.unpack_from("<I", body)
        assert (len(body) - 4) % 4 == 0 and len(body) - 4 == (4 + length + 3) // 4 * 4
        assert wire.decode(body)[name] == 1


@pytest.mark.parametrize("body, why", [
    (b"", "shorter than its length prefix"),
    (struct.pack("<I", 100) + b"{}", "runs past the end"),
    (struct.pack("<I", 2) + b"[]", "not a JSON object"),
    (struct.pack("<I", 3) + b"{x}", "not JSON"),
    (struct.pack("<I", 2) + b"{}" + b"\0\0" + b"\0", "whole number of float32"),
])
def test_malformed_frames_raise_invalid_argument(body, why):
    with pytest.raises(errors.InvalidArgument, match=why):
        wire.decode(body)


@pytest.mark.parametrize("spec, why", [
    ({"offset": 0, "rows": 3, "dim": 2}, "run past the 4 floats"),
    ({"offset": -1, "rows": 1, "dim": 1}, "offset must be an int >= 0"),
    ({"offset": 0, "rows": "2", "dim": 2}, "rows must be an int >= 0"),
    ({"offset": 0, "rows": 2, "dim": 2, "missing": [2]}, "missing must list row numbers below 2"),
    ([1, 2, 3], "not an object"),
])
def test_specs_that_do_not_fit_the_vectors_raise_invalid_argument(spec, why):
    header = b'{"$arrays":{"embeddings":' + json.dumps(spec).encode() + b"}}"
    padding = b"\0" * (-(4 + len(header)) % 4)
    body = struct.pack("<I", len(header)) + header + padding + np.zeros(4, "<f4").tobytes()
    with pytest.raises(errors.InvalidArgument, match=why):
        wire.decode(body)


def frame_declaring(rows: int, dim: int = 0) -> bytes:
    """A ~100-byte write frame whose one array declares ``rows`` rows of ``dim`` floats, row 0 missing."""
    header = {"ids": ["a"], wire.ARRAYS_KEY: {"embeddings": {"offset": 0, "rows": rows, "dim": dim, "missing": [0]}}}
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(text)) + text + b"\0" * (-(4 + len(text)) % 4)


def test_tiny_frame_declaring_ten_million_zero_width_rows_is_refused():
    body = frame_declaring(10_000_000)
    assert len(body) <= 104
    with pytest.raises(errors.InvalidArgument, match="declare 10000000 rows, more than the .* bytes of the body"):
        wire.decode(body)
    # within the body's size, the server's row bound still applies before any row is built
    with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=5"):
        wire.decode(frame_declaring(50), max_rows=5)
    rows = wire.decode(frame_declaring(5), max_rows=5)["embeddings"]
    assert rows[0] is None and [row.shape for row in rows[1:]] == [(0,)] * 4
