"""Tests of the compiled core (chroma._core) against numpy references."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from chroma import _core  # a missing core fails the run, never skips it

SPACES = ("l2", "ip", "cosine")
PATHS = _core.available_simd_paths()


@pytest.fixture(autouse=True)
def _restore_simd_path():
    before = _core.simd_path()
    yield
    _core.set_simd_path(before)


@pytest.fixture(params=PATHS)
def simd_path(request):
    _core.set_simd_path(request.param)
    return request.param


def ref_distances(space: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    if space == "l2":
        return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    dot = x @ y.T
    if space == "ip":
        return 1.0 - dot
    nx = np.linalg.norm(x, axis=1)[:, None]
    ny = np.linalg.norm(y, axis=1)[None, :]
    denom = nx * ny
    sim = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
    return 1.0 - sim


def ref_topk(space, data, queries, k, rows=None):
    """Brute-force top-k: (ids, dists) ordered by (distance, id)."""
    rows = np.arange(len(data)) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    dist = ref_distances(space, queries, data[rows])
    kk = min(k, len(rows))
    ids = np.empty((len(queries), kk), dtype=np.int64)
    out = np.empty((len(queries), kk))
    for i, row in enumerate(dist):
        order = np.lexsort((rows, row))[:kk]
        ids[i] = rows[order]
        out[i] = row[order]
    return ids, out


def check_topk(space, data, queries, k, ids, dists, rows=None, atol=1e-3):
    """Distances must match the reference; ids must match wherever the k-th
    boundary is not a near-tie (float32 summation order may swap those)."""
    ref_ids, ref_d = ref_topk(space, data, queries, k, rows)
    assert ids.shape == ref_ids.shape and dists.shape == ref_ids.shape
    assert ids.dtype == np.int64 and dists.dtype == np.float32
    np.testing.assert_allclose(dists, ref_d, rtol=1e-4, atol=atol)
    # Returned rows really are at the reported distance.
    if ids.size:
        recomputed = np.take_along_axis(ref_distances(space, queries, data), ids, axis=1)
        np.testing.assert_allclose(dists, recomputed, rtol=1e-4, atol=atol)
    all_rows = np.arange(len(data)) if rows is None else np.unique(rows)
    full = ref_distances(space, queries, data[all_rows])
    for i in range(len(queries)):
        srt = np.sort(full[i])
        kk = ids.shape[1]
        if kk < len(srt) and srt[kk] - srt[kk - 1] < 10 * atol:
            continue
        assert set(ids[i]) == set(ref_ids[i])


def gaussian(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def small_ints(n, d, seed=0):
    # Small integers make every l2/ip sum exact in float32 in any order, so all
    # SIMD paths must agree bit for bit and ties are real ties.
    return np.random.default_rng(seed).integers(-3, 4, size=(n, d)).astype(np.float32)


# --------------------------------------------------------------------- dispatch


def test_simd_paths_reported():
    assert PATHS[0] == "portable"
    assert set(PATHS) <= {"portable", "avx2", "avx512"}
    assert _core.simd_path() in PATHS


def test_set_simd_path_rejects_unknown():
    with pytest.raises(ValueError, match="nope.*portable"):
        _core.set_simd_path("nope")


def test_set_simd_path_switches():
    for p in PATHS:
        _core.set_simd_path(p)
        assert _core.simd_path() == p


def test_env_var_selects_path():
    import subprocess
    import sys

    code = "import chroma._core as c; print(c.simd_path())"
    env = {**__import__("os").environ, "CHROMA_SIMD": "portable"}
    # run beside the package under test, so "-c" imports this very build
    package_parent = __import__("pathlib").Path(_core.__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=package_parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "portable"
    env["CHROMA_SIMD"] = "bogus"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=package_parent)
    assert out.returncode != 0 and "bogus" in out.stderr


def test_num_threads_env_caps_the_core_pool():
    import os
    import subprocess
    import sys

    code = "import chroma._core as c; print(c.thread_count())"
    package_parent = __import__("pathlib").Path(_core.__file__).resolve().parent.parent
    counts = {}
    for value in ("1", "3", "not-a-number", "0"):
        env = {**os.environ, "CHROMA_NUM_THREADS": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             cwd=package_parent)
        assert out.returncode == 0, out.stderr
        counts[value] = int(out.stdout)
    assert counts["1"] == 1 and counts["3"] == 3
    assert counts["not-a-number"] == counts["0"] == (os.cpu_count() or 1)


def test_horizontal_distances_are_bit_identical_on_every_simd_path():
    # one summation order on every path (distances.h, canonical_row), so graph
    # walks and reranks answer alike whatever the CPU
    rng = np.random.default_rng(5)
    paths = _core.available_simd_paths()
    try:
        for d in (1, 7, 8, 9, 15, 16, 17, 100, 384):
            data = rng.standard_normal((64, d), dtype=np.float32)
            query = rng.standard_normal((1, d), dtype=np.float32)
            for space in SPACES:
                answers = []
                for path in paths:
                    _core.set_simd_path(path)
                    index = _core.FlatIndex(d, space)
                    index.add(np.arange(64, dtype=np.int64), data)
                    answers.append(index.search(query, 64, None, 1))
                for labels, distances in answers[1:]:
                    assert np.array_equal(labels, answers[0][0]), (d, space)
                    assert np.array_equal(distances.view(np.int32), answers[0][1].view(np.int32)), (d, space)
    finally:
        _core.set_simd_path(paths[-1])


# -------------------------------------------------------------------- distances


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("d", [1, 3, 17, 100, 384])
@pytest.mark.parametrize("nq", [1, 5, 40])
def test_distances_match_numpy(simd_path, space, d, nq):
    x = gaussian(nq, d, seed=d)
    y = gaussian(301, d, seed=d + 1)
    got = _core.distances(space, x, y)
    assert got.shape == (nq, 301) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_distances(space, x, y), rtol=1e-4, atol=1e-4 * d)


def test_distances_zero_vectors_cosine(simd_path):
    x = np.zeros((2, 8), np.float32)
    x[1, 0] = 1
    y = np.zeros((3, 8), np.float32)
    y[1, 0] = 2
    y[2, 1] = -1
    got = _core.distances("cosine", x, y)
    np.testing.assert_allclose(got, [[1, 1, 1], [1, 0, 1]], atol=1e-6)


@pytest.mark.parametrize("nq", [1, 64])
def test_identical_vector_l2_is_exactly_zero(simd_path, nq):
    data = gaussian(500, 77, seed=3) * 1000
    q = data[[7] * nq]
    assert np.all(_core.distances("l2", q, data)[:, 7] == 0.0)
    ids, d = _core.exact_search(data, q, 1, "l2")
    assert np.all(ids[:, 0] == 7) and np.all(d[:, 0] == 0.0)


def test_distances_bad_space():
    with pytest.raises(ValueError, match="l2"):
        _core.distances("hamming", gaussian(1, 4), gaussian(2, 4))


# ---------------------------------------------------------------- exact_search


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("d", [1, 3, 17, 100, 384])
@pytest.mark.parametrize("nq", [1, 7, 50])
def test_exact_search_matches_numpy(simd_path, space, d, nq):
    data = gaussian(1200, d, seed=d)
    q = gaussian(nq, d, seed=d + 100)
    ids, dists = _core.exact_search(data, q, 10, space)
    check_topk(space, data, q, 10, ids, dists)


@pytest.mark.parametrize("space", ["l2", "ip"])
@pytest.mark.parametrize("nq", [1, 3, 40])
def test_exact_ties_broken_by_lower_index(simd_path, space, nq):
    data = small_ints(3000, 19, seed=1)
    data[1500:] = data[:1500]  # every row has an exact duplicate
    q = small_ints(nq, 19, seed=2)
    ids, dists = _core.exact_search(data, q, 25, space)
    ref_ids, ref_d = ref_topk(space, data, q, 25)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(dists, ref_d.astype(np.float32))


@pytest.mark.parametrize("space", SPACES)
def test_all_paths_agree(space):
    data = small_ints(5000, 33, seed=5)
    q = small_ints(70, 33, seed=6)
    results = {}
    for p in PATHS:
        _core.set_simd_path(p)
        results[p] = [_core.exact_search(data, q[:m], 10, space) for m in (1, 70)]
    base = results[PATHS[0]]
    for p in PATHS[1:]:
        for (i0, d0), (i1, d1) in zip(base, results[p]):
            np.testing.assert_array_equal(i0, i1)
            np.testing.assert_allclose(d0, d1, rtol=1e-5, atol=1e-6)


def test_all_paths_agree_on_gaussian_data():
    data = gaussian(4000, 128, seed=8)
    q = gaussian(40, 128, seed=9)
    ref = None
    for p in PATHS:
        _core.set_simd_path(p)
        ids, d = _core.exact_search(data, q, 10, "l2")
        if ref is None:
            ref = (ids, d)
        else:
            np.testing.assert_allclose(d, ref[1], rtol=1e-5)
            np.testing.assert_array_equal(ids, ref[0])


@pytest.mark.parametrize("space", SPACES)
def test_exact_search_allowed(simd_path, space):
    data = gaussian(2000, 24, seed=11)
    q = gaussian(30, 24, seed=12)
    rng = np.random.default_rng(13)
    allowed = rng.choice(2000, size=300, replace=False)
    allowed = np.concatenate([allowed, allowed[:50]])  # duplicates are ignored
    rng.shuffle(allowed)
    ids, dists = _core.exact_search(data, q, 10, space, allowed=allowed)
    assert np.isin(ids, allowed).all()
    check_topk(space, data, q, 10, ids, dists, rows=allowed)


def test_exact_search_allowed_edge_cases(simd_path):
    data = gaussian(100, 8)
    q = gaussian(3, 8, seed=1)
    ids, d = _core.exact_search(data, q, 5, "l2", allowed=np.array([], dtype=np.int64))
    assert ids.shape == (3, 0) and d.shape == (3, 0)
    ids, d = _core.exact_search(data, q, 5, "l2", allowed=[42])
    assert ids.shape == (3, 1) and (ids == 42).all()
    np.testing.assert_allclose(d[:, 0], ref_distances("l2", q, data[[42]])[:, 0], rtol=1e-5)
    ids, d = _core.exact_search(data, q, 5, "l2", allowed=[42, 42, 42])
    assert ids.shape == (3, 1)
    for bad in ([100], [-1], [3, 1000]):
        with pytest.raises(ValueError, match="range"):
            _core.exact_search(data, q, 5, "l2", allowed=bad)


def test_exact_search_k_larger_than_n(simd_path):
    data = gaussian(7, 5)
    q = gaussian(20, 5, seed=1)
    ids, d = _core.exact_search(data, q, 50, "ip")
    assert ids.shape == (20, 7)
    check_topk("ip", data, q, 50, ids, d)
    assert all(sorted(r) == list(range(7)) for r in ids.tolist())


def test_exact_search_empty_data_and_queries():
    ids, d = _core.exact_search(np.empty((0, 16), np.float32), gaussian(4, 16), 3, "l2")
    assert ids.shape == (4, 0) and d.shape == (4, 0)
    ids, d = _core.exact_search(gaussian(10, 16), np.empty((0, 16), np.float32), 3, "l2")
    assert ids.shape == (0, 3)


def test_exact_search_results_sorted(simd_path):
    data = gaussian(5000, 32)
    q = gaussian(33, 32, seed=2)
    for space in SPACES:
        _, d = _core.exact_search(data, q, 40, space)
        assert (np.diff(d, axis=1) >= 0).all()


def test_exact_search_threads_agree():
    data = gaussian(30000, 64, seed=4)
    q = gaussian(20, 64, seed=5)
    base = _core.exact_search(data, q, 10, "l2", num_threads=1)
    for nt in (0, 2, 3, 16):
        got = _core.exact_search(data, q, 10, "l2", num_threads=nt)
        np.testing.assert_array_equal(got[0], base[0])
        np.testing.assert_array_equal(got[1], base[1])


def test_exact_search_argument_errors():
    data = gaussian(10, 4)
    q = gaussian(2, 4)
    with pytest.raises(ValueError, match="k"):
        _core.exact_search(data, q, 0, "l2")
    with pytest.raises(ValueError, match="k"):
        _core.exact_search(data, q, -3, "l2")
    with pytest.raises(ValueError, match="cosine"):
        _core.exact_search(data, q, 1, "manhattan")
    with pytest.raises(TypeError, match="float32"):
        _core.exact_search(data.astype(np.float64), q, 1, "l2")
    with pytest.raises(TypeError, match="ndarray"):
        _core.exact_search(data.tolist(), q, 1, "l2")
    with pytest.raises(ValueError, match="contiguous"):
        _core.exact_search(np.asfortranarray(gaussian(10, 4)), q, 1, "l2")
    with pytest.raises(ValueError, match="contiguous"):
        _core.exact_search(gaussian(10, 8)[:, ::2], q, 1, "l2")
    with pytest.raises(ValueError, match="2-dimensional"):
        _core.exact_search(data.ravel(), q, 1, "l2")
    with pytest.raises(ValueError, match="expected 4"):
        _core.exact_search(data, gaussian(2, 5), 1, "l2")


def test_exact_search_converts_queries_and_accepts_1d():
    data = gaussian(50, 6)
    q = gaussian(1, 6, seed=3)
    a = _core.exact_search(data, q, 4, "l2")
    b = _core.exact_search(data, q[0].astype(np.float64), 4, "l2")
    c = _core.exact_search(data, q.tolist(), 4, "l2")
    for other in (b, c):
        np.testing.assert_array_equal(a[0], other[0])
        np.testing.assert_array_equal(a[1], other[1])


def test_exact_search_does_not_copy_data():
    # A view with an offset into a larger buffer is fine (contiguous): results
    # must refer to rows of the view.
    big = gaussian(1000, 16)
    view = big[100:600]
    ids, _ = _core.exact_search(view, view[[10, 20]], 1, "l2")
    np.testing.assert_array_equal(ids[:, 0], [10, 20])


# ------------------------------------------------------------------- FlatIndex


@pytest.mark.parametrize("space", SPACES)
def test_flat_index_search_matches_exact(simd_path, space):
    data = gaussian(3000, 40, seed=21)
    labels = np.arange(3000, dtype=np.int64) * 7 + 1000
    idx = _core.FlatIndex(40, space)
    assert idx.dim == 40 and idx.space == space and len(idx) == 0
    idx.add(labels, data)
    assert len(idx) == 3000
    q = gaussian(25, 40, seed=22)
    got_l, got_d = idx.search(q, 10)
    ref_ids, ref_d = ref_topk(space, data, q, 10)
    np.testing.assert_allclose(got_d, ref_d, rtol=1e-4, atol=1e-4)
    # labels map back to rows
    rows = (got_l - 1000) // 7
    np.testing.assert_allclose(
        np.take_along_axis(ref_distances(space, q, data), rows, axis=1), got_d, rtol=1e-4, atol=1e-4
    )


def test_flat_index_add_replace_remove():
    idx = _core.FlatIndex(4, "l2")
    v = np.eye(4, dtype=np.float32)
    idx.add([10, 20, 30, 40], v)
    assert sorted(idx.labels().tolist()) == [10, 20, 30, 40]
    assert idx.contains(20) and 20 in idx and not idx.contains(99)
    # replace in place
    idx.add([20], np.full((1, 4), 5, np.float32))
    assert len(idx) == 4
    l, d = idx.search(np.full(4, 5, np.float32), 1)
    assert l[0, 0] == 20 and d[0, 0] == 0.0
    # duplicate labels in one call: last wins
    idx.add([50, 50], np.array([[1, 1, 1, 1], [2, 2, 2, 2]], np.float32))
    l, d = idx.search(np.full((1, 4), 2, np.float32), 1)
    assert l[0, 0] == 50 and d[0, 0] == 0.0 and len(idx) == 5
    # remove (unknown labels ignored), swap-with-last keeps the rest intact
    idx.remove([10, 12345, 30])
    assert len(idx) == 3 and sorted(idx.labels().tolist()) == [20, 40, 50]
    assert not idx.contains(10)
    for lab, vec in [(20, [5] * 4), (40, [0, 0, 0, 1]), (50, [2] * 4)]:
        l, d = idx.search(np.array([vec], np.float32), 1)
        assert l[0, 0] == lab and d[0, 0] == 0.0
    # re-add a removed label
    idx.add([10], np.array([[9, 9, 9, 9]], np.float32))
    l, d = idx.search(np.full((1, 4), 9, np.float32), 2)
    assert l[0, 0] == 10 and d[0, 0] == 0.0 and l.shape == (1, 2)
    idx.remove(idx.labels())
    assert len(idx) == 0
    l, d = idx.search(np.ones((2, 4), np.float32), 3)
    assert l.shape == (2, 0) and d.shape == (2, 0)


def test_flat_index_random_ops_against_model():
    rng = np.random.default_rng(31)
    idx = _core.FlatIndex(8, "ip")
    model: dict[int, np.ndarray] = {}
    for _ in range(60):
        if rng.random() < 0.6 or not model:
            labs = rng.integers(0, 200, size=rng.integers(1, 20))
            vecs = rng.standard_normal((len(labs), 8)).astype(np.float32)
            idx.add(labs, vecs)
            for lab, vec in zip(labs.tolist(), vecs):
                model[lab] = vec
        else:
            labs = rng.choice(list(model) + [999], size=rng.integers(1, 10))
            idx.remove(labs)
            for lab in labs.tolist():
                model.pop(lab, None)
        assert sorted(idx.labels().tolist()) == sorted(model)
    keys = np.array(sorted(model), dtype=np.int64)
    mat = np.stack([model[k] for k in keys])
    q = rng.standard_normal((5, 8)).astype(np.float32)
    got_l, got_d = idx.search(q, 7)
    ref_rows, ref_d = ref_topk("ip", mat, q, 7)
    np.testing.assert_allclose(got_d, ref_d, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got_l, keys[ref_rows])


def test_flat_index_allowed_labels(simd_path):
    data = gaussian(500, 12, seed=41)
    labels = np.arange(500, dtype=np.int64) + 10_000
    idx = _core.FlatIndex(12, "cosine")
    idx.add(labels, data)
    q = gaussian(6, 12, seed=42)
    allowed_rows = np.arange(0, 500, 9)
    allowed = np.concatenate([labels[allowed_rows], labels[allowed_rows[:5]], [-5, 999_999]])
    got_l, got_d = idx.search(q, 5, allowed=allowed)
    ref_rows, ref_d = ref_topk("cosine", data, q, 5, rows=allowed_rows)
    np.testing.assert_allclose(got_d, ref_d, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got_l, labels[ref_rows])
    l, d = idx.search(q, 5, allowed=[labels[3]])
    assert l.shape == (6, 1) and (l == labels[3]).all()
    l, d = idx.search(q, 5, allowed=[])
    assert l.shape == (6, 0)
    l, d = idx.search(q, 5, allowed=[1, 2, 3])  # all unknown
    assert l.shape == (6, 0)


def test_flat_index_cosine_zero_vector():
    idx = _core.FlatIndex(3, "cosine")
    idx.add([1, 2], np.array([[0, 0, 0], [1, 0, 0]], np.float32))
    l, d = idx.search(np.array([[0, 1, 0]], np.float32), 2)
    np.testing.assert_allclose(d[0], [1, 1], atol=1e-6)
    l, d = idx.search(np.zeros((1, 3), np.float32), 2)
    np.testing.assert_allclose(d[0], [1, 1], atol=1e-6)


def test_flat_index_errors():
    with pytest.raises(ValueError):
        _core.FlatIndex(0, "l2")
    with pytest.raises(ValueError, match="space"):
        _core.FlatIndex(4, "euclid")
    idx = _core.FlatIndex(4, "l2")
    with pytest.raises(ValueError, match=r"5.*expected 4"):
        idx.add([1], np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="labels"):
        idx.add([1, 2], np.ones((3, 4), np.float32))
    idx.add([1], np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"3.*expected 4"):
        idx.search(np.ones((1, 3), np.float32), 1)
    with pytest.raises(ValueError, match="k"):
        idx.search(np.ones((1, 4), np.float32), 0)
    with pytest.raises(TypeError):
        idx.add([1.5], np.ones((1, 4), np.float32))
    assert len(idx) == 1


def test_flat_index_concurrent_search_and_add():
    dim = 16
    idx = _core.FlatIndex(dim, "l2")
    base = gaussian(5000, dim, seed=51)
    idx.add(np.arange(5000), base)
    q = base[:20]
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher():
        try:
            while not stop.is_set():
                labels, dists = idx.search(q, 3)
                # Base rows are never replaced, so each query finds itself at 0.
                assert (labels[:, 0] == np.arange(20)).all()
                assert (dists[:, 0] == 0).all()
                assert (np.diff(dists, axis=1) >= 0).all()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def writer():
        try:
            rng = np.random.default_rng(52)
            for i in range(40):
                labs = np.arange(10_000 + i * 100, 10_000 + (i + 1) * 100)
                idx.add(labs, rng.standard_normal((100, dim)).astype(np.float32) + 50)
                if i % 3 == 0:
                    idx.remove(labs[:50])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            stop.set()

    threads = [threading.Thread(target=searcher) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert len(idx) == 5000 + 40 * 100 - 14 * 50


def test_num_threads_one_keeps_the_search_on_the_calling_thread():
    # The pool lets a thread join per task, so num_threads=1 must mean one
    # task: this process then burns about one core, not two.
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two cores to tell one thread from two")
    data = gaussian(100_000, 64, seed=5)
    idx = _core.FlatIndex(64, "l2")
    idx.add(np.arange(len(data)), data)
    q = gaussian(40, 64, seed=6)
    for search in (lambda v: _core.exact_search(data, v, 10, "l2", num_threads=1),
                   lambda v: idx.search(v, 10, num_threads=1, _two_pass=False),
                   lambda v: idx.search(v, 10, num_threads=1, _two_pass=True)):
        wall, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - wall < 0.4:
            for v in q:
                search(v)
        ratio = (time.process_time() - cpu) / (time.perf_counter() - wall)
        assert ratio < 1.4, ratio


def test_exact_search_concurrent_threads_are_correct():
    data = gaussian(20000, 32, seed=61)
    q = gaussian(16, 32, seed=62)
    expected = _core.exact_search(data, q, 5, "ip")
    results: list = [None] * 4

    def run(i):
        results[i] = [_core.exact_search(data, q, 5, "ip") for _ in range(5)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rs in results:
        for ids, d in rs:
            np.testing.assert_array_equal(ids, expected[0])
            np.testing.assert_array_equal(d, expected[1])


# ------------------------------------------------------ FlatIndex two-pass search
# The 4-bit first pass with exact distances must return exactly what the plain
# float scan returns (labels and bit-identical distances), on data chosen to
# stress the error bounds: wide value ranges, outliers, ties.


def _two_pass_datasets(n, d, seed):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, d)).astype(np.float32) * 4
    clustered = (centers[rng.integers(0, 20, n)] + rng.standard_normal((n, d)) * 0.3).astype(np.float32)
    wide = (rng.standard_normal((n, d)) * np.exp(rng.uniform(-8, 8, (n, 1)))).astype(np.float32)
    outliers = rng.standard_normal((n, d)).astype(np.float32)
    outliers[rng.integers(0, n, 40), rng.integers(0, d, 40)] = 1e6
    outliers[rng.integers(0, n, 40)] *= 1e-30
    # near duplicates and exact duplicates: ties and sub-quantum differences
    base = rng.standard_normal((n // 50, d)).astype(np.float32)
    dups = np.repeat(base, 50, axis=0)[:n].copy()
    dups[::3] += np.float32(1e-6) * rng.standard_normal((len(dups[::3]), d)).astype(np.float32)
    ints = small_ints(n, d, seed)
    return {
        "gaussian": rng.standard_normal((n, d)).astype(np.float32),
        "clustered": clustered,
        "wide": wide,
        "outliers": outliers,
        "dups": dups,
        "ints": ints,
    }


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("space", SPACES)
def test_two_pass_identical_to_plain(simd_path, space):
    n, d = 3000, 24
    for name, data in _two_pass_datasets(n, d, seed=71).items():
        idx = _core.FlatIndex(d, space)
        labels = np.arange(n, dtype=np.int64) * 3 + 7
        idx.add(labels, data)
        rng = np.random.default_rng(72)
        q = np.concatenate([data[rng.integers(0, n, 3)],  # queries on stored rows: exact ties
                            (data[rng.integers(0, n, 2)] + rng.standard_normal((2, d)) * 0.01),
                            rng.standard_normal((2, d)) * data.std()]).astype(np.float32)
        for k in (1, 10, 57):
            for m in (1, 3):
                plain = idx.search(q[:m] if m == 1 else q[2:2 + m], k, _two_pass=False)
                got = idx._search_stats(q[:m] if m == 1 else q[2:2 + m], k, _two_pass=True)
                _assert_same(plain, got[:2])
                assert (got[2] >= min(k, n)).all(), name  # pass 2 really ran
            for i in range(len(q)):
                _assert_same(idx.search(q[i], k, _two_pass=False), idx.search(q[i], k, _two_pass=True))
        if name in ("gaussian", "ints"):
            ids, dists = idx.search(q, 10, _two_pass=True)
            check_topk(space, data, q, 10, (ids - 7) // 3, dists)


@pytest.mark.parametrize("space", SPACES)
def test_two_pass_after_updates_and_with_allowed(simd_path, space):
    rng = np.random.default_rng(81)
    n, d = 2500, 33  # odd d: the padded code column
    data = rng.standard_normal((n, d)).astype(np.float32)
    idx = _core.FlatIndex(d, space)
    idx.add(np.arange(n), data)
    model = {i: data[i] for i in range(n)}
    # replace in place (some far outside the old value range), remove, re-add
    rep = rng.choice(n, 300, replace=False)
    newv = (rng.standard_normal((300, d)) * rng.choice([0.01, 1, 100], (300, 1))).astype(np.float32)
    idx.add(rep, newv)
    model.update(zip(rep.tolist(), newv))
    gone = rng.choice(n, 700, replace=False)
    idx.remove(gone)
    for g in gone.tolist():
        model.pop(g)
    extra = np.arange(n, n + 200)
    ev = rng.standard_normal((200, d)).astype(np.float32) * 3
    idx.add(extra, ev)
    model.update(zip(extra.tolist(), ev))
    keys = np.array(sorted(model))
    mat = np.stack([model[k] for k in keys])
    q = rng.standard_normal((4, d)).astype(np.float32)
    for allowed in (None, keys[::2], keys[rng.choice(len(keys), 40, replace=False)], keys[:3], []):
        for m in (1, 4):
            plain = idx.search(q[:m], 8, allowed=allowed, _two_pass=False)
            got = idx.search(q[:m], 8, allowed=allowed, _two_pass=True)
            _assert_same(plain, got)
    ids, dists = idx.search(q, 8, _two_pass=True)
    lab_to_row = {k: i for i, k in enumerate(keys.tolist())}
    rows = np.vectorize(lab_to_row.get)(ids)
    check_topk(space, mat, q, 8, rows, dists)


def test_two_pass_non_finite_rows_and_queries(simd_path):
    d = 20
    data = gaussian(1000, d, seed=91)
    data[5, 3] = np.nan
    data[6, 0] = np.inf
    data[7] = 0
    for space in SPACES:
        idx = _core.FlatIndex(d, space)
        idx.add(np.arange(1000), data)
        for q in (data[7], data[10], np.full(d, np.nan, np.float32), np.full(d, 1e30, np.float32)):
            for k in (3, 1000):
                _assert_same(idx.search(q, k, _two_pass=False), idx.search(q, k, _two_pass=True))


def test_two_pass_chosen_automatically_and_memory():
    d, n = 64, 6000
    idx = _core.FlatIndex(d, "l2")
    data = gaussian(n, d, seed=95)
    idx.add(np.arange(n), data)
    q = gaussian(2, d, seed=96)
    auto = idx._search_stats(q[0], 10)
    assert 10 <= auto[2][0] < n // 10  # the two-pass path ran and filtered
    _assert_same(auto[:2], idx.search(q[0], 10, _two_pass=False))
    assert idx._search_stats(q[0], 10, _two_pass=False)[2][0] == 0
    # 4-bit codes + three floats per row: 44 bytes against 256 at d = 64
    assert idx._quant_bytes <= 0.18 * n * d * 4


def test_two_pass_over_several_blocks(simd_path):
    # More rows than one block of lower bounds (kBoundBlockRows = 2^18), so
    # the second block starts from the first block's tau; the allowed rows
    # straddle the boundary.
    n, d = 300_000, 16
    rng = np.random.default_rng(98)
    data = rng.standard_normal((n, d)).astype(np.float32)
    q = np.concatenate([data[[5, 299_990]], rng.standard_normal((2, d)).astype(np.float32)])
    allowed = np.arange(250_000, 280_000, 3)
    for space in SPACES:
        idx = _core.FlatIndex(d, space)
        idx.add(np.arange(n), data)
        for m in (1, 4):
            plain = idx.search(q[:m], 10, _two_pass=False)
            got = idx._search_stats(q[:m], 10, _two_pass=True)
            _assert_same(plain, got[:2])
            # the 4-bit pass rules out nearly every row
            assert (got[2] < n // 20).all(), (space, got[2])
            _assert_same(idx.search(q[:m], 10, allowed=allowed, _two_pass=False),
                         idx.search(q[:m], 10, allowed=allowed, _two_pass=True))


def test_two_pass_multithreaded_and_tiny_dims(simd_path):
    # Large enough for several tasks, so per-thread bounds get merged.
    rng = np.random.default_rng(97)
    n, d = 40000, 112
    data = rng.standard_normal((n, d)).astype(np.float32)
    data[::7] += 3
    for space in SPACES:
        idx = _core.FlatIndex(d, space)
        idx.add(np.arange(n), data)
        q = np.concatenate([data[:2], rng.standard_normal((3, d)).astype(np.float32)])
        for m in (1, 5):
            plain = idx.search(q[:m], 10, _two_pass=False)
            for nt in (0, 1, 2):
                _assert_same(plain, idx.search(q[:m], 10, num_threads=nt, _two_pass=True))
    for d in (1, 2, 3, 15):
        data = small_ints(500, d, seed=d)
        for space in ("l2", "ip"):
            idx = _core.FlatIndex(d, space)
            idx.add(np.arange(500), data)
            for k in (1, 4, 600):
                _assert_same(idx.search(data[:1], k, _two_pass=False), idx.search(data[:1], k, _two_pass=True))


# ------------------------------------------------- HnswIndex exact path, two passes
# The graph index keeps an int8 copy of every vector (row-major, per node) for
# its exact path; the two-pass answer must equal the float scan's ("scan"
# plan) label for label and bit for bit.


def _small_graph(data, space, labels=None):
    # A sparse, quickly built graph: these tests exercise the exact path only.
    index = _core.HnswIndex(data.shape[1], space, M=4, ef_construction=8)
    index.add(np.arange(len(data)) if labels is None else labels, data, num_threads=1)
    return index


def _assert_exact_paths_agree(index, queries, k, allowed=None, filtered=True):
    two = index._search_stats(queries, k, allowed=allowed, _plan="exact")
    scan = index._search_stats(queries, k, allowed=allowed, _plan="scan")
    _assert_same(two[:2], scan[:2])
    assert (scan[2] == 0).all()
    if filtered:  # the int8 pass really ran
        assert (two[2] >= min(k, two[0].shape[1])).all() and (two[2] > 0).all()
    return two


@pytest.mark.parametrize("space", SPACES)
def test_hnsw_two_pass_identical_to_float_scan(simd_path, space):
    n, d = 4600, 64  # n * d >= 2^18: the size from which the two passes are used
    for name, data in _two_pass_datasets(n, d, seed=171).items():
        labels = np.arange(n, dtype=np.int64) * 5 + 3
        index = _small_graph(data, space, labels)
        rng = np.random.default_rng(172)
        q = np.concatenate([data[rng.integers(0, n, 3)],  # stored rows: exact ties
                            data[rng.integers(0, n, 2)] + rng.standard_normal((2, d)).astype(np.float32) * 0.01,
                            rng.standard_normal((35, d)).astype(np.float32) * data.std()]).astype(np.float32)
        for k in (1, 10, 57):
            for m in (1, 5, 40):  # one query, a partial group, groups sharing each pass
                two = _assert_exact_paths_agree(index, q[:m], k)
                if name == "gaussian":
                    assert (two[2] < n // 10).all()
        if name in ("gaussian", "ints"):
            ids, dists = index.search(q, 10, _plan="exact")
            check_topk(space, data, q, 10, (ids - 3) // 5, dists)


@pytest.mark.parametrize("space", SPACES)
def test_hnsw_two_pass_after_updates_removals_and_with_allowed(simd_path, space):
    rng = np.random.default_rng(181)
    n, d = 12000, 47  # odd d: the pad code of a row; the allow-lists below still reach 2^18 / d rows
    data = rng.standard_normal((n, d)).astype(np.float32)
    index = _small_graph(data, space)
    # replace in place (some far outside the old value range), remove, re-add into freed slots
    rep = rng.choice(n, 500, replace=False)
    index.add(rep, (rng.standard_normal((500, d)) * rng.choice([0.01, 1, 100], (500, 1))).astype(np.float32))
    index.remove(rng.choice(n, 700, replace=False))
    index.add(np.arange(n, n + 300), rng.standard_normal((300, d)).astype(np.float32) * 3)
    live = index.labels()
    q = rng.standard_normal((20, d)).astype(np.float32)
    _assert_exact_paths_agree(index, q, 8)
    for allowed in (live[::2], live[live % 3 != 0], rng.choice(live, 6000, replace=False)):
        got = _assert_exact_paths_agree(index, q, 8, allowed=allowed)
        assert np.isin(got[0], allowed).all()


def test_hnsw_two_pass_non_finite_rows_and_queries(simd_path):
    n, d = 4200, 64
    data = gaussian(n, d, seed=191)
    data[5, 3] = np.nan
    data[6, 0] = np.inf
    data[7] = 0
    data[8] = 1e30
    for space in SPACES:
        index = _small_graph(data, space)
        for q in (data[7], data[10]):
            for k in (3, 100):
                _assert_exact_paths_agree(index, q, k)
        # queries the bounds cannot take (non-finite, beyond 1e15) are scanned, with the same
        # answer (cosine normalizes a query first, so only NaN stays unfit there)
        for bad in (np.full(d, np.nan, np.float32), data[8], np.full(d, 1e30, np.float32)):
            got = _assert_exact_paths_agree(index, bad, 5, filtered=False)
            if space != "cosine" or np.isnan(bad).any():
                assert (got[2] == 0).all()


def test_hnsw_two_pass_after_save_and_load(tmp_path):
    # The codes are not in the file: a loaded index derives them from its vectors.
    data = gaussian(5000, 64, seed=195)
    index = _small_graph(data, "l2")
    path = str(tmp_path / "index.bin")
    index.save(path)
    loaded = _core.HnswIndex.load(path)
    q = gaussian(9, 64, seed=196)
    before = _assert_exact_paths_agree(index, q, 10)
    after = _assert_exact_paths_agree(loaded, q, 10)
    _assert_same(before[:2], after[:2])
    np.testing.assert_array_equal(before[2], after[2])


def test_hnsw_planner_shares_exact_scans_within_a_batch():
    # At 15% of 20,000 rows of 128 dims a lone query walks the graph, while a
    # batch, whose queries share each pass over the rows, is answered exactly.
    data = gaussian(20000, 128, seed=197)
    index = _small_graph(data, "l2")
    allowed = np.random.default_rng(198).choice(20000, 3000, replace=False)
    q = gaussian(64, 128, seed=199)
    assert (index._search_stats(q[:1], 10, allowed=allowed, num_threads=1)[2] == 0).all()
    batch = index._search_stats(q, 10, allowed=allowed, num_threads=1)
    assert (batch[2] > 0).all()
    _assert_same(batch[:2], index.search(q, 10, allowed=allowed, _plan="scan"))


def test_allow_list_forms_and_membership():
    rng = np.random.default_rng(201)
    for labels in (np.arange(0, 100_000, 3),                          # sorted, dense: a bitset
                   rng.integers(-5_000, 5_000, 20_000),              # unsorted, duplicates
                   np.array([7]), np.array([-(2**63), 2**63 - 1]),   # one label; the full range: sorted form
                   rng.integers(-(2**62), 2**62, 1000)):             # sparse: sorted form
        allow = _core.AllowList(labels)
        expected = set(labels.tolist())
        assert len(allow) == len(expected)
        probes = np.concatenate([labels[:50], labels[:50] + 1, labels[:50] - 1, [0, -1, 2**62, -(2**63)]])
        for p in probes.tolist():
            if -(2**63) <= p < 2**63:
                assert (p in allow) == (p in expected), p
