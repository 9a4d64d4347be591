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


def _trainer(tiny_root, rank=0, world_size=1, tasks_per_step=6):
    from t2m_cli.data.dataset import load_dataset
    from t2m_cli.data.texts import TextBank
    from t2m_cli.encoders.text import HashingEncoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.training.inner import InnerSettings
    from t2m_cli.training.loop import OuterSettings, Trainer

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(32))
    bank = TextBank(bank.classes, bank.embeddings.double(), bank.options)
    torch.manual_seed(0)
    hn = build_hypernet("IVEV", text_dim=32, feature_dim=ds.feature_dim, hidden=8).double()
    ds.features = ds.features.double()
    outer = OuterSettings(tasks_per_step=tasks_per_step, seed=3)
    return Trainer(hn, bank, ds, InnerSettings(), outer, torch.device("cpu"), rank, world_size)


@pytest.mark.parametrize("n_tasks", [6, 5, 1])
def test_split_across_processes_sums_to_the_single_process_gradient(tiny_root, n_tasks):
    whole = _trainer(tiny_root)
    parts = [_trainer(tiny_root, rank, 2) for rank in range(2)]
    tasks = sample_tasks(len(whole.seen), 2, n_tasks, torch.Generator().manual_seed(1))
    whole.accumulate(tasks)
    for part in parts:
        part.accumulate(tasks)
    for p_whole, *p_parts in zip(
        whole.hypernet.parameters(), *(part.hypernet.parameters() for part in parts)
    ):
        summed = sum(p.grad if p.grad is not None else torch.zeros_like(p) for p in p_parts)
        assert torch.allclose(p_whole.grad, summed, atol=1e-10)
    # Every process drew for the whole batch: their generators are still in step.
    assert all(
        torch.equal(part.generator.get_state(), whole.generator.get_state()) for part in parts
    )


def test_mixed_precision_trains_close_to_float32(tiny_root):
    from t2m_cli.data.dataset import load_dataset
    from t2m_cli.data.texts import TextBank
    from t2m_cli.encoders.text import HashingEncoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.training.inner import InnerSettings
    from t2m_cli.training.loop import OuterSettings, Trainer

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(32))
    results = {}
    for amp in (False, True):
        torch.manual_seed(0)
        hn = build_hypernet("EV", text_dim=32, feature_dim=ds.feature_dim, hidden=8)
        outer = OuterSettings(epochs=3, tasks_per_epoch=20, tasks_per_step=5, amp=amp, lr=0.025)
        trainer = Trainer(hn, bank, ds, InnerSettings(), outer, torch.device("cpu"))
        results[amp] = [r.inner_loss for r in trainer.epochs()]
        assert all(p.dtype == torch.float32 for p in hn.parameters())
    assert results[True] == pytest.approx(results[False], rel=0.05)
    assert results[True] != results[False]  # bfloat16 products did run
