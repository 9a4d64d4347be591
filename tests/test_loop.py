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
    # The paper's rule: the inner loop's share of the work (the induced objectives' share is
    # test_training_options').
    inner, outer = _settings(tasks_per_step=tasks_per_step, seed=3, objective="update")
    return Trainer(hn, bank, ds, inner, outer, torch.device("cpu"), rank, world_size)


def _assert_parts_sum_to_whole(whole, parts, tasks) -> None:
    """Each process's trainer accumulates its share of ``tasks``; their gradients must sum
    to the gradient of the single process that took them all."""
    whole.accumulate(tasks)
    for part in parts:
        part.accumulate(tasks)
    for p_whole, *p_parts in zip(
        whole.hypernet.parameters(), *(part.hypernet.parameters() for part in parts)
    ):
        summed = sum(p.grad if p.grad is not None else torch.zeros_like(p) for p in p_parts)
        assert torch.allclose(p_whole.grad, summed, atol=1e-10)


@pytest.mark.parametrize("n_tasks", [6, 5, 1])
def test_split_across_processes_sums_to_the_single_process_gradient(tiny_root, n_tasks):
    whole = _trainer(tiny_root)
    parts = [_trainer(tiny_root, rank, 2) for rank in range(2)]
    tasks = sample_tasks(whole.groups[0], 2, n_tasks, torch.Generator().manual_seed(1))
    _assert_parts_sum_to_whole(whole, parts, tasks)
    # Every process drew for the whole batch: their generators are still in step.
    assert all(
        torch.equal(part.generator.get_state(), whole.generator.get_state()) for part in parts
    )


@pytest.mark.parametrize("objective", ["update", "induced"])
def test_mixed_precision_trains_close_to_float32(tiny_root, objective):
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
        inner, outer = _settings(
            epochs=3, tasks_per_epoch=20, tasks_per_step=5, amp=amp, lr=0.025, objective=objective
        )
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
    inner, outer = _settings(tasks_per_step=4, seed=3, inner_epochs=1, objective="update")
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
    _assert_parts_sum_to_whole(whole, parts, tasks[:3])


def test_one_group_of_classes_draws_tasks_as_it_always_did():
    from t2m_cli.scoring.pairs import ordered_pairs

    g = torch.Generator().manual_seed(4)
    want = ordered_pairs(8)[torch.randperm(56, generator=g)[:30]]
    assert torch.equal(sample_tasks(8, 2, 30, torch.Generator().manual_seed(4)), want)
    assert torch.equal(sample_tasks((8,), 2, 30, torch.Generator().manual_seed(4)), want)
    g = torch.Generator().manual_seed(4)
    want = torch.stack([torch.randperm(8, generator=g)[:3] for _ in range(30)])
    assert torch.equal(sample_tasks((8,), 3, 30, torch.Generator().manual_seed(4)), want)


def test_tasks_of_two_groups_never_mix_them_and_follow_their_ordered_pairs():
    tasks = sample_tasks((6, 4), 2, 42, torch.Generator().manual_seed(0))
    first = tasks < 6
    assert torch.equal(first[:, 0], first[:, 1])
    # All 30 + 12 ordered pairs, each once, as the original's shuffled pool of both groups.
    assert len({tuple(t) for t in tasks.tolist()}) == 42 and int((~first[:, 0]).sum()) == 12
    g = torch.Generator().manual_seed(1)
    second = [(sample_tasks((6, 4), 2, 10, g)[:, 0] >= 6).float().mean() for _ in range(400)]
    assert abs(float(torch.stack(second).mean()) - 12 / 42) < 0.03

    tasks = sample_tasks((5, 4), 3, 400, torch.Generator().manual_seed(2))
    second = tasks >= 5
    assert (second.all(1) | (~second).all(1)).all()
    assert all(len(set(t)) == 3 for t in tasks.tolist())
    assert abs(float(second[:, 0].float().mean()) - 24 / 84) < 0.07  # 4*3*2 of 5*4*3 + 4*3*2
    # A group with fewer than k classes gives no task.
    assert (sample_tasks((5, 2), 3, 50, torch.Generator().manual_seed(3)) < 5).all()


def test_once_trains_each_pair_or_attribute_once_when_they_are_fewer_than_tasks():
    tasks = sample_tasks(3, 2, 10, torch.Generator().manual_seed(0), fill=False)
    assert tasks.shape == (6, 2) and len({tuple(t) for t in tasks.tolist()}) == 6
    assert sample_tasks(10, 2, 20, torch.Generator().manual_seed(0), fill=False).shape == (20, 2)
    tasks = superset_tasks(3, 8, torch.Generator().manual_seed(0), fill=False)
    assert sorted(tasks[:, 0].tolist()) == [0, 1, 2]
    _, outer = _settings(task_sampling="once", val_classes="train")
    assert (outer.task_sampling, outer.val_classes) == ("once", "train")


def _mode_trainer(tiny_root, val_classes, **train):
    from t2m_cli.data.dataset import load_dataset
    from t2m_cli.data.texts import TextBank
    from t2m_cli.encoders.text import HashingEncoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.training.loop import Trainer

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    # Names: one text per class, row i of the bank for class i.
    bank = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(32))
    torch.manual_seed(0)
    hn = build_hypernet("EV", text_dim=32, feature_dim=ds.feature_dim, hidden=8)
    inner, outer = _settings(val_classes=val_classes, seed=3, **train)
    return Trainer(hn, bank, ds, inner, outer, torch.device("cpu"))


def test_validation_classes_in_train_mode_give_tasks_of_their_own_on_training_rows(tiny_root):
    trainer = _mode_trainer(tiny_root, "train", tasks_per_epoch=48)
    ds = trainer.dataset
    assert [ds.classes[int(c)] for c in trainer.classes] == [*ds.split.seen, *ds.split.val]
    tasks = trainer.sample_epoch()
    labels = trainer.classes[tasks]
    val = torch.isin(labels, torch.tensor([ds.index(c) for c in ds.split.val]))
    assert torch.equal(val[:, 0], val[:, 1])  # never mixed
    assert int(val[:, 0].sum()) == 3 * 2  # 42 seen and 6 validation pairs, each once
    rows, y, counts = trainer.task_data(tasks)
    for t in range(len(tasks)):
        own = rows[t, : counts[t]]
        assert not ds.is_test[own].any()  # never a held-out row
        assert torch.equal(ds.labels[own], labels[t][y[t, : counts[t]]])
        assert int(counts[t]) == sum(int((~ds.is_test[ds.labels == c]).sum()) for c in labels[t])
    assert torch.equal(trainer.draw_text(tasks), trainer.bank.embeddings[labels])

    holdout = _mode_trainer(tiny_root, "holdout", tasks_per_epoch=48)
    seen = torch.tensor([ds.index(c) for c in ds.split.seen])
    assert torch.equal(holdout.classes, seen)
    assert holdout.sample_epoch().max() < len(ds.split.seen)


def test_validation_classes_in_train_mode_are_scored_on_held_out_rows_only(tiny_root):
    scores = {}
    for mode in ("train", "holdout"):
        for scramble in (False, True):
            trainer = _mode_trainer(tiny_root, mode)
            ds = trainer.dataset
            if scramble:
                g = torch.Generator().manual_seed(9)
                for c in ds.split.val:
                    rows = ds.class_rows(c, "train")
                    ds.features[rows] = 50 * torch.randn(len(rows), ds.feature_dim, generator=g)
            scores[mode, scramble] = trainer.validate()
    assert scores["train", False] == scores["train", True]
    assert scores["holdout", False] != scores["holdout", True]


def test_once_ends_an_epoch_when_the_pairs_run_out(tiny_root):
    # The paper's stream of pairs, drawn an epoch at a time.
    settings = {
        "epochs": 1,
        "tasks_per_epoch": 100,
        "tasks_per_step": 50,
        "classes_per_task_max": None,
    }
    trainer = _mode_trainer(tiny_root, "holdout", task_sampling="once", **settings)
    assert [r.tasks for r in trainer.epochs()] == [7 * 6]
    trainer = _mode_trainer(tiny_root, "holdout", **settings)
    assert [r.tasks for r in trainer.epochs()] == [100]


def test_fixed_inner_order_reaches_the_inner_loop(tiny_root, monkeypatch):
    import t2m_cli.training.loop as loop

    seen_orders = []
    real = loop.inner_train

    def spy(*args):
        seen_orders.append(args[-1])
        return real(*args)

    monkeypatch.setattr(loop, "inner_train", spy)
    for order in ("fixed", "reshuffle"):
        trainer = _mode_trainer(
            tiny_root, "holdout", inner_order=order, tasks_per_step=4, objective="update"
        )
        trainer.step(trainer.sample_epoch()[:4])
        epochs = seen_orders.pop()
        assert len(epochs) == trainer.inner.epochs == 3
        same = all(torch.equal(o, epochs[0]) for o in epochs)
        assert same == (order == "fixed")


def test_task_rows_and_labels_are_each_class_rows_in_task_order(tiny_root):
    """The vectorised `Trainer.task_data` against the plain construction: the task's classes'
    training rows one after another, labelled by slot, padding at row 0 with label 0; classes
    of different sizes included (one trimmed to 3 rows)."""
    trainer = _trainer(tiny_root)
    trainer.train_rows[1] = trainer.train_rows[1][:3]
    trainer.row_counts[1] = 3
    trainer.row_table[1, 3:] = -1  # never read past a class's rows
    g = torch.Generator().manual_seed(0)
    for k in (2, 3):
        tasks = sample_tasks(trainer.groups, k, 7, g)
        tasks[0, 0] = 1
        rows, y, counts = trainer.task_data(tasks)
        for t, task in enumerate(tasks.tolist()):
            parts = [trainer.train_rows[c] for c in task]
            n = sum(len(p) for p in parts)
            assert counts[t] == n
            assert torch.equal(rows[t, :n], torch.cat(parts))
            assert torch.equal(
                y[t, :n], torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])
            )
            assert not rows[t, n:].any() and not y[t, n:].any()
