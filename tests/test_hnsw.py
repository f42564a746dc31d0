"""The compiled HNSW index (chroma._core.HnswIndex) against exact ground truth.

Data sets are small (a few thousand vectors) so the file stays fast; recall is
always measured against exact search over the same rows.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from chroma import _core

DIM = 24
EF = 128
"""Search ef of the graph-recall checks: this data is hard (hnswlib also needs 128 for 0.95+)."""


def mixture(n: int, seed: int, dim: int = DIM, clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32) * 3
    return (centers[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return mixture(4000, 1), mixture(100, 2)


def built(vectors: np.ndarray, space: str = "l2", labels=None, **kwargs) -> _core.HnswIndex:
    """An index built on one thread: the graph (levels are drawn per label) and so the recall are reproducible."""
    index = _core.HnswIndex(vectors.shape[1], space, **kwargs)
    index.add(np.arange(len(vectors)) if labels is None else labels, vectors, num_threads=1)
    return index


@pytest.mark.parametrize("space", ["l2", "ip", "cosine"])
def test_graph_recall_against_exact_search(data, space):
    vectors, queries = data
    if space == "ip":  # inner product search is meant for unit vectors (it is no metric otherwise)
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = built(vectors, space)
    truth, _ = _core.exact_search(vectors, queries, 10, space)
    labels, distances = index.search(queries, 10, ef=EF, _plan="graph")
    assert labels.shape == (len(queries), 10)
    assert recall(labels, truth) >= 0.95
    assert np.all(np.diff(distances, axis=1) >= 0)
    # distances come from the same kernels as exact search
    exact_of_found = _core.distances(space, queries[:1], vectors[labels[0]])[0]
    np.testing.assert_allclose(distances[0], exact_of_found, rtol=1e-4, atol=1e-4)


def test_recall_grows_with_ef(data):
    vectors, queries = data
    index = built(vectors, M=8, ef_construction=40)
    truth, _ = _core.exact_search(vectors, queries, 10, "l2")
    low = recall(index.search(queries, 10, ef=10, _plan="graph")[0], truth)
    high = recall(index.search(queries, 10, ef=200, _plan="graph")[0], truth)
    assert high >= 0.95 and high > low + 0.1


def test_small_index_is_answered_exactly(data):
    vectors, queries = data
    index = built(vectors[:500])
    truth, truth_distances = _core.exact_search(vectors[:500], queries, 7, "l2")
    labels, distances = index.search(queries, 7, ef=1)  # ef 1 would miss neighbours in a walk
    np.testing.assert_array_equal(labels, truth)
    np.testing.assert_allclose(distances, truth_distances, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01, 0.002])
@pytest.mark.parametrize("plan", ["auto", "graph"])
def test_filter_never_shortens_and_keeps_recall(data, fraction, plan):
    vectors, queries = data
    index = built(vectors)
    rng = np.random.default_rng(3)
    allowed = rng.choice(len(vectors), max(1, int(len(vectors) * fraction)), replace=False)
    k = 10
    truth, _ = _core.exact_search(vectors, queries, k, "l2", allowed=allowed)
    labels, _ = index.search(queries, k, allowed=allowed, ef=EF, _plan=plan)
    assert labels.shape == (len(queries), min(k, len(allowed)))
    assert set(labels.ravel().tolist()) <= set(allowed.tolist())
    assert recall(labels, truth) >= 0.99


def test_allow_list_object_and_unknown_labels(data):
    vectors, queries = data
    index = built(vectors)
    allowed = np.array([5, 17, 1_000_000, 17, -3], dtype=np.int64)
    allow = _core.AllowList(allowed)
    assert len(allow) == 4 and 17 in allow and 6 not in allow
    for plan in ("graph", "exact", "auto"):
        labels, _ = index.search(queries[:3], 10, allowed=allow, _plan=plan)
        assert labels.shape == (3, 2)
        assert all(set(row) == {5, 17} for row in labels.tolist())
    sparse = _core.AllowList(np.array([2**62, 3, -(2**62)]))  # the sorted (not bitset) form
    assert 3 in sparse and 2**62 in sparse and 4 not in sparse


def test_delete_hides_labels_and_reuses_slots(data):
    vectors, queries = data
    index = built(vectors[:3000])
    gone = np.arange(0, 3000, 2)
    index.remove(gone)
    index.remove(np.array([123456789]))  # unknown: ignored
    assert len(index) == 1500 and 0 not in index and 1 in index
    kept = np.arange(1, 3000, 2)
    truth, _ = _core.exact_search(vectors[:3000], queries, 10, "l2", allowed=kept)
    labels, _ = index.search(queries, 10, ef=EF, _plan="graph")
    assert not set(labels.ravel().tolist()) & set(gone.tolist())
    assert recall(labels, truth) >= 0.95
    slots = index._slots
    index.add(np.arange(10_000, 11_000), vectors[3000:])
    assert index._slots == slots  # the 1000 new labels took deleted slots
    everything = np.concatenate([vectors[1:3000:2], vectors[3000:]])
    names = np.concatenate([kept, np.arange(10_000, 11_000)])
    truth, _ = _core.exact_search(everything, queries, 10, "l2")
    labels, _ = index.search(queries, 10, ef=EF, _plan="graph")
    assert recall(labels, names[truth]) >= 0.95


def test_update_replaces_vector_in_place(data):
    vectors, queries = data
    index = built(vectors)
    slots = index._slots
    target = queries[0] + 1e-3
    index.add(np.array([42, 42]), np.stack([vectors[0], target]))  # the last occurrence wins
    assert index._slots == slots and len(index) == len(vectors)
    labels, distances = index.search(queries[:1], 1, ef=EF, _plan="graph")
    assert labels[0, 0] == 42 and distances[0, 0] < 1e-4
    for plan in ("exact", "graph"):
        moved = index.search(vectors[42:43], 10, _plan=plan)[0][0]
        assert 42 not in moved.tolist()  # nothing is left at the old position


def test_growth_and_empty_index():
    index = _core.HnswIndex(4, "l2")
    labels, distances = index.search(np.zeros((2, 4)), 5)
    assert labels.shape == (2, 0) and distances.shape == (2, 0)
    vectors = mixture(9000, 5, dim=4)  # crosses two 4096-node chunks
    for start in range(0, 9000, 1000):
        index.add(np.arange(start, start + 1000), vectors[start : start + 1000])
    assert len(index) == 9000 and index._slots == 9000
    truth, _ = _core.exact_search(vectors, vectors[:50], 5, "l2")
    assert recall(index.search(vectors[:50], 5, ef=EF, _plan="graph")[0], truth) >= 0.95


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="M must be"):
        _core.HnswIndex(4, "l2", M=1)
    with pytest.raises(ValueError, match="space"):
        _core.HnswIndex(4, "manhattan")
    index = _core.HnswIndex(4, "l2")
    with pytest.raises(ValueError, match="dimension"):
        index.add([1], np.zeros((1, 5)))
    with pytest.raises(TypeError):
        index.add(np.array([1.5]), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="k must be positive"):
        index.search(np.zeros(4), 0)
    with pytest.raises(ValueError, match="plan"):
        index.search(np.zeros(4), 1, _plan="fast")
    with pytest.raises(ValueError, match="ef_search"):
        index.ef_search = 0


def test_search_during_parallel_add_is_safe(data):
    vectors, queries = data
    index = built(vectors[:1000])
    errors: list[BaseException] = []
    done = threading.Event()

    def searcher() -> None:
        try:
            while not done.is_set():
                labels, _ = index.search(queries, 5, ef=EF, _plan="graph", num_threads=1)
                assert labels.shape[1] == 5 and labels.min() >= 0 and labels.max() < len(vectors)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    for start in range(1000, 4000, 500):
        index.add(np.arange(start, start + 500), vectors[start : start + 500], num_threads=2)
    done.set()
    for t in threads:
        t.join()
    assert not errors
    truth, _ = _core.exact_search(vectors, queries, 10, "l2")
    assert recall(index.search(queries, 10, ef=EF, _plan="graph")[0], truth) >= 0.95


# --- the file format ---------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from chroma import errors  # noqa: E402
from chroma.index.hnsw import HnswIndex  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory, data) -> tuple[bytes, HnswIndex]:
    """A small saved index with deleted slots, several levels and cosine vectors."""
    vectors, _ = data
    index = HnswIndex(DIM, "cosine", {"hnsw:M": 4, "hnsw:search_ef": 32})
    index.add(np.arange(300), vectors[:300])
    index.remove(np.arange(0, 300, 7))
    path = tmp_path_factory.mktemp("saved") / "index.bin"
    index.save(path)
    return path.read_bytes(), index


def test_save_load_round_trip(tmp_path, saved, data):
    raw, index = saved
    path = tmp_path / "index.bin"
    path.write_bytes(raw)
    loaded = HnswIndex.load(path)
    assert (loaded.dim, loaded.space, loaded.params) == (DIM, "cosine", {"hnsw:M": 4, "hnsw:construction_ef": 100, "hnsw:search_ef": 32})
    assert len(loaded) == len(index)
    np.testing.assert_array_equal(loaded._core.labels(), index._core.labels())
    _, queries = data
    for plan in ("graph", "exact"):
        a = index._core.search(queries, 5, _plan=plan)
        b = loaded._core.search(queries, 5, _plan=plan)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    loaded.add(np.array([1000]), queries[:1])  # a loaded index takes writes (and reuses a deleted slot)
    assert loaded._core._slots == index._core._slots and loaded.search(queries[:1], 1)[0][0, 0] == 1000
    loaded.save(path)  # overwriting in place leaves no temporary file behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.bin"]


def test_index_of_several_megabytes_round_trips(tmp_path):
    # a file several times the size of any buffer that writes it
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(4000, 128)).astype(np.float32)
    index = HnswIndex(128, "l2", {"hnsw:M": 16})
    index.add(np.arange(4000), vectors)
    index.remove(np.arange(0, 4000, 11))
    path = tmp_path / "big.bin"
    index.save(path)
    assert path.stat().st_size > 2 * 2**20
    loaded = HnswIndex.load(path)
    np.testing.assert_array_equal(loaded.labels(), index.labels())
    for plan in ("graph", "exact"):
        a = index._core.search(vectors[:20], 10, _plan=plan)
        b = loaded._core.search(vectors[:20], 10, _plan=plan)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    loaded.save(tmp_path / "again.bin")
    assert (tmp_path / "again.bin").read_bytes() == path.read_bytes()


def test_writes_before_and_after_the_first_two_pass_search(tmp_path):
    # 128 dims and thousands of rows: exact search takes two passes over the int8 copies
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(9000, 128)).astype(np.float32)
    index = _core.HnswIndex(128, "l2", M=8)
    index.add(np.arange(3000), vectors[:3000])
    assert not index._codes  # no exact search yet: no int8 copies
    queries = vectors[:3000:300] + 0.1

    def same_as_scan() -> None:
        exact = index.search(queries, 10, _plan="exact")
        scan = index.search(queries, 10, _plan="scan")
        np.testing.assert_array_equal(exact[0], scan[0])
        np.testing.assert_allclose(exact[1], scan[1], rtol=1e-5)

    same_as_scan()
    assert index._codes
    index.add(np.arange(3000, 9000), vectors[3000:])  # new chunks
    index.add(np.arange(0, 3000, 3), vectors[6000:7000])  # vectors replaced in place
    index.remove(np.arange(1, 3000, 3))
    index.add(np.arange(20000, 20500), vectors[7000:7500])  # deleted slots reused
    same_as_scan()
    path = tmp_path / "index.bin"
    index.save(str(path))
    loaded = _core.HnswIndex.load(str(path))
    assert not loaded._codes
    np.testing.assert_array_equal(loaded.search(queries, 10, _plan="exact")[0], index.search(queries, 10, _plan="scan")[0])


def load_bytes(tmp_path, raw: bytes) -> None:
    path = tmp_path / "fuzzed.bin"
    path.write_bytes(raw)
    HnswIndex.load(path)


fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(cut=st.integers(min_value=0))
def test_truncated_file_raises(tmp_path, saved, cut):
    raw, _ = saved
    with pytest.raises(errors.IndexFileError):
        load_bytes(tmp_path, raw[: cut % len(raw)])


@fuzz
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)), min_size=1, max_size=4))
def test_flipped_bits_raise(tmp_path, saved, flips):
    raw, _ = saved
    data = bytearray(raw)
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    if bytes(data) == raw:  # flips that cancel out leave a valid file
        return
    with pytest.raises(errors.IndexFileError):
        load_bytes(tmp_path, bytes(data))


@fuzz
@given(junk=st.binary(max_size=400), keep_magic=st.booleans())
def test_foreign_files_raise(tmp_path, saved, junk, keep_magic):
    raw, _ = saved
    with pytest.raises(errors.IndexFileError):
        load_bytes(tmp_path, (raw[:8] if keep_magic else b"") + junk)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        HnswIndex.load(tmp_path / "absent.bin")
