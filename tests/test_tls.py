"""TLS: ``chroma run`` with a certificate and key serves ``https://`` and ``grpc+tls://``, and the
clients with ``server_tls`` check its certificate against ``client_tls_ca_file``.

The certificate authority and the server's certificate (for 127.0.0.1 and localhost) are made
here by ``trustme``; the servers are real ``chroma run`` processes on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import subprocess
import sys

import numpy as np
import pytest
import trustme

import chroma
from chroma import errors, tls
from chroma.config import Settings
from server_helpers import PACKAGE_ROOT, running_server, server_env
from test_http_retry import COLLECTION_ID, scripted

TOKEN = "tls-token"
TRANSPORTS = {
    "http": lambda server: {"api_impl": "fastapi", "server_http_port": server.port},
    "flight": lambda server: {"api_impl": "arrowflight", "server_flight_port": server.flight_port},
}


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    """Paths of ``ca`` (the authority that signed the server's certificate), ``cert`` (its chain),
    ``key``, ``other_ca`` (an authority that signed nothing here) and ``other_key``."""
    folder = tmp_path_factory.mktemp("pem")
    authority, other = trustme.CA(), trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "other_ca", "other_key")}
    authority.cert_pem.write_to_path(paths["ca"])
    paths["cert"].write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(paths["key"])
    other.cert_pem.write_to_path(paths["other_ca"])
    other.issue_cert("127.0.0.1").private_key_pem.write_to_path(paths["other_key"])
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def tls_server(pem, tmp_path_factory):
    """``chroma run --impl both`` over TLS (certificate and key as settings), with a token."""
    with running_server(tmp_path_factory.mktemp("tls"), impl="both", server_tls_certfile=pem["cert"],
                        server_tls_keyfile=pem["key"], auth_token=TOKEN, embedding_function="none") as server:
        yield server


def client_of(server, transport: str, **settings) -> chroma.API:
    return chroma.Client(server_host="127.0.0.1", embedding_function="none", **TRANSPORTS[transport](server),
                         **settings)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_client_trusting_the_authority_writes_and_reads_with_its_token(tls_server, pem, transport, monkeypatch):
    assert tls_server.tls
    # requests would let this variable replace the session's CA bundle
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pem["other_ca"])
    client = client_of(tls_server, transport, server_tls=True, client_tls_ca_file=pem["ca"], auth_token=TOKEN)
    try:
        collection = client.get_or_create_collection(f"over-tls-{transport}")
        collection.add(ids=["a", "b"], embeddings=np.array([[1, 0], [0, 1]], dtype=np.float32),
                       documents=["first", "second"])
        got = collection.get(ids=["b"], include=["embeddings", "documents"])
        assert got["ids"] == ["b"] and got["documents"] == ["second"]
        np.testing.assert_array_equal(got["embeddings"], [[0, 1]])
    finally:
        client.close()
    stranger = client_of(tls_server, transport, server_tls=True, client_tls_ca_file=pem["ca"], auth_token="wrong")
    try:
        with pytest.raises(errors.Unauthorized):
            stranger.get_collection(f"over-tls-{transport}")
    finally:
        stranger.close()


@pytest.mark.parametrize("trusted", ["another authority", "the system's trust store"])
@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_client_not_trusting_the_certificate_is_refused_before_sending(tls_server, pem, transport, trusted):
    authority = {"client_tls_ca_file": pem["other_ca"]} if trusted == "another authority" else {}
    client = client_of(tls_server, transport, server_tls=True, auth_token=TOKEN, **authority)
    try:
        for call in (client.heartbeat, lambda: client.create_collection("never-written")):
            with pytest.raises(errors.ServerUnavailable) as raised:
                call()
            # refused during the handshake: a write is known not to have happened
            assert not isinstance(raised.value, errors.OutcomeUnknown)
            assert "certificate verify failed" in str(raised.value)
            assert "client_tls_ca_file" in str(raised.value)
    finally:
        client.close()


def test_certificate_for_another_host_is_refused_by_both_clients(pem, tmp_path):
    authority = trustme.CA()
    authority.cert_pem.write_to_path(tmp_path / "ca.pem")
    issued = authority.issue_cert("elsewhere.example")
    issued.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    issued.private_key_pem.write_to_path(tmp_path / "key.pem")
    with running_server(tmp_path, impl="both", server_tls_certfile=str(tmp_path / "cert.pem"),
                        server_tls_keyfile=str(tmp_path / "key.pem"), embedding_function="none") as server:
        for transport in TRANSPORTS:
            client = client_of(server, transport, server_tls=True, client_tls_ca_file=str(tmp_path / "ca.pem"))
            try:
                with pytest.raises(errors.ServerUnavailable, match="client_tls_ca_file") as raised:
                    client.heartbeat()
                # the libraries' words for a certificate that does not name 127.0.0.1
                assert re.search(r"IP address mismatch|Peer name 127\.0\.0\.1 is not in peer certificate",
                                 str(raised.value))
            finally:
                client.close()


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_plain_client_of_a_tls_server_is_told_to_set_server_tls(tls_server, transport):
    client = client_of(tls_server, transport, auth_token=TOKEN)
    try:
        # a write too (over HTTP it is OutcomeUnknown: a closed connection tells no more)
        for call in (client.heartbeat, lambda: client.create_collection("never-written")):
            with pytest.raises(errors.ServerUnavailable, match="server_tls=true"):
                call()
    finally:
        client.close()


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_tls_client_of_a_plain_server_fails_the_handshake(tmp_path, pem, transport):
    impl = {"http": "fastapi", "flight": "flight"}[transport]
    with running_server(tmp_path, impl=impl, embedding_function="none") as server:
        assert not server.tls
        client = client_of(server, transport, server_tls=True, client_tls_ca_file=pem["ca"])
        try:
            with pytest.raises(errors.ServerUnavailable, match="client_tls_ca_file") as raised:
                client.create_collection("never-written")
            assert not isinstance(raised.value, errors.OutcomeUnknown)
        finally:
            client.close()


@pytest.mark.parametrize("impl, transport", [("fastapi", "http"), ("flight", "flight")])
def test_chroma_run_serves_tls_with_the_certificate_flags(tmp_path, pem, impl, transport):
    with running_server(tmp_path, "--tls-certfile", pem["cert"], "--tls-keyfile", pem["key"], impl=impl,
                        embedding_function="none") as server:
        assert server.tls
        client = client_of(server, transport, server_tls=True, client_tls_ca_file=pem["ca"])
        try:
            assert client.heartbeat() > 0
        finally:
            client.close()


@pytest.mark.parametrize("settings, message", [
    ({"server_tls_certfile": "cert"}, "server_tls_certfile is set but server_tls_keyfile is not"),
    ({"server_tls_keyfile": "key"}, "server_tls_keyfile is set but server_tls_certfile is not"),
    ({"server_tls": True}, "server_tls is true but the server has no certificate"),
    ({"server_tls_certfile": "missing", "server_tls_keyfile": "key"}, "server_tls_certfile '.*missing.pem' cannot be read"),
    ({"server_tls_certfile": "cert", "server_tls_keyfile": "other_key"}, "are not a PEM certificate and its private key"),
    ({"server_tls_certfile": "key", "server_tls_keyfile": "key"}, "are not a PEM certificate and its private key"),
])
def test_server_tls_settings_are_checked(pem, tmp_path, settings, message):
    paths = {**pem, "missing": str(tmp_path / "missing.pem")}
    resolved = {name: paths[value] if isinstance(value, str) else value for name, value in settings.items()}
    with pytest.raises(errors.ConfigurationError, match=message):
        tls.server_certificate(Settings(**resolved))


def test_server_tls_settings_are_unset_by_default():
    assert tls.server_certificate(Settings()) is None
    assert tls.client_ca_file(Settings()) is None


@pytest.mark.parametrize("settings, message", [
    ({"client_tls_ca_file": "ca"}, "client_tls_ca_file is set but server_tls is not"),
    ({"server_tls": True, "client_tls_ca_file": "missing"}, "client_tls_ca_file '.*missing.pem' cannot be read"),
    ({"server_tls": True, "client_tls_ca_file": "not_pem"}, "client_tls_ca_file '.*not_pem.pem' holds no PEM certificate"),
])
@pytest.mark.parametrize("api_impl", ["fastapi", "arrowflight"])
def test_client_tls_settings_are_checked_when_the_client_is_made(pem, tmp_path, settings, message, api_impl):
    (tmp_path / "not_pem.pem").write_text("not a certificate\n")
    paths = {**pem, "missing": str(tmp_path / "missing.pem"), "not_pem": str(tmp_path / "not_pem.pem")}
    resolved = {name: paths[value] if isinstance(value, str) else value for name, value in settings.items()}
    with pytest.raises(errors.ConfigurationError, match=message):
        chroma.Client(api_impl=api_impl, embedding_function="none", **resolved)


def test_chroma_run_with_a_certificate_but_no_key_exits_with_the_reason(pem):
    done = subprocess.run([sys.executable, "-m", "chroma", "run", "--impl", "both", "--port", "0", "--flight-port",
                           "0", "--tls-certfile", pem["cert"]], capture_output=True, text=True, timeout=60,
                          env=server_env(embedding_function="none"), cwd=PACKAGE_ROOT)
    assert done.returncode == 1
    assert done.stderr.strip() == ("chroma: error: server_tls_certfile is set but server_tls_keyfile is not: "
                                   "a TLS server needs both")
    assert "listening" not in done.stdout


@contextlib.contextmanager
def scripted_over_tls(pem, *script: list[str]):
    """test_http_retry's scripted server, over TLS, and an HTTPS client of it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem["cert"], pem["key"])
    with scripted(*script, context=context, server_tls=True, client_tls_ca_file=pem["ca"]) as pair:
        yield pair


@pytest.mark.parametrize("ending", ["close", "reset"])
def test_https_read_on_a_kept_connection_ended_before_its_answer_goes_again_once(pem, ending):
    with scripted_over_tls(pem, ["answer", ending], ["answer"]) as (server, client):
        assert client.heartbeat() == 1
        assert client.heartbeat() == 1
    assert [number for number, _ in server.requests] == [0, 0, 1]


@pytest.mark.parametrize("ending", ["close", "reset"])
def test_https_write_ended_before_its_answer_is_outcome_unknown_and_sent_once(pem, ending):
    with scripted_over_tls(pem, ["answer", ending], ["answer"]) as (server, client):
        collection = client.get_collection("kept")
        with pytest.raises(errors.OutcomeUnknown, match="may or may not have been applied"):
            collection.add(ids=["a"], embeddings=[[1.0, 2.0]])
    writes = [line for _, line in server.requests if line.startswith("POST")]
    assert writes == [f"POST /api/v1/collections/{COLLECTION_ID}/add HTTP/1.1"]
