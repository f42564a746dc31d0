"""``$in``/``$nin`` lists of tens of thousands of values: bound as one list, so
their cost is linear in their size."""

from __future__ import annotations

import numpy as np
import pytest

from chroma.api.local import Local
from chroma.config import Settings
from chroma.db.duckdb import DuckDB
from chroma.db.sql import compile_clause, compile_label_set
from chroma.filters import parse_where


@pytest.mark.parametrize("op", ["$in", "$nin"])
def test_in_and_nin_of_40000_mixed_values_compile_to_sql_of_the_size_of_one_value(op):
    def compiled(count: int) -> tuple[str, str, list]:
        values = [f"s{i}" for i in range(count)] + list(range(count)) + [i + 0.5 for i in range(count)] + [True]
        clause = parse_where({"k": {op: values}})
        condition, params = compile_clause(clause)
        label_set, _ = compile_label_set(clause, "collection")
        return condition, label_set, params

    one, one_labels, _ = compiled(1)
    many, many_labels, params = compiled(40_000)
    assert many == one and many_labels == one_labels  # one parameter per value type, not per value
    assert sorted(len(p) for p in params if isinstance(p, list)) == [1, 40_000, 40_000, 40_000, 80_000]


@pytest.mark.parametrize("op", ["$in", "$nin"])
def test_in_and_nin_of_40000_values_select_exactly_their_items(op):
    client = Local(Settings(index_impl="flat"), db=DuckDB(Settings()))
    try:
        collection = client.create_collection("many-values")
        count = 1000
        metadatas = [{"k": i} if i % 4 == 0 else {"k": float(i)} if i % 4 == 1 else {"k": str(i)} if i % 4 == 2
                     else {"k": bool(i % 8 == 3)} for i in range(count)]
        collection.add(ids=[str(i) for i in range(count)], embeddings=np.zeros((count, 2), np.float32),
                       metadatas=metadatas)
        # ints, floats (as ints and as x.0), strings and True, among 40,000 values most of which match nothing
        values = [*range(0, count, 8), *(float(i) for i in range(1, count, 8)), *(str(i) for i in range(2, count, 8)),
                  True, *(f"none{i}" for i in range(40_000 - 3 * count // 8 - 1))]
        # matched by $in: the items i with i % 8 < 4, every type matching only its own
        expected = [str(i) for i in range(count) if (i % 8 < 4) == (op == "$in")]
        assert collection.get(where={"k": {op: values}})["ids"] == expected
        collection.delete(where={"k": {op: values}})
        assert collection.get()["ids"] == [str(i) for i in range(count) if (i % 8 < 4) != (op == "$in")]
    finally:
        client._db.close()
