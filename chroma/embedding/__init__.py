"""The default embedding model: sentence-transformers/all-MiniLM-L6-v2, with no torch.

384 dimensions, mean pooling, L2-normalised (so cosine and inner product
agree), texts truncated to 256 tokens. ``tokenizers`` tokenizes,
``safetensors`` reads the weights, and the forward pass runs on numpy's BLAS
plus fused kernels of the compiled core (``chroma.embedding.model``). The
model's files come from ``CHROMA_EMBEDDING_MODEL_DIR``, our cache or a pinned,
checked download (``chroma.embedding.files``).

This package imports none of those dependencies until a text is embedded.
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

from chroma.embedding.files import MODEL_DIR_VARIABLE, MODEL_NAME, MODEL_REVISION
from chroma.validation import EMBEDDING_MODEL_KEY as MODEL_METADATA_KEY

MODEL_ID = f"{MODEL_NAME}@{MODEL_REVISION}"
DISABLED = "none"
"""``embedding_function="none"`` (per collection or as the setting): no default model."""

__all__ = ["DefaultEmbeddingFunction", "DISABLED", "MODEL_DIR_VARIABLE", "MODEL_ID", "MODEL_METADATA_KEY",
           "MODEL_NAME", "MODEL_REVISION", "embed", "ensure_available", "ensure_available_for"]


def embed(texts: List[str], max_tokens: Optional[int] = None) -> np.ndarray:
    """The default model's vectors of ``texts``, one float32 row each, by the process's one executor.

    Raises:
        EmbeddingModelUnavailable: the model's files cannot be had.
        PayloadTooLarge: more than ``max_tokens`` tokens.
    """
    from chroma.embedding.executor import default_embedder

    return default_embedder().embed(texts, max_tokens=max_tokens)


def ensure_available() -> None:
    """Loads the default model now (servers and workers at start-up), so that a missing model
    fails there rather than at the first request.

    Raises:
        EmbeddingModelUnavailable: the model's files cannot be had.
    """
    from chroma.embedding.executor import default_embedder

    default_embedder()


def ensure_available_for(setting: Optional[str]) -> None:
    """:func:`ensure_available` when the ``embedding_function`` setting leaves the default model on."""
    if setting is None:
        ensure_available()


class DefaultEmbeddingFunction:
    """The default model as an embedding function, for callers who want to pass it explicitly."""

    model = MODEL_ID

    def __call__(self, texts: List[str]) -> Any:
        return embed(list(texts))

    def __repr__(self) -> str:
        return f"DefaultEmbeddingFunction({MODEL_ID!r})"
