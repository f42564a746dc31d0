"""Smoke test of an installed chroma wheel: import, add, query, check the answer.

Run by cibuildwheel after installing each wheel (``test-command`` in
pyproject.toml) and by tests/test_wheel_install.py; it must pass with only the
base dependencies installed. Exits non-zero (an AssertionError) on a wrong
answer. Every SIMD path this CPU can run is forced in turn and must give the
same nearest neighbours.
"""

from __future__ import annotations

import numpy as np

import chroma
from chroma import _core


def nearest_ids(collection, queries: np.ndarray) -> list[list[str]]:
    return collection.query(query_embeddings=queries, n_results=3, include=["distances"])["ids"]


def main() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 24)).astype(np.float32)
    ids = [f"v{i}" for i in range(len(vectors))]

    collection = chroma.get_api().create_collection("smoke")
    collection.add(ids=ids, embeddings=vectors, metadatas=[{"even": i % 2 == 0} for i in range(len(ids))])
    assert collection.count() == len(ids), collection.count()

    # Queries just off stored points: each point must be its own nearest neighbour.
    queries = vectors[:5] + 1e-3
    squared = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
    expected = [[ids[j] for j in row] for row in np.argsort(squared, axis=1, kind="stable")[:, :3]]
    assert expected[0][0] == "v0", expected

    default_path = _core.simd_path()
    answers = {}
    for path in _core.available_simd_paths():
        _core.set_simd_path(path)
        answers[path] = nearest_ids(collection, queries)
    _core.set_simd_path(default_path)
    for path, got in answers.items():
        assert got == expected, (path, got, expected)

    odd = collection.query(query_embeddings=queries[:1], n_results=3, where={"even": False})
    assert all(int(i[1:]) % 2 == 1 for i in odd["ids"][0]), odd["ids"]

    print(f"chroma {chroma.__version__} from {chroma.__file__}: ok "
          f"(SIMD paths {', '.join(answers)}; default {default_path})")


if __name__ == "__main__":
    main()
