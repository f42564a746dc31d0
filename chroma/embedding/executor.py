"""The process's one embedding executor: tokenizes, batches by length and runs the forward pass.

Every client and request of a process shares it (``default_embedder()``). A
call keeps every core busy, so calls take turns on a lock rather than split
the cores. A call works through its texts in chunks: while one chunk runs
through the model, a helper thread tokenizes the next, and no more than those
two chunks' tokens are held at once. Within a chunk the texts are ordered by
length and cut into batches of about ``BATCH_TOKENS`` real tokens, which the
forward pass computes without padding.

The batches run one per core, each wholly on its thread (numpy's matrix
products and the compiled kernels alike), with numpy's BLAS held to one thread
for the call (threadpoolctl); a chunk with the tokens for it is cut into at
least a batch per core. A BLAS that splits each matrix product over the cores
makes them wait for each other at the end of every product, and on a shared
or busy machine a core that is taken away stalls the other one at each of
those waits (docs/embedding.md has the measurements). Independent batches never wait for each other. When the
BLAS cannot be held to one thread (no threadpoolctl, or a BLAS it does not
know), the batches run one after the other, each on every core.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from chroma import errors
from chroma.embedding import files
from chroma.embedding.model import EMBEDDING_DIMENSION, MAX_TOKENS, Weights, encode_packed

log = logging.getLogger(__name__)

CHUNK_TEXTS = 2048
"""Texts tokenized at a time; their token ids are all a call holds besides the next chunk's."""
BATCH_TOKENS = 4096
"""Real tokens per forward pass: enough rows for the matrix products to run near a core's peak."""
MIN_BATCH_TOKENS = 256
"""Fewer tokens than this are not split further to give every core a batch."""


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
        self._blas = _blas_controller()

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
                self._encode_chunk(token_ids, out[start:start + len(token_ids)])
        return out

    def _encode_chunk(self, token_ids: Sequence[np.ndarray], out: np.ndarray) -> None:
        """``out[i]`` = the vector of ``token_ids[i]``: a batch per core, each wholly on its thread."""
        if self._blas is None:  # a BLAS we cannot hold to one thread: it takes every core per product
            for rows in length_batches(token_ids, BATCH_TOKENS):
                out[rows] = encode_packed(self.weights, [token_ids[i] for i in rows])
            return
        cores = _core_threads()
        tokens = sum(len(ids) for ids in token_ids)
        # At least a batch per core when the chunk has the tokens for it (a small chunk or a
        # query stays one batch on the caller's thread).
        batch_tokens = max(MIN_BATCH_TOKENS, min(BATCH_TOKENS, -(-tokens // cores)))
        batches = list(length_batches(token_ids, batch_tokens))
        workers = min(len(batches), cores)
        with self._blas.limit(limits=1, user_api="blas"):
            if workers <= 1:
                for rows in batches:
                    out[rows] = encode_packed(self.weights, [token_ids[i] for i in rows], parallel=False)
            else:
                self._encode_in_parallel(token_ids, batches, workers, out)

    def _encode_in_parallel(self, token_ids: Sequence[np.ndarray], batches: list[np.ndarray], workers: int,
                            out: np.ndarray) -> None:
        # Longest texts first: their batches cost the most (attention grows with length), so the
        # last batches to finish are the cheap ones and no core idles long at the chunk's end.
        pending = iter(reversed(batches))
        take = threading.Lock()
        failures: list[BaseException] = []

        def work() -> None:
            while not failures:
                with take:
                    rows = next(pending, None)
                if rows is None:
                    return
                try:
                    out[rows] = encode_packed(self.weights, [token_ids[i] for i in rows], parallel=False)
                except BaseException as exc:  # handed to the caller below
                    failures.append(exc)

        helpers = [threading.Thread(target=work, daemon=True, name="chroma-embed") for _ in range(workers - 1)]
        for helper in helpers:
            helper.start()
        try:
            work()
        finally:
            for helper in helpers:
                helper.join()
        if failures:
            raise failures[0]

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


def _core_threads() -> int:
    """The cores the compiled core may use (``num_threads`` / ``CHROMA_NUM_THREADS``, else all)."""
    from chroma import _core

    return int(_core.thread_count())


def _blas_controller() -> Optional[Any]:
    """threadpoolctl's handle on numpy's BLAS, or None when there is none it can set."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController()
    if not controller.select(user_api="blas").lib_controllers:
        log.info("numpy's BLAS is not one threadpoolctl can set: embedding batches run one at a time")
        return None
    return controller


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
