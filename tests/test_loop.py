"""Task sampling and the trainer's batching."""

from __future__ import annotations

import pytest
import torch

from t2m_cli.errors import UserInputError
from t2m_cli.training.loop import sample_tasks


def test_pairs_are_distinct_ordered_pairs_without_repeats():
    tasks = sample_tasks(10, 2, 90, torch.Generator().manual_seed(0))
    assert tasks.shape == (90, 2)
    assert len({tuple(t) for t in tasks.tolist()}) == 90  # all 10 * 9 ordered pairs, once
    assert (tasks[:, 0] != tasks[:, 1]).all()


def test_more_tasks_than_pairs_reshuffles():
    tasks = sample_tasks(3, 2, 10, torch.Generator().manual_seed(0))
    assert tasks.shape == (10, 2) and (tasks[:, 0] != tasks[:, 1]).all()


def test_k_class_tasks_have_distinct_classes():
    tasks = sample_tasks(8, 4, 50, torch.Generator().manual_seed(1))
    assert tasks.shape == (50, 4)
    assert all(len(set(t)) == 4 for t in tasks.tolist())
    assert tasks.min() >= 0 and tasks.max() < 8
    with pytest.raises(UserInputError, match="classes_per_task"):
        sample_tasks(3, 4, 5, torch.Generator())
