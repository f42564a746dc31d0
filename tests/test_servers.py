"""What every kind of server does alike, run against each (``chroma run --impl``)."""

from __future__ import annotations

import pytest

from chroma import errors
from server_helpers import running_server

CLIENT_SETTINGS = {
    "fastapi": lambda server: {"api_impl": "fastapi", "server_http_port": server.port},
    "flight": lambda server: {"api_impl": "arrowflight", "server_flight_port": server.flight_port},
}


@pytest.fixture(scope="module", params=list(CLIENT_SETTINGS))
def no_reset(request, tmp_path_factory):
    """``(server, client settings)`` of a server without allow_reset."""
    with running_server(tmp_path_factory.mktemp(request.param), impl=request.param) as server:
        yield server, {"server_host": "127.0.0.1", **CLIENT_SETTINGS[request.param](server)}


def test_reset_needs_the_servers_allow_reset_too(no_reset, configured):
    server, settings = no_reset
    client = configured(allow_reset=True, **settings)
    client.get_or_create_collection("kept")
    with pytest.raises(errors.ResetDisabled, match="allow_reset"):
        client.reset()
    assert "kept" in [c.name for c in client.list_collections()]
    client.delete_collection("kept")
