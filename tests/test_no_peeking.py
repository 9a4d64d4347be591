"""Nothing chooses anything by looking at unseen classes: scramble them, and every choice stays."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import WORDS
from test_pairs import _Oracle

from t2m_cli.config import load_config
from t2m_cli.data.dataset import load_dataset, save_features, write_json
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.evaluation.baselines import fit_eszsl, fit_ridge_baseline
from t2m_cli.evaluation.classwise import calibration_rows, gzsl
from t2m_cli.training.run import train_run


def _scramble_unseen(ds):
    g = torch.Generator().manual_seed(123)
    features = ds.features.clone()
    for c in ds.split.unseen:
        rows = ds.class_rows(c)
        features[rows] = 50 * torch.randn(len(rows), features.shape[1], generator=g)
    return features


def _scrambled_copy(tiny_root, dest, scramble_attributes=False, scramble_descriptions=False):
    """A copy of the tiny dataset whose unseen classes' features (and attributes, and
    descriptions) are noise."""
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    for name in ("split.json", "descriptions.json", "attributes.json"):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes((tiny_root / name).read_bytes())
    if scramble_descriptions:
        # Words no other class uses, and as many descriptions as the others have, or more.
        descriptions = dict(ds.descriptions)
        for i, c in enumerate(ds.split.unseen):
            descriptions[c] = [f"unseen thing number {i} {'very ' * j}odd" for j in range(i + 2)]
        write_json(dest / "descriptions.json", descriptions)
    if scramble_attributes:
        # Each unseen class takes the words it lacked, plus one that no other class has.
        attributes = dict(ds.attributes)
        for c in ds.split.unseen:
            attributes[c] = [w for w in WORDS if w not in ds.attributes[c]] + ["unseen only"]
        write_json(dest / "attributes.json", attributes)
    save_features(
        dest / "features" / "pointnet.safetensors",
        _scramble_unseen(ds),
        ds.labels,
        ds.is_test,
        ds.classes,
        ds.meta,
    )
    return dest


def _train(root, tmp_path, name, *extra):
    """Train on ``root``; every epoch's metrics (less the timing) and the chosen best epoch."""
    config = load_config(
        None,
        [
            f"dataset.root={root}",
            "text.model=hashing",
            "train.epochs=4",
            "train.tasks_per_epoch=20",
            "model.hidden=8",
            f"run.dir={tmp_path / 'runs'}",
            f"run.name={name}",
            *extra,
        ],
    )
    folder = train_run(config)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines], (
        json.loads((folder / "run.json").read_text())["best"]
    )


def test_model_selection_and_tuning_ignore_unseen_classes(tiny_root, tmp_path):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    scrambled_root = _scrambled_copy(tiny_root, tmp_path / "scrambled")
    assert _train(tiny_root, tmp_path, "a") == _train(scrambled_root, tmp_path, "b")

    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(64))
    other = load_dataset(scrambled_root, "tiny", "pointnet")
    assert fit_ridge_baseline(ds, bank)[1] == fit_ridge_baseline(other, bank)[1]
    assert fit_eszsl(ds, bank)[1:] == fit_eszsl(other, bank)[1:]

    names = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(64))
    means = torch.stack([ds.features[ds.labels == c].mean(0) for c in range(len(ds.classes))])
    oracle = _Oracle(means, names)
    a = gzsl(oracle, names, ds, torch.Generator())
    b = gzsl(oracle, names, other, torch.Generator())
    assert a.calibration == b.calibration
    assert torch.equal(a.seen, b.seen) and torch.equal(a.seen_calibrated, b.seen_calibrated)
    # The scrambled classes were scored, only never used to choose.
    assert not torch.equal(a.unseen, b.unseen)


# The paper's training rule, which each option below changes in one place (the defaults are
# t2m's recommended mode, which sets most of them at once).
PAPER = (
    "model.linear_skip=false",
    "train.objective=update",
    "train.classes_per_task_max=null",
    "train.patience=null",
    "train.weight_decay=0.0001",
    "eval.descriptions=draw",
)


@pytest.mark.parametrize(
    "options",
    [
        ("train.objective=induced",),
        ("train.objective=both",),
        ("train.classes_per_task_max=5",),
        ("train.classes_per_task_max=4", "train.val_classes=train"),
        ("train.patience=1", "train.epochs=10"),  # stops after epoch 5 of 10
        ("eval.descriptions=mean",),
        ("eval.descriptions=mean", "text.p_negative=0.5"),
    ],
)
def test_training_options_ignore_unseen_classes(tiny_root, tmp_path, options):
    """Unseen features and descriptions turned to noise leave every epoch's metrics and the
    chosen epoch as they were, whatever the objective, task sizes, patience or description
    policy."""
    scrambled_root = _scrambled_copy(tiny_root, tmp_path / "scrambled", scramble_descriptions=True)
    metrics, best = _train(tiny_root, tmp_path, "a", *PAPER, *options)
    assert len({m["val_acc"] for m in metrics}) > 1, "validation must move to be a test"
    assert (metrics, best) == _train(scrambled_root, tmp_path, "b", *PAPER, *options)


def test_the_recommended_mode_ignores_unseen_classes(tiny_root, tmp_path):
    """The defaults together (induced objective, tasks of 2 to 8 classes, class means, the
    linear skip, patience)."""
    scrambled_root = _scrambled_copy(tiny_root, tmp_path / "scrambled", scramble_descriptions=True)
    # So few tasks an epoch that validation is still rising on this easy data (with 20 it is
    # 100% from the first epoch on).
    few = "train.tasks_per_epoch=3"
    metrics, best = _train(tiny_root, tmp_path, "a", few)
    assert len({m["val_acc"] for m in metrics}) > 1, "validation must move to be a test"
    assert (metrics, best) == _train(scrambled_root, tmp_path, "b", few)


def test_ridge_fitted_on_class_means_ignores_unseen_classes(tiny_root, tmp_path):
    scrambled_root = _scrambled_copy(tiny_root, tmp_path / "scrambled", scramble_descriptions=True)
    fits = []
    for root in (tiny_root, scrambled_root):
        ds = load_dataset(root, "tiny", "pointnet")
        bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(64))
        fits.append(fit_ridge_baseline(ds, bank.averaged())[1])
    assert fits[0] == fits[1]


def test_superset_model_selection_ignores_unseen_classes(tiny_root, tmp_path):
    """Super-set validation reads the validation classes only: unseen features and attributes
    turned to noise leave every epoch's training loss, validation AUC and the chosen epoch."""
    scrambled_root = _scrambled_copy(tiny_root, tmp_path / "scrambled", scramble_attributes=True)
    supersets = ("train.task=supersets", "train.tasks_per_epoch=8")
    metrics, best = _train(tiny_root, tmp_path, "a", *supersets)
    assert len({m["val_acc"] for m in metrics}) > 1, "validation AUC must move to be a test"
    assert (metrics, best) == _train(scrambled_root, tmp_path, "b", *supersets)


def _disguise(ds, rows, as_classes):
    """Features of ``rows`` replaced by the mean of one of ``as_classes`` each, in turn."""
    means = [ds.features[ds.class_rows(c)].mean(0) for c in as_classes]
    features = ds.features.clone()
    for j, r in enumerate(rows.tolist()):
        features[r] = means[j % len(means)]
    return replace(ds, features=features)


def test_gzsl_reports_seen_accuracy_on_rows_that_did_not_tune_the_constant(tiny_root):
    """S comes from the held-out seen rows left out of calibration, and only from them.

    The seen rows that tune the constant are made to look like validation classes: the
    constant must move and S must not. The reporting rows are made to look like unseen classes:
    S must fall and the constant must not move.
    """
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    split = ds.split
    tune, report = calibration_rows(ds, split.seen, 0.5)
    assert len(tune) and len(report)
    assert not set(tune.tolist()) & set(report.tolist())
    assert set(tune.tolist()) | set(report.tolist()) == set(
        torch.cat([ds.class_rows(c, "test") for c in split.seen]).tolist()
    )
    names = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(64))
    means = torch.stack([ds.features[ds.labels == c].mean(0) for c in range(len(ds.classes))])
    oracle = _Oracle(means, names)

    base = gzsl(oracle, names, ds, torch.Generator())
    assert float(base.seen.mean()) > 0.5

    tuned = gzsl(oracle, names, _disguise(ds, tune, split.val), torch.Generator())
    assert tuned.calibration != base.calibration
    assert torch.equal(tuned.seen, base.seen) and torch.equal(tuned.unseen, base.unseen)

    reported = gzsl(oracle, names, _disguise(ds, report, split.unseen), torch.Generator())
    assert reported.calibration == base.calibration
    assert float(reported.seen.mean()) < float(base.seen.mean()) - 0.5
