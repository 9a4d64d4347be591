"""Training options beyond the paper's rule: the induced objective, tasks of several sizes,
early stopping (train.patience), and classifiers induced from the mean of a class's
descriptions (eval.descriptions: mean)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import fig, invoke_train
from test_resume import assert_resumes_like_unbroken
from typer.testing import CliRunner

from t2m_cli import runs
from t2m_cli.cli import app
from t2m_cli.config import TrainConfig, load_config
from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.texts import NegativeDescriptions, TextBank, build_describer, with_policy
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.errors import ConfigError, UserInputError
from t2m_cli.evaluation.baselines import fit_ridge_baseline
from t2m_cli.evaluation.report import RunEvaluation, aggregate
from t2m_cli.models.checkpoint import load_checkpoint
from t2m_cli.models.hypernet import build_hypernet
from t2m_cli.scoring.metrics import Summary
from t2m_cli.scoring.pairs import pair_accuracies, validation_pair_accuracy
from t2m_cli.training.inner import InnerSettings
from t2m_cli.training.loop import OuterSettings, Trainer, sample_tasks

runner = CliRunner()
TINY = ["text.model=hashing", "train.epochs=1", "train.tasks_per_epoch=5", "model.hidden=8"]


def _trainer(root: Path, uneven: bool = False, rank: int = 0, world_size: int = 1, **train):
    """A float64 IVEV trainer on the tiny dataset (seed 3) with these ``train`` keys.

    ``uneven`` moves 3 * i training rows of the i-th seen class to the held-out part, so that
    the tasks of a batch differ in size and are padded.
    """
    ds = load_dataset(root, "tiny", "pointnet")
    ds.features = ds.features.double()
    if uneven:
        for i, c in enumerate(ds.split.seen):
            ds.is_test[ds.class_rows(c, "train")[: 3 * i]] = True
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(32))
    bank = TextBank(bank.classes, bank.embeddings.double(), bank.options)
    torch.manual_seed(0)
    hn = build_hypernet("IVEV", text_dim=32, feature_dim=ds.feature_dim, hidden=8).double()
    section = TrainConfig.model_validate({"seed": 3, **train})
    return Trainer(
        hn,
        bank,
        ds,
        InnerSettings.from_config(section),
        OuterSettings.from_config(section, eval_seed=0),
        torch.device("cpu"),
        rank,
        world_size,
    )


def _hand_induced_losses(trainer: Trainer, tasks: torch.Tensor, text: torch.Tensor):
    """(T,) cross-entropy of the classifier the hypernetwork emits from ``text`` for each task,
    on all the task's training rows, written out one task at a time from the dataset."""
    ds = trainer.dataset
    losses = []
    for t, task in enumerate(tasks.tolist()):
        names = [ds.classes[int(trainer.classes[c])] for c in task]
        rows = [ds.class_rows(name, "train") for name in names]
        x = ds.features[torch.cat(rows)].unsqueeze(0)
        y = torch.cat([torch.full((len(r),), i) for i, r in enumerate(rows)])
        theta = trainer.hypernet(text[t : t + 1])
        losses.append(F.cross_entropy(trainer.hypernet.target(theta, x)[0], y))
    return torch.stack(losses)


def _grads(trainer: Trainer) -> list[torch.Tensor]:
    return [p.grad.clone() for p in trainer.hypernet.parameters()]


@pytest.mark.parametrize("n_tasks", [1, 4])
def test_induced_objective_descends_the_emitted_classifiers_own_loss(
    tiny_root, monkeypatch, n_tasks
):
    import t2m_cli.training.loop as loop

    def no_inner_loop(*args):
        raise AssertionError("train.objective induced ran an inner loop")

    monkeypatch.setattr(loop, "inner_train", no_inner_loop)
    trainer = _trainer(tiny_root, uneven=True, objective="induced")
    tasks = sample_tasks(trainer.groups[0], 2, n_tasks, torch.Generator().manual_seed(1))
    if n_tasks > 1:
        _, _, counts = trainer.task_data(tasks)
        assert len(set(counts.tolist())) > 1, "tasks of different sizes test the padding"
    generator = torch.Generator()
    generator.set_state(trainer.generator.get_state())
    text = trainer.bank.draw(trainer.classes[tasks], generator)

    loss, norm = trainer.accumulate(tasks)
    params = list(trainer.hypernet.parameters())
    by_hand = _hand_induced_losses(trainer, tasks, text)
    for got, want in zip(_grads(trainer), torch.autograd.grad(by_hand.mean(), params)):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    assert torch.allclose(loss, by_hand.detach(), rtol=1e-12)
    assert torch.equal(norm, torch.zeros(n_tasks, dtype=norm.dtype))
    # Only the descriptions were drawn: no minibatch order either.
    assert torch.equal(trainer.generator.get_state(), generator.get_state())


def test_both_adds_the_induced_gradient_to_the_paper_update(tiny_root):
    tasks = sample_tasks(7, 2, 3, torch.Generator().manual_seed(2))
    grads, outputs = {}, {}
    for objective in ("update", "both"):
        trainer = _trainer(tiny_root, uneven=True, objective=objective)
        state = trainer.generator.get_state()
        outputs[objective] = trainer.accumulate(tasks)
        grads[objective] = _grads(trainer)
    generator = torch.Generator()
    generator.set_state(state)
    text = trainer.bank.draw(trainer.classes[tasks], generator)
    params = list(trainer.hypernet.parameters())
    induced = torch.autograd.grad(_hand_induced_losses(trainer, tasks, text).mean(), params)
    for both, update, own in zip(grads["both"], grads["update"], induced):
        assert torch.allclose(both, update + own, rtol=1e-9, atol=1e-12)
    assert any(not torch.allclose(b, u) for b, u in zip(grads["both"], grads["update"]))
    # The reported inner loss and update norm are the paper's in both.
    for got, want in zip(outputs["both"], outputs["update"]):
        assert torch.equal(got, want)


@pytest.mark.parametrize("objective", ["induced", "both"])
@pytest.mark.parametrize("n_tasks", [5, 1])
def test_induced_objectives_split_across_processes_sum_to_one_process(
    tiny_root, objective, n_tasks
):
    whole = _trainer(tiny_root, objective=objective)
    parts = [_trainer(tiny_root, rank=r, world_size=2, objective=objective) for r in range(2)]
    tasks = sample_tasks(7, 2, n_tasks, torch.Generator().manual_seed(1))
    whole.accumulate(tasks)
    for part in parts:
        part.accumulate(tasks)
    for p_whole, *p_parts in zip(*(t.hypernet.parameters() for t in (whole, *parts))):
        summed = sum(p.grad if p.grad is not None else torch.zeros_like(p) for p in p_parts)
        assert torch.allclose(p_whole.grad, summed, atol=1e-12)
    assert all(
        torch.equal(part.generator.get_state(), whole.generator.get_state()) for part in parts
    )


def test_induced_steps_descend_the_loss_they_report(tiny_root):
    trainer = _trainer(tiny_root, objective="induced", epochs=2, tasks_per_epoch=6)
    results = list(trainer.epochs())
    assert [r.tasks for r in results] == [6, 6]
    assert all(r.update_norm == 0.0 for r in results)
    tasks = sample_tasks(7, 2, 4, torch.Generator().manual_seed(5))
    names = TextBank(
        trainer.bank.classes, trainer.bank.embeddings, [[o[0]] for o in trainer.bank.options]
    )
    trainer.bank = names  # one text per class: the same task loss at every step
    losses = [float(trainer.step(tasks)[0].mean()) for _ in range(6)]
    assert all(b < a for a, b in itertools.pairwise(losses)), losses


# Tasks of several sizes.


@pytest.mark.parametrize(
    ("low", "top", "val_classes", "sizes"),
    [
        (2, 5, "holdout", range(2, 6)),
        (3, 4, "holdout", range(3, 5)),
        # Capped by the largest group: the 7 seen classes.
        (2, 10, "train", range(2, 8)),
    ],
)
def test_a_range_of_task_sizes_draws_k_per_step_from_one_group(
    tiny_root, low, top, val_classes, sizes
):
    trainer = _trainer(
        tiny_root,
        classes_per_task=low,
        classes_per_task_max=top,
        val_classes=val_classes,
        tasks_per_epoch=23,
        tasks_per_step=4,
    )
    seen = set(range(7))
    val = set(range(7, 10)) if val_classes == "train" else set()
    ks: Counter[int] = Counter()
    from_val = 0
    for _ in range(100):
        batches = trainer.epoch_batches()
        assert [len(b) for b in batches] == [4] * 5 + [3]
        for batch in batches:
            k = batch.shape[1]
            ks[k] += 1
            for task in batch.tolist():
                assert len(set(task)) == k
                assert set(task) <= seen or set(task) <= val, task
                from_val += set(task) <= val
    assert set(ks) == set(sizes)
    expected = 600 / len(sizes)
    assert all(abs(n - expected) < 0.3 * expected for n in ks.values()), ks
    assert (from_val > 0) == (val_classes == "train")


@pytest.mark.parametrize(("k", "val_classes"), [(2, "holdout"), (3, "train")])
def test_without_a_maximum_the_epoch_is_the_papers_stream(tiny_root, k, val_classes):
    trainer = _trainer(
        tiny_root,
        classes_per_task=k,
        classes_per_task_max=None,
        val_classes=val_classes,
        tasks_per_epoch=23,
        tasks_per_step=4,
    )
    generator = torch.Generator().manual_seed(3)
    groups = (7, 3) if val_classes == "train" else (7,)
    for _ in range(3):
        want = sample_tasks(groups, k, 23, generator).split(4)
        got = trainer.epoch_batches()
        assert len(got) == len(want) == 6
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert torch.equal(trainer.generator.get_state(), generator.get_state())


def test_an_epoch_trains_every_drawn_size(tiny_root, monkeypatch):
    trainer = _trainer(
        tiny_root, classes_per_task_max=4, tasks_per_epoch=12, tasks_per_step=2, epochs=1
    )
    shapes = []
    real = Trainer.step

    def spy(self, tasks, where="a step"):
        shapes.append(tuple(tasks.shape))
        return real(self, tasks, where)

    monkeypatch.setattr(Trainer, "step", spy)
    results = list(trainer.epochs())
    assert [r.tasks for r in results] == [12]
    assert all(n == 2 for n, _ in shapes) and len(shapes) == 6
    assert {k for _, k in shapes} == {2, 3, 4}
    assert all(torch.isfinite(torch.tensor(r.inner_loss)) for r in results)


# Early stopping.


def _script_validation(monkeypatch, scores):
    """Make `Trainer.validate` return these scores, one per epoch (the last one thereafter)."""
    left = list(scores)

    def validate(self):
        return Summary(left.pop(0) if len(left) > 1 else left[0], 0.01, 3)

    monkeypatch.setattr(Trainer, "validate", validate)


def _config(root, tmp_path, name, *extra):
    return load_config(
        None,
        [
            f"dataset.root={root}",
            "text.model=hashing",
            "train.epochs=6",
            "train.tasks_per_epoch=4",
            "model.hidden=8",
            f"run.dir={tmp_path / 'runs'}",
            f"run.name={name}",
            *extra,
        ],
    )


def _lines(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


def test_patience_stops_after_that_many_epochs_without_a_better_score(
    tiny_root, tmp_path, monkeypatch
):
    from t2m_cli.training.run import train_run

    # Best at epoch 3, then two epochs no better: stop after epoch 5 of 6.
    scores = [0.5, 0.4, 0.6, 0.6, 0.3, 0.3]
    _script_validation(monkeypatch, scores)
    folder = train_run(_config(tiny_root, tmp_path, "p", "train.patience=2"))
    lines = _lines(folder)
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4, 5]
    assert [m["is_best"] for m in lines] == [True, False, True, False, False]
    info = json.loads((folder / "run.json").read_text())
    assert info["stopped_early"] == {"after_epoch": 5}
    assert info["best"]["epoch"] == 3
    assert runs.load_state(folder)[1]["since_best"] == 2

    result = runner.invoke(app, ["train", "--resume", str(folder)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "stopped early after epoch 5" in message and "train.patience" in message
    assert "nothing to resume" in message
    assert len(_lines(folder)) == 5

    _script_validation(monkeypatch, scores)
    folder = train_run(_config(tiny_root, tmp_path, "all"))
    assert [m["epoch"] for m in _lines(folder)] == [1, 2, 3, 4, 5, 6]
    assert "stopped_early" not in json.loads((folder / "run.json").read_text())


def test_a_run_that_trains_all_its_epochs_did_not_stop_early(tiny_root, tmp_path, monkeypatch):
    _script_validation(monkeypatch, [0.5, 0.4])
    from t2m_cli.training.run import train_run

    config = _config(tiny_root, tmp_path, "p", "train.patience=2", "train.epochs=3")
    folder = train_run(config)
    assert len(_lines(folder)) == 3
    assert "stopped_early" not in json.loads((folder / "run.json").read_text())


def test_a_resumed_run_keeps_its_count_of_epochs_without_progress(tiny_root, tmp_path, monkeypatch):
    # Epoch 1 is the best; the run stops after epoch 3. Cut after epoch 2, the resumed run
    # must train epoch 3 only, as the unbroken one did.
    _script_validation(monkeypatch, [0.5])
    cut = assert_resumes_like_unbroken(
        lambda name: _config(tiny_root, tmp_path, name, "train.patience=2"), tmp_path / "runs"
    )
    assert len(_lines(cut)) == 3
    assert json.loads((cut / "run.json").read_text())["stopped_early"] == {"after_epoch": 3}
    result = runner.invoke(app, ["train", "--resume", str(cut)])
    assert result.exit_code == 2 and "stopped early" in result.stderr


# Descriptions averaged per class.


def test_an_averaged_bank_holds_each_class_mean_and_draws_it_every_time(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    encoder = HashingEncoder(32)
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", encoder)
    means = torch.stack([encoder.encode(ds.descriptions[c]).mean(0) for c in ds.classes])
    averaged = bank.averaged()
    assert averaged.classes == bank.classes
    assert torch.allclose(averaged.embeddings, means, atol=1e-7)
    assert not torch.allclose(means[0], bank.draw(torch.tensor([0]), torch.Generator())[0])

    idx = torch.tensor([[0, 3], [5, 5], [13, 2]])
    for seed in range(4):
        drawn = averaged.draw(idx, torch.Generator().manual_seed(seed))
        assert torch.allclose(drawn, means[idx], atol=1e-7)
    draws = {
        tuple(bank.draw(idx, torch.Generator().manual_seed(s)).sum((1, 2)).tolist())
        for s in range(8)
    }
    assert len(draws) > 1  # the bank itself does draw

    assert with_policy(bank, "draw") is bank
    assert torch.equal(with_policy(bank, "mean").embeddings, averaged.embeddings)
    names = TextBank.build(ds.classes, ds.descriptions, "names", encoder)
    assert torch.allclose(names.averaged().embeddings, names.embeddings)

    negative = build_describer(
        ds.classes, ds.descriptions, ds.attributes, encoder, "descriptions", p_negative=0.5
    )
    mean_negative = with_policy(negative, "mean")
    assert isinstance(mean_negative, NegativeDescriptions)
    assert torch.allclose(mean_negative.bank.embeddings, means, atol=1e-7)
    assert (mean_negative.p_negative, mean_negative.prefix) == (0.5, negative.prefix)


def test_training_chooses_the_epoch_on_the_evaluated_descriptions(tiny_root, tmp_path):
    from t2m_cli.training.run import _build_trainer

    trainers = {}
    for policy in ("draw", "mean"):
        config = _config(tiny_root, tmp_path, policy, f"eval.descriptions={policy}")
        trainers[policy], *_ = _build_trainer(config, tmp_path / "cache")
    draw, mean = trainers["draw"], trainers["mean"]
    n_texts = sum(len(d) for d in draw.dataset.descriptions.values())
    # Training still draws one description at a time.
    assert mean.bank.embeddings.shape[0] == n_texts
    assert torch.equal(mean.bank.embeddings, draw.bank.embeddings)
    assert torch.equal(draw.val_bank.embeddings, draw.bank.embeddings)
    assert torch.allclose(mean.val_bank.embeddings, mean.bank.averaged().embeddings)
    want = validation_pair_accuracy(mean.hypernet, mean.bank.averaged(), mean.dataset, 0)
    assert mean.validate() == want
    assert draw.validate() == validation_pair_accuracy(draw.hypernet, draw.bank, draw.dataset, 0)
    assert draw.validate() != want


def _evaluate_json(tmp_path: Path, *args: str) -> dict:
    result = runner.invoke(
        app, ["evaluate", *args, "--json", "--cache-dir", str(tmp_path / "cache"), "-q"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_induces_every_method_from_class_means(tiny_root, tmp_path, monkeypatch):
    import t2m_cli.evaluation.protocol as protocol

    result = invoke_train(tiny_root, tmp_path, "r", *TINY)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "r"
    # What each method is fitted on and scored with.
    used: dict[str, torch.Tensor] = {}
    real_score, real_ridge = protocol.score_method, protocol.BASELINES["ridge"]

    def score_spy(model, method, bank, *args, **kwargs):
        used[method] = bank.embeddings
        return real_score(model, method, bank, *args, **kwargs)

    def ridge_spy(inputs):
        used["ridge fit"] = inputs.bank.embeddings
        return real_ridge(inputs)

    monkeypatch.setattr(protocol, "score_method", score_spy)
    monkeypatch.setitem(protocol.BASELINES, "ridge", ridge_spy)
    args = [str(run), "--protocol", "pairs", "--baseline", "ridge"]
    docs, banks = {}, {}
    for policy in ("draw", "mean"):
        for seed in (0, 1):
            docs[policy, seed] = _evaluate_json(
                tmp_path, *args, "--set", f"eval.descriptions={policy}", "--seed", str(seed)
            )
        banks[policy] = dict(used)
    assert docs["mean", 0]["runs"][0]["descriptions"] == "mean"
    assert docs["draw", 0]["runs"][0]["descriptions"] == "draw"

    hypernet, _, norm = load_checkpoint(runs.checkpoint_path(run, "best"))
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    if norm is not None:
        ds = norm.apply(ds)
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder())
    averaged = bank.averaged()
    assert set(banks["mean"]) == set(banks["draw"]) == {"T2M-HN", "ridge", "ridge fit"}
    for name in banks["mean"]:
        assert torch.allclose(banks["mean"][name].cpu(), averaged.embeddings), name
        assert torch.equal(banks["draw"][name].cpu(), bank.embeddings), name
    # Means leave nothing to the seed, the one ridge's alpha is chosen with included.
    ridge, _ = fit_ridge_baseline(ds, averaged, seed=1)
    for method, model in (("T2M-HN", hypernet), ("ridge", ridge)):
        _, acc = pair_accuracies(model, averaged, ds, ds.split.unseen, "all", torch.Generator())
        for seed in (0, 1):
            got = fig(docs["mean", seed], "pairs", "unseen", method)["mean"]
            assert got == pytest.approx(float(acc.double().mean()), abs=1e-9), (method, seed)
    # A draw of one description gives another figure, and one that moves with the seed (the
    # ridge baseline's figures on this easy data do not move).
    drawn = [fig(docs["draw", s], "pairs", "unseen")["mean"] for s in (0, 1)]
    assert drawn[0] != drawn[1]
    assert fig(docs["mean", 0], "pairs", "unseen")["mean"] not in drawn


def test_evaluations_with_other_description_policies_are_not_averaged(tiny_root, tmp_path):
    a = invoke_train(tiny_root, tmp_path, "a", *TINY, "eval.descriptions=draw")
    b = invoke_train(tiny_root, tmp_path, "b", *TINY, "--seed", "1", "eval.descriptions=mean")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    run_a, run_b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    # The run's own eval section is the default at evaluation.
    doc = _evaluate_json(tmp_path, str(run_b), "--protocol", "pairs")
    assert doc["runs"][0]["descriptions"] == "mean"

    result = runner.invoke(
        app,
        [
            "evaluate",
            str(run_a),
            str(run_b),
            "--protocol",
            "pairs",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    # Refused before anything is scored, with the setting that scores them alike.
    assert f"eval.descriptions: {run_a} 'draw', {run_b} 'mean'" in message
    assert "--set eval.descriptions=mean" in message and "scoring" not in result.stderr

    doc = _evaluate_json(
        tmp_path, str(run_a), str(run_b), "--protocol", "pairs", "--set", "eval.descriptions=mean"
    )
    assert [r["descriptions"] for r in doc["runs"]] == ["mean", "mean"]

    with pytest.raises(UserInputError, match="descriptions"):
        aggregate(
            [
                RunEvaluation(run_a, {"descriptions": "draw"}),
                RunEvaluation(run_b, {"descriptions": "mean"}),
            ]
        )


# Settings refused.


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["train.classes_per_task=3", "train.classes_per_task_max=2"],
            "train.classes_per_task_max 2 is below train.classes_per_task 3",
        ),
        (["train.task=supersets", "train.classes_per_task_max=3"], "train.classes_per_task_max"),
        (["model.hn_type=W", "train.classes_per_task_max=3"], "train.classes_per_task_max"),
        (["model.hn_type=WW", "train.classes_per_task_max=3"], "train.classes_per_task_max"),
        (["train.classes_per_task_max=1"], "train.classes_per_task_max"),
        (["train.patience=0"], "train.patience"),
        (["train.objective=inner"], "train.objective"),
        (["eval.descriptions=all"], "eval.descriptions"),
    ],
)
def test_train_refuses_settings_the_options_cannot_take(tiny_root, tmp_path, args, needle):
    result = invoke_train(tiny_root, tmp_path, "r", *TINY, *args)
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_the_options_accept_their_values():
    config = load_config(
        None,
        [
            "train.classes_per_task=3",
            "train.classes_per_task_max=3",
            "train.objective=both",
            "train.patience=1",
            "eval.descriptions=mean",
        ],
    )
    assert (config.train.classes_per_task_max, config.train.patience) == (3, 1)
    assert (config.train.objective, config.eval.descriptions) == ("both", "mean")
    # The defaults are the recommended mode; null and the paper's values turn each off.
    defaults = load_config(None, [])
    assert (defaults.train.classes_per_task_max, defaults.train.patience) == (8, 10)
    assert (defaults.train.objective, defaults.eval.descriptions) == ("induced", "mean")
    assert (defaults.model.hidden, defaults.model.linear_skip) == (60, True)
    assert (defaults.train.epochs, defaults.train.weight_decay) == (30, 0.05)
    paper = load_config(
        None,
        [
            "train.classes_per_task_max=null",
            "train.patience=null",
            "train.objective=update",
            "eval.descriptions=draw",
            "model.linear_skip=false",
        ],
    )
    assert (paper.train.classes_per_task_max, paper.train.patience) == (None, None)
    assert (paper.train.objective, paper.eval.descriptions) == ("update", "draw")
    assert paper.model.linear_skip is False
    with pytest.raises(ConfigError, match="classes_per_task_max"):
        load_config(None, ["model.hn_type=W", "train.classes_per_task_max=2"])


# The recommended defaults left unset, resolved for what they cannot apply to.


@pytest.mark.parametrize(
    ("args", "linear_skip", "top"),
    [
        ([], True, 8),
        (["model.hn_type=W"], False, None),
        (["model.hn_type=WW"], False, None),
        (["model.hn_type=IVEV"], False, 8),
        (["train.task=supersets"], True, None),
        (["train.task_sampling=once"], True, None),
        (["train.classes_per_task=10"], True, 10),
        (["train.classes_per_task=5"], True, 8),
        (["model.hn_type=W", "model.linear_skip=false"], False, None),
        (["train.task_sampling=once", "train.classes_per_task_max=null"], True, None),
    ],
)
def test_unset_recommended_defaults_resolve_to_what_the_model_and_tasks_take(
    args, linear_skip, top
):
    config = load_config(None, args)
    assert (config.model.linear_skip, config.train.classes_per_task_max) == (linear_skip, top)


@pytest.mark.parametrize(
    "args",
    [
        ["model.hn_type=IVEV", "model.linear_skip=true"],
        ["model.hn_type=W", "model.linear_skip=true"],
    ],
)
def test_train_refuses_a_linear_skip_set_for_a_type_without_one(tiny_root, tmp_path, args):
    result = invoke_train(tiny_root, tmp_path, "r", *TINY, *args)
    assert result.exit_code == 2, result.output
    assert "model.linear_skip" in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_the_w_baseline_of_a_recommended_run_trains_with_the_papers_rule(tmp_path):
    from t2m_cli.training.run import baseline_config

    config = load_config(None, ["train.classes_per_task=3", "train.patience=4", "train.seed=5"])
    folder = tmp_path / "r" / "baselines" / "W"
    wanted = baseline_config(config, folder, "W")
    assert (wanted.model.hn_type, wanted.model.linear_skip) == ("W", False)
    assert (wanted.train.objective, wanted.train.weight_decay) == ("update", 1e-4)
    assert (wanted.train.classes_per_task, wanted.train.classes_per_task_max) == (2, None)
    # The paper's width and no early stop; the run's own epochs, seed and description policy.
    assert (wanted.model.hidden, wanted.train.patience) == (120, None)
    assert (wanted.train.epochs, wanted.train.seed) == (30, 5)
    assert wanted.eval.descriptions == config.eval.descriptions == "mean"
    assert (wanted.run.dir, wanted.run.name) == (folder.parent, "W")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["model.hn_type=W"],
        ["model.hn_type=IVEV", "train.task_sampling=once"],
        ["train.classes_per_task=3", "train.patience=null", "eval.descriptions=draw"],
    ],
)
def test_a_runs_saved_config_reloads_to_the_settings_it_trained_with(tiny_root, tmp_path, args):
    """--resume, evaluate and the W baseline read config.yaml: it must hold the resolved
    settings, not let them resolve again to other ones."""
    from t2m_cli.training.run import train_run

    config = _config(tiny_root, tmp_path, "r", "train.epochs=1", *args)
    folder = train_run(config)
    saved, _ = runs.load_run(folder)
    assert saved == config
    assert saved.model.linear_skip == config.model.linear_skip
    assert saved.train.classes_per_task_max == config.train.classes_per_task_max
    # And the checkpoint is the model that config builds.
    hypernet, _, _ = load_checkpoint(runs.checkpoint_path(folder, "best"))
    assert hypernet.build_args().get("linear_skip", False) == saved.model.linear_skip


def test_evaluate_refuses_an_unknown_description_policy(tiny_root, tmp_path):
    result = invoke_train(tiny_root, tmp_path, "r", *TINY)
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "runs" / "r"), "--set", "eval.descriptions=all"]
    )
    assert result.exit_code == 2, result.output
    assert "eval.descriptions" in result.stderr
