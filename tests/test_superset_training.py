"""`train.task: supersets`: one attribute against the seen classes without it, BCE, AUC selection.

The class path (`train.task: classes`, the default) is covered, unchanged, by test_resume,
test_train and test_loop.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fig
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


# Balanced tasks have fewer rows, so fewer inner steps: they need more epochs to get as far.
@pytest.mark.parametrize(
    ("hn_type", "balance", "epochs"),
    [("EV", "none", 15), ("IVEV", "none", 15), ("W", "subsample", 30)],
)
@pytest.mark.parametrize(
    "rule",
    [
        # The paper's: towards the inner loop's weights, with its light weight decay (under
        # 0.05 the update rule leaves IVEV's and W's logits where they were).
        ("train.objective=update", "train.weight_decay=0.0001"),
        ("train.objective=induced",),
    ],
    ids=["update", "induced"],
)
def test_training_moves_the_single_logit_towards_the_attribute(
    tiny_root, tmp_path, hn_type, balance, epochs, rule
):
    from t2m_cli.training.run import _build_trainer

    config = load_config(
        None,
        _overrides(
            tiny_root,
            tmp_path,
            "dir",
            f"train.epochs={epochs}",
            "train.patience=null",
            "train.lr=0.02",
            f"model.hn_type={hn_type}",
            f"train.superset_balance={balance}",
            "train.device=cpu",
            *rule,
        ),
    )
    trainer, *_ = _build_trainer(config, None)

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
    assert len(results) == epochs
    assert float((after > 0).float().mean()) >= 0.75, after
    assert float(after.mean()) > float(before.mean())


def test_interrupted_superset_run_resumes_like_an_unbroken_one(tiny_root, tmp_path):
    def config(name):
        return load_config(
            None,
            _overrides(tiny_root, tmp_path, name, "train.epochs=4", "train.tasks_per_step=3"),
        )

    assert_resumes_like_unbroken(config, tmp_path / "runs")


def test_balanced_tasks_have_equal_sides_drawn_from_the_labelled_seen_training_rows(
    tiny_root, tmp_path
):
    from t2m_cli.training.run import _build_trainer

    extra = ("train.superset_balance=subsample", "train.device=cpu")
    trainer, *_ = _build_trainer(
        load_config(None, _overrides(tiny_root, tmp_path, "b", *extra)), None
    )
    ds = trainer.dataset
    seen_train = set(trainer.task_rows.tolist())
    every = torch.arange(len(trainer.attributes)).unsqueeze(1)
    rows, y, counts = trainer.task_data(every)
    assert rows.shape == y.shape == (len(every), int(counts.max()))
    unbalanced = 0
    for t, attribute in enumerate(trainer.attributes):
        n = int(counts[t])
        task_rows, task_y = rows[t, :n].tolist(), y[t, :n]
        # Training rows of seen classes only, each once, labelled by their class's attributes.
        assert set(task_rows) <= seen_train and len(set(task_rows)) == n
        owners = [ds.classes[int(ds.labels[r])] for r in task_rows]
        assert all(c in ds.split.seen for c in owners)
        has = torch.tensor([attribute in ds.attributes[c] for c in owners])
        assert torch.equal(task_y.bool(), has)
        # As many positives as negatives: all of the smaller side, that many of the larger.
        n_pos = int(trainer.labels[t].sum())
        smaller = min(n_pos, len(trainer.task_rows) - n_pos)
        assert int(task_y.sum()) == n - int(task_y.sum()) == smaller
        unbalanced += n_pos != len(trainer.task_rows) - n_pos
    assert unbalanced  # the tiny dataset has attributes to balance

    # Drawn with the trainer's generator: the same state draws the same rows, and it moves on.
    state = trainer.generator.get_state()
    again = trainer.task_data(every)
    assert not torch.equal(again[0], rows)
    trainer.generator.set_state(state)
    assert torch.equal(trainer.task_data(every)[0], again[0])

    # Without balancing every task reads every labelled training row.
    plain, *_ = _build_trainer(load_config(None, _overrides(tiny_root, tmp_path, "p")), None)
    rows, _, counts = plain.task_data(every)
    assert (counts == len(plain.task_rows)).all() and rows.shape[1] == len(plain.task_rows)


@pytest.mark.parametrize("hn_type", ["W", "WW"])
def test_fixed_k_hypernetworks_are_built_for_one_description(tiny_root, tmp_path, hn_type):
    from t2m_cli.training.run import _build_trainer

    config = load_config(None, [*_overrides(tiny_root, tmp_path, "w"), f"model.hn_type={hn_type}"])
    # train.classes_per_task is a class-task setting: a super-set W ignores it.
    load_config(None, [*_overrides(tiny_root, tmp_path, "w"), "train.classes_per_task=3"])
    trainer, *_ = _build_trainer(config, None)
    assert trainer.hypernet.hn_type == hn_type and trainer.hypernet.fixed_k == 1
    assert len(list(trainer.epochs())) == 3


def test_original_superset_w_resumes_exactly_and_is_scored_by_the_supersets_protocol(
    tiny_root, tmp_path
):
    def config(name):
        extra = ["model.hn_type=W", "train.superset_balance=subsample", "train.epochs=4"]
        return load_config(None, _overrides(tiny_root, tmp_path, name, *extra))

    cut = assert_resumes_like_unbroken(config, tmp_path / "runs")

    result = runner.invoke(app, ["evaluate", str(cut), "--protocol", "supersets", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["runs"][0]["hn_type"] == "W" and doc["runs"][0]["task"] == "supersets"
    assert 0.0 <= fig(doc, "supersets", "unseen")["mean"] <= 1.0

    # The other protocols ask for classifiers over 2 or many classes: refused, before scoring.
    for protocols in ("pairs", "zsl", "supersets,gzsl"):
        result = runner.invoke(app, ["evaluate", str(cut), "--protocol", protocols])
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        assert "The W hypernetwork of this run was built for one description" in message
        assert "Evaluate it with --protocol supersets" in message
        assert "supersets" not in message.split("protocol ")[1].split(" (")[0]
        assert "Traceback" not in result.output


def test_the_w_baseline_of_a_superset_run_is_a_superset_w(tiny_root, tmp_path):
    folder = train_run(load_config(None, _overrides(tiny_root, tmp_path, "ev")))
    result = runner.invoke(app, ["train", "--baseline", "W", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    args = [str(folder), "--protocol", "pairs,supersets", "--baseline", "W", "--json"]
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # Built for one description: scored by the supersets protocol, left out of pairs.
    assert {f["protocol"] for f in doc["results"] if f["method"] == "W"} == {"supersets"}
    assert 0.0 <= fig(doc, "supersets", "unseen", "W")["mean"] <= 1.0
    assert {f["protocol"] for f in doc["results"] if f["method"] == "T2M-HN"} == {
        "pairs",
        "supersets",
    }


def test_superset_balance_without_superset_tasks_is_refused(tiny_root, tmp_path):
    args = [
        "train",
        f"dataset.root={tiny_root}",
        "text.model=hashing",
        "train.superset_balance=subsample",
        f"run.dir={tmp_path / 'runs'}",
        "run.name=cls",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "train.superset_balance subsample balances super-set tasks" in message
    assert "set train.task supersets, or train.superset_balance none" in message
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs" / "cls").exists()
    with pytest.raises(ConfigError, match="superset_balance"):
        load_config(None, ["train.superset_balance=subsample", "train.task=classes"])


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
