"""``chroma.index.hnswlib.Hnswlib`` keeps the index contract that the state machine checks:
a small collection is answered exactly, whatever updates and deletes did to hnswlib's graph."""

from __future__ import annotations

import numpy as np

from chroma import _core
from chroma.index.hnswlib import Hnswlib


def test_small_collection_after_many_updates_and_deletes_is_answered_exactly():
    rng = np.random.default_rng(7)
    grid = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5], np.float32)
    index = Hnswlib(3, "l2", {})
    vectors: dict[int, np.ndarray] = {}
    next_label = 0
    for _ in range(150):
        kind = rng.integers(3)
        if kind == 0 or len(vectors) < 2:  # new items (they may take deleted items' slots)
            labels = np.arange(next_label, next_label + int(rng.integers(1, 4)))
            next_label += len(labels)
        elif kind == 1:  # updates of stored items
            labels = rng.choice(sorted(vectors), size=min(len(vectors), 3), replace=False)
        else:
            gone = rng.choice(sorted(vectors), size=1)
            index.remove(gone)
            vectors.pop(int(gone[0]))
            continue
        rows = rng.choice(grid, size=(len(labels), 3))
        index.add(labels, rows)
        vectors.update({int(label): row for label, row in zip(labels, rows)})

        stored = np.array(sorted(vectors))
        table = np.stack([vectors[label] for label in stored])
        for query in table:
            found, distances = index.search(query[None, :], len(stored))
            _, exact_distances = _core.exact_search(table, query[None, :], len(stored), "l2")
            assert sorted(found[0].tolist()) == stored.tolist()
            np.testing.assert_allclose(distances[0], exact_distances[0], rtol=1e-5, atol=1e-6)
