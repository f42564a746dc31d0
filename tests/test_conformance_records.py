"""Conformance: writing and reading items (add, upsert, update, delete, get, count, peek)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from chroma.errors import (
    DuplicateIDError,
    IDNotFoundError,
    InvalidArgument,
    InvalidDimensionError,
)
from conformance_helpers import (
    GET_INCLUDE,
    QUERY_INCLUDE,
    assert_embeddings_equal,
    assert_unchanged,
    rejected_without_change,
)

# Three stored items of dimension 3, used by most tests.
SEED_IDS = ["a", "b", "c"]
SEED_EMBEDDINGS = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]
SEED_METADATAS = [{"k": 1, "s": "x"}, {"k": 2.5}, None]
SEED_DOCUMENTS = ["apple", None, "cherry"]


@pytest.fixture
def collection(client):
    """An empty collection."""
    return client.create_collection("items")


@pytest.fixture
def seeded(collection):
    """A collection holding the SEED_* items."""
    collection.add(ids=SEED_IDS, embeddings=SEED_EMBEDDINGS, metadatas=SEED_METADATAS, documents=SEED_DOCUMENTS)
    return collection


@pytest.fixture
def make_seeded(client):
    """Makes a fresh collection holding the SEED_* items (for tests that loop over cases)."""
    names = (f"seeded-{number}" for number in itertools.count())

    def make():
        collection = client.create_collection(next(names))
        collection.add(ids=SEED_IDS, embeddings=SEED_EMBEDDINGS, metadatas=SEED_METADATAS, documents=SEED_DOCUMENTS)
        return collection

    return make


def full_get(collection, **kwargs):
    return collection.get(include=list(GET_INCLUDE), **kwargs)


def stored_item(collection, item_id):
    """(embedding as list, metadata, document) of one stored item."""
    result = full_get(collection, ids=[item_id])
    assert result["ids"] == [item_id]
    return result["embeddings"][0].tolist(), result["metadatas"][0], result["documents"][0]


# --------------------------------------------------------------------------
# add and get
# --------------------------------------------------------------------------


def test_add_then_get_returns_every_field_in_insertion_order(collection):
    collection.add(
        ids=["b", "a", "c"],
        embeddings=[[1, 2, 3], [4.5, 5, 6], [7, 8, -9.25]],
        metadatas=[{"k": 1}, {"k": "x"}, {"k": True}],
        documents=["B doc", "A doc", "C doc"],
    )
    result = full_get(collection)
    assert result["ids"] == ["b", "a", "c"]
    assert_embeddings_equal(result["embeddings"], [[1, 2, 3], [4.5, 5, 6], [7, 8, -9.25]])
    assert result["metadatas"] == [{"k": 1}, {"k": "x"}, {"k": True}]
    assert result["documents"] == ["B doc", "A doc", "C doc"]
    assert collection.count() == 3


def test_metadata_value_types_round_trip_exactly(collection):
    metadata = {"int": 3, "negative": -7, "big": 2**40, "float": 2.0, "small": 1e-300, "str": "h\u00e9llo \u2713 'q' \"dq\" %_",
                "true": True, "false": False, "empty": ""}
    collection.add(ids=["x"], embeddings=[[1.0, 2.0, 3.0]], metadatas=[metadata])
    stored = collection.get(ids=["x"])["metadatas"][0]
    assert stored == metadata
    assert {key: type(value) for key, value in stored.items()} == {key: type(value) for key, value in metadata.items()}


def test_documents_round_trip_exactly(collection):
    documents = ["", "h\u00e9llo \u2713", "quote ' and \" and \\ and %_ and \n newline", "x" * 10_000]
    collection.add(ids=["1", "2", "3", "4"], embeddings=[[0.0, 0.0, float(i)] for i in range(4)], documents=documents)
    assert collection.get(include=["documents"])["documents"] == documents


EMBEDDING_FORMATS = {
    "list_of_lists": lambda rows: [list(row) for row in rows],
    "float64_array": lambda rows: np.array(rows, dtype=np.float64),
    "float32_array": lambda rows: np.array(rows, dtype=np.float32),
}


@pytest.mark.parametrize("make_embeddings", EMBEDDING_FORMATS.values(), ids=EMBEDDING_FORMATS.keys())
def test_embeddings_accepted_as_lists_and_float_arrays(collection, make_embeddings):
    rows = [[0.1, -0.2, 0.3], [1e6, 2.5, -3.75]]
    collection.add(ids=["p", "q"], embeddings=make_embeddings(rows))
    collection.upsert(ids=["q", "r"], embeddings=make_embeddings([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]))
    collection.update(ids=["p"], embeddings=make_embeddings([[3.0, 3.0, 3.0]]))
    result = collection.get(include=["embeddings"])
    assert result["ids"] == ["p", "q", "r"]
    assert_embeddings_equal(result["embeddings"], [[3.0, 3.0, 3.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    collection.add(ids=["s"], embeddings=make_embeddings([rows[0]]))
    assert_embeddings_equal(collection.get(ids=["s"], include=["embeddings"])["embeddings"],
                            np.array([rows[0]], dtype=np.float32))


@pytest.mark.parametrize("one_row", [[1.0, 2.0, 3.0], np.array([1.0, 2.0, 3.0])], ids=["list", "array"])
def test_one_dimensional_embedding_is_one_row(collection, one_row):
    collection.add(ids=["solo"], embeddings=one_row)
    assert_embeddings_equal(collection.get(include=["embeddings"])["embeddings"], [[1.0, 2.0, 3.0]])
    with rejected_without_change(InvalidArgument, collection):
        collection.add(ids=["x", "y"], embeddings=one_row)


def test_missing_metadata_and_documents_come_back_as_none(collection):
    collection.add(ids=["bare1", "bare2"], embeddings=[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    collection.add(
        ids=["mixed1", "mixed2"],
        embeddings=[[3.0, 3.0, 3.0], [4.0, 4.0, 4.0]],
        metadatas=[{"a": 1}, None],
        documents=[None, "doc"],
    )
    result = collection.get()
    assert result["ids"] == ["bare1", "bare2", "mixed1", "mixed2"]
    assert result["metadatas"] == [None, None, {"a": 1}, None]
    assert result["documents"] == [None, None, None, "doc"]


def test_empty_item_metadata_is_kept_as_empty_dict(collection):
    collection.add(ids=["e"], embeddings=[[1.0, 1.0, 1.0]], metadatas=[{}])
    assert collection.get()["metadatas"] == [{}]


def test_count(collection):
    assert collection.count() == 0
    collection.add(ids=["1", "2", "3"], embeddings=[[1.0, 0.0, 0.0]] * 3)
    assert collection.count() == 3
    collection.delete(ids=["2"])
    assert collection.count() == 2


# --------------------------------------------------------------------------
# Input validation: every rejected write leaves the collection unchanged
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Write:
    """A write method with two ids that are valid for it in the seeded collection."""

    method: str
    ids: tuple[str, str]

    def __call__(self, collection, ids=None, **arguments):
        return getattr(collection, self.method)(ids=list(self.ids if ids is None else ids), **arguments)


WRITES = [Write("add", ("new1", "new2")), Write("upsert", ("a", "new2")), Write("update", ("a", "b"))]
write_operations = pytest.mark.parametrize("write", WRITES, ids=lambda write: write.method)
TWO_GOOD_EMBEDDINGS = [[5.0, 5.0, 5.0], [6.0, 6.0, 6.0]]


@write_operations
def test_writes_of_valid_batches_succeed(seeded, write):
    write(seeded, embeddings=TWO_GOOD_EMBEDDINGS, metadatas=[{"ok": 1}, {"ok": 2}], documents=["d1", "d2"])
    result = full_get(seeded, ids=list(write.ids))
    assert result["ids"] == list(write.ids)
    assert_embeddings_equal(result["embeddings"], TWO_GOOD_EMBEDDINGS)
    assert result["metadatas"] == [{"ok": 1}, {"ok": 2}]
    assert result["documents"] == ["d1", "d2"]


INVALID_IDS = [[], [""], [1], [None], ["fine", 2], ["fine", ""]]
BAD_LENGTHS = [
    ("embeddings", [[5.0, 5.0, 5.0]]),
    ("embeddings", [[5.0, 5.0, 5.0]] * 3),
    ("metadatas", [{"m": 1}]),
    ("metadatas", [{"m": 1}] * 3),
    ("documents", ["only one"]),
    ("documents", ["d"] * 3),
]
NON_STRING_DOCUMENTS = [5, b"bytes", ["list"]]
INVALID_ITEM_METADATA = [
    {"k": None},
    {"k": [1]},
    {"k": {"nested": 1}},
    {"k": math.nan},
    {"k": math.inf},
    {"k": -math.inf},
    {"": 1},
    {3: "x"},
    {"hnsw:space": "l2"},
    {"chroma:x": 1},
    "not a dict",
]
NON_FINITE_ROWS = [
    make([[5.0, 5.0, 5.0], [6.0, bad, 6.0]])
    for bad in (math.nan, math.inf, -math.inf)
    for make in (list, np.array)
]
NON_NUMERIC_ROWS = [[["x", "y", "z"]] * 2, [[1.0, None, 2.0]] * 2,
                    # no value of another type stands for a number, though numpy would read these
                    [["5", "5", "5"], ["6", "6", "6"]], [[True, False, True]] * 2, np.ones((2, 3), dtype=bool)]
OTHER_DIMENSION_ROWS = [
    [[5.0, 5.0], [6.0, 6.0]],
    [[5.0, 5.0, 5.0], [6.0, 6.0, 6.0, 6.0]],
    [[5.0, 5.0, 5.0, 5.0]] * 2,
    np.ones((2, 4)),
]


@write_operations
def test_writes_reject_invalid_ids(make_seeded, write, subtests):
    for bad_ids in INVALID_IDS:
        with subtests.test(ids=bad_ids):
            collection = make_seeded()
            with rejected_without_change(InvalidArgument, collection):
                write(collection, ids=bad_ids, embeddings=[[5.0, 5.0, 5.0]] * len(bad_ids))


@write_operations
def test_writes_reject_field_lengths_that_differ_from_ids(make_seeded, write, subtests):
    for field, values in BAD_LENGTHS:
        with subtests.test(field=field, count=len(values)):
            collection = make_seeded()
            with rejected_without_change(InvalidArgument, collection):
                write(collection, **{"embeddings": TWO_GOOD_EMBEDDINGS, field: values})


@write_operations
def test_writes_reject_documents_that_are_not_strings(make_seeded, write, subtests):
    for bad_document in NON_STRING_DOCUMENTS:
        with subtests.test(document=bad_document):
            collection = make_seeded()
            with rejected_without_change(InvalidArgument, collection):
                write(collection, embeddings=TWO_GOOD_EMBEDDINGS, documents=["fine", bad_document])


@write_operations
def test_writes_reject_invalid_metadata(make_seeded, write, subtests):
    for bad_metadata in INVALID_ITEM_METADATA:
        with subtests.test(metadata=bad_metadata):
            collection = make_seeded()
            with rejected_without_change(InvalidArgument, collection):
                write(collection, embeddings=TWO_GOOD_EMBEDDINGS, metadatas=[{"fine": 1}, bad_metadata])


@write_operations
def test_writes_reject_nan_inf_and_non_numbers_in_any_row(make_seeded, write, subtests):
    for bad_rows in NON_FINITE_ROWS + NON_NUMERIC_ROWS:
        with subtests.test(embeddings=bad_rows):
            collection = make_seeded()
            with rejected_without_change(InvalidArgument, collection):
                write(collection, embeddings=bad_rows)


@write_operations
def test_writes_reject_other_dimension(make_seeded, write, subtests):
    for bad_rows in OTHER_DIMENSION_ROWS:
        with subtests.test(embeddings=bad_rows):
            collection = make_seeded()
            with rejected_without_change(InvalidDimensionError, collection):
                write(collection, embeddings=bad_rows)


def test_first_add_fixes_the_dimension(collection):
    collection.add(ids=["two-d"], embeddings=[[1.0, 2.0]])
    with rejected_without_change(InvalidDimensionError, collection):
        collection.add(ids=["three-d"], embeddings=[[1.0, 2.0, 3.0]])


def test_failed_first_add_does_not_fix_the_dimension(collection):
    with rejected_without_change(InvalidArgument, collection):
        collection.add(ids=["x", "y"], embeddings=[[1.0, 2.0], [math.nan, 2.0]])
    with rejected_without_change(InvalidArgument, collection):
        collection.add(ids=["x", "y"], embeddings=[[1.0, 2.0], [1.0, 2.0, 3.0]])
    collection.add(ids=["z"], embeddings=[[1.0, 2.0, 3.0, 4.0]])
    assert_embeddings_equal(collection.get(include=["embeddings"])["embeddings"], [[1.0, 2.0, 3.0, 4.0]])


@write_operations
def test_writes_reject_ids_repeated_in_the_batch(seeded, write):
    repeated = [*write.ids, write.ids[0]]
    with rejected_without_change(DuplicateIDError, seeded):
        write(seeded, ids=repeated, embeddings=[[5.0, 5.0, 5.0]] * 3)


def test_add_of_an_existing_id_writes_nothing_of_the_batch(seeded):
    with rejected_without_change(DuplicateIDError, seeded):
        seeded.add(ids=["new", "b"], embeddings=TWO_GOOD_EMBEDDINGS, documents=["n", "dup"])
    assert issubclass(DuplicateIDError, ValueError)


def test_update_of_a_missing_id_changes_nothing(seeded):
    with rejected_without_change(IDNotFoundError, seeded):
        seeded.update(ids=["a", "missing"], embeddings=TWO_GOOD_EMBEDDINGS, metadatas=[{"u": 1}, {"u": 2}])
    with rejected_without_change(IDNotFoundError, seeded):
        seeded.update(ids=["missing"], documents=["d"])
    assert issubclass(IDNotFoundError, KeyError)


def test_upsert_of_new_id_without_embedding_or_function_rejects_whole_batch(seeded):
    with rejected_without_change(InvalidArgument, seeded):
        seeded.upsert(ids=["a", "new"], metadatas=[{"u": 1}, {"u": 2}])


# --------------------------------------------------------------------------
# update and upsert semantics
# --------------------------------------------------------------------------


def test_update_metadata_replaces_the_dict_and_keeps_other_fields(seeded):
    seeded.update(ids=["a"], metadatas=[{"z": 3}])
    assert stored_item(seeded, "a") == ([1.0, 0.0, 0.0], {"z": 3}, "apple")


def test_update_document_without_function_keeps_embedding(seeded):
    seeded.update(ids=["a", "b"], documents=["avocado", "banana"])
    assert stored_item(seeded, "a") == ([1.0, 0.0, 0.0], {"k": 1, "s": "x"}, "avocado")
    assert stored_item(seeded, "b") == ([0.0, 2.0, 0.0], {"k": 2.5}, "banana")


def test_update_embedding_keeps_metadata_and_document(seeded):
    seeded.update(ids=["c"], embeddings=[[9.0, 9.0, 9.0]])
    assert stored_item(seeded, "c") == ([9.0, 9.0, 9.0], None, "cherry")


def test_update_none_entries_leave_those_fields_unchanged(seeded):
    seeded.update(ids=["a", "b"], metadatas=[None, {"n": 1}], documents=["new a", None])
    assert stored_item(seeded, "a") == ([1.0, 0.0, 0.0], {"k": 1, "s": "x"}, "new a")
    assert stored_item(seeded, "b") == ([0.0, 2.0, 0.0], {"n": 1}, None)


def test_update_none_embedding_rows_keep_those_vectors(seeded):
    seeded.update(ids=["a", "b"], embeddings=[None, [5.0, 5.0, 5.0]])
    assert stored_item(seeded, "a") == ([1.0, 0.0, 0.0], {"k": 1, "s": "x"}, "apple")
    assert stored_item(seeded, "b") == ([5.0, 5.0, 5.0], {"k": 2.5}, None)
    nearest = seeded.query(query_embeddings=[[5.0, 5.0, 5.0]], n_results=1)["ids"]
    assert nearest == [["b"]]  # the index follows the partial update


def test_upsert_new_id_with_none_embedding_changes_nothing(seeded):
    with rejected_without_change(InvalidArgument, seeded, match="'d'"):
        seeded.upsert(ids=["a", "d"], embeddings=[[6.0, 6.0, 6.0], None])


def test_add_with_none_embedding_row_changes_nothing(seeded):
    with rejected_without_change(InvalidArgument, seeded, match="'e'"):
        seeded.add(ids=["d", "e"], embeddings=[[6.0, 6.0, 6.0], None])


def test_update_changes_only_the_given_ids(seeded):
    seeded.update(ids=["b"], embeddings=[[7.0, 7.0, 7.0]], metadatas=[{"only": "b"}], documents=["B"])
    result = full_get(seeded)
    assert result["ids"] == SEED_IDS
    assert_embeddings_equal(result["embeddings"], [SEED_EMBEDDINGS[0], [7.0, 7.0, 7.0], SEED_EMBEDDINGS[2]])
    assert result["metadatas"] == [SEED_METADATAS[0], {"only": "b"}, SEED_METADATAS[2]]
    assert result["documents"] == [SEED_DOCUMENTS[0], "B", SEED_DOCUMENTS[2]]


def test_upsert_updates_existing_and_adds_new(seeded):
    seeded.upsert(ids=["b", "d"], embeddings=[[8.0, 8.0, 8.0], [4.0, 4.0, 4.0]], metadatas=[{"u": 1}, {"u": 2}])
    result = full_get(seeded)
    assert result["ids"] == ["a", "b", "c", "d"]
    assert_embeddings_equal(result["embeddings"], [*SEED_EMBEDDINGS[:1], [8.0, 8.0, 8.0], SEED_EMBEDDINGS[2], [4.0, 4.0, 4.0]])
    assert result["metadatas"] == [SEED_METADATAS[0], {"u": 1}, SEED_METADATAS[2], {"u": 2}]
    assert result["documents"] == ["apple", None, "cherry", None]


def test_upsert_existing_without_embeddings_keeps_the_embedding(seeded):
    seeded.upsert(ids=["a"], metadatas=[{"fresh": True}], documents=["apricot"])
    assert stored_item(seeded, "a") == ([1.0, 0.0, 0.0], {"fresh": True}, "apricot")


def test_upsert_none_entries_keep_existing_fields_and_store_none_for_new(seeded):
    seeded.upsert(ids=["a", "n"], embeddings=[[1.0, 0.0, 0.0], [5.0, 5.0, 5.0]], metadatas=[None, None], documents=[None, None])
    assert stored_item(seeded, "a") == ([1.0, 0.0, 0.0], {"k": 1, "s": "x"}, "apple")
    assert stored_item(seeded, "n") == ([5.0, 5.0, 5.0], None, None)


# --------------------------------------------------------------------------
# delete
# --------------------------------------------------------------------------


def test_delete_by_ids_ignores_unknown_ids(seeded):
    seeded.delete(ids=["b", "unknown"])
    assert seeded.get()["ids"] == ["a", "c"]
    seeded.delete(ids=["b"])
    assert seeded.get()["ids"] == ["a", "c"]


def test_delete_with_empty_id_list_deletes_nothing(seeded):
    with assert_unchanged(seeded):
        seeded.delete(ids=[])


NO_REAL_DELETE_ARGUMENT = [{}, {"where": {}}, {"where_document": {}}, {"where": {}, "where_document": {}}, {"ids": None}]


def test_delete_without_a_real_argument_is_rejected(seeded, subtests):
    for arguments in NO_REAL_DELETE_ARGUMENT:
        with subtests.test(arguments=arguments), rejected_without_change(InvalidArgument, seeded):
            seeded.delete(**arguments)


def test_delete_by_where_and_by_where_document(seeded):
    seeded.delete(where={"k": 2.5})
    assert seeded.get()["ids"] == ["a", "c"]
    seeded.delete(where_document={"$contains": "err"})
    assert seeded.get()["ids"] == ["a"]


def test_delete_with_ids_and_filter_deletes_only_items_matching_both(seeded):
    seeded.delete(ids=["a", "b"], where={"k": {"$gte": 2}})
    assert seeded.get()["ids"] == ["a", "c"]
    seeded.delete(ids=["a", "c"], where_document={"$contains": "cherry"})
    assert seeded.get()["ids"] == ["a"]


def test_deleted_items_are_gone_from_get_query_and_count(seeded):
    seeded.delete(ids=["a"])
    assert seeded.get(ids=["a"])["ids"] == []
    assert seeded.count() == 2
    assert seeded.query(query_embeddings=[[1.0, 0.0, 0.0]], n_results=3)["ids"] == [["b", "c"]]


def test_deleted_id_can_be_added_again_and_goes_last(seeded):
    seeded.delete(ids=["a"])
    seeded.add(ids=["a"], embeddings=[[4.0, 4.0, 4.0]], metadatas=[{"again": 1}])
    assert seeded.get()["ids"] == ["b", "c", "a"]
    assert stored_item(seeded, "a") == ([4.0, 4.0, 4.0], {"again": 1}, None)


# --------------------------------------------------------------------------
# Ordering, limit and offset
# --------------------------------------------------------------------------


def test_get_without_ids_keeps_insertion_order_through_every_write(seeded):
    seeded.update(ids=["a"], embeddings=[[9.0, 9.0, 9.0]])
    seeded.upsert(ids=["b", "d"], embeddings=[[8.0, 8.0, 8.0], [4.0, 4.0, 4.0]])
    seeded.add(ids=["0"], embeddings=[[0.5, 0.5, 0.5]])
    seeded.delete(ids=["c"])
    seeded.upsert(ids=["c"], embeddings=[[3.0, 3.0, 3.0]])
    assert seeded.get()["ids"] == ["a", "b", "d", "0", "c"]
    assert seeded.peek()["ids"] == ["a", "b", "d", "0", "c"]


def test_get_with_ids_returns_them_in_the_order_asked(seeded):
    assert seeded.get(ids=["c", "a", "b"])["ids"] == ["c", "a", "b"]
    result = full_get(seeded, ids=["c", "a"])
    assert result["documents"] == ["cherry", "apple"]
    assert result["metadatas"] == [None, {"k": 1, "s": "x"}]
    assert_embeddings_equal(result["embeddings"], [SEED_EMBEDDINGS[2], SEED_EMBEDDINGS[0]])


def test_get_with_ids_leaves_out_unknown_and_repeated_ids(seeded):
    assert seeded.get(ids=["zzz", "b", "a", "b", "unknown", "a"])["ids"] == ["b", "a"]
    assert seeded.get(ids=["unknown"])["ids"] == []


def test_get_with_ids_and_where_returns_asked_ids_that_match(seeded):
    assert seeded.get(ids=["c", "b", "a"], where={"k": {"$gt": 0}})["ids"] == ["b", "a"]


@pytest.fixture
def five_items(collection):
    collection.add(
        ids=list("vwxyz"),
        embeddings=[[float(i), 0.0, 0.0] for i in range(5)],
        metadatas=[{"even": i % 2 == 0} for i in range(5)],
    )
    return collection


LIMIT_OFFSET_CASES = [
    (None, None, "vwxyz"),
    (2, None, "vw"),
    (None, 2, "xyz"),
    (2, 1, "wx"),
    (10, 3, "yz"),
    (3, 4, "z"),
    (0, None, ""),
    (0, 2, ""),
    (None, 5, ""),
    (None, 50, ""),
    (5, 0, "vwxyz"),
]


def test_get_limit_and_offset(five_items, subtests):
    for limit, offset, expected in LIMIT_OFFSET_CASES:
        with subtests.test(limit=limit, offset=offset):
            assert five_items.get(limit=limit, offset=offset)["ids"] == list(expected)


def test_limit_and_offset_apply_after_the_filter(five_items):
    assert five_items.get(where={"even": True}, limit=2)["ids"] == ["v", "x"]
    assert five_items.get(where={"even": True}, offset=1)["ids"] == ["x", "z"]
    assert five_items.get(where={"even": False}, offset=1, limit=1)["ids"] == ["y"]


BAD_LIMITS_AND_OFFSETS = [
    {"limit": -1}, {"limit": 1.5}, {"limit": True}, {"limit": "2"}, {"offset": -1}, {"offset": 2.0}, {"offset": False}
]


def test_bad_limit_or_offset_is_rejected(five_items, subtests):
    for arguments in BAD_LIMITS_AND_OFFSETS:
        with subtests.test(arguments=arguments), pytest.raises(InvalidArgument):
            five_items.get(**arguments)


def test_peek(collection):
    assert collection.peek()["ids"] == []
    ids = [f"id{i:02d}" for i in range(12)]
    embeddings = [[float(i), 1.0, 2.0] for i in range(12)]
    collection.add(ids=ids, embeddings=embeddings, documents=[f"doc {i}" for i in range(12)])
    peeked = collection.peek()
    assert peeked["ids"] == ids[:10]
    assert_embeddings_equal(peeked["embeddings"], embeddings[:10])
    assert peeked["documents"] == [f"doc {i}" for i in range(10)]
    assert peeked["metadatas"] == [None] * 10
    assert collection.peek(limit=3)["ids"] == ids[:3]
    assert collection.peek(limit=100)["ids"] == ids


# --------------------------------------------------------------------------
# include and result types
# --------------------------------------------------------------------------


def all_subsets(values):
    return [list(subset) for size in range(len(values) + 1) for subset in itertools.combinations(values, size)]


def test_get_include_returns_exactly_the_included_fields(seeded, subtests):
    expected = {
        "embeddings": np.array([SEED_EMBEDDINGS[2], SEED_EMBEDDINGS[0]], dtype=np.float32),
        "metadatas": [None, {"k": 1, "s": "x"}],
        "documents": ["cherry", "apple"],
    }
    for include in all_subsets(GET_INCLUDE):
        with subtests.test(include=include):
            result = seeded.get(ids=["c", "a"], include=include)
            assert isinstance(result, dict)
            assert result["ids"] == ["c", "a"]
            for key in GET_INCLUDE:
                if key not in include:
                    assert result[key] is None, key
                elif key == "embeddings":
                    assert_embeddings_equal(result[key], expected[key])
                else:
                    assert result[key] == expected[key]


def test_query_include_returns_exactly_the_included_fields(seeded, subtests):
    expected = {
        "embeddings": [np.array([SEED_EMBEDDINGS[2], SEED_EMBEDDINGS[0]]), np.array([SEED_EMBEDDINGS[0], SEED_EMBEDDINGS[1]])],
        "metadatas": [[None, {"k": 1, "s": "x"}], [{"k": 1, "s": "x"}, {"k": 2.5}]],
        "documents": [["cherry", "apple"], ["apple", None]],
        "distances": [[1.0, 5.0], [0.0, 5.0]],
    }
    for include in all_subsets(QUERY_INCLUDE):
        with subtests.test(include=include):
            result = seeded.query(query_embeddings=[[0.0, 0.0, 2.0], [1.0, 0.0, 0.0]], n_results=2, include=include)
            assert isinstance(result, dict)
            assert result["ids"] == [["c", "a"], ["a", "b"]]
            for key in QUERY_INCLUDE:
                if key not in include:
                    assert result[key] is None, key
                elif key == "embeddings":
                    assert len(result[key]) == 2
                    for got, want in zip(result[key], expected[key]):
                        assert_embeddings_equal(got, want)
                elif key == "distances":
                    assert result[key] == [pytest.approx(row, rel=1e-5, abs=1e-6) for row in expected[key]]
                else:
                    assert result[key] == expected[key]


def test_include_may_be_a_tuple(seeded):
    assert seeded.get(include=("documents",))["documents"] == SEED_DOCUMENTS
    assert seeded.query(query_embeddings=[[1.0, 0.0, 0.0]], n_results=1, include=("documents",))["documents"] == [["apple"]]


BAD_GET_INCLUDES = [["distances"], ["ids"], ["embedding"], ["metadatas", "bogus"], ["uris"]]
BAD_QUERY_INCLUDES = [["ids"], ["distance"], ["documents", "bogus"], ["uris"]]


def test_bad_include_values_are_rejected(seeded, subtests):
    for include in BAD_GET_INCLUDES:
        with subtests.test(method="get", include=include), pytest.raises(InvalidArgument):
            seeded.get(include=include)
    for include in BAD_QUERY_INCLUDES:
        with subtests.test(method="query", include=include), pytest.raises(InvalidArgument):
            seeded.query(query_embeddings=[[1.0, 0.0, 0.0]], include=include)


def test_get_result_types(seeded):
    result = full_get(seeded)
    assert {"ids", "embeddings", "metadatas", "documents"} <= set(result)
    assert all(isinstance(item_id, str) for item_id in result["ids"])
    assert isinstance(result["metadatas"], list) and isinstance(result["documents"], list)
    assert isinstance(result["embeddings"], np.ndarray)
    assert result["embeddings"].dtype == np.float32 and result["embeddings"].shape == (3, 3)


def test_empty_get_has_zero_rows_of_the_collection_dimension(collection):
    assert collection.get(include=["embeddings"])["embeddings"].shape == (0, 0)
    collection.add(ids=["x"], embeddings=[[1.0, 2.0, 3.0, 4.0]])
    empty = full_get(collection, ids=["nothing"])
    assert empty["ids"] == [] and empty["metadatas"] == [] and empty["documents"] == []
    assert empty["embeddings"].dtype == np.float32 and empty["embeddings"].shape == (0, 4)


def test_query_result_types(seeded):
    result = seeded.query(query_embeddings=[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], n_results=2, include=list(QUERY_INCLUDE))
    assert {"ids", "embeddings", "metadatas", "documents", "distances"} <= set(result)
    for key in ("ids", "metadatas", "documents", "distances", "embeddings"):
        assert isinstance(result[key], list) and len(result[key]) == 2, key
    for per_query in result["distances"]:
        assert isinstance(per_query, list)
        assert all(type(distance) is float for distance in per_query)
    for per_query in result["embeddings"]:
        assert isinstance(per_query, np.ndarray) and per_query.dtype == np.float32 and per_query.shape == (2, 3)
