"""Recall@10 against queries per second, one curve per index implementation.

Each index is built once over the dataset (outside any API or DB, so the
curve shows the index alone) and searched with all queries in one batch on
one thread. An index with a search-time knob (``set_search_ef``) is swept
over ``EFS``; an exact index is one point at recall 1.
"""

from __future__ import annotations

import time

import numpy as np

from chroma import registry
from chroma.bench.data import Dataset

EFS = (10, 20, 50, 100, 200, 400)
K = 10


def recall_qps(dataset: Dataset, indexes: list[str], truth: np.ndarray, quick: bool = False) -> list[dict]:
    """``[{"index", "points": [{"ef", "recall", "qps"}, ...]}, ...]``."""
    curves = []
    labels = np.arange(len(dataset.vectors), dtype=np.int64)
    queries = dataset.queries[: len(truth)]
    for name in indexes:
        index = registry.lookup("index_impl", name)(dataset.vectors.shape[1], dataset.space, {})
        index.add(labels, dataset.vectors)
        knob = getattr(index, "set_search_ef", None)
        points = []
        for ef in (EFS[:3] if quick else EFS) if knob else (None,):
            if knob:
                knob(ef)
            index.search(queries[:1], K, None, 1)
            start = time.perf_counter()
            found, _ = index.search(queries, K, None, 1)
            seconds = time.perf_counter() - start
            hits = sum(len(set(row.tolist()) & set(expected.tolist())) for row, expected in zip(found, truth))
            points.append({"ef": ef, "recall": hits / truth.size, "qps": len(queries) / seconds})
        curves.append({"index": name, "points": points})
    return curves
