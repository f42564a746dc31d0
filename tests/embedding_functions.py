"""Embedding functions that tests name by path (``chroma.configure(embedding_function="embedding_functions:hashed")``),
as workers and servers load them; not a test module itself."""

from __future__ import annotations

import hashlib

import numpy as np

DIMENSION = 8


def hashed(texts: list[str]) -> np.ndarray:
    """A deterministic vector per text, from its SHA-256."""
    rows = [np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8)[:DIMENSION] for text in texts]
    return (np.array(rows, dtype=np.float32) - 128.0) / 128.0


def other(texts: list[str]) -> np.ndarray:
    """Another function than :func:`hashed` (workers configured with it must refuse hashed's work)."""
    return -hashed(texts)
