"""chroma.db.arrow_columns: the Arrow columns built from NumPy buffers hold exactly the values given."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from chroma.db import arrow_columns as arrow


@pytest.mark.parametrize("values", [[], ["plain", "ids"], ["a", "bé", None, "", "日本"], [None, None], ["\U0001f600", "x"]])
def test_strings_round_trip(values):
    column = arrow.strings(values)
    column.validate(full=True)
    assert column.to_pylist() == values


def test_primitive_columns_round_trip():
    assert arrow.int64s(np.array([3, -1, 2**62])).to_pylist() == [3, -1, 2**62]
    assert arrow.float64s([1.5, -0.0, 1e300]).to_pylist() == [1.5, -0.0, 1e300]
    flags = [True, False, True, True, False, False, True, False, True]  # more than one byte of bits
    assert arrow.bools(flags).to_pylist() == flags


def test_vectors_round_trip_through_a_list_column():
    vectors = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    fixed = arrow.vectors(vectors)
    as_lists = pa.chunked_array([fixed.cast(pa.list_(pa.float32()))])
    np.testing.assert_array_equal(arrow.vectors_of(as_lists, 3), vectors.astype(np.float32))


def test_reading_honours_chunks_and_slices():
    lists = pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], pa.list_(pa.float32()))
    column = pa.chunked_array([lists.slice(1), lists.slice(0, 1)])
    np.testing.assert_array_equal(arrow.vectors_of(column, 2), [[3, 4], [5, 6], [1, 2]])
    assert arrow.vectors_of(pa.chunked_array([], pa.list_(pa.float32())), 5).shape == (0, 5)
    labels = pa.chunked_array([arrow.int64s([7, 8, 9]).slice(1), arrow.int64s([1])])
    assert arrow.int64s_of(labels).tolist() == [8, 9, 1]
