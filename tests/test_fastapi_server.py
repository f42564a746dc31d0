"""The HTTP server and client beyond the conformance suite: auth, bounds, CORS,
docs, JSON errors, a raw JSON session, and ``chroma run`` stopping cleanly.

Every server here is a real ``chroma run`` subprocess (see server_helpers).
"""

from __future__ import annotations

import json
import re
import signal

import numpy as np
import pytest
import requests

from chroma import errors
from server_helpers import free_port, local_error, running_server, start_server

TOKEN = "s3cret-token"
ALLOWED_ORIGIN = "http://app.example"
JSON = {"Content-Type": "application/json"}


def client_of(configured, server, **settings):
    return configured(api_impl="fastapi", server_host="127.0.0.1", server_http_port=server.port, **settings)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with a token and CORS for one origin (reset not allowed)."""
    with running_server(tmp_path_factory.mktemp("guarded"), auth_token=TOKEN, cors_origins=ALLOWED_ORIGIN) as server:
        yield server


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    """A server with small bounds."""
    with running_server(tmp_path_factory.mktemp("bounded"), allow_reset="1", max_request_bytes="100000",
                        max_batch_size="10", max_n_results="5") as server:
        yield server


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("plain"), allow_reset="1") as server:
        yield server


def reset(server):
    assert requests.post(f"{server.url}/api/v1/reset", json={}).status_code == 200


# --------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------


def test_raw_requests_need_the_bearer_token(guarded):
    url = f"{guarded.url}/api/v1/collections"
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}]:
        response = requests.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "Unauthorized"
        assert "Authorization: Bearer" in response.json()["message"]
    # a refused write changes nothing
    refused = requests.post(url, json={"name": "sneaky"}, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(url, headers=authorized).json() == []
    # the heartbeat is open (health checks), and reveals nothing stored
    heartbeat = requests.get(f"{guarded.url}/api/v1/heartbeat")
    assert heartbeat.status_code == 200 and heartbeat.json()["heartbeat"] > 10**9


def test_python_client_with_and_without_the_token(guarded, configured):
    for token in [None, "wrong"]:
        client = client_of(configured, guarded, auth_token=token)
        with pytest.raises(errors.Unauthorized, match="Authorization: Bearer"):
            client.list_collections()
        with pytest.raises(errors.Unauthorized):
            client.create_collection("refused")
    client = client_of(configured, guarded, auth_token=TOKEN)
    collection = client.get_or_create_collection("authorized")
    collection.upsert(ids=["a"], embeddings=[[1.0, 2.0]])
    assert collection.count() == 1
    assert [c.name for c in client.list_collections()] == ["authorized"]
    client.delete_collection("authorized")


# --------------------------------------------------------------------------
# CORS, docs
# --------------------------------------------------------------------------


def test_cors_headers_for_the_allowed_origin_only(guarded):
    url = f"{guarded.url}/api/v1/collections"
    allowed = requests.get(url, headers={"Origin": ALLOWED_ORIGIN, "Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    other = requests.get(url, headers={"Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"})
    assert "access-control-allow-origin" not in other.headers
    # a browser's preflight is answered without the token
    preflight = requests.options(url, headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_no_cors_headers_without_the_setting(plain):
    response = requests.get(f"{plain.url}/api/v1/heartbeat", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_docs_and_openapi_schema(guarded):
    docs = requests.get(f"{guarded.url}/docs")  # open even with a token set
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = requests.get(f"{guarded.url}/openapi.json").json()
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/heartbeat", "get"), ("/api/v1/version", "get"), ("/api/v1/limits", "get"),
        ("/api/v1/collections", "get"), ("/api/v1/collections", "post"),
        ("/api/v1/collections/{name}", "get"), ("/api/v1/collections/{name}", "delete"),
        ("/api/v1/collections/{collection_id}", "put"), ("/api/v1/collections/{collection_id}/count", "get"),
        ("/api/v1/collections/{collection_id}/add", "post"), ("/api/v1/collections/{collection_id}/upsert", "post"),
        ("/api/v1/collections/{collection_id}/update", "post"),
        ("/api/v1/collections/{collection_id}/delete", "post"), ("/api/v1/collections/{collection_id}/get", "post"),
        ("/api/v1/collections/{collection_id}/query", "post"), ("/api/v1/reset", "post"),
    ]:
        assert method in paths.get(path, {}), (path, method)
    components = schema["components"]["schemas"]
    for model in ["CreateCollection", "Records", "GetRecords", "QueryRecords", "DeleteRecords", "ErrorOut"]:
        assert model in components
    assert "n_results" in components["QueryRecords"]["properties"]


# --------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------


def test_limits_are_reported(bounded, configured):
    expected = {"max_request_bytes": 100000, "max_json_request_bytes": 4194304, "max_batch_size": 10,
                "max_n_results": 5, "max_response_rows": 50000, "max_embedding_tokens": 1_000_000}
    assert requests.get(f"{bounded.url}/api/v1/limits").json() == expected
    assert client_of(configured, bounded).limits() == expected


def test_oversized_body_is_413_and_writes_nothing(bounded, configured):
    reset(bounded)
    client = client_of(configured, bounded, allow_reset=True)
    collection = client.create_collection("bounded")
    collection.add(ids=["keep"], embeddings=[[1.0, 2.0]])
    big = ["x" * 20_000] * 10  # 10 ids (within the batch bound), about 200 kB
    with pytest.raises(errors.PayloadTooLarge, match="max_request_bytes=100000"):
        collection.add(ids=[f"id{i}" for i in range(10)], embeddings=[[0.0, 1.0]] * 10, documents=big)
    assert collection.count() == 1
    # raw: a declared length, then a chunked body without one
    url = f"{bounded.url}/api/v1/collections/{collection.id}/add"
    body = {"ids": ["big"], "embeddings": [[0.0, 1.0]], "documents": ["y" * 200_000]}
    response = requests.post(url, json=body)
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"
    chunked = requests.post(url, data=(b"x" * 10_000 for _ in range(20)), headers=JSON)
    assert chunked.status_code == 413 and chunked.json()["error"] == "PayloadTooLarge"
    assert collection.get()["ids"] == ["keep"]
    assert issubclass(errors.PayloadTooLarge, errors.InvalidArgument)


def test_batch_and_n_results_above_the_bounds_are_413(bounded, configured):
    reset(bounded)
    client = client_of(configured, bounded, allow_reset=True)
    collection = client.create_collection("bounded")
    collection.add(ids=[f"id{i}" for i in range(10)], embeddings=np.eye(10, dtype=np.float32))  # at the bound
    for write in (collection.add, collection.upsert):
        with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=10"):
            write(ids=[f"new{i}" for i in range(11)], embeddings=np.ones((11, 10)))
    with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=10"):
        collection.update(ids=[f"id{i}" for i in range(11)], embeddings=np.ones((11, 10)))
    with pytest.raises(errors.PayloadTooLarge, match="max_batch_size=10"):
        collection.query(query_embeddings=np.ones((11, 10)), n_results=1)
    with pytest.raises(errors.PayloadTooLarge, match="max_n_results=5"):
        collection.query(query_embeddings=np.ones((1, 10)), n_results=6)
    after = collection.get(include=["embeddings"])
    assert after["ids"] == [f"id{i}" for i in range(10)]
    assert np.array_equal(after["embeddings"], np.eye(10, dtype=np.float32))
    assert len(collection.query(query_embeddings=np.ones((10, 10)), n_results=5)["ids"][0]) == 5
    response = requests.post(f"{bounded.url}/api/v1/collections/{collection.id}/query",
                             json={"query_embeddings": [[1.0] * 10], "n_results": 6})
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge" and "max_n_results=5" in response.json()["message"]


# --------------------------------------------------------------------------
# Errors as JSON, the same as Local's
# --------------------------------------------------------------------------


def test_errors_come_back_as_json_naming_the_class(plain):
    reset(plain)
    base = f"{plain.url}/api/v1"
    missing = requests.get(f"{base}/collections/absent")
    assert missing.status_code == 404
    assert missing.json() == {"error": "CollectionNotFound", "message": "collection 'absent' does not exist"}

    created = requests.post(f"{base}/collections", json={"name": "errs"}).json()
    again = requests.post(f"{base}/collections", json={"name": "errs"})
    assert again.status_code == 409 and again.json()["error"] == "CollectionExists"

    add = f"{base}/collections/{created['id']}/add"
    assert requests.post(add, json={"ids": ["a"], "embeddings": [[1.0, 2.0]]}).status_code == 200
    duplicate = requests.post(add, json={"ids": ["a"], "embeddings": [[1.0, 2.0]]})
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "DuplicateIDError"

    # a bad value is Local's error (class and message), not a framework 422
    bad_include = requests.post(f"{base}/collections/{created['id']}/get", json={"include": ["nope"]})
    expected = local_error(lambda c: c.create_collection("errs").get(include=["nope"]))
    assert bad_include.status_code == 400
    assert bad_include.json() == {"error": type(expected).__name__, "message": str(expected)}
    bad_name = requests.post(f"{base}/collections", json={"name": "a b"})
    expected = local_error(lambda c: c.create_collection("a b"))
    assert bad_name.json() == {"error": "InvalidArgument", "message": str(expected)}
    no_ids = requests.post(add, json={"embeddings": [[1.0, 2.0]]})
    expected = local_error(lambda c: c.create_collection("errs").add(ids=None, embeddings=[[1.0, 2.0]]))
    assert no_ids.status_code == 400 and no_ids.json()["message"] == str(expected)

    not_json = requests.post(add, data=b"{not json", headers=JSON)
    assert not_json.status_code == 400 and not_json.json()["error"] == "InvalidArgument"
    unknown_route = requests.get(f"{base}/no-such-route")
    assert unknown_route.status_code == 404 and "error" in unknown_route.json()


def test_unreachable_server_is_server_unavailable_naming_the_address(configured):
    port = free_port()  # nothing listens there
    client = configured(api_impl="fastapi", server_host="127.0.0.1", server_http_port=port)
    with pytest.raises(errors.ServerUnavailable, match=f"127.0.0.1:{port}") as raised:
        client.heartbeat()
    assert isinstance(raised.value, errors.ChromaError) and isinstance(raised.value, ConnectionError)


# --------------------------------------------------------------------------
# A raw JSON session, as docs/servers.md shows it with curl
# --------------------------------------------------------------------------


def test_raw_json_session_create_add_query(plain):
    reset(plain)
    base = f"{plain.url}/api/v1"
    collection = requests.post(f"{base}/collections", headers=JSON, data='{"name": "docs"}')
    assert collection.status_code == 200
    cid = collection.json()["id"]
    assert collection.json() == {"id": cid, "name": "docs", "metadata": None}
    added = requests.post(f"{base}/collections/{cid}/add", headers=JSON, data="""
        {"ids": ["a", "b"], "embeddings": [[1.0, 0.0], [0.0, 1.0]],
         "metadatas": [{"kind": "x"}, {"kind": "y"}], "documents": ["apple", "banana"]}""")
    assert added.status_code == 200 and added.json() == {}
    found = requests.post(f"{base}/collections/{cid}/query", headers=JSON,
                          data='{"query_embeddings": [[0.9, 0.1]], "n_results": 1}')
    assert found.status_code == 200
    result = found.json()
    assert result["ids"] == [["a"]]
    assert result["documents"] == [["apple"]]
    assert result["metadatas"] == [[{"kind": "x"}]]
    assert result["distances"][0][0] == pytest.approx(0.02, abs=1e-6)
    with_vectors = requests.post(f"{base}/collections/{cid}/get", headers=JSON,
                                 data='{"ids": ["b"], "include": ["embeddings"]}').json()
    assert with_vectors["embeddings"] == [[0.0, 1.0]] and with_vectors["dimension"] == 2
    assert requests.get(f"{base}/collections/{cid}/count").json() == {"count": 2}
    assert requests.get(f"{base}/collections/docs").json()["id"] == cid


# --------------------------------------------------------------------------
# Typed bodies: the schema generated from the operation table, and Local's
# answer to a value of another type
# --------------------------------------------------------------------------


QUERY = {"query_embeddings": [[1.0, 0.0]]}
ROW = {"ids": ["x"], "embeddings": [[1.0, 0.0]]}
WRONG_TYPES = {
    "n_results the string 10": ("query", {**QUERY, "n_results": "10"},
                                lambda c: c.query(query_embeddings=[[1.0, 0.0]], n_results="10")),
    "n_results true": ("query", {**QUERY, "n_results": True},
                       lambda c: c.query(query_embeddings=[[1.0, 0.0]], n_results=True)),
    "n_results 2.0": ("query", {**QUERY, "n_results": 2.0},
                      lambda c: c.query(query_embeddings=[[1.0, 0.0]], n_results=2.0)),
    "query vector of strings": ("query", {"query_embeddings": [["1", "0"]]},
                                lambda c: c.query(query_embeddings=[["1", "0"]])),
    "embedding of true and false": ("add", {"ids": ["x"], "embeddings": [[True, False]]},
                                    lambda c: c.add(ids=["x"], embeddings=[[True, False]])),
    "ids a number": ("get", {"ids": 5}, lambda c: c.get(ids=5)),
    "ids an object": ("delete", {"ids": {"a": 1}}, lambda c: c.delete(ids={"a": 1})),
    "ids of numbers": ("delete", {"ids": [1, 2]}, lambda c: c.delete(ids=[1, 2])),
    "include a string": ("get", {"include": "documents"}, lambda c: c.get(include="documents")),
    "limit the string 1": ("get", {"limit": "1"}, lambda c: c.get(limit="1")),
    "documents of numbers": ("add", {**ROW, "documents": [5]},
                             lambda c: c.add(ids=["x"], embeddings=[[1.0, 0.0]], documents=[5])),
    "metadata value a list": ("add", {**ROW, "metadatas": [{"k": [1]}]},
                              lambda c: c.add(ids=["x"], embeddings=[[1.0, 0.0]], metadatas=[{"k": [1]}])),
    "where a list": ("get", {"where": [1]}, lambda c: c.get(where=[1])),
}


@pytest.fixture
def typed(plain):
    """The collection "typed" of ``plain``, with one item: its id, and the URL of ``operation``."""
    from chroma.protocol import operations as ops

    reset(plain)
    cid = requests.post(f"{plain.url}/api/v1/collections", json={"name": "typed"}).json()["id"]
    added = requests.post(f"{plain.url}/api/v1/collections/{cid}/add", json={"ids": ["a"], "embeddings": [[0.0, 1.0]]})
    assert added.status_code == 200, added.text
    yield cid, lambda operation: plain.url + "/api/v1" + ops.OPERATIONS[operation].http[1].format(collection_id=cid)


def body_model(operation: str):
    from chroma.server.fastapi import BODY_MODELS

    return BODY_MODELS[operation]


@pytest.mark.parametrize("operation, body, python", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_a_value_of_another_type_gets_locals_error(typed, operation, body, python):
    import pydantic

    cid, url = typed
    expected = local_error(lambda c: python(c.create_collection("typed")))
    response = requests.post(url(operation), json=body)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": type(expected).__name__, "message": str(expected)}
    # the schema /openapi.json publishes refuses it too: nothing converts it
    with pytest.raises(pydantic.ValidationError):
        body_model(operation).model_validate_json(json.dumps(body))
    assert requests.get(url("count")).json() == {"count": 1}


def test_get_or_create_the_string_yes(typed):
    import pydantic

    body = {"name": "typed", "get_or_create": "yes"}
    expected = local_error(lambda c: c.create_collection("typed", get_or_create="yes"))
    assert str(expected) == "get_or_create must be true or false, got 'yes'"
    response = requests.post(typed[1]("create_collection"), json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "InvalidArgument", "message": str(expected)}
    with pytest.raises(pydantic.ValidationError):
        body_model("create_collection").model_validate_json(json.dumps(body))


def test_one_id_as_a_string_is_a_list_of_one(typed):
    body = {"ids": "a", "include": []}
    assert requests.post(typed[1]("get"), json=body).json()["ids"] == ["a"]
    body_model("get").model_validate_json(json.dumps(body))


def test_a_field_the_operation_does_not_take_is_refused(typed):
    import pydantic
    from chroma import wire

    cid, url = typed
    misspelt = {**ROW, "metadata": {"k": 1}}
    for body, headers in [
        (json.dumps(misspelt).encode(), JSON),
        (wire.encode({"ids": ["x"], "metadata": {"k": 1}}, {"embeddings": np.ones((1, 2), np.float32)}),
         {"Content-Type": wire.MEDIA_TYPE}),
    ]:
        response = requests.post(url("add"), data=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "InvalidArgument", "message": (
            "add got an unexpected argument 'metadata'; it takes ids, embeddings, metadatas, documents, "
            "embed_missing")}
    with pytest.raises(pydantic.ValidationError, match="metadata"):
        body_model("add").model_validate_json(json.dumps(misspelt))
    typo = requests.post(url("query"), json={**QUERY, "n_result": 1})
    assert typo.status_code == 400 and "query got an unexpected argument 'n_result'" in typo.json()["message"]
    elsewhere = requests.post(url("get"), json={"collection_id": cid})  # it travels in the path
    assert elsewhere.status_code == 400 and "'collection_id'" in elsewhere.json()["message"]
    assert requests.get(url("count")).json() == {"count": 1}


def test_openapi_shows_the_types_of_a_query_body(plain):
    schema = requests.get(f"{plain.url}/openapi.json").json()
    body = schema["paths"]["/api/v1/collections/{collection_id}/query"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/QueryRecords"}
    query = schema["components"]["schemas"]["QueryRecords"]
    assert query["additionalProperties"] is False
    fields = query["properties"]
    assert set(fields) == {"query_embeddings", "query_texts", "n_results", "where", "where_document", "include"}
    assert {key: fields["n_results"][key] for key in ("type", "minimum", "maximum", "default")} == {
        "type": "integer", "minimum": 1, "maximum": 2**63 - 1, "default": 10}
    assert fields["query_embeddings"]["anyOf"] == [
        {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        {"type": "array", "items": {"type": "number"}}, {"type": "null"}]
    assert fields["query_texts"]["anyOf"] == [{"type": "array", "items": {"type": "string"}}, {"type": "string"},
                                              {"type": "null"}]
    assert fields["include"]["items"] == {"enum": ["embeddings", "metadatas", "documents", "distances"],
                                          "type": "string"}
    assert fields["include"]["default"] == ["metadatas", "documents", "distances"]
    assert {"type": "object", "additionalProperties": True} in fields["where"]["anyOf"]
    assert all(field["description"] for field in fields.values())
    records = schema["components"]["schemas"]["Records"]
    assert records["required"] == ["ids"] and records["properties"]["embed_missing"] == {
        "type": "boolean", "default": True, "title": "Embed Missing",
        "description": records["properties"]["embed_missing"]["description"]}


# --------------------------------------------------------------------------
# chroma run: SIGTERM, restart on the same --path
# --------------------------------------------------------------------------


def test_sigterm_stops_cleanly_and_a_restart_has_everything(tmp_path, configured):
    data = tmp_path / "data"
    server = start_server(tmp_path, "--path", str(data), name="first")
    try:
        client = client_of(configured, server)
        collection = client.create_collection("durable", metadata={"v": 1})
        vectors = np.arange(300, dtype=np.float32).reshape(100, 3)
        for start in range(0, 100, 25):
            collection.add(ids=[f"id{i}" for i in range(start, start + 25)], embeddings=vectors[start:start + 25],
                           metadatas=[{"i": i} for i in range(start, start + 25)])
        collection.delete(ids=["id0"])
        # the same vector beside the new document: the server's default model may not embed
        # documents into a collection of given vectors (docs/embedding.md)
        collection.update(ids=["id1"], documents=["changed"], embeddings=vectors[1:2])
    finally:
        status = server.stop()
    assert status == 0, server.output()
    assert server.stdout.read_text().splitlines() == [
        f"chroma server listening on http://127.0.0.1:{server.port}", "chroma server stopped"]

    with running_server(tmp_path, "--path", str(data), name="second") as again:
        client = client_of(configured, again)
        collection = client.get_collection("durable")
        assert collection.metadata == {"v": 1}
        assert collection.count() == 99
        got = collection.get(include=["embeddings", "metadatas", "documents"])
        assert got["ids"] == [f"id{i}" for i in range(1, 100)]
        assert np.array_equal(got["embeddings"], vectors[1:])
        assert got["metadatas"] == [{"i": i} for i in range(1, 100)]
        assert got["documents"][:2] == ["changed", None]


def test_sigint_also_stops_cleanly(tmp_path):
    server = start_server(tmp_path, "--path", str(tmp_path / "data"))
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=20) == 0, server.output()
    assert "chroma server stopped" in server.stdout.read_text()


# --------------------------------------------------------------------------
# Vectors on the wire: the binary frame and JSON give the same answers
# --------------------------------------------------------------------------


def _exercise(collection) -> list:
    """Writes (a gapped update included), then every read that carries vectors; the answers."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((50, 6), dtype=np.float32)
    collection.add(ids=[f"id{i}" for i in range(50)], embeddings=vectors,
                   metadatas=[{"i": i} for i in range(50)], documents=[f"doc {i}" for i in range(50)])
    collection.update(ids=["id1", "id2"], embeddings=[None, vectors[0] * 2], documents=["one", None])
    collection.upsert(ids=["id3", "new"], embeddings=vectors[:2] + 1)
    include = ["embeddings", "metadatas", "documents", "distances"]
    return [
        collection.get(include=["embeddings", "metadatas", "documents"]),
        collection.get(ids=["nothing-here"], include=["embeddings"]),
        collection.query(query_embeddings=vectors[:4], n_results=5, include=include),
        collection.query(query_embeddings=vectors[0], n_results=3, where={"i": {"$gte": 48}}, include=include),
        collection.query(query_embeddings=vectors[:2], n_results=3, where={"i": -1}, include=include),
    ]


def _same(left, right) -> None:
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        assert isinstance(left, np.ndarray) and isinstance(right, np.ndarray)
        assert left.dtype == right.dtype == np.float32 and left.shape == right.shape
        assert np.array_equal(left, right)
    elif isinstance(left, (list, tuple)):
        assert type(left) is type(right) and len(left) == len(right)
        for a, b in zip(left, right):
            _same(a, b)
    elif isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            _same(left[key], right[key])
    else:
        assert type(left) is type(right) and left == right


def test_binary_and_json_encodings_answer_exactly_like_local(plain, configured):
    reset(plain)
    answers = {}
    for encoding in ("binary", "json"):
        client = client_of(configured, plain, allow_reset=True, http_encoding=encoding)
        answers[encoding] = _exercise(client.create_collection(f"wire-{encoding}"))
    local = configured(api_impl="local", db_impl="duckdb", http_encoding=None)
    answers["local"] = _exercise(local.create_collection("wire-local"))
    _same(answers["binary"], answers["local"])
    _same(answers["json"], answers["local"])


def test_the_server_answers_in_the_encoding_asked_for(plain):
    from chroma import wire

    reset(plain)
    base = f"{plain.url}/api/v1"
    cid = requests.post(f"{base}/collections", json={"name": "frames"}).json()["id"]
    vectors = np.arange(8, dtype=np.float32).reshape(4, 2)
    added = requests.post(f"{base}/collections/{cid}/add", headers={"Content-Type": wire.MEDIA_TYPE},
                          data=wire.encode({"ids": ["a", "b", "c", "d"]}, {"embeddings": vectors}))
    assert added.status_code == 200, added.text
    query = {"query_embeddings": [[0.0, 1.0]], "n_results": 2, "include": ["embeddings", "distances"]}
    as_json = requests.post(f"{base}/collections/{cid}/query", json=query)
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json()["ids"] == [["a", "b"]] and as_json.json()["embeddings"] == [[[0.0, 1.0], [2.0, 3.0]]]
    as_frame = requests.post(f"{base}/collections/{cid}/query", json=query, headers={"Accept": wire.MEDIA_TYPE})
    assert as_frame.headers["content-type"] == wire.MEDIA_TYPE
    decoded = wire.decode(as_frame.content)
    assert decoded["ids"] == [["a", "b"]] and np.array_equal(decoded["embeddings"][0], vectors[:2])
    assert decoded["distances"][0].ravel().tolist() == as_json.json()["distances"][0] == [0.0, 8.0]


def test_malformed_or_unknown_bodies_are_400_and_write_nothing(plain):
    from chroma import wire

    reset(plain)
    base = f"{plain.url}/api/v1"
    cid = requests.post(f"{base}/collections", json={"name": "frames"}).json()["id"]
    add = f"{base}/collections/{cid}/add"
    truncated = wire.encode({"ids": ["a", "b"]}, {"embeddings": np.ones((2, 4), np.float32)})[:-4]
    for body, headers, expected in [
        (truncated, {"Content-Type": wire.MEDIA_TYPE}, "whole number of float32|run past"),
        (b"\x05\x00", {"Content-Type": wire.MEDIA_TYPE}, "shorter than its length prefix"),
        (b"ids=a", {"Content-Type": "application/x-www-form-urlencoded"}, "got Content-Type"),
        (b"[1, 2]", JSON, "JSON object"),
    ]:
        response = requests.post(add, data=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "InvalidArgument"
        assert re.search(expected, response.json()["message"]), response.json()
    assert requests.get(f"{base}/collections/{cid}/count").json() == {"count": 0}


def test_an_unknown_http_encoding_is_a_configuration_error(configured, plain):
    with pytest.raises(errors.ConfigurationError, match="http_encoding must be one of \\['binary', 'json'\\], got 'xml'"):
        client_of(configured, plain, http_encoding="xml")
