"""The label -> id map kept beside each cached index (chroma.index.label_ids)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chroma.index import label_ids
from chroma.index.label_ids import LabelIds


def test_lookups_of_loaded_added_and_removed_labels():
    ids = LabelIds(np.array([30, 10, 20]), ["c", "a", "b"])  # any order in
    assert ids.labels().tolist() == [10, 20, 30]
    assert ids.ids_of(np.array([20, 10, 30, 5, 40])) == ["b", "a", "c", None, None]
    ids.add(np.array([50, 40]), ["e", "d"])
    ids.remove(np.array([10, 50, 999]))
    assert ids.ids_of(np.array([10, 20, 40, 50])) == [None, "b", "d", None]
    assert ids.labels().tolist() == [20, 30, 40]
    assert len(ids) == 3
    assert ids.labels_of(["d", "a", "zz", "b", "e"]).tolist() == [40, -1, -1, 20, -1]
    ids.add(np.array([60]), ["a"])  # a deleted id added again gets a new label
    assert ids.labels_of(["a"]).tolist() == [60]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.integers(0, 300), max_size=40)),
        st.tuples(st.just("remove"), st.lists(st.integers(0, 300), max_size=40)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None, database=None)
@given(initial=st.sets(st.integers(0, 300), max_size=60), steps=operations)
def test_agrees_with_a_dict_through_adds_removes_and_folds(initial, steps):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(label_ids, "_FOLD_AT_LEAST", 8)  # fold at these small sizes too
        check_against_a_dict(initial, steps)


def check_against_a_dict(initial, steps):
    model = {label: f"id{label}" for label in initial}
    ids = LabelIds(np.array(sorted(initial), dtype=np.int64), [model[label] for label in sorted(initial)])
    for kind, labels in steps:
        if kind == "add":
            ids.add(np.array(labels, dtype=np.int64), [f"id{label}" for label in labels])
            model.update((label, f"id{label}") for label in labels)
        else:
            ids.remove(np.array(labels, dtype=np.int64))
            for label in labels:
                model.pop(label, None)
        probe = np.arange(-1, 302, dtype=np.int64)
        assert ids.ids_of(probe) == [model.get(label) for label in probe.tolist()]
        assert ids.labels().tolist() == sorted(model)
        assert len(ids) == len(model)
        by_id = {item_id: label for label, item_id in model.items()}
        asked = [f"id{label}" for label in range(-1, 302)]
        assert ids.labels_of(asked).tolist() == [by_id.get(item_id, -1) for item_id in asked]


def test_folds_keep_every_entry(monkeypatch):
    monkeypatch.setattr(label_ids, "_FOLD_AT_LEAST", 2)  # fold after a couple of writes, not thousands
    ids = LabelIds(np.array([1, 2, 3]), ["a", "b", "c"])
    for label in range(4, 40):
        ids.add(np.array([label]), [f"x{label}"])
        if label % 3 == 0:
            ids.remove(np.array([label - 2]))
    expected = {1: "a", 2: "b", 3: "c", **{label: f"x{label}" for label in range(4, 40)}}
    for label in range(4, 40):
        if label % 3 == 0:
            expected.pop(label - 2, None)
    probe = np.arange(0, 42, dtype=np.int64)
    assert ids.ids_of(probe) == [expected.get(label) for label in probe.tolist()]
    assert len(ids._arrays.labels) > 3  # additions were folded into the arrays along the way


def test_ids_longer_than_the_loaded_ones_fit_as_the_arrays_grow():
    ids = LabelIds(np.array([0]), ["a"])
    for first in range(1, 20_000, 1000):
        labels = np.arange(first, first + 1000, dtype=np.int64)
        ids.add(labels, [f"{'x' * (first // 500)}-{label}" for label in labels.tolist()])
    probe = np.array([0, 1, 19_000, 19_999], dtype=np.int64)
    assert ids.ids_of(probe) == ["a", "-1", f"{'x' * 36}-19000", f"{'x' * 38}-19999"]
    assert ids.labels_of([f"{'x' * 38}-19500", "a"]).tolist() == [19_500, 0]
