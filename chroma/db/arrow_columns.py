"""Arrow arrays made from NumPy buffers, and read back into NumPy, without pandas.

pyarrow's conversions (``pa.array()``, ``Array.to_numpy()``) import pandas
whenever it is installed, to recognise its types: tens of megabytes of memory
in a process that never uses it. The DB moves its batches in and out of DuckDB
as Arrow tables, so it builds and reads their columns here, from the buffers
themselves: ``Array.from_buffers`` over ``py_buffer`` (which shares the NumPy
array's memory rather than copying it) and ``np.frombuffer`` on the way back.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union, cast

import numpy as np


class _ImportedOnFirstUse:
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Optional[ModuleType] = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


if TYPE_CHECKING:
    import pyarrow as pa
else:
    # Opening a DB and answering a reopened collection's first query need no
    # pyarrow (NumPy fetches), and importing it costs tens of milliseconds.
    pa = _ImportedOnFirstUse("pyarrow")

_MAX_STRING_BYTES = 2**31 - 1
"""Most bytes the int32 offsets of ``string`` can address; more go to ``large_string``."""


def _primitive(values: np.ndarray, arrow_type: "pa.DataType") -> "pa.Array":
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def int64s(values: Union[np.ndarray, Sequence[int]]) -> "pa.Array":
    return _primitive(np.asarray(values, dtype=np.int64), pa.int64())


def float64s(values: Sequence[float]) -> "pa.Array":
    return _primitive(np.asarray(values, dtype=np.float64), pa.float64())


def bools(values: Sequence[bool]) -> "pa.Array":
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def strings(values: Sequence[Optional[str]]) -> "pa.Array":
    """A string column; None entries are nulls."""
    count = len(values)
    validity = None
    texts = cast(Sequence[str], values)
    if None in values:
        present = np.fromiter((value is not None for value in values), dtype=bool, count=count)
        validity = pa.py_buffer(np.packbits(present, bitorder="little"))
        texts = ["" if value is None else value for value in values]
    joined = "".join(texts)
    data = joined.encode()
    if len(data) == len(joined):  # all ASCII: a text's length in characters is its length in bytes
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=count)
    else:
        lengths = np.fromiter((len(text.encode()) for text in texts), dtype=np.int64, count=count)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    large = len(data) > _MAX_STRING_BYTES
    return pa.Array.from_buffers(pa.large_string() if large else pa.string(), count,
                                 [validity, pa.py_buffer(offsets if large else offsets.astype(np.int32)),
                                  pa.py_buffer(data)])


def nulls(count: int, arrow_type: "pa.DataType") -> "pa.Array":
    return pa.nulls(count, arrow_type)


def vectors(embeddings: np.ndarray) -> "pa.Array":
    """An (n, d) array as a ``FixedSizeList<float>`` column, sharing a float32 array's memory."""
    flat = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(_primitive(flat, pa.float32()), embeddings.shape[1])


def table(columns: dict) -> "pa.Table":
    return pa.Table.from_arrays(list(columns.values()), names=list(columns))


# reading
def _chunks(column: Union["pa.Array", "pa.ChunkedArray"]) -> list:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def _values(chunk: "pa.Array", dtype: type) -> np.ndarray:
    """The values of a chunk without nulls, as a read-only view of its buffer."""
    return np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk) + chunk.offset)[chunk.offset:]


def int64s_of(column: Union["pa.Array", "pa.ChunkedArray"]) -> np.ndarray:
    """A BIGINT column without nulls as a (writable) int64 array."""
    out = np.empty(len(column), dtype=np.int64)
    row = 0
    for chunk in _chunks(column):
        out[row:row + len(chunk)] = _values(chunk, np.int64)
        row += len(chunk)
    return out


def vectors_of(column: Union["pa.Array", "pa.ChunkedArray"], dimension: int) -> np.ndarray:
    """The rows of a ``FLOAT[]`` column as an (n, d) float32 array, copied once from Arrow's memory;
    ``dimension`` gives the width of an empty one."""
    count = len(column)
    if count == 0:
        return np.empty((0, dimension), dtype=np.float32)
    out: Optional[np.ndarray] = None
    row = 0
    for chunk in _chunks(column):
        if not len(chunk):
            continue
        flat = chunk.flatten()
        values = _values(flat, np.float32)
        if out is None:
            # the width comes from the rows themselves, whatever the collection's record said
            out = np.empty((count, len(values) // len(chunk)), dtype=np.float32)
        out[row:row + len(chunk)] = values.reshape(len(chunk), -1)
        row += len(chunk)
    assert out is not None
    return out
