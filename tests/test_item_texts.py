"""Documents and metadata JSON by label in one arena (chroma.index.item_texts)."""

from __future__ import annotations

import numpy as np
import pytest

from chroma.index import item_texts
from chroma.index.item_texts import ItemTexts


def test_reads_follow_stores_updates_and_removes():
    texts = ItemTexts.from_columns(np.array([7, 3]), ["seven", None], ['{"a":1}', None])
    texts.store(np.array([3, 9]), ["three", "nine ünï"], [{"b": 2.5, "s": "x"}, None])
    texts.store(np.array([7]), None, [{"a": True}])  # metadata only: the document stays
    texts.remove(np.array([9, 100]))
    found, documents, metadatas = texts.read(np.array([9, 7, 3, 5]), documents=True, metadatas=True)
    assert found.tolist() == [False, True, True, False]
    assert documents == ["seven", "three"]
    assert metadatas == [{"a": True}, {"b": 2.5, "s": "x"}]
    assert len(texts) == 2
    assert texts.read(np.array([3]), documents=False, metadatas=True)[1] is None


DOCUMENTS = [None, "", "a", "ünïcode ✓", "x" * 300]
METADATAS = [None, {}, {"i": -2**63}, {"f": 0.1, "b": True}, {"s": "é", "n": 2**63 - 1, "z": -0.0}]


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_a_dict_through_updates_removes_and_compactions(seed, monkeypatch):
    monkeypatch.setattr(item_texts, "_COMPACT_AT_LEAST_ROWS", 2)  # rewrite at these small sizes too
    monkeypatch.setattr(item_texts, "_COMPACT_AT_LEAST_BYTES", 8)
    rng = np.random.default_rng(seed)
    texts = ItemTexts()
    model: dict[int, list] = {}
    for _ in range(30):
        labels = rng.choice(60, size=int(rng.integers(0, 12)), replace=False)
        if rng.random() < 0.3:
            texts.remove(labels)
            for label in labels.tolist():
                model.pop(label, None)
            continue
        documents = [DOCUMENTS[i] for i in rng.integers(0, len(DOCUMENTS), len(labels))]
        metadatas = [METADATAS[i] for i in rng.integers(0, len(METADATAS), len(labels))]
        texts.store(labels, documents, metadatas)
        for label, document, metadata in zip(labels.tolist(), documents, metadatas):
            old = model.get(label, [None, None])
            model[label] = [old[0] if document is None else document, old[1] if metadata is None else metadata]
        probe = np.arange(-1, 62)
        found, got_documents, got_metadatas = texts.read(probe, documents=True, metadatas=True)
        assert found.tolist() == [label in model for label in probe.tolist()]
        present = [label for label in probe.tolist() if label in model]
        assert got_documents == [model[label][0] for label in present]
        assert got_metadatas == [model[label][1] for label in present]
        assert len(texts) == len(model)


def test_chunks_of_a_stated_count_then_more_items():
    chunks = [(np.arange(0, 5), [f"d{i}" for i in range(5)], ['{"k":%d}' % i for i in range(5)]),
              (np.arange(5, 8), [f"d{i}" for i in range(5, 8)], [None, '{"k":6}', '{"k":7}'])]
    texts = ItemTexts.from_chunks(chunks, rows=8)
    texts.store(np.array([8, 9]), ["d8", None], [{"k": 8}, {"k": 9}])
    found, documents, metadatas = texts.read(np.arange(10), True, True)
    assert found.all() and len(texts) == 10
    assert documents == [f"d{i}" for i in range(9)] + [None]
    assert metadatas == [{"k": i} for i in range(5)] + [None] + [{"k": i} for i in range(6, 10)]
