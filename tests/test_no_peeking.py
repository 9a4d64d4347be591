"""Nothing chooses anything by looking at unseen classes: scramble them, and every choice stays."""

from __future__ import annotations

import json
from dataclasses import replace

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


def _scrambled_copy(tiny_root, dest, scramble_attributes=False):
    """A copy of the tiny dataset whose unseen classes' features (and attributes) are noise."""
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    for name in ("split.json", "descriptions.json", "attributes.json"):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes((tiny_root / name).read_bytes())
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
