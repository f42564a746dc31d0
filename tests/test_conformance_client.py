"""Conformance: the client object, collections, their names and metadata, reset and configuration."""

from __future__ import annotations

import math
import re
import uuid

import pytest

import chroma
from chroma.errors import (
    CollectionExists,
    CollectionNotFound,
    ConfigurationError,
    InvalidArgument,
    NotFoundError,
    ResetDisabled,
)
from conformance_helpers import (
    assert_same_collection_snapshot,
    assert_unchanged,
    collection_snapshot,
    rejected_without_change,
    temporary_settings,
)


def names_of(collections) -> list[str]:
    return [collection.name for collection in collections]


def add_two_items(collection) -> None:
    collection.add(ids=["a", "b"], embeddings=[[1.0, 2.0], [3.0, 4.0]], documents=["A", "B"])


# --------------------------------------------------------------------------
# Client basics
# --------------------------------------------------------------------------


def test_heartbeat_is_a_nanosecond_int_that_does_not_go_back(client):
    first = client.heartbeat()
    second = client.heartbeat()
    assert isinstance(first, int) and not isinstance(first, bool)
    assert first > 10**9  # nanoseconds, not seconds
    assert second >= first


def test_version_is_a_version_string(client):
    version = client.version()
    assert isinstance(version, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version)


def test_ready_says_the_store_is_writable_and_counts_what_is_loaded(client):
    collection = client.create_collection("ready")
    add_two_items(collection)
    collection.query(query_embeddings=[[1.0, 2.0]], n_results=1)  # loads its query state
    state = client.ready()
    assert set(state) == {"writable", "problem", "store", "collections", "loaded_collections", "loaded_items",
                          "version"}
    assert state["writable"] is True and state["problem"] is None
    assert state["collections"] == 1
    assert state["version"] == client.version()
    assert state["loaded_collections"] >= 1  # a server over a shared store may have loaded it too
    assert state["loaded_items"] >= 2


def test_get_api_is_a_singleton_and_client_is_its_alias(client):
    assert chroma.get_api() is client
    assert chroma.Client() is client


def test_new_configuration_gives_new_singleton(client, client_settings):
    with temporary_settings(client_settings, allow_reset=False):
        assert chroma.get_api() is not client


def test_fresh_client_has_no_collections(client):
    assert client.list_collections() == []


# --------------------------------------------------------------------------
# Creating, getting, listing, deleting collections
# --------------------------------------------------------------------------


def test_create_collection_gives_name_uuid_and_metadata(client):
    metadata = {"topic": "fiction", "year": 1999, "score": 0.5, "public": True}
    created = client.create_collection("books", metadata=metadata)
    assert created.name == "books"
    assert isinstance(created.id, str)
    assert str(uuid.UUID(created.id)) == created.id.lower()
    assert created.metadata == metadata

    fetched = client.get_collection("books")
    assert (fetched.name, fetched.id, fetched.metadata) == ("books", created.id, metadata)
    assert type(fetched.metadata["year"]) is int
    assert type(fetched.metadata["public"]) is bool
    assert type(fetched.metadata["score"]) is float


def test_collection_without_metadata_has_none(client):
    assert client.create_collection("plain").metadata is None
    assert client.get_collection("plain").metadata is None


def test_empty_collection_metadata_is_kept_as_empty_dict(client):
    assert client.create_collection("empty-md", metadata={}).metadata == {}
    assert client.get_collection("empty-md").metadata == {}


def test_each_collection_gets_its_own_id(client):
    first = client.create_collection("first")
    second = client.create_collection("second")
    assert first.id != second.id


def test_list_collections_is_sorted_by_name(client):
    for name in ["zeta", "alpha", "m1d", "beta"]:
        client.create_collection(name, metadata={"name": name})
    listed = client.list_collections()
    assert names_of(listed) == ["alpha", "beta", "m1d", "zeta"]
    assert [collection.metadata for collection in listed] == [{"name": name} for name in names_of(listed)]


def test_create_existing_name_raises_collection_exists_and_changes_nothing(client):
    add_two_items(client.create_collection("taken", metadata={"version": 1}))
    with rejected_without_change(CollectionExists, client):
        client.create_collection("taken", metadata={"version": 2})
    with rejected_without_change(CollectionExists, client):
        client.create_collection("taken")


def test_create_with_get_or_create_returns_existing_unchanged(client):
    original = client.create_collection("shared", metadata={"version": 1})
    add_two_items(original)
    with assert_unchanged(client):
        again = client.create_collection("shared", metadata={"version": 2}, get_or_create=True)
    assert (again.id, again.metadata) == (original.id, {"version": 1})
    assert again.count() == 2


def test_get_or_create_given_as_a_string_or_a_number_is_rejected(client):
    client.create_collection("shared")
    for flag in ("yes", 1, None):
        with rejected_without_change(InvalidArgument, client):
            client.create_collection("shared", get_or_create=flag)
        with rejected_without_change(InvalidArgument, client):
            client.create_collection("other", get_or_create=flag)


def test_get_or_create_creates_a_missing_collection(client):
    created = client.get_or_create_collection("fresh", metadata={"kind": "new"})
    assert created.metadata == {"kind": "new"}
    assert client.get_collection("fresh").id == created.id
    assert names_of(client.list_collections()) == ["fresh"]


def test_get_or_create_returns_existing_unchanged(client):
    original = client.create_collection("shared", metadata={"version": 1})
    add_two_items(original)
    with assert_unchanged(client):
        again = client.get_or_create_collection("shared", metadata={"version": 2})
    assert (again.id, again.name, again.metadata) == (original.id, "shared", {"version": 1})
    assert again.get()["ids"] == ["a", "b"]


def test_get_missing_collection_raises_not_found(client):
    client.create_collection("present")
    with rejected_without_change(CollectionNotFound, client):
        client.get_collection("absent")
    assert issubclass(CollectionNotFound, NotFoundError) and issubclass(CollectionNotFound, KeyError)


def test_delete_collection_removes_it_and_its_items(client):
    doomed = client.create_collection("doomed")
    add_two_items(doomed)
    client.create_collection("kept")
    client.delete_collection("doomed")
    assert names_of(client.list_collections()) == ["kept"]
    with pytest.raises(CollectionNotFound):
        client.get_collection("doomed")
    recreated = client.create_collection("doomed")
    assert recreated.count() == 0
    assert recreated.id != doomed.id


def test_delete_missing_collection_raises_not_found(client):
    add_two_items(client.create_collection("present"))
    with rejected_without_change(CollectionNotFound, client):
        client.delete_collection("absent")


STALE_COLLECTION_CALLS = {
    "count": lambda c: c.count(),
    "get": lambda c: c.get(),
    "peek": lambda c: c.peek(),
    "add": lambda c: c.add(ids=["z"], embeddings=[[0.0, 0.0]]),
    "upsert": lambda c: c.upsert(ids=["a"], embeddings=[[0.0, 0.0]]),
    "update": lambda c: c.update(ids=["a"], embeddings=[[0.0, 0.0]]),
    "delete": lambda c: c.delete(ids=["a"]),
    "query": lambda c: c.query(query_embeddings=[[0.0, 0.0]]),
    "modify": lambda c: c.modify(metadata={"x": 1}),
}


def test_collection_object_of_deleted_collection_raises_not_found(client, subtests):
    stale = client.create_collection("gone")
    add_two_items(stale)
    client.delete_collection("gone")
    for name, call in STALE_COLLECTION_CALLS.items():
        with subtests.test(call=name), rejected_without_change(CollectionNotFound, client):
            call(stale)


def test_collections_are_independent(client):
    first = client.create_collection("first")
    second = client.create_collection("second")
    first.add(ids=["a"], embeddings=[[1.0, 2.0]])
    second.add(ids=["a"], embeddings=[[1.0, 2.0, 3.0]])  # same id, other dimension
    first.delete(ids=["a"])
    assert first.count() == 0
    assert second.get()["ids"] == ["a"]


# --------------------------------------------------------------------------
# Reset
# --------------------------------------------------------------------------


def test_reset_removes_every_collection(client):
    add_two_items(client.create_collection("one"))
    client.create_collection("two")
    client.reset()
    assert client.list_collections() == []
    assert client.create_collection("one").count() == 0


def test_reset_disabled_raises_and_keeps_everything(client, client_settings):
    with temporary_settings(client_settings, allow_reset=False):
        restricted = chroma.get_api()
        add_two_items(restricted.create_collection("precious"))
        with rejected_without_change(ResetDisabled, restricted):
            restricted.reset()
        assert names_of(restricted.list_collections()) == ["precious"]
    assert issubclass(ResetDisabled, PermissionError)


# --------------------------------------------------------------------------
# Collection names
# --------------------------------------------------------------------------

VALID_NAMES = ["abc", "a" * 63, "ABC", "a1b", "1ab", "ab1", "a.b", "a-b", "a_b", "a..b", "x_-.y", "123", "127.0.0.1"]
INVALID_NAMES = [
    "",
    "a",
    "ab",
    "a" * 64,
    "_abc",
    "abc_",
    ".abc",
    "abc.",
    "-abc",
    "abc-",
    "a b",
    "abc!",
    "ab/c",
    "ab\n",
    "caf\u00e9",
]


def test_valid_collection_names_are_accepted(client, subtests):
    for name in VALID_NAMES:
        with subtests.test(name=name):
            created = client.create_collection(name)
            assert created.name == name
            assert client.get_collection(name).id == created.id
            assert name in names_of(client.list_collections())
            client.delete_collection(name)


def test_invalid_collection_names_are_rejected(client, subtests):
    existing = client.create_collection("existing")
    for name in INVALID_NAMES:
        with subtests.test(name=name):
            with rejected_without_change(InvalidArgument, client):
                client.create_collection(name)
            with rejected_without_change(InvalidArgument, client):
                client.get_or_create_collection(name)
            with rejected_without_change(InvalidArgument, client):
                existing.modify(name=name)
            assert existing.name == "existing"


# --------------------------------------------------------------------------
# Collection metadata
# --------------------------------------------------------------------------

VALID_COLLECTION_METADATA = [
    {"text": "x", "count": 3, "ratio": 0.25, "flag": False},
    {"hnsw:space": "l2"},
    {"hnsw:space": "cosine"},
    {"hnsw:space": "ip"},
    {"hnsw:M": 8, "hnsw:construction_ef": 50, "hnsw:search_ef": 40, "note": "tuned"},
    {"hnsw:M": 512, "hnsw:construction_ef": 2048, "hnsw:search_ef": 10_000},
]
INVALID_COLLECTION_METADATA = [
    {"value": None},
    {"value": [1, 2]},
    {"value": {"nested": 1}},
    {"value": math.nan},
    {"value": math.inf},
    {"": 1},
    {3: "x"},
    {"hnsw:space": "manhattan"},
    {"hnsw:space": 2},
    {"hnsw:M": 0},
    {"hnsw:M": 1.5},
    {"hnsw:M": True},
    {"hnsw:construction_ef": "100"},
    {"hnsw:search_ef": -1},
    {"hnsw:search_ef": 2**63},
    {"hnsw:construction_ef": 2**64},
    {"hnsw:construction_ef": 10**12},
    {"hnsw:search_ef": 10_001},
    {"hnsw:construction_ef": 2049},
    {"hnsw:M": 513},
    {"hnsw:unknown": 1},
    {"chroma:anything": 1},
    "not a dict",
]


def test_valid_collection_metadata_round_trips(client, subtests):
    for metadata in VALID_COLLECTION_METADATA:
        with subtests.test(metadata=metadata):
            assert client.create_collection("meta", metadata=metadata).metadata == metadata
            assert client.get_collection("meta").metadata == metadata
            client.delete_collection("meta")


def test_invalid_collection_metadata_is_rejected(client, subtests):
    existing = client.create_collection("existing", metadata={"keep": "me"})
    for metadata in INVALID_COLLECTION_METADATA:
        with subtests.test(metadata=metadata):
            with rejected_without_change(InvalidArgument, client):
                client.create_collection("other", metadata=metadata)
            with rejected_without_change(InvalidArgument, client):
                client.get_or_create_collection("other", metadata=metadata)
            with rejected_without_change(InvalidArgument, client):
                existing.modify(metadata=metadata)
            assert existing.metadata == {"keep": "me"}


# --------------------------------------------------------------------------
# modify
# --------------------------------------------------------------------------


def test_modify_renames_and_keeps_id_and_items(client):
    collection = client.create_collection("old-name", metadata={"m": 1})
    add_two_items(collection)
    before = collection_snapshot(collection)
    collection.modify(name="new-name")
    assert collection.name == "new-name"
    with pytest.raises(CollectionNotFound):
        client.get_collection("old-name")
    renamed = client.get_collection("new-name")
    assert (renamed.id, renamed.metadata) == (collection.id, {"m": 1})
    assert_same_collection_snapshot({**before, "name": "new-name"}, collection_snapshot(renamed))
    assert names_of(client.list_collections()) == ["new-name"]


def test_modify_rename_onto_existing_name_raises_collection_exists(client):
    first = client.create_collection("first", metadata={"n": 1})
    add_two_items(first)
    client.create_collection("second", metadata={"n": 2})
    with rejected_without_change(CollectionExists, client):
        first.modify(name="second")
    assert first.name == "first"


def test_modify_metadata_replaces_the_whole_dict(client):
    collection = client.create_collection("meta", metadata={"old": 1, "kept?": "no"})
    collection.modify(metadata={"new": "yes"})
    assert collection.metadata == {"new": "yes"}
    assert client.get_collection("meta").metadata == {"new": "yes"}


def test_modify_metadata_to_empty_dict(client):
    collection = client.create_collection("meta", metadata={"old": 1})
    collection.modify(metadata={})
    assert client.get_collection("meta").metadata == {}


def test_modify_name_and_metadata_together(client):
    collection = client.create_collection("before", metadata={"v": 1})
    collection.modify(name="after", metadata={"v": 2})
    fetched = client.get_collection("after")
    assert (fetched.id, fetched.metadata) == (collection.id, {"v": 2})


@pytest.mark.parametrize("new_space", ["l2", "ip"])
def test_modify_cannot_change_hnsw_space(client, new_space):
    collection = client.create_collection("spaced", metadata={"hnsw:space": "cosine", "a": 1})
    with rejected_without_change(InvalidArgument, client):
        collection.modify(metadata={"hnsw:space": new_space, "a": 2})
    assert client.get_collection("spaced").metadata == {"hnsw:space": "cosine", "a": 1}


def test_modify_cannot_set_hnsw_space_different_from_default(client):
    collection = client.create_collection("default-space")
    collection.add(ids=["x", "y"], embeddings=[[1.0, 0.0], [3.0, 0.0]])
    with rejected_without_change(InvalidArgument, client):
        collection.modify(metadata={"hnsw:space": "cosine"})


def test_modify_with_same_hnsw_space_is_accepted(client):
    collection = client.create_collection("spaced", metadata={"hnsw:space": "ip"})
    collection.modify(metadata={"hnsw:space": "ip", "b": 2})
    assert client.get_collection("spaced").metadata == {"hnsw:space": "ip", "b": 2}


def test_modify_without_hnsw_space_keeps_the_space(client):
    collection = client.create_collection("spaced", metadata={"hnsw:space": "cosine"})
    collection.add(ids=["x"], embeddings=[[2.0, 0.0]])
    collection.modify(metadata={"b": 2})
    assert client.get_collection("spaced").metadata == {"b": 2, "hnsw:space": "cosine"}
    distances = collection.query(query_embeddings=[[0.0, 5.0]], n_results=1)["distances"]
    assert distances[0][0] == pytest.approx(1.0, abs=1e-5)  # cosine: orthogonal -> 1, l2 would be 29


# --------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------


def test_unknown_api_impl_raises_configuration_error_naming_choices(client, client_settings):
    try:
        with pytest.raises(ConfigurationError) as info:
            chroma.configure(api_impl="nope")
            chroma.get_api()
    finally:
        chroma.configure(api_impl=client_settings.get("api_impl"))
    message = str(info.value)
    assert "api_impl" in message
    # every registered implementation (the contract's other names join as they land)
    assert "local" in chroma.registry.API_IMPLS
    for allowed in chroma.registry.API_IMPLS:
        assert repr(allowed) in message
    assert chroma.get_api().list_collections() == []  # configuration restored and usable


def test_unknown_db_impl_from_environment_raises_configuration_error(client, client_settings, monkeypatch):
    try:
        with pytest.raises(ConfigurationError) as info:
            monkeypatch.setenv("CHROMA_DB_IMPL", "nope")
            chroma.configure(db_impl=None)  # no override: the environment decides
            chroma.get_api()
    finally:
        monkeypatch.delenv("CHROMA_DB_IMPL")
        chroma.configure(db_impl=client_settings.get("db_impl"))
    message = str(info.value)
    assert "db_impl" in message.lower()
    assert {"duckdb", "persistent_duckdb"} <= set(chroma.registry.DB_IMPLS)
    for allowed in chroma.registry.DB_IMPLS:
        assert allowed in message
    assert isinstance(info.value, ValueError)
