"""A local stand-in for the Hugging Face hub (not a test module itself): an HTTP server on
127.0.0.1 that serves the default model's files at the hub's resolve URLs, for huggingface_hub
pointed at it through ``HF_ENDPOINT``, in the test process or in processes the test starts."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from pathlib import Path
from typing import Iterator

from chroma.embedding import files
from model_files import model_dir

REPO_PREFIX = f"/{files.MODEL_NAME}/resolve/{files.MODEL_REVISION}/"


class Hub(http.server.ThreadingHTTPServer):
    """Serves the model's files as the hub's resolve URLs do; ``mode`` spoils model.safetensors."""

    daemon_threads = True

    def __init__(self, source: Path, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.source, self.mode = source, mode
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(http.server.BaseHTTPRequestHandler):
    server: Hub

    def log_message(self, *args) -> None:  # quiet
        pass

    def _content(self) -> bytes | None:
        if not self.path.startswith(REPO_PREFIX):
            return None
        name = self.path[len(REPO_PREFIX):]
        if name not in files.MODEL_FILES:
            return None
        data = (self.server.source / name).read_bytes()
        if name == "model.safetensors" and self.server.mode == "corrupt":
            data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        if name == "model.safetensors" and self.server.mode == "truncated":
            data = data[: len(data) // 2]
        return data

    def _headers(self, data: bytes) -> None:
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("X-Repo-Commit", files.MODEL_REVISION)
        self.send_header("Accept-Ranges", "none")
        self.end_headers()

    def _answer_headers(self) -> bytes | None:
        """Sends the status and headers of the requested file; its content, or None after a 404."""
        self.server.requests.append(f"{self.command} {self.path}")
        data = self._content()
        if data is None:
            self.send_error(404)
            return None
        self.send_response(200)
        self._headers(data)
        return data

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer_headers()

    def do_GET(self) -> None:  # noqa: N802
        data = self._answer_headers()
        if data is None:
            return
        if self.server.mode == "dies" and self.path.endswith("model.safetensors"):
            self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            self.server.socket.close()  # nothing answers any more, not even a retry
            self.connection.shutdown(2)
            return
        self.wfile.write(data)


@contextlib.contextmanager
def hub(mode: str, monkeypatch) -> Iterator[Hub]:
    """A hub serving in ``mode`` on a thread, with HF_ENDPOINT pointing at it, for the block."""
    server = Hub(model_dir(), mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
