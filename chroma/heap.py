"""Handing the memory that bulk work freed back to the system.

Two allocators keep what is freed, for reuse, as resident pages:

- glibc keeps what a thread frees in that thread's arena and gives back only
  the free space at the top of each heap. The derived state's bulk steps (a
  batch inserted into the index on the derived-update thread and the core's
  pool, a collection's metadata columns or texts loaded in chunks of Python
  objects, the label map's index by id) leave freed chunks between live ones.
  ``malloc_trim(0)`` returns every whole free page of every arena.
- DuckDB's own jemalloc keeps the pages its statements free (results of the
  loads, each batch's transaction): 10-17 MB beside its buffer pool after the
  reads of ``benchmarks/bench_vs_chromadb.py``'s 100,000 x 128 set. Its
  ``allocator_*`` settings did not hand them back there (they flush on bulk
  frees or per worker thread, and these statements free in small pieces on the
  caller's thread), so its ``arena.<all>.purge`` control is called directly,
  where the DuckDB build exports it; elsewhere this part does nothing.

Both walk their free lists once, so they run after steps of many items only,
never per small write.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any, Optional

BULK_ITEMS = 1_000
"""Items from which a step counts as bulk work worth handing memory back."""

_ALL_ARENAS = b"arena.4096.purge"
"""jemalloc's MALLCTL_ARENAS_ALL (4096)."""


def _malloc_trim() -> Optional[Any]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc's; musl has none
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()
_duckdb_mallctl: Any = None
"""DuckDB's ``duckdb_je_mallctl`` once looked up; False where there is none."""


def _duckdb_purge() -> None:
    global _duckdb_mallctl
    if _duckdb_mallctl is None:
        module = sys.modules.get("_duckdb")  # only once DuckDB is in use: never imported here
        if module is None:
            return
        try:
            _duckdb_mallctl = ctypes.CDLL(module.__file__).duckdb_je_mallctl
        except (OSError, AttributeError, TypeError):
            _duckdb_mallctl = False
    if _duckdb_mallctl:
        _duckdb_mallctl(_ALL_ARENAS, None, None, None, ctypes.c_size_t(0))


def give_back(items: int = BULK_ITEMS) -> None:
    """Returns the free pages of the C heap and of DuckDB's allocator to the system after a step
    over ``items`` items (nothing for fewer than ``BULK_ITEMS``, nor where the libraries cannot)."""
    if items < BULK_ITEMS:
        return
    if _TRIM is not None:
        _TRIM(0)
    _duckdb_purge()
