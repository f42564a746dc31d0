"""Conformance: where and where_document filters in get, query and delete."""

from __future__ import annotations

import itertools

import pytest

from chroma.errors import InvalidArgument
from conformance_helpers import ids_in_order, rejected_without_change

# id -> (metadata, document); insertion order is the order of this dict.
ITEMS = {
    "int1": ({"n": 1, "color": "red", "flag": True}, "The quick brown fox"),
    "float15": ({"n": 1.5, "color": "blue", "flag": False}, "the lazy dog"),
    "int2": ({"n": 2, "color": "red", "flag": 1}, None),
    "float2": ({"n": 2.0, "color": "green", "flag": True}, ""),
    "str1": ({"n": "1", "color": "red"}, "Quick brown dogs"),
    "bool": ({"n": True}, "fox and dog"),
    "nometa": (None, "50% off_sale, it's"),
    "emptymeta": ({}, "QUICK"),
}
ALL_IDS = list(ITEMS)
WITH_N = ["int1", "float15", "int2", "float2", "str1", "bool"]


@pytest.fixture
def make_filtered(client):
    """Makes a fresh collection holding ITEMS (checks delete from it)."""
    names = (f"filters-{number}" for number in itertools.count())

    def make():
        collection = client.create_collection(next(names))
        collection.add(
            ids=ALL_IDS,
            embeddings=[[float(i), 0.0] for i in range(len(ALL_IDS))],
            metadatas=[metadata for metadata, _ in ITEMS.values()],
            documents=[document for _, document in ITEMS.values()],
        )
        return collection

    return make


@pytest.fixture
def filtered(make_filtered):
    return make_filtered()


def check_filter_everywhere(collection, expected_ids, **filters) -> None:
    """get, query and delete all select exactly ``expected_ids`` (get in insertion order)."""
    expected = ids_in_order(ALL_IDS, expected_ids)
    assert collection.get(**filters)["ids"] == expected
    queried = collection.query(query_embeddings=[[0.0, 0.0]], n_results=len(ALL_IDS), **filters)
    assert queried["ids"] == [expected]  # distance i**2 grows with insertion position
    collection.delete(**filters)
    assert collection.get()["ids"] == [item_id for item_id in ALL_IDS if item_id not in expected]


WHERE_CASES = [
    # equality, with and without $eq
    ({"color": "red"}, ["int1", "int2", "str1"]),
    ({"color": {"$eq": "red"}}, ["int1", "int2", "str1"]),
    ({"color": {"$ne": "red"}}, ["float15", "float2"]),
    # int and float compare as numbers; strings and bools are other types
    ({"n": 2}, ["int2", "float2"]),
    ({"n": 2.0}, ["int2", "float2"]),
    ({"n": 1}, ["int1"]),
    ({"n": 1.0}, ["int1"]),
    ({"n": "1"}, ["str1"]),
    ({"n": True}, ["bool"]),
    ({"flag": True}, ["int1", "float2"]),
    ({"flag": 1}, ["int2"]),
    ({"flag": False}, ["float15"]),
    ({"flag": 0}, []),
    ({"n": {"$ne": 1}}, ["float15", "int2", "float2", "str1", "bool"]),
    ({"n": {"$ne": 2.0}}, ["int1", "float15", "str1", "bool"]),
    # order comparisons take numbers and never match other types
    ({"n": {"$gt": 1}}, ["float15", "int2", "float2"]),
    ({"n": {"$gt": 1.4}}, ["float15", "int2", "float2"]),
    ({"n": {"$gte": 1}}, ["int1", "float15", "int2", "float2"]),
    ({"n": {"$lt": 2}}, ["int1", "float15"]),
    ({"n": {"$lt": 1.5}}, ["int1"]),
    ({"n": {"$lte": 1.5}}, ["int1", "float15"]),
    ({"n": {"$gte": 0}}, ["int1", "float15", "int2", "float2"]),
    ({"flag": {"$gte": 1}}, ["int2"]),
    ({"flag": {"$lt": 100}}, ["int2"]),
    # $in / $nin
    ({"n": {"$in": [2]}}, ["int2", "float2"]),
    ({"n": {"$in": [1, "red"]}}, ["int1"]),
    ({"n": {"$in": ["1", 1.5]}}, ["float15", "str1"]),
    ({"n": {"$in": [True]}}, ["bool"]),
    ({"n": {"$in": []}}, []),
    ({"color": {"$nin": ["red", "blue"]}}, ["float2"]),
    ({"n": {"$nin": [1, 2]}}, ["float15", "str1", "bool"]),
    ({"n": {"$nin": []}}, WITH_N),
    # missing keys: every comparison is false, $ne and $nin included
    ({"missing": "x"}, []),
    ({"missing": {"$ne": "x"}}, []),
    ({"missing": {"$nin": ["x"]}}, []),
    ({"missing": {"$nin": []}}, []),
    ({"flag": {"$ne": True}}, ["float15", "int2"]),
    # $and / $or, nesting, several keys in one dict
    ({"$and": [{"color": "red"}, {"n": {"$gt": 1}}]}, ["int2"]),
    ({"$or": [{"color": "blue"}, {"n": "1"}]}, ["float15", "str1"]),
    ({"$and": [{"color": "red"}]}, ["int1", "int2", "str1"]),
    ({"$or": [{"n": True}]}, ["bool"]),
    ({"$or": [{"$and": [{"color": "red"}, {"flag": True}]}, {"n": {"$gte": 2}}]}, ["int1", "int2", "float2"]),
    ({"$and": [{"$or": [{"color": "red"}, {"color": "green"}]}, {"$or": [{"n": 2}, {"n": "1"}]}]}, ["int2", "float2", "str1"]),
    ({"color": "red", "n": 2}, ["int2"]),
    ({"color": {"$in": ["red", "green"]}, "n": {"$lt": 2}}, ["int1"]),
    ({"color": "red", "$or": [{"n": 1}, {"n": 2}]}, ["int1", "int2"]),
    ({"$or": [{"color": "red", "flag": True}, {"color": "green", "flag": False}]}, ["int1"]),
]


def test_where(make_filtered, subtests):
    for where, expected in WHERE_CASES:
        with subtests.test(where=where):
            check_filter_everywhere(make_filtered(), expected, where=where)


def test_empty_where_and_where_document_mean_no_filter(filtered):
    assert filtered.get(where={}, where_document={})["ids"] == ALL_IDS
    assert filtered.query(query_embeddings=[[0.0, 0.0]], n_results=20, where={}, where_document={})["ids"] == [ALL_IDS]


WHERE_DOCUMENT_CASES = [
    ({"$contains": "quick"}, ["int1"]),  # case-sensitive
    ({"$contains": "Quick"}, ["str1"]),
    ({"$contains": "QUICK"}, ["emptymeta"]),
    ({"$contains": "dog"}, ["float15", "str1", "bool"]),
    ({"$not_contains": "fox"}, ["float15", "int2", "float2", "str1", "nometa", "emptymeta"]),
    ({"$contains": ""}, ALL_IDS),  # a missing document counts as ""
    ({"$not_contains": ""}, []),
    ({"$contains": "%"}, ["nometa"]),  # no wildcard meaning
    ({"$contains": "_"}, ["nometa"]),
    ({"$contains": "it's"}, ["nometa"]),
    ({"$contains": "o%f"}, []),
    ({"$and": [{"$contains": "dog"}, {"$not_contains": "lazy"}]}, ["str1", "bool"]),
    ({"$or": [{"$contains": "fox"}, {"$contains": "QUICK"}]}, ["int1", "bool", "emptymeta"]),
    ({"$and": [{"$contains": "o"}]}, ["int1", "float15", "str1", "bool", "nometa"]),
    ({"$or": [{"$and": [{"$contains": "brown"}, {"$contains": "fox"}]}, {"$contains": "lazy"}]}, ["int1", "float15"]),
]


def test_where_document(make_filtered, subtests):
    for where_document, expected in WHERE_DOCUMENT_CASES:
        with subtests.test(where_document=where_document):
            check_filter_everywhere(make_filtered(), expected, where_document=where_document)


BOTH_FILTER_CASES = [
    ({"color": "red"}, {"$contains": "brown"}, ["int1", "str1"]),
    ({"n": {"$gte": 1}}, {"$not_contains": "fox"}, ["float15", "int2", "float2"]),
    ({"color": "blue"}, {"$contains": "fox"}, []),
]


def test_both_filters_must_match(make_filtered, subtests):
    for where, where_document, expected in BOTH_FILTER_CASES:
        with subtests.test(where=where, where_document=where_document):
            check_filter_everywhere(make_filtered(), expected, where=where, where_document=where_document)


def test_ids_and_both_filters_must_all_match(filtered):
    selection = {"ids": ["str1", "int2", "int1"], "where": {"color": "red"}, "where_document": {"$contains": "brown"}}
    assert filtered.get(**selection)["ids"] == ["str1", "int1"]
    filtered.delete(**selection)
    assert filtered.get()["ids"] == [item_id for item_id in ALL_IDS if item_id not in ("str1", "int1")]


# (malformed filter, a fragment the error message must contain)
MALFORMED_WHERE = [
    ({"$and": []}, "$and"),
    ({"$or": []}, "$or"),
    ({"$and": {"n": 1}}, "$and"),
    ({"$or": [1]}, "$or"),
    ({"$and": [{"n": 1}, "x"]}, "$and"),
    ({"n": {"$gt": "a"}}, "$gt"),
    ({"n": {"$lt": True}}, "$lt"),
    ({"n": {"$gte": None}}, "$gte"),
    ({"n": {"$lte": [1]}}, "$lte"),
    ({"n": {"$foo": 1}}, "$foo"),
    ({"n": {"$eq": 1, "$ne": 2}}, "n"),
    ({"n": {}}, "n"),
    ({"n": {"$in": 1}}, "$in"),
    ({"n": {"$nin": "abc"}}, "$nin"),
    ({"n": {"$in": [[1]]}}, "$in"),
    ({"n": {"$in": [None]}}, "$in"),
    ({"n": {"$eq": None}}, "$eq"),
    ({"n": {"$ne": [1]}}, "$ne"),
    ({"n": None}, "n"),
    ({"n": [1, 2]}, "n"),
    ({"$not": {"n": 1}}, "$not"),
    ({"$contains": "x"}, "$contains"),
]
MALFORMED_WHERE_DOCUMENT = [
    ({"$contains": 1}, "$contains"),
    ({"$not_contains": None}, "$not_contains"),
    ({"$contains": ["a"]}, "$contains"),
    ({"$foo": "x"}, "$foo"),
    ({"$and": []}, "$and"),
    ({"$or": "x"}, "$or"),
    ({"$and": [{"$contains": "a"}, 3]}, "$and"),
    ({"text": "x"}, "text"),
    ({"$eq": "x"}, "$eq"),
]
NOT_A_DICT = [("color", None), (["color"], None), (3, None)]


def assert_rejected_everywhere(collection, message_fragment, **filters):
    """get, query and delete all raise InvalidArgument naming the bad part, and change nothing."""
    calls = {
        "get": lambda: collection.get(**filters),
        "query": lambda: collection.query(query_embeddings=[[0.0, 0.0]], **filters),
        "delete": lambda: collection.delete(**filters),
        "delete-with-ids": lambda: collection.delete(ids=["int1"], **filters),
    }
    for name, call in calls.items():
        with rejected_without_change(InvalidArgument, collection) as info:
            call()
        if message_fragment is not None:
            assert message_fragment in str(info.value), name


def test_malformed_where_is_rejected(filtered, subtests):
    for where, fragment in MALFORMED_WHERE + NOT_A_DICT:
        with subtests.test(where=where):
            assert_rejected_everywhere(filtered, fragment, where=where)


def test_malformed_where_document_is_rejected(filtered, subtests):
    for where_document, fragment in MALFORMED_WHERE_DOCUMENT + NOT_A_DICT:
        with subtests.test(where_document=where_document):
            assert_rejected_everywhere(filtered, fragment, where_document=where_document)


def test_filters_follow_every_kind_of_write(client):
    """After each write, a filtered query and a filtered get select the same items.

    (Local answers filtered queries from metadata columns it keeps current
    through the writes, and gets from the DB.)
    """
    collection = client.create_collection("follow")
    collection.add(ids=["a", "b", "c"], embeddings=[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]],
                   metadatas=[{"k": 1}, {"k": "1"}, None])

    def assert_selects(where, expected):
        # the points lie on a line in insertion order: query order is insertion order
        queried = collection.query(query_embeddings=[[0.0, 0.0]], n_results=10, where=where, include=[])
        assert queried["ids"] == [expected], where
        assert collection.get(where=where, include=[])["ids"] == expected, where

    assert_selects({"k": 1}, ["a"])
    assert_selects({"k": {"$ne": 1}}, ["b"])
    collection.update(ids=["a", "c"], metadatas=[{"k": "1"}, {"k": 1.0}])  # another type; metadata where none was
    assert_selects({"k": 1}, ["c"])
    assert_selects({"k": "1"}, ["a", "b"])
    collection.update(ids=["b"], metadatas=[{"j": 1}])  # replaces: b has no "k" any more
    assert_selects({"k": {"$ne": 5}}, ["a", "c"])
    assert_selects({"j": 1}, ["b"])
    collection.upsert(ids=["a", "d"], embeddings=[[0.0, 0.0], [3.0, 0.0]], metadatas=[None, {"k": 1}])
    assert_selects({"k": 1}, ["c", "d"])
    assert_selects({"k": "1"}, ["a"])
    collection.delete(where={"k": 1})
    assert_selects({"k": {"$in": [1, "1"]}}, ["a"])
    collection.add(ids=["e"], embeddings=[[4.0, 0.0]], metadatas=[{"k": True}])
    assert_selects({"k": True}, ["e"])
    assert_selects({"k": 1}, [])
    assert_selects({"$or": [{"k": True}, {"j": {"$gte": 1}}]}, ["b", "e"])
