"""The process's one embedding executor: tokenizes, batches by length and runs the forward pass.

Every client and request of a process shares it (``default_embedder()``). The
forward pass already keeps every core busy, so calls take turns on a lock
rather than split the cores. A call works through its texts in chunks: while
one chunk runs through the model, a helper thread tokenizes the next, and no
more than those two chunks' tokens are held at once. Within a chunk the texts
are ordered by length and cut into batches of about ``BATCH_TOKENS`` real
tokens, which the forward pass computes without padding.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from chroma import errors
from chroma.embedding import files
from chroma.embedding.model import EMBEDDING_DIMENSION, MAX_TOKENS, Weights, encode_packed

CHUNK_TEXTS = 2048
"""Texts tokenized at a time; their token ids are all a call holds besides the next chunk's."""
BATCH_TOKENS = 4096
"""Real tokens per forward pass: enough rows for the matrix products to run near the cores' peak."""


class Embedder:
    """Texts to normalised 384-dimensional float32 vectors with all-MiniLM-L6-v2."""

    def __init__(self, directory: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise errors.MissingDependency(
                f"the default embedding model needs the package {exc.name!r}; pip install tokenizers safetensors"
            ) from None
        self.directory = directory
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self.weights = Weights.load(directory)
        self._lock = threading.Lock()

    def tokenize(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text, [CLS] and [SEP] included, truncated to MAX_TOKENS."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def embed(self, texts: Sequence[str], max_tokens: Optional[int] = None) -> np.ndarray:
        """One row per text.

        Raises:
            PayloadTooLarge: the texts hold more than ``max_tokens`` tokens (after truncation).
        """
        out = np.empty((len(texts), EMBEDDING_DIMENSION), dtype=np.float32)
        if not len(texts):
            return out
        with self._lock:
            seen = 0
            for start, token_ids in self._tokenized_chunks(texts):
                seen += sum(len(ids) for ids in token_ids)
                if max_tokens and seen > max_tokens:
                    raise errors.PayloadTooLarge(
                        f"the texts to embed hold more than {max_tokens} tokens, the server's max_embedding_tokens; "
                        "send fewer documents per request")
                for rows in length_batches(token_ids):
                    out[start + rows] = encode_packed(self.weights, [token_ids[i] for i in rows])
        return out

    def _tokenized_chunks(self, texts: Sequence[str]) -> Iterator[tuple[int, list[np.ndarray]]]:
        """``(first text's position, token ids)`` per chunk; the next chunk is tokenized on a
        helper thread while the caller runs this one through the model."""
        starts = range(0, len(texts), CHUNK_TEXTS)
        if len(starts) == 1:
            yield 0, self.tokenize(texts)
            return
        box: dict[str, object] = {}

        def tokenize_into(start: int) -> None:
            try:
                box["ids"] = self.tokenize(texts[start:start + CHUNK_TEXTS])
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        current = self.tokenize(texts[:CHUNK_TEXTS])
        for position, start in enumerate(starts):
            helper = None
            if position + 1 < len(starts):
                box.clear()
                helper = threading.Thread(target=tokenize_into, args=(starts[position + 1],), daemon=True,
                                          name="chroma-tokenize")
                helper.start()
            try:
                yield start, current
            finally:
                if helper is not None:
                    helper.join()
            if helper is not None:
                if "error" in box:
                    raise box["error"]  # type: ignore[misc]
                current = box["ids"]  # type: ignore[assignment]


def length_batches(token_ids: Sequence[np.ndarray], batch_tokens: int = BATCH_TOKENS) -> Iterator[np.ndarray]:
    """Positions of the texts, shortest first, cut into runs of about ``batch_tokens`` tokens."""
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    order = np.argsort(lengths, kind="stable")
    start, total = 0, 0
    for end, position in enumerate(order):
        total += int(lengths[position])
        if total >= batch_tokens:
            yield order[start:end + 1]
            start, total = end + 1, 0
    if start < len(order):
        yield order[start:]


_embedder: Optional[Embedder] = None
_embedder_lock = threading.Lock()


def default_embedder(download: bool = True) -> Embedder:
    """The process's embedder of the default model, loaded on first use.

    Raises:
        EmbeddingModelUnavailable: the model's files cannot be had (see chroma.embedding.files).
    """
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            _embedder = Embedder(files.resolve(download=download))
        return _embedder
