"""ZSL and GZSL with one classifier over many classes, checked against direct computation."""

from __future__ import annotations

import dataclasses
import math

import torch
from test_pairs import _Oracle

from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.evaluation.classwise import calibration_rows, gzsl, zsl


def _setup(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(64))
    means = torch.stack([ds.features[ds.labels == c].mean(0) for c in range(len(ds.classes))])
    return ds, bank, means, _Oracle(means, bank)


def _nearest(x, means, labels):
    d = ((x[:, None] - means[labels][None]) ** 2).sum(-1)
    return labels[d.argmin(1)]


def test_zsl_is_the_mean_per_class_accuracy_of_one_classifier(tiny_root):
    ds, bank, means, oracle = _setup(tiny_root)
    result = zsl(oracle, bank, ds, torch.Generator())
    unseen = torch.tensor([ds.index(c) for c in ds.split.unseen])
    rows = torch.isin(ds.labels, unseen)
    pred = _nearest(ds.features[rows], means, unseen)
    per_class = [float((pred[ds.labels[rows] == c] == c).float().mean()) for c in unseen]
    assert math.isclose(result.top1, sum(per_class) / len(per_class), rel_tol=1e-6)
    assert result.classes == list(ds.split.unseen)
    assert torch.allclose(result.per_class, torch.tensor(per_class, dtype=torch.float64))


def test_gzsl_uncalibrated_matches_direct_computation(tiny_root):
    ds, bank, means, oracle = _setup(tiny_root)
    result = gzsl(oracle, bank, ds, torch.Generator()).figures()
    _, report_rows = calibration_rows(ds, ds.split.seen, 0.5, 0)
    reported = torch.zeros_like(ds.is_test)
    reported[report_rows] = True
    seen = torch.tensor([ds.index(c) for c in ds.split.seen])
    unseen = torch.tensor([ds.index(c) for c in ds.split.unseen])
    both = torch.cat([seen, unseen])

    def per_class_mean(classes, mask):
        rows = torch.isin(ds.labels, classes) & mask
        pred = _nearest(ds.features[rows], means, both)
        return sum(float((pred[ds.labels[rows] == c] == c).float().mean()) for c in classes) / len(
            classes
        )

    s = per_class_mean(seen, reported)
    u = per_class_mean(unseen, torch.ones_like(ds.is_test))
    assert math.isclose(result["S"], s, rel_tol=1e-6)
    assert math.isclose(result["U"], u, rel_tol=1e-6)
    assert 0 <= result["AUSUC"] <= 1


def test_calibration_rows_split_each_seen_class_held_out_rows(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    tune, report = calibration_rows(ds, ds.split.seen, 0.5, seed=3)
    assert set(tune.tolist()).isdisjoint(report.tolist())
    held_out = torch.cat([ds.class_rows(c, "test") for c in ds.split.seen])
    assert sorted([*tune.tolist(), *report.tolist()]) == sorted(held_out.tolist())
    for c in ds.split.seen:
        rows = set(ds.class_rows(c, "test").tolist())
        n_tune = len(rows & set(tune.tolist()))
        assert len(rows & set(report.tolist())) >= 1
        assert n_tune == min(len(rows) - 1, round(0.5 * len(rows)))
    again = calibration_rows(ds, ds.split.seen, 0.5, seed=3)
    assert torch.equal(again[0], tune) and torch.equal(again[1], report)
    assert not torch.equal(calibration_rows(ds, ds.split.seen, 0.5, seed=4)[0], tune)


def test_gzsl_constant_is_tuned_without_the_rows_that_report_s(tiny_root):
    """Scrambling the seen rows that report S changes S but not the tuned constant."""
    ds, bank, _, oracle = _setup(tiny_root)
    _, report_rows = calibration_rows(ds, ds.split.seen, 0.5, 0)
    features = ds.features.clone()
    features[report_rows] = torch.randn(len(report_rows), features.shape[1]) * 5
    other = dataclasses.replace(ds, features=features)
    a = gzsl(oracle, bank, ds, torch.Generator())
    b = gzsl(oracle, bank, other, torch.Generator())
    assert a.calibration == b.calibration
    assert not torch.equal(a.seen, b.seen)
