"""t2m's two modes: the defaults are the recommended mode, examples/paper.yaml the paper's, and
the W baseline is the paper's W whichever mode its run trained in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import _train
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.config import config_to_dict, load_config
from t2m_cli.scoring.metrics import Summary
from t2m_cli.training.loop import Trainer
from t2m_cli.training.run import baseline_config

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

RECOMMENDED = {
    ("model", "hidden"): 60,
    ("model", "linear_skip"): True,
    ("train", "objective"): "induced",
    ("train", "classes_per_task_max"): 8,
    ("train", "epochs"): 30,
    ("train", "patience"): 10,
    ("train", "weight_decay"): 0.05,
    ("eval", "descriptions"): "mean",
}
PAPER = {
    ("model", "hidden"): 120,
    ("model", "linear_skip"): False,
    ("train", "objective"): "update",
    ("train", "classes_per_task_max"): None,
    ("train", "epochs"): 100,
    ("train", "patience"): None,
    ("train", "weight_decay"): 1e-4,
    ("eval", "descriptions"): "draw",
}


def _values(config) -> dict:
    data = config_to_dict(config)
    return {key: data[key[0]][key[1]] for key in RECOMMENDED}


def test_the_defaults_are_the_recommended_mode_and_the_paper_example_undoes_each():
    assert _values(load_config(None, [])) == RECOMMENDED
    for name in ("paper.yaml", "modelnet40.yaml"):
        assert _values(load_config(EXAMPLES / name, [])) == PAPER, name


def test_the_demo_config_trains_in_the_recommended_mode():
    # The README's first command trains examples/shapes.yaml: it must show what `t2m train`
    # does with no config file, so it sets nothing of the model, training or evaluation.
    text = (EXAMPLES / "shapes.yaml").read_text()
    for section in ("model:", "train:", "eval:"):
        assert f"\n{section}" not in text
    assert _values(load_config(EXAMPLES / "shapes.yaml", [])) == RECOMMENDED


def test_the_w_baseline_is_trained_by_the_papers_rule(tmp_path):
    config = load_config(None, [])
    wanted = baseline_config(config, tmp_path / "baselines" / "W", "W")
    assert wanted.model.hn_type == "W" and wanted.model.linear_skip is False
    assert wanted.model.hidden == 120
    assert wanted.train.objective == "update" and wanted.train.weight_decay == 1e-4
    assert wanted.train.patience is None
    assert wanted.train.classes_per_task == 2 and wanted.train.classes_per_task_max is None
    # The run's own data, texts, seed and epochs otherwise.
    assert wanted.train.seed == config.train.seed and wanted.train.epochs == config.train.epochs
    assert wanted.dataset == config.dataset and wanted.text == config.text


def test_a_run_stopped_by_patience_has_finished_training(tiny_root, tmp_path, monkeypatch):
    """A run whose patience ran out trained all it will (`runs.training_done`), which is what
    `t2m train --baseline` and `--baseline W` ask of a baseline folder."""
    from t2m_cli.runs import load_run, training_done, truncate_metrics

    # No epoch betters the first: patience 2 stops the run after epoch 3 of 6.
    monkeypatch.setattr(Trainer, "validate", lambda self: Summary(0.5, 0.0, 1))
    result = _train(tiny_root, tmp_path, "ev", "train.epochs=6", "train.patience=2")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "ev"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert json.loads((run / "run.json").read_text())["stopped_early"] == {"after_epoch": 3}
    config, _ = load_run(run)
    assert training_done(run, config)
    # Without patience the same three epochs are half a run.
    assert not training_done(
        run, config.model_copy(update={"train": config.train.model_copy(update={"patience": None})})
    )
    truncate_metrics(run, 2)
    assert not training_done(
        run, config.model_copy(update={"train": config.train.model_copy(update={"patience": 5})})
    )


@pytest.mark.parametrize("hn_type", ["IVEV", "W", "WW"])
def test_unset_recommended_keys_fall_back_for_models_that_cannot_take_them(hn_type):
    config = load_config(None, [f"model.hn_type={hn_type}"])
    assert config.model.linear_skip is False
    if hn_type != "IVEV":
        assert config.train.classes_per_task_max is None


def test_a_run_recorded_before_the_recommended_mode_keeps_the_papers_rule(tiny_root, tmp_path):
    """A config.yaml without the recommended mode's keys reloads to what it trained with."""
    from t2m_cli.runs import RECORDED_BEFORE_RECOMMENDED, load_run
    from t2m_cli.yamlio import load_yaml, write_yaml

    paper = [
        "model.linear_skip=false",
        "train.objective=update",
        "train.classes_per_task_max=null",
        "train.patience=null",
        "eval.descriptions=draw",
        "train.epochs=2",
    ]
    result = _train(tiny_root, tmp_path, "old", *paper)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "old"
    data = load_yaml(run / "config.yaml").data
    for key in RECORDED_BEFORE_RECOMMENDED:
        section, name = key.split(".")
        del data[section][name]
    write_yaml(run / "config.yaml", data)
    config, _ = load_run(run)
    values = config_to_dict(config)
    for key, value in RECORDED_BEFORE_RECOMMENDED.items():
        section, name = key.split(".")
        assert values[section][name] == value, key
    cache = ["--cache-dir", str(tmp_path / "cache"), "-q", "--json"]
    as_trained = runner.invoke(app, ["evaluate", str(run), *cache])
    assert as_trained.exit_code == 0, as_trained.output
    assert json.loads(as_trained.stdout)["runs"][0]["descriptions"] == "draw"
    # An evaluation override still wins over the recorded value.
    told = runner.invoke(app, ["evaluate", str(run), "--set", "eval.descriptions=mean", *cache])
    assert told.exit_code == 0, told.output
    assert json.loads(told.stdout)["runs"][0]["descriptions"] == "mean"


@pytest.mark.parametrize("hn_type", ["W", "WW"])
def test_w_and_ww_fall_back_to_the_papers_update_unless_told(hn_type):
    config = load_config(None, [f"model.hn_type={hn_type}"])
    assert (config.train.objective, config.train.weight_decay) == ("update", 1e-4)
    told = load_config(None, [f"model.hn_type={hn_type}", "train.objective=induced"])
    assert (told.train.objective, told.train.weight_decay) == ("induced", 1e-4)
    # EV keeps the recommended rule.
    assert load_config(None, []).train.objective == "induced"


def test_train_says_when_patience_stopped_it_and_which_epoch_is_best(
    tiny_root, tmp_path, monkeypatch
):
    monkeypatch.setattr(Trainer, "validate", lambda self: Summary(0.5, 0.0, 1))
    # Without -q, so that the log is shown.
    verbose = runner.invoke(
        app,
        [
            "train",
            f"dataset.root={tiny_root}",
            "text.model=hashing",
            "model.hidden=16",
            "train.tasks_per_epoch=5",
            "train.epochs=6",
            "train.patience=2",
            f"run.dir={tmp_path / 'runs'}",
            "run.name=loud",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert verbose.exit_code == 0, verbose.output
    log = " ".join(verbose.stderr.split())
    assert "stopped after epoch 3: 2 epochs without a better validation score" in log
    assert "best epoch 1: val 50.0%" in log
    assert " loss " in log and "inner loss" not in log
