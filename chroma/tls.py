"""TLS settings, checked once at start-up, for the servers and their clients.

A server serves TLS (``https://``, ``grpc+tls://``) when ``server_tls_certfile`` and
``server_tls_keyfile`` are set; a client speaks it when ``server_tls`` is true, and
trusts ``client_tls_ca_file`` (a PEM bundle), else the system's trust store. Both sides
check their files here, so a missing file, a certificate without its key or a key that
does not belong to the certificate is a :class:`ConfigurationError` naming the setting,
before anything listens or connects.
"""

from __future__ import annotations

import os
import ssl
from typing import NamedTuple, Optional

from chroma.config import Settings
from chroma.errors import ConfigurationError


class ServerCertificate(NamedTuple):
    """The PEM files a server presents: its certificate (chain) and the private key."""

    certfile: str
    keyfile: str


def server_certificate(settings: Settings) -> Optional[ServerCertificate]:
    """The server's checked certificate and key, or None when it serves without TLS.

    Raises:
        ConfigurationError: one of the two settings without the other, a file that cannot be
            read, or a pair OpenSSL refuses (not PEM, or a key of another certificate).
    """
    certfile, keyfile = settings.server_tls_certfile, settings.server_tls_keyfile
    if certfile is None and keyfile is None:
        if settings.server_tls:
            raise ConfigurationError(
                "server_tls is true but the server has no certificate: set server_tls_certfile and "
                "server_tls_keyfile (chroma run --tls-certfile FILE --tls-keyfile FILE)")
        return None
    if certfile is None or keyfile is None:
        given, missing = ("server_tls_certfile", "server_tls_keyfile") if keyfile is None else \
            ("server_tls_keyfile", "server_tls_certfile")
        raise ConfigurationError(f"{given} is set but {missing} is not: a TLS server needs both")
    for setting, path in (("server_tls_certfile", certfile), ("server_tls_keyfile", keyfile)):
        _readable(setting, path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"server_tls_certfile {certfile!r} and server_tls_keyfile {keyfile!r} are not a PEM certificate "
            f"and its private key: {exc.reason or exc}") from None
    return ServerCertificate(certfile, keyfile)


def client_ca_file(settings: Settings) -> Optional[str]:
    """The PEM bundle a client trusts: ``client_tls_ca_file``, else the system's bundle; None when
    this system names none (then each library's own roots apply) or TLS is off.

    Raises:
        ConfigurationError: ``client_tls_ca_file`` without ``server_tls``, or a file that cannot
            be read or holds no PEM certificate.
    """
    path = settings.client_tls_ca_file
    if not settings.server_tls:
        if path is not None:
            raise ConfigurationError(
                "client_tls_ca_file is set but server_tls is not: set server_tls=true to connect over TLS")
        return None
    if path is None:
        system = ssl.get_default_verify_paths().cafile
        return system if system and os.path.isfile(system) else None
    _readable("client_tls_ca_file", path)
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"client_tls_ca_file {path!r} holds no PEM certificate: {exc.reason or exc}") from None
    return path


def _readable(setting: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigurationError(f"{setting} {path!r} cannot be read: {exc.strerror or exc}") from None
