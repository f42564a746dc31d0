"""Checks of user input, shared by every API implementation.

Each check raises :class:`chroma.errors.InvalidArgument` (or a subclass) with
a message that names the bad value, and returns the input in the one form the
rest of chroma works with.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from chroma.errors import DuplicateIDError, InvalidArgument, InvalidDimensionError

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,61})[A-Za-z0-9]$")
RESERVED_PREFIXES = ("chroma:", "hnsw:")
EMBEDDING_MODEL_KEY = "chroma:embedding_model"
"""Collection metadata that the default model sets on the first documents it embeds (see chroma.embedding)."""
SPACES = ("l2", "cosine", "ip")
INDEX_INT_SETTINGS = ("hnsw:M", "hnsw:construction_ef", "hnsw:search_ef")
INDEX_INT_RANGES = {"hnsw:M": (2, 512), "hnsw:construction_ef": (1, 2048), "hnsw:search_ef": (1, 10_000)}
"""``[low, high]`` of each index setting (docs/limits.md). An HNSW node needs at least 2
links to form a graph. A build's time grows with ``construction_ef`` up to the
collection's size (docs/limits.md has the measured costs), so it is
capped where recall no longer gains; a search raises its ef to ``n_results`` anyway,
so ``search_ef`` needs no more than ``max_n_results``' default."""


def collection_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"invalid collection name {shown(name)}: use 3-63 characters of [A-Za-z0-9._-], "
            "starting and ending with a letter or digit"
        )
    return name


def name_argument(name: Any) -> str:
    """A name given to look a collection up: any string (a malformed one is simply not found)."""
    if not isinstance(name, str):
        raise InvalidArgument(f"collection name must be a string, got {shown(name)}")
    return text(name, "collection name")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def shown(value: Any) -> str:
    """A bad value for an error message: its repr, cut short (it may be large or nested deep)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= 200 else text[:200] + "..."


def json_loads(data: Any) -> Any:
    """``json.loads``, where JSON nested deeper than the parser can recurse is a ValueError like any
    other malformed JSON (not a RecursionError)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"nested more than {sys.getrecursionlimit()} levels deep (the limit)") from None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text(value: str, what: str) -> str:
    """``value`` if it can be stored: UTF-8 cannot hold a lone surrogate (JSON's "\\ud800" gives one)."""
    if not value.isascii() and not _utf8(value):
        raise InvalidArgument(f"{what}: {value!r} is not valid text: it holds a lone surrogate "
                              "(U+D800 to U+DFFF unpaired), which UTF-8 cannot encode")
    return value


def texts(values: list[str], what: str) -> list[str]:
    """``values`` if every one is storable text (see :func:`text`); one pass over them all."""
    joined = "".join(values)
    if not joined.isascii() and not _utf8(joined):
        for value in values:
            text(value, what)
    return values


def int64_or_not_int(value: Any) -> bool:
    """False only for an int outside the range a typed int64 column stores."""
    return isinstance(value, bool) or not isinstance(value, int) or INT64_MIN <= value <= INT64_MAX


def _metadata_value(key: str, value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(f"{where}: value of {key!r} must be finite, got {value!r}")
    if not int64_or_not_int(value):
        raise InvalidArgument(f"{where}: value of {key!r} is outside the int64 range, got {value!r}")
    if not isinstance(value, (str, int, float, bool)):
        raise InvalidArgument(
            f"{where}: value of {key!r} must be str, int, float or bool, got {type(value).__name__} {shown(value)}"
        )
    if isinstance(value, str):
        text(value, f"{where}: value of {key!r}")


def _metadata_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"{where}: keys must be non-empty strings, got {shown(key)}")
    text(key, f"{where} key")


def item_metadata(metadata: Any, where: str = "metadata") -> Optional[dict]:
    """An item's metadata dict (or None), checked and copied."""
    if metadata is None:
        return None
    if type(metadata) is not dict and not isinstance(metadata, Mapping):
        raise InvalidArgument(f"{where} must be a dict or None, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if type(key) is not str or not key:
            _metadata_key(key, where)
        if not key.isascii():
            text(key, f"{where} key")
        if key.startswith(RESERVED_PREFIXES):
            raise InvalidArgument(f"{where}: key {key!r} is reserved (keys may not start with 'chroma:' or 'hnsw:')")
        # the common plain values first, by exact type (a batch checks every value of every item)
        kind = type(value)
        if not ((kind is str and value.isascii()) or kind is bool or (kind is int and INT64_MIN <= value <= INT64_MAX)
                or (kind is float and math.isfinite(value))):
            _metadata_value(key, value, where)
    return dict(metadata)


def collection_metadata(metadata: Any) -> Optional[dict]:
    """A collection's metadata (or None): item rules, plus the index settings."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidArgument(f"collection metadata must be a dict or None, got {type(metadata).__name__}")
    for key, value in metadata.items():
        _metadata_key(key, "collection metadata")
        if key == "hnsw:space":
            if value not in SPACES:
                raise InvalidArgument(f"collection metadata: hnsw:space must be one of {SPACES}, got {shown(value)}")
        elif key in INDEX_INT_SETTINGS:
            low, high = INDEX_INT_RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidArgument(f"collection metadata: {key} must be an int in [{low}, {high}], got {shown(value)}")
        elif key == EMBEDDING_MODEL_KEY:
            if not isinstance(value, str):
                raise InvalidArgument(f"collection metadata: {key} must be a string, got {shown(value)}")
        elif key.startswith(RESERVED_PREFIXES):
            allowed = ", ".join(("hnsw:space", EMBEDDING_MODEL_KEY) + INDEX_INT_SETTINGS)
            raise InvalidArgument(f"collection metadata: unknown reserved key {key!r}; allowed: {allowed}")
        else:
            _metadata_value(key, value, "collection metadata")
    return dict(metadata)


def space_of(metadata: Optional[Mapping]) -> str:
    return (metadata or {}).get("hnsw:space", "l2")


def ids(values: Any, what: str = "ids") -> list[str]:
    """A non-empty list of distinct, non-empty string ids; one id alone is a list of one."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, Sequence):
        raise InvalidArgument(f"{what} must be a list of strings, got {type(values).__name__}")
    out = list(values)
    if not out:
        raise InvalidArgument(f"{what} must not be empty")
    for value in out:
        if not isinstance(value, str) or not value:
            raise InvalidArgument(f"{what} must be non-empty strings, got {shown(value)}")
    texts(out, what)
    if len(set(out)) != len(out):
        seen: set[str] = set()
        repeated = sorted({v for v in out if v in seen or seen.add(v)})
        raise DuplicateIDError(f"ids repeated in the batch: {', '.join(repr(i) for i in repeated[:10])}")
    return out


def id_filter(values: Any) -> Optional[list[str]]:
    """ids used to select (get/delete): may be empty; repeats are dropped."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, Sequence):
        raise InvalidArgument(f"ids must be a list of strings, got {type(values).__name__}")
    for value in values:
        if not isinstance(value, str):
            raise InvalidArgument(f"ids must be strings, got {shown(value)}")
    return list(dict.fromkeys(texts(list(values), "ids")))


def _row_lengths(values: Any) -> set[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        return set()
    return {len(row) for row in values if isinstance(row, (Sequence, np.ndarray)) and not isinstance(row, str)}


_NOT_NUMBERS = {"b": "true or false values", "U": "strings", "S": "bytes", "c": "complex numbers"}
"""The numpy kinds of an array of values that are not real numbers, as an error names them."""


def embeddings(values: Any, count: Optional[int] = None, what: str = "embeddings") -> np.ndarray:
    """A C-contiguous float32 (n, d) array; a 1-D input is one row.

    Raises InvalidDimensionError for rows of different lengths, InvalidArgument
    for anything else that is not finite numbers.
    """
    try:
        array = np.asarray(values)
        if array.dtype.kind in _NOT_NUMBERS:
            # numpy would read "1.5" or True as a number; what it cannot read keeps numpy's error
            np.asarray(values, dtype=np.float32)
            raise TypeError(f"it holds {_NOT_NUMBERS[array.dtype.kind]}")
        array = array.astype(np.float32, copy=False)
    except (TypeError, ValueError) as exc:
        lengths = _row_lengths(values)
        if len(lengths) > 1:
            raise InvalidDimensionError(f"{what} rows have different dimensions: {sorted(lengths)}") from None
        raise InvalidArgument(f"{what} must be numbers of one dimension per row: {exc}") from None
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] == 0:
        raise InvalidArgument(f"{what} must be a 2-D array or a list of non-empty lists, got shape {array.shape}")
    if count is not None and array.shape[0] != count:
        raise InvalidArgument(f"{what} has {array.shape[0]} rows for {count} ids")
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise InvalidArgument(f"{what} row {bad} holds NaN or inf")
    return np.ascontiguousarray(array)


def embeddings_with_gaps(values: Any, count: int) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(array, missing)`` for a write: a list may hold ``None`` rows (no vector).

    ``missing`` is a boolean mask of those rows (their array rows are zeros),
    or None when every row has a vector.
    """
    if values is None:
        return None, None
    if isinstance(values, (list, tuple)) and any(v is None for v in values):
        if len(values) != count:
            raise InvalidArgument(f"embeddings has {len(values)} rows for {count} ids")
        present = [i for i, v in enumerate(values) if v is not None]
        missing = np.ones(count, dtype=bool)
        missing[present] = False
        if not present:
            return None, None
        rows = embeddings([values[i] for i in present])
        full = np.zeros((count, rows.shape[1]), dtype=np.float32)
        full[present] = rows
        return full, missing
    return embeddings(values, count), None


def per_item(values: Any, count: int, what: str, check) -> Optional[list]:
    """A list with one checked entry per id (entries may be None); a single document (str) or
    metadata (dict) is a list of one."""
    if values is None:
        return None
    if isinstance(values, (str, Mapping)):
        values = [values]
    if not isinstance(values, Sequence):
        raise InvalidArgument(f"{what} must be a list with one entry per id, got {type(values).__name__}")
    out = list(values)
    if len(out) != count:
        raise InvalidArgument(f"{what} has {len(out)} entries for {count} ids")
    return [check(v) for v in out]


def document(value: Any) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"documents must be strings or None, got {type(value).__name__} {shown(value)}")
    return value if value is None else text(value, "documents")


def include(values: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    # list and tuple first: the Sequence ABC check costs a microsecond on every query
    if type(values) not in (list, tuple) and (isinstance(values, str) or not isinstance(values, Sequence)):
        raise InvalidArgument(f"include must be a list drawn from {list(allowed)}, got {shown(values)}")
    for value in values:
        if value not in allowed:
            raise InvalidArgument(f"include: {shown(value)} is not one of {list(allowed)}")
    return tuple(dict.fromkeys(values))


def flag(value: Any, what: str) -> bool:
    """A true-or-false argument: no other value stands for one."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgument(f"{what} must be true or false, got {shown(value)}")
    return bool(value)


def count_argument(value: Any, what: str, minimum: int, optional: bool) -> Optional[int]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= INT64_MAX:
        raise InvalidArgument(f"{what} must be an int in [{minimum}, 2**63 - 1], got {shown(value)}")
    return int(value)
