"""The operation table (chroma.protocol.operations) against what each transport does: the
clients send every operation through their one call method, the HTTP server has a route
and the Flight server an action, put or exchange for each row, and a read is what the
table says is idempotent."""

from __future__ import annotations

import re

import pytest

from chroma import flight_protocol
from chroma.api import API
from chroma.api.arrowflight import ArrowFlight
from chroma.api.fastapi import FastAPI
from chroma.api.remote import Remote
from chroma.config import Settings
from chroma.protocol import operations as ops
from chroma.server.fastapi import BODY_MODELS, PREFIX, create_app


def test_names_are_unique_and_arguments_are_known():
    assert len(ops.OPERATIONS) == 17
    for operation in ops.OPERATIONS.values():
        assert set(operation.arrays) <= set(operation.arguments), operation.name
        assert {argument for _, argument in operation.bounds} <= set(operation.arguments), operation.name
        assert set(ops.path_arguments(operation)) == set(re.findall(r"{(\w+)}", operation.http[1])), operation.name


@pytest.mark.parametrize("client", [FastAPI, ArrowFlight], ids=lambda cls: cls.__name__)
def test_a_client_implements_only_the_call_method(client):
    # Every operation of the API is written once, in Remote; a transport adds its wire.
    abstract = {name for name, member in vars(API).items() if getattr(member, "__isabstractmethod__", False)}
    assert abstract <= set(vars(Remote))
    assert not abstract & set(vars(client))
    assert "_call" in vars(client)


def test_every_operation_has_its_http_route(app):
    routes = {(method, re.sub(r":\w+}", "}", route.path))
              for route in app.routes for method in getattr(route, "methods", ())}
    for operation in ops.OPERATIONS.values():
        method, path = operation.http
        assert (method, PREFIX + path) in routes, operation.name
        assert operation.idempotent or method != "GET", operation.name


def test_every_operation_has_its_http_body_model_and_documentation(app):
    # An operation needs only its row (and the Local method): the body's model, its fields'
    # types and descriptions, and the route's documentation all come from the table.
    schema = app.openapi()
    components = schema["components"]["schemas"]
    for operation in ops.OPERATIONS.values():
        assert operation.summary, operation.name
        for name in operation.arguments:
            assert ops.declaration(operation, name).description, (operation.name, name)
        method, path = operation.http
        documented = schema["paths"][PREFIX + path][method.lower()]
        assert documented["description"] == operation.summary, operation.name
        body = ops.body_arguments(operation)
        if not body:
            assert operation.name not in BODY_MODELS and "requestBody" not in documented, operation.name
            continue
        assert tuple(BODY_MODELS[operation.name].model_fields) == body, operation.name
        reference = documented["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        generated = components[reference.rsplit("/", 1)[1]]
        assert tuple(generated["properties"]) == body, operation.name
        assert generated["additionalProperties"] is False, operation.name
        assert all(field.get("type") or field.get("anyOf") for field in generated["properties"].values()), (
            operation.name, generated)


def test_every_operation_has_its_flight_call():
    # a get or query streams, or goes as an action when it is small
    assert set(flight_protocol.ACTIONS) == {name for name, operation in ops.OPERATIONS.items()
                                            if operation.flight in (ops.ACTION, ops.EXCHANGE)}
    assert set(flight_protocol.WRITES) == {name for name, operation in ops.OPERATIONS.items()
                                           if operation.flight == ops.PUT}
    assert flight_protocol.OPEN_ACTIONS == {name for name, operation in ops.OPERATIONS.items() if operation.open}


@pytest.fixture
def app():
    from chroma.api.local import Local
    from chroma.db.duckdb import DuckDB

    settings = Settings()
    local = Local(settings, db=DuckDB(settings))
    yield create_app(local, settings)
    local.close()
