"""The in-memory ``where`` evaluator (chroma.index.metadata_columns) against the
reference model and against the SQL filters of DuckDB, through writes.

Local answers every filtered query from these columns; the DB answers get and
delete from SQL. Both must select the same items, so each check here runs
the same filter three ways on the same items after the same writes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chroma import errors
from chroma.config import Settings
from chroma.db import LOAD_CHUNK_ROWS, Batch
from chroma.db.duckdb import DuckDB
from chroma.filters import Contains, Logical, parse_where
from chroma.index.metadata_columns import MetadataColumns
from reference_model import matches_where
from test_state_machine import metadatas as metadata_dicts
from test_state_machine import wheres

ITEMS = 12

operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.lists(st.tuples(st.integers(0, ITEMS - 1), metadata_dicts), max_size=5)),
        st.tuples(st.just("delete"), st.lists(st.integers(0, ITEMS - 1), max_size=4)),
    ),
    max_size=6,
)


def expected_labels(model: dict, where: dict) -> set:
    return {label for label, metadata in model.items() if matches_where(metadata, where)}


@settings(max_examples=300, deadline=None, database=None)
@given(initial=st.lists(metadata_dicts, min_size=ITEMS, max_size=ITEMS), steps=operations,
       filters=st.lists(wheres, min_size=1, max_size=4))
def test_matching_agrees_with_the_reference_model_through_writes(initial, steps, filters):
    model = dict(enumerate(initial))
    columns = MetadataColumns(np.arange(ITEMS), initial)
    for kind, argument in steps:
        if kind == "write":  # replace semantics; None leaves the item's metadata as it was
            labels = [label for label, _ in argument]
            columns.replace(np.array(labels, dtype=np.int64), [metadata for _, metadata in argument])
            for label, metadata in argument:
                if metadata is not None:
                    model[label] = metadata
        else:
            columns.remove(np.array(argument, dtype=np.int64))
            for label in argument:
                model.pop(label, None)
        for where in filters:
            got = columns.matching(parse_where(where)).tolist()
            assert len(got) == len(set(got))
            assert set(got) == expected_labels(model, where), where


# Values where the kinds could be confused: ints and floats of equal value, bools
# next to 0/1, strings that look like numbers, a missing key, the int64 ends.
EDGE_METADATAS = [
    {"v": 1}, {"v": 1.0}, {"v": True}, {"v": "1"}, {"v": 0}, {"v": False}, {"v": -0.0}, {"v": 0.5},
    {"v": 2**53}, {"v": 2**63 - 1}, {"v": -(2**63)}, {"w": 1}, {}, None, {"v": ""}, {"v": 1, "w": "x"},
]
EDGE_WHERES = [
    {"v": 1}, {"v": 1.0}, {"v": True}, {"v": False}, {"v": 0}, {"v": 0.0}, {"v": -0.0}, {"v": "1"}, {"v": ""},
    {"v": {"$ne": 1}}, {"v": {"$ne": True}}, {"v": {"$ne": "1"}}, {"v": {"$gt": 0}}, {"v": {"$gte": 0.5}},
    {"v": {"$lt": 1}}, {"v": {"$lte": 1.0}}, {"v": {"$gt": -1.5}}, {"v": {"$gte": 2**53}},
    {"v": {"$lt": -(2**62)}}, {"v": {"$gt": 2**63 - 2}}, {"v": {"$in": []}}, {"v": {"$nin": []}},
    {"v": {"$in": [1, "1"]}}, {"v": {"$in": [True, 0.5]}}, {"v": {"$nin": [1, False]}}, {"v": {"$in": [2**63 - 1]}},
    {"w": {"$ne": 1}}, {"missing": {"$nin": ["x"]}}, {"$or": [{"v": 0}, {"w": 1}]},
    {"$and": [{"v": {"$gte": 0}}, {"v": {"$ne": 0.5}}]}, {"v": 1, "w": "x"},
]


def test_matching_agrees_with_sql_on_edge_values():
    db = DuckDB(Settings())
    try:
        collection = db.create_collection("edges", None)
        stored = db.add(collection.id, Batch(
            ids=[f"i{n}" for n in range(len(EDGE_METADATAS))],
            embeddings=np.zeros((len(EDGE_METADATAS), 2), dtype=np.float32),
            metadatas=EDGE_METADATAS, documents=None,
        ))
        columns = MetadataColumns.from_chunks(db.load_metadata(collection.id))
        model = dict(zip(stored.labels.tolist(), EDGE_METADATAS))
        for where in EDGE_WHERES:
            clause = parse_where(where)
            in_memory = sorted(columns.matching(clause).tolist())
            assert in_memory == sorted(db.select_labels(collection.id, clause).tolist()), where
            assert set(in_memory) == expected_labels(model, where), where
    finally:
        db.close()


def test_removed_and_replaced_items_leave_no_trace():
    columns = MetadataColumns(np.array([10, 11, 12]), [{"k": 1}, {"k": "a"}, None])
    columns.replace(np.array([10, 12]), [{"other": True}, {"k": 1.0}])
    assert sorted(columns.matching(parse_where({"k": 1})).tolist()) == [12]
    assert columns.matching(parse_where({"k": {"$ne": 5}})).tolist() in ([11, 12], [12, 11])
    columns.remove(np.array([11, 99]))
    columns.replace(np.array([13]), [{"k": "a"}])  # reuses the freed row
    assert columns.matching(parse_where({"k": "a"})).tolist() == [13]
    assert len(columns) == 3


def test_document_clauses_are_refused():
    columns = MetadataColumns(np.array([1]), [{"k": 1}])
    with pytest.raises(ValueError, match="documents"):
        columns.matching(Logical("$and", (parse_where({"k": 1}), Contains("x", negate=False))))


def test_the_metadata_loads_in_bounded_chunks():
    items = 2 * LOAD_CHUNK_ROWS + 7
    db = DuckDB(Settings())
    try:
        collection = db.create_collection("chunks", None)
        metadatas = [{"n": i, "tag": f"t{i % 3}"} if i % 5 else None for i in range(items)]
        stored = db.add(collection.id, Batch(ids=[f"i{n}" for n in range(items)],
                                             embeddings=np.zeros((items, 2), dtype=np.float32),
                                             metadatas=metadatas, documents=None))
        chunks = list(db.load_metadata(collection.id))
        assert len(chunks) > 1
        assert all(len(labels) == len(dicts) <= LOAD_CHUNK_ROWS for labels, dicts in chunks)
        loaded = {label: metadata for labels, dicts in chunks for label, metadata in zip(labels.tolist(), dicts)}
        expected = {label: metadata for label, metadata in zip(stored.labels.tolist(), metadatas) if metadata}
        assert loaded == expected
        columns = MetadataColumns.from_chunks(db.load_metadata(collection.id))
        assert len(columns) == len(expected)
        assert sorted(columns.matching(parse_where({"tag": "t1"})).tolist()) == sorted(
            label for label, metadata in expected.items() if metadata["tag"] == "t1")
        with pytest.raises(errors.CollectionNotFound):
            db.load_metadata("no-such-collection")
    finally:
        db.close()


def test_chunks_of_a_stated_count_then_more_items():
    chunks = [(np.arange(0, 4), [{"k": i} for i in range(4)]), (np.arange(4, 6), [{"k": 4}, {"s": "x"}])]
    columns = MetadataColumns.from_chunks(chunks, rows=6)
    columns.replace(np.array([6, 7]), [{"k": 6}, {"k": 7, "s": "x"}])
    assert sorted(columns.matching(parse_where({"k": {"$gte": 3}})).tolist()) == [3, 4, 6, 7]
    assert sorted(columns.matching(parse_where({"s": "x"})).tolist()) == [5, 7]
    assert len(columns) == 8
