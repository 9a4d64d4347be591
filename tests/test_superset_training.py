"""`train.task: supersets`: one attribute against the seen classes without it, BCE, AUC selection.

The class path (`train.task: classes`, the default) is covered, unchanged, by test_resume,
test_train and test_loop.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_resume import _metrics, assert_resumes_like_unbroken
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.config import load_config
from t2m_cli.errors import ConfigError
from t2m_cli.training.run import train_run

runner = CliRunner()


def _overrides(tiny_root, tmp_path, name, *extra):
    return [
        f"dataset.root={tiny_root}",
        "text.model=hashing",
        "train.task=supersets",
        "train.epochs=3",
        "train.tasks_per_epoch=8",
        "model.hidden=16",
        f"run.dir={tmp_path / 'runs'}",
        f"run.name={name}",
        *extra,
    ]


def test_superset_run_trains_selects_on_val_auc_and_evaluates(tiny_root, tmp_path):
    from t2m_cli.evaluation.protocol import evaluate_run

    folder = train_run(load_config(None, _overrides(tiny_root, tmp_path, "sup")))
    metrics = _metrics(folder)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert all(0.0 <= m["val_acc"] <= 1.0 for m in metrics)
    assert all(m["tasks"] == 8 and m["inner_loss"] > 0 for m in metrics)
    info = json.loads((folder / "run.json").read_text())
    assert info["best"]["val_acc"] == max(m["val_acc"] for m in metrics)
    evaluation = evaluate_run(folder, protocols=("supersets",))
    parts = {f.metric: f for f in evaluation.figures if f.protocol == "supersets"}
    assert {"seen", "val", "unseen", "H"} <= parts.keys()
    assert all(0.0 <= parts[p].mean <= 1.0 for p in ("seen", "val", "unseen"))


@pytest.mark.parametrize("hn_type", ["EV", "IVEV"])
def test_training_moves_the_single_logit_towards_the_attribute(tiny_root, tmp_path, hn_type):
    from t2m_cli.training.run import _build_trainer

    config = load_config(
        None,
        _overrides(
            tiny_root,
            tmp_path,
            "dir",
            "train.epochs=15",
            "train.lr=0.02",
            f"model.hn_type={hn_type}",
            "train.device=cpu",
        ),
    )
    trainer, _ = _build_trainer(config, None)

    def gaps() -> torch.Tensor:
        """Per training attribute: mean logit on positive rows minus on negative rows."""
        with torch.no_grad():
            params = trainer.hypernet(trainer.texts.unsqueeze(1))
            x = trainer.features[trainer.task_rows].expand(len(trainer.texts), -1, -1)
            logits = trainer.hypernet.target(params, x)[..., 0]
        pos = trainer.labels.bool()
        return (logits * pos).sum(1) / pos.sum(1) - (logits * ~pos).sum(1) / (~pos).sum(1)

    before = gaps()
    results = list(trainer.epochs())
    after = gaps()
    assert len(results) == 15
    assert float((after > 0).float().mean()) >= 0.75, after
    assert float(after.mean()) > float(before.mean())


def test_interrupted_superset_run_resumes_like_an_unbroken_one(tiny_root, tmp_path):
    def config(name):
        return load_config(
            None,
            _overrides(tiny_root, tmp_path, name, "train.epochs=4", "train.tasks_per_step=3"),
        )

    assert_resumes_like_unbroken(config, tmp_path / "runs")


@pytest.mark.parametrize("hn_type", ["W", "WW"])
def test_fixed_k_hypernetworks_are_refused(tiny_root, tmp_path, hn_type):
    args = ["train", *_overrides(tiny_root, tmp_path, "w"), "--hn-type", hn_type]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "train.task" in result.stderr and "model.hn_type" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs" / "w").exists()
    with pytest.raises(ConfigError, match="EV or IVEV"):
        load_config(None, ["train.task=supersets", f"model.hn_type={hn_type}"])


def test_dataset_without_attributes_is_refused(tiny_root, tmp_path):
    (tiny_root / "attributes.json").unlink()
    result = runner.invoke(app, ["train", *_overrides(tiny_root, tmp_path, "noattr")])
    assert result.exit_code == 2, result.output
    assert "attributes.json" in result.stderr and "Traceback" not in result.output


def test_attributes_that_split_no_seen_classes_are_refused(tiny_root, tmp_path):
    split = json.loads((tiny_root / "split.json").read_text())
    attributes = {
        c: (["x"] if c in split["seen"] else [])
        for c in json.loads((tiny_root / "attributes.json").read_text())
    }
    (tiny_root / "attributes.json").write_text(json.dumps(attributes))
    result = runner.invoke(app, ["train", *_overrides(tiny_root, tmp_path, "nosplit")])
    assert result.exit_code == 2, result.output
    assert "splits its seen classes" in result.stderr
