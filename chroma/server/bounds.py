"""What every chroma server checks before a call reaches the API: the bearer
token and the size bounds (``auth_token``, ``max_request_bytes``,
``max_json_request_bytes``, ``max_batch_size``, ``max_n_results``, ``max_response_rows``;
``max_embedding_tokens`` is checked by the default model as it tokenizes; see
:class:`chroma.config.Settings` and docs/limits.md).

The HTTP and the Flight server use the same checks and messages; only the
place where a client reads the bounds (``reported_at``) differs.
"""

from __future__ import annotations

import hmac
from typing import Any, Optional, Union

from chroma import errors
from chroma.config import Settings
from chroma.validation import INT64_MAX


def token_matches(expected: Optional[str], authorization: Union[str, bytes, None]) -> bool:
    """Whether an ``Authorization`` value carries ``Bearer <expected>`` (always true without a token set)."""
    if not expected:
        return True
    if authorization is None:
        return False
    if isinstance(authorization, str):
        authorization = authorization.encode()
    scheme, _, credentials = authorization.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), expected.encode())


def unauthorized(header: str) -> errors.Unauthorized:
    """The error for a call without the right token; ``header`` says how to send it."""
    return errors.Unauthorized(
        f"missing or invalid token: this server needs the {header} (the server's auth_token setting; "
        "the Python client sends its auth_token)")


class Bounds:
    """A server's size bounds (0 means none), checked per request."""

    def __init__(self, settings: Settings, reported_at: str) -> None:
        self.max_request_bytes = settings.max_request_bytes
        self.max_json_request_bytes = settings.max_json_request_bytes
        self.max_batch_size = settings.max_batch_size
        self.max_n_results = settings.max_n_results
        self.max_response_rows = settings.max_response_rows
        self.request_timeout = settings.request_timeout
        self.max_embedding_tokens = settings.max_embedding_tokens  # checked where the default model embeds
        self.reported_at = reported_at

    def report(self) -> dict:
        """The bounds as a client reads them."""
        return {"max_request_bytes": self.max_request_bytes, "max_json_request_bytes": self.max_json_request_bytes,
                "max_batch_size": self.max_batch_size, "max_n_results": self.max_n_results,
                "max_response_rows": self.max_response_rows, "max_embedding_tokens": self.max_embedding_tokens}

    def too_large(self, size: Optional[int]) -> errors.PayloadTooLarge:
        """The error for a request of ``size`` bytes (None: unknown, but over the bound)."""
        what = f"{size} bytes" if size is not None else "more bytes"
        return errors.PayloadTooLarge(
            f"request body of {what} exceeds this server's max_request_bytes={self.max_request_bytes}; "
            f"send smaller batches (the bounds are at {self.reported_at})")

    def check_bytes(self, size: int) -> None:
        """Raises PayloadTooLarge when ``size`` bytes exceed ``max_request_bytes``."""
        if self.max_request_bytes and size > self.max_request_bytes:
            raise self.too_large(size)

    def check_json_bytes(self, size: int) -> None:
        """Raises PayloadTooLarge when a JSON body of ``size`` bytes exceeds ``max_json_request_bytes``."""
        if self.max_json_request_bytes and size > self.max_json_request_bytes:
            raise errors.PayloadTooLarge(
                f"JSON request body of {size} bytes exceeds this server's max_json_request_bytes="
                f"{self.max_json_request_bytes} (parsing JSON costs many times its size); send smaller batches, "
                f"or the binary body (Content-Type application/x-chroma-binary) the Python client sends, "
                f"bounded by max_request_bytes={self.max_request_bytes} ({self.reported_at})")

    def check_batch(self, count: int, what: str) -> None:
        """Raises PayloadTooLarge when ``count`` entries of ``what`` exceed ``max_batch_size``."""
        if self.max_batch_size and count > self.max_batch_size:
            raise errors.PayloadTooLarge(
                f"{what} has {count} entries; this server accepts at most max_batch_size={self.max_batch_size} "
                f"per request ({self.reported_at})")

    def check_n_results(self, n_results: Any) -> None:
        """Raises PayloadTooLarge when an int ``n_results`` exceeds ``max_n_results`` (other values: Local's checks)."""
        if (self.max_n_results and isinstance(n_results, int) and not isinstance(n_results, bool)
                and n_results > self.max_n_results):
            raise errors.PayloadTooLarge(
                f"n_results={n_results} exceeds this server's max_n_results={self.max_n_results} "
                f"({self.reported_at})")

    def check_query(self, queries: int, n_results: Any) -> None:
        """Raises PayloadTooLarge when ``queries`` x an int ``n_results`` exceed ``max_response_rows``
        (checked as asked, before any search: fewer matches would give fewer rows)."""
        if (self.max_response_rows and isinstance(n_results, int) and not isinstance(n_results, bool)
                and queries * n_results > self.max_response_rows):
            raise errors.PayloadTooLarge(
                f"{queries} queries x n_results={n_results} ask for {queries * n_results} results; this server "
                f"answers at most max_response_rows={self.max_response_rows} per request: send fewer queries "
                f"per request or a smaller n_results ({self.reported_at})")

    def get_limit(self, limit: Any) -> Any:
        """The ``limit`` to read a get with: one row past ``max_response_rows`` at most, so that
        :meth:`check_get_rows` can tell a get over the bound without reading all it matches.
        Values that are not ints in Local's range go through unchanged, for Local to refuse."""
        is_int = isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit <= INT64_MAX
        if not self.max_response_rows or not (limit is None or is_int):
            return limit
        return self.max_response_rows + 1 if limit is None or limit > self.max_response_rows else limit

    def check_get_rows(self, rows: int) -> None:
        """Raises PayloadTooLarge when a get read with :meth:`get_limit` found more than ``max_response_rows``."""
        if self.max_response_rows and rows > self.max_response_rows:
            raise errors.PayloadTooLarge(
                f"get matches more than max_response_rows={self.max_response_rows} rows, the most this server "
                f"answers per request: page with limit and offset ({self.reported_at})")

    def deadline_exceeded(self, what: str) -> errors.DeadlineExceeded:
        """The error for a call that ran past ``request_timeout``; ``what`` names the call."""
        return errors.DeadlineExceeded(
            f"{what} ran past this server's request_timeout={self.request_timeout:g} s and was abandoned; "
            "a write's outcome is unknown (it may still have been committed): check before repeating it")
