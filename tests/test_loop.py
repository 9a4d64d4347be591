"""Task sampling and the trainer's batching."""

from __future__ import annotations

import pytest
import torch

from t2m_cli.config import TrainConfig
from t2m_cli.errors import UserInputError
from t2m_cli.training.inner import InnerSettings
from t2m_cli.training.loop import OuterSettings, sample_tasks
from t2m_cli.training.supersets import superset_tasks


def _settings(**train: object) -> tuple[InnerSettings, OuterSettings]:
    """The inner and outer settings of a ``train`` section with these keys changed."""
    section = TrainConfig.model_validate(train)
    return InnerSettings.from_config(section), OuterSettings.from_config(section, eval_seed=0)


def test_settings_come_from_the_train_section_and_its_defaults():
    inner, outer = _settings(inner_lr=0.2, inner_epochs=5, tasks_per_step=4, amp=True)
    assert (inner.lr, inner.epochs, inner.batch_size) == (0.2, 5, TrainConfig().inner_batch_size)
    assert (outer.tasks_per_step, outer.amp, outer.lr) == (4, True, TrainConfig().lr)
    assert OuterSettings.from_config(TrainConfig(), eval_seed=7).eval_seed == 7


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


def test_superset_tasks_shuffle_attributes_and_repeat_when_short():
    tasks = superset_tasks(7, 7, torch.Generator().manual_seed(0))
    assert tasks.shape == (7, 1) and sorted(tasks[:, 0].tolist()) == list(range(7))
    tasks = superset_tasks(3, 8, torch.Generator().manual_seed(0))
    assert tasks.shape == (8, 1)
    assert sorted(tasks[:6, 0].tolist()) == [0, 0, 1, 1, 2, 2]
    assert sorted(tasks[:3, 0].tolist()) == [0, 1, 2]


def _trainer(tiny_root, rank=0, world_size=1, tasks_per_step=6):
    from t2m_cli.data.dataset import load_dataset
    from t2m_cli.data.texts import TextBank
    from t2m_cli.encoders.text import HashingEncoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.training.loop import Trainer

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(32))
    bank = TextBank(bank.classes, bank.embeddings.double(), bank.options)
    torch.manual_seed(0)
    hn = build_hypernet("IVEV", text_dim=32, feature_dim=ds.feature_dim, hidden=8).double()
    ds.features = ds.features.double()
    inner, outer = _settings(tasks_per_step=tasks_per_step, seed=3)
    return Trainer(hn, bank, ds, inner, outer, torch.device("cpu"), rank, world_size)


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
    from t2m_cli.training.loop import Trainer

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(32))
    results = {}
    for amp in (False, True):
        torch.manual_seed(0)
        hn = build_hypernet("EV", text_dim=32, feature_dim=ds.feature_dim, hidden=8)
        inner, outer = _settings(epochs=3, tasks_per_epoch=20, tasks_per_step=5, amp=amp, lr=0.025)
        trainer = Trainer(hn, bank, ds, inner, outer, torch.device("cpu"))
        results[amp] = [r.inner_loss for r in trainer.epochs()]
        assert all(p.dtype == torch.float32 for p in hn.parameters())
    assert results[True] == pytest.approx(results[False], rel=0.05)
    assert results[True] != results[False]  # bfloat16 products did run


def _superset_trainer(tiny_root, rank=0, world_size=1):
    from t2m_cli.data.dataset import load_dataset
    from t2m_cli.data.texts import TextBank
    from t2m_cli.encoders.text import HashingEncoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.scoring.supersets import attribute_texts
    from t2m_cli.training.supersets import SupersetTrainer

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    encoder = HashingEncoder(32)
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", encoder)
    names = sorted({a for v in ds.attributes.values() for a in v})
    texts = encoder.encode(attribute_texts(names)).double()
    torch.manual_seed(0)
    hn = build_hypernet("IVEV", text_dim=32, feature_dim=ds.feature_dim, hidden=8).double()
    ds.features = ds.features.double()
    inner, outer = _settings(tasks_per_step=4, seed=3, inner_epochs=1)
    return SupersetTrainer(
        hn,
        bank,
        ds,
        inner,
        outer,
        torch.device("cpu"),
        rank,
        world_size,
        attributes=names,
        texts=texts,
    )


def test_superset_trainer_tasks_labels_and_process_split(tiny_root):
    whole = _superset_trainer(tiny_root)
    ds = whole.dataset
    seen = ds.split.seen
    # The training attributes are exactly those some seen classes have and others lack.
    expected = [
        a
        for a in sorted({a for v in ds.attributes.values() for a in v})
        if 0 < sum(a in ds.attributes[c] for c in seen) < len(seen)
    ]
    assert whole.attributes == expected
    tasks = whole.sample_epoch()
    assert tasks.shape == (whole.outer.tasks_per_epoch, 1)
    rows, y, counts = whole.task_data(tasks[:3])
    n_rows = sum(len(ds.class_rows(c, "train")) for c in seen)
    assert rows.shape == (3, n_rows) and (counts == n_rows).all()
    labels = ds.labels[rows[0]]
    attr = whole.attributes[int(tasks[0, 0])]
    want = torch.tensor([attr in ds.attributes[ds.classes[int(lab)]] for lab in labels])
    assert torch.equal(y[0].bool(), want)
    assert whole.draw_text(tasks[:3]).shape == (3, 1, 32)
    assert 0.0 <= whole.validate().mean <= 1.0

    whole = _superset_trainer(tiny_root)  # generators in step with the parts'
    parts = [_superset_trainer(tiny_root, rank, 2) for rank in range(2)]
    batch = tasks[:3]
    whole.accumulate(batch)
    for part in parts:
        part.accumulate(batch)
    for p_whole, *p_parts in zip(
        whole.hypernet.parameters(), *(part.hypernet.parameters() for part in parts)
    ):
        summed = sum(p.grad if p.grad is not None else torch.zeros_like(p) for p in p_parts)
        assert torch.allclose(p_whole.grad, summed, atol=1e-10)
