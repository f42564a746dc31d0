"""Compiled vector core of chroma (C++ / pybind11).

SIMD kernels (AVX-512, AVX2 or portable C++, chosen at run time), exact top-k
search over a float32 matrix, and ``FlatIndex``, an exact index that owns its
vectors. Distances:

* ``"l2"``: squared Euclidean distance, summed as ``sum((x - q) ** 2)`` so an
  identical vector is at exactly ``0.0``.
* ``"ip"``: ``1 - dot(x, q)``.
* ``"cosine"``: ``1 - dot(x, q) / (|x| |q|)``; a zero vector has similarity 0
  (distance 1) to everything.

Results are ordered nearest first; equal distances are ordered by lower row
index (``exact_search``) or lower internal row (``FlatIndex``). Every
computation releases the GIL.
"""

from typing import Optional

import numpy as np
import numpy.typing as npt

def simd_path() -> str:
    """The SIMD path in use: ``"avx512"``, ``"avx2"`` or ``"portable"``.

    At import it is taken from the ``CHROMA_SIMD`` environment variable if set
    (an invalid value makes the import fail with ValueError), otherwise the
    best path the CPU supports.
    """

def available_simd_paths() -> list[str]:
    """Paths this CPU can run, slowest first, e.g. ``["portable", "avx2", "avx512"]``."""

# chroma.embedding's fused encoder kernels (csrc/embedding_ops.h); every array
# is float32, C-contiguous and written in place.
def embedding_simd_path(name: str = "") -> str:
    """The instruction set of the embedding kernels; a name (portable, avx2, avx512) switches to it."""

def embedding_bias_gelu(x: npt.NDArray[np.float32], bias: npt.NDArray[np.float32], parallel: bool = True) -> None:
    """x = gelu(x + bias), the exact (erf) GELU; on the core's threads, or the caller's only."""

def embedding_residual_layer_norm(x: Optional[npt.NDArray[np.float32]], bias: npt.NDArray[np.float32],
                                  hidden: npt.NDArray[np.float32], gamma: npt.NDArray[np.float32],
                                  beta: npt.NDArray[np.float32], eps: float, parallel: bool = True) -> None:
    """hidden = layer_norm(x + bias + hidden) * gamma + beta (x None: of hidden + bias)."""

def embedding_attention(qkv: npt.NDArray[np.float32], qkv_bias: npt.NDArray[np.float32],
                        offsets: npt.NDArray[np.int64], ctx: npt.NDArray[np.float32], heads: int,
                        parallel: bool = True) -> None:
    """ctx = multi-head self-attention of the packed sequences (rows offsets[s]..offsets[s+1])."""

def thread_count() -> int:
    """Threads the core's parallel work (searches, index builds) uses.

    ``CHROMA_NUM_THREADS``, when a positive integer at the core's first
    parallel call, caps it for the whole process (one thread makes HNSW
    builds reproducible); otherwise one per hardware thread.
    """

def set_simd_path(name: str) -> None:
    """Force a SIMD path for every later call, process-wide.

    Raises ValueError naming the value and the allowed paths if ``name`` is
    unknown or not supported by this CPU.
    """

def distances(
    space: str, x: npt.ArrayLike, y: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """Pairwise distances: ``out[i, j] = dist(x[i], y[j])``, shape ``(n, m)``.

    ``x`` is ``(n, d)`` (or ``(d,)`` for one vector) and ``y`` is ``(m, d)``;
    both are converted to float32 if needed. ``space`` is ``"l2"``, ``"ip"`` or
    ``"cosine"`` (anything else: ValueError).
    """

def exact_search(
    data: npt.NDArray[np.float32],
    queries: npt.ArrayLike,
    k: int,
    space: str,
    allowed: Optional[npt.ArrayLike] = None,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Exact k nearest rows of ``data`` for each query.

    Args:
        data: ``(n, d)`` float32, C-contiguous. It is scanned in place and never
            copied: another dtype raises TypeError, a non-contiguous or non-2-D
            array raises ValueError.
        queries: ``(m, d)`` (or ``(d,)`` for one query); converted to float32.
        k: number of neighbours, > 0 (else ValueError).
        space: ``"l2"``, ``"ip"`` or ``"cosine"``.
        allowed: optional row indices to restrict the search to, any order;
            duplicates are ignored, an index outside ``[0, n)`` raises ValueError.
        num_threads: worker threads; 0 means all hardware threads. Small
            searches run on the calling thread regardless.

    Returns:
        ``(ids, distances)``, both of shape ``(m, k')`` with
        ``k' = min(k, number of candidate rows)``, nearest first, ties broken
        by lower row index. ``n == 0`` or an empty ``allowed`` gives ``(m, 0)``.
    """

class FlatIndex:
    """An exact (brute-force) index that owns its vectors, keyed by int64 labels.

    Thread-safe: searches run concurrently under a shared lock; ``add`` and
    ``remove`` take an exclusive lock. For ``"cosine"`` the vectors are stored
    normalized. A vector of the wrong dimension raises ValueError naming the
    expected and received dimension.
    """

    def __init__(self, dim: int, space: str) -> None:
        """Create an empty index for ``dim``-dimensional vectors (``dim`` > 0)."""

    @property
    def dim(self) -> int:
        """Vector dimension."""

    @property
    def space(self) -> str:
        """``"l2"``, ``"ip"`` or ``"cosine"``."""

    def __len__(self) -> int:
        """Number of stored vectors."""

    def __contains__(self, label: int) -> bool: ...
    def add(self, labels: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert or overwrite vectors.

        ``labels`` is ``(n,)`` int64 (safely castable input is accepted, e.g.
        int32 or a list of ints; floats raise TypeError), ``vectors`` is
        ``(n, dim)`` and converted to float32. A label already present has its
        vector replaced in place; if a label repeats within one call the last
        occurrence wins.
        """

    def remove(self, labels: npt.ArrayLike) -> None:
        """Remove vectors by label; unknown labels are ignored. O(1) each
        (the last row is moved into the hole, so row order is not stable)."""

    def contains(self, label: int) -> bool:
        """Whether ``label`` is stored."""

    def labels(self) -> npt.NDArray[np.int64]:
        """All stored labels, in internal row order (arbitrary)."""

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        allowed: Optional[npt.ArrayLike] = None,
        num_threads: int = 0,
        _two_pass: Optional[bool] = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Exact k nearest stored vectors per query, like :func:`exact_search`
        but returning labels.

        ``allowed`` is an optional list of labels to restrict the search to
        (unknown labels and duplicates are ignored). Returns
        ``(labels, distances)`` of shape ``(m, k')`` with
        ``k' = min(k, number of candidates)``, nearest first.

        For few queries (fewer than 3/4 of the SIMD lane group: 24 on avx512,
        12 on avx2, 6 on portable), ``dim >= 16`` and at least 4096 candidate
        rows, the index first scans a 4-bit copy of its vectors with
        guaranteed error bounds and computes exactly only the rows that can
        still be in the top k; the result is identical to the plain scan.

        ``_two_pass`` is internal (tests, benchmarks): ``None`` chooses as
        above, ``False`` forces the plain scan, ``True`` the two-pass search
        wherever its result is identical to the plain scan (the query count
        condition above; a query with non-finite or huge values always takes
        the plain scan).
        """

    def _search_stats(
        self,
        queries: npt.ArrayLike,
        k: int,
        allowed: Optional[npt.ArrayLike] = None,
        num_threads: int = 0,
        _two_pass: Optional[bool] = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Internal: :meth:`search` plus, per query, the number of rows the
        two-pass search computed exactly (0 where the plain scan ran)."""

    @property
    def _quant_bytes(self) -> int:
        """Internal: bytes held by the 4-bit copy (``dim`` rounded up to a
        multiple of 8, half a byte each, plus 12 bytes of scale, error bound
        and norm per row)."""

class IndexFileError(ValueError):
    """A file given to :meth:`HnswIndex.load` is truncated, corrupted, of another format version, or no index file."""

class IndexIOError(OSError):
    """An index file cannot be opened, read or written."""

class AllowList:
    """A set of int64 labels for filtered search (:meth:`HnswIndex.search`).

    Built in C++ in one pass over ``labels`` (a bitset over the label range
    when that range is at most ~64x the number of labels, otherwise sorted
    labels); reusable across searches. Floats raise TypeError.
    """

    def __init__(self, labels: npt.ArrayLike) -> None: ...
    def __len__(self) -> int:
        """Distinct labels."""

    def __contains__(self, label: int) -> bool: ...

class HnswIndex:
    """An approximate index: a hierarchical navigable small-world graph keyed
    by int64 labels (``csrc/hnsw.h``). Beside each vector it keeps an int8
    copy (``dim`` rounded up to even bytes plus 12 bytes a node, ~18% of a
    node at 128 dims) for its exact path; it is derived from the vectors,
    also when an index is loaded, and not saved.

    Thread-safe: searches run concurrently with each other and with inserts
    of new labels; replacing the vector of a live label and ``remove`` wait
    for running searches. ``"cosine"`` stores unit vectors. Every call
    releases the GIL; ``add`` and ``search`` spread their items over
    ``num_threads`` threads (0: all cores).
    """

    def __init__(
        self, dim: int, space: str, M: int = 16, ef_construction: int = 100, ef_search: int = 64
    ) -> None:
        """An empty index. ``M`` (2..512) is the number of links per node and
        level (``2*M`` on level 0), ``ef_construction`` the candidate list
        size while inserting, ``ef_search`` the default candidate list size of
        searches. Bad values raise ValueError naming them."""

    @property
    def dim(self) -> int: ...
    @property
    def space(self) -> str: ...
    @property
    def M(self) -> int: ...
    @property
    def ef_construction(self) -> int: ...
    @property
    def ef_search(self) -> int:
        """Default ef of :meth:`search`; settable (positive, else ValueError)."""

    @ef_search.setter
    def ef_search(self, value: int) -> None: ...
    def __len__(self) -> int:
        """Live (searchable) labels."""

    def __contains__(self, label: int) -> bool: ...
    def contains(self, label: int) -> bool: ...
    def labels(self) -> npt.NDArray[np.int64]:
        """Live labels, sorted."""

    def add(self, labels: npt.ArrayLike, vectors: npt.ArrayLike, num_threads: int = 0) -> None:
        """Insert ``(n,)`` labels with ``(n, dim)`` vectors, in parallel.

        A label already present has its vector replaced in place and its links
        rebuilt; if a label repeats within one call the last occurrence wins.
        New labels reuse the slots of removed ones before the index grows.
        """

    def remove(self, labels: npt.ArrayLike) -> None:
        """Remove labels (unknown ones are ignored). The nodes stay in the
        graph as waypoints, hidden from results, until their slots are reused."""

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        allowed: Optional[npt.ArrayLike | AllowList] = None,
        ef: Optional[int] = None,
        num_threads: int = 0,
        _plan: Optional[str] = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Approximate k nearest labels per query: ``(labels, distances)``,
        each ``(m, k')`` with ``k' = min(k, candidates)``, nearest first.

        ``allowed`` (labels, or an :class:`AllowList`) restricts the answer
        to those labels; it is tested inside the graph walk, which goes on
        until it holds ``min(ef, max(k, ef // 4, ceil(3 * ef * s)))`` allowed
        results for selectivity ``s`` (allowed / live labels), so it visits
        about ``3 * ef`` nodes; a walk that finds fewer than ``k`` is answered
        by exact search, so a filter never shortens the answer. ``ef``
        defaults to :attr:`ef_search` and is raised to ``k``.

        A planner answers by exact search where that is expected to be faster
        (always at most 1024 candidates; csrc/hnsw.h ``use_exact`` gives its
        cost model): few allowed labels for a single query (up to ~3% of
        100,000), and up to ~20% for a batch, whose queries share each pass
        over the rows. Exact search first scans an int8 copy of the vectors
        with a guaranteed error bound per row and recomputes in float32 only
        the rows that can be in the top k: the answer is that of a float32
        scan, bit for bit. ``_plan`` (``"auto"``, ``"graph"``, ``"exact"``, or
        ``"scan"``: exact search reading the float32 vectors only) forces a
        path, for tests and benchmarks.
        """

    def _search_stats(
        self,
        queries: npt.ArrayLike,
        k: int,
        allowed: Optional[npt.ArrayLike | AllowList] = None,
        ef: Optional[int] = None,
        num_threads: int = 0,
        _plan: Optional[str] = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Internal: :meth:`search` plus, per query, the number of rows the
        exact search's second pass recomputed in float32 (0 where the walk or
        a float32 scan answered)."""

    def save(self, path: str) -> None:
        """Write the index to ``path`` atomically: ``path + ".tmp"`` is written,
        fsynced and renamed over ``path``. Waits for running writes. The file
        (format version 1) holds a header with its own checksum and the
        payload's, then labels, flags, levels, link lists, vectors and the
        free slots. IndexIOError if it cannot be written."""

    @staticmethod
    def load(path: str) -> "HnswIndex":
        """Read a file written by :meth:`save` in one read. Checksums, sizes,
        link ids, levels and counts are all checked before anything is built:
        a truncated, bit-flipped or foreign file raises IndexFileError, never
        a crash. IndexIOError if it cannot be read."""

    @property
    def _slots(self) -> int:
        """Internal: node slots allocated (live, removed awaiting reuse, or being inserted)."""
