"""The compact HTTP body: a JSON header followed by raw float32 vectors.

JSON spends about 10 bytes and a float parse on every vector component; this
encoding sends the components as little-endian float32, copied straight out of
(and into) numpy arrays. The Python client uses it; curl and other languages
keep using plain JSON, and the server answers in whichever the request asked
for (``Content-Type`` for the request body, ``Accept`` for the answer).

A body of media type :data:`MEDIA_TYPE` is::

    uint32 little-endian  header length H
    H bytes               header: a UTF-8 JSON object
    0-3 zero bytes        padding, so the vectors start 4-byte aligned
    float32 little-endian the vectors of every array, back to back

The header is the object the JSON encoding would send, minus its array fields,
plus ``"$arrays"``: for each array field, a spec ``{"offset", "rows", "dim"}``
(offset counted in floats from the start of the vectors; ``"missing"``, when
present, lists the rows that stand for ``None``) or a list of specs (one
matrix per query in a query answer). A 1-D value travels as ``dim`` 1.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any, Callable, Optional

import numpy as np

from chroma.errors import InvalidArgument, PayloadTooLarge
from chroma.validation import json_loads

MEDIA_TYPE = "application/x-chroma-binary"
ARRAYS_KEY = "$arrays"
_LENGTH = struct.Struct("<I")
_FLOAT32_LE = np.dtype("<f4")

class Gapped:
    """A write's vectors where the rows in ``missing`` stand for ``None``."""

    __slots__ = ("rows", "missing")

    def __init__(self, rows: np.ndarray, missing: np.ndarray) -> None:
        self.rows = rows
        self.missing = missing


def encode(header: dict, arrays: dict[str, Any], json_default: Optional[Callable[[Any], Any]] = None) -> bytes:
    """The body for ``header`` (JSON-able values) plus ``arrays`` (field name -> array value).

    An array value is a 2-D float32 array, a :class:`Gapped` one, or a list of
    2-D (or 1-D) arrays; ``None`` values are sent in the header as null.
    ``json_default`` is ``json.dumps``' fallback for other header values.
    """
    header = dict(header)
    specs: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0

    def spec(array: np.ndarray, missing: Optional[np.ndarray] = None) -> dict:
        nonlocal offset
        array = np.asarray(array, dtype=_FLOAT32_LE)
        rows, dim = (array.shape[0], 1) if array.ndim == 1 else array.shape
        out: dict[str, Any] = {"offset": offset, "rows": int(rows), "dim": int(dim)}
        if missing is not None:
            out["missing"] = np.flatnonzero(missing).tolist()
        chunks.append(np.ascontiguousarray(array).tobytes())
        offset += int(rows) * int(dim)
        return out

    for name, value in arrays.items():
        if value is None:
            header[name] = None
        elif isinstance(value, Gapped):
            specs[name] = spec(value.rows, value.missing)
        elif isinstance(value, list):
            specs[name] = [spec(item) for item in value]
        else:
            specs[name] = spec(value)
    header[ARRAYS_KEY] = specs
    text = json.dumps(header, default=json_default, separators=(",", ":")).encode()
    padding = b"\0" * (-(_LENGTH.size + len(text)) % 4)
    return b"".join([_LENGTH.pack(len(text)), text, padding, *chunks])


def decode(body: bytes, max_rows: int = 0) -> dict:
    """The header of ``body`` with each array field put back.

    A matrix comes back as a writable float32 ``(rows, dim)`` array; a gapped
    one as a list of row arrays with ``None`` at the missing rows (what the
    Python API takes); a list of specs as a list of arrays.

    Every spec is checked before anything is built from it: its floats lie
    within the body, and the rows of all specs together number at most the
    body's bytes (a zero-width matrix carries no floats, so its rows are
    bounded by nothing else) and at most ``max_rows`` (0: no bound).

    Raises:
        PayloadTooLarge: the arrays declare more than ``max_rows`` rows.
        InvalidArgument: the body is not a well-formed frame.
    """
    view = memoryview(body)
    if len(view) < _LENGTH.size:
        raise _malformed("shorter than its length prefix")
    (length,) = _LENGTH.unpack_from(view)
    start = _LENGTH.size + length
    if start > len(view):
        raise _malformed(f"header length {length} runs past the end of a {len(view)}-byte body")
    try:
        header = json_loads(bytes(view[_LENGTH.size:start]))
    except ValueError as exc:
        raise _malformed(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _malformed("header is not a JSON object")
    specs = header.pop(ARRAYS_KEY, {})
    if not isinstance(specs, dict):
        raise _malformed(f"{ARRAYS_KEY} is not an object")
    vectors_start = start + (-start % 4)
    if (len(view) - vectors_start) % 4 or vectors_start > len(view):
        raise _malformed("the vector section is not a whole number of float32 values")
    vectors = np.frombuffer(view, dtype=_FLOAT32_LE, offset=vectors_start)
    every_spec = [(name, item) for name, value in specs.items()
                  for item in (value if isinstance(value, list) else [value])]
    declared = sum(_checked_shape(vectors, spec, name)[1] for name, spec in every_spec)
    if declared > len(view):
        raise _malformed(f"its arrays declare {declared} rows, more than the {len(view)} bytes of the body")
    if max_rows and declared > max_rows:
        raise PayloadTooLarge(f"the {MEDIA_TYPE} body declares {declared} rows; this server accepts at most "
                              f"max_batch_size={max_rows} per request")
    for name, value in specs.items():
        if isinstance(value, list):
            header[name] = [_matrix(vectors, item, name) for item in value]
        else:
            header[name] = _matrix(vectors, value, name)
    return header


def _checked_shape(vectors: np.ndarray, spec: Any, name: str) -> tuple[int, int, int]:
    """``(offset, rows, dim)`` of a spec whose floats lie within ``vectors``."""
    if not isinstance(spec, dict):
        raise _malformed(f"the spec of {name!r} is not an object")
    offset, rows, dim = (spec.get(key) for key in ("offset", "rows", "dim"))
    for key, value in (("offset", offset), ("rows", rows), ("dim", dim)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _malformed(f"{name!r}: {key} must be an int >= 0, got {value!r}")
    if offset + rows * dim > vectors.size:
        raise _malformed(f"{name!r}: {rows} x {dim} floats at offset {offset} run past the "
                         f"{vectors.size} floats of the body")
    return offset, rows, dim


def _matrix(vectors: np.ndarray, spec: dict, name: str) -> Any:
    offset, rows, dim = _checked_shape(vectors, spec, name)
    array = vectors[offset:offset + rows * dim].reshape(rows, dim)
    array = array.astype(np.float32) if sys.byteorder != "little" else array.copy()
    missing = spec.get("missing")
    if missing is None:
        return array
    if not isinstance(missing, list) or not all(
            isinstance(m, int) and not isinstance(m, bool) and 0 <= m < rows for m in missing):
        raise _malformed(f"{name!r}: missing must list row numbers below {rows}")
    out: list = list(array)
    for position in missing:
        out[position] = None
    return out


def _malformed(why: str) -> InvalidArgument:
    return InvalidArgument(f"malformed {MEDIA_TYPE} body: {why}")
