"""ZSL and GZSL with one classifier over many classes, checked against direct computation."""

from __future__ import annotations

import math

import torch
from test_pairs import _Oracle

from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.evaluation.classwise import gzsl, zsl


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
    assert math.isclose(result["top1"], sum(per_class) / len(per_class), rel_tol=1e-6)


def test_gzsl_uncalibrated_matches_direct_computation(tiny_root):
    ds, bank, means, oracle = _setup(tiny_root)
    result = gzsl(oracle, bank, ds, torch.Generator())
    seen = torch.tensor([ds.index(c) for c in ds.split.seen])
    unseen = torch.tensor([ds.index(c) for c in ds.split.unseen])
    both = torch.cat([seen, unseen])

    def per_class_mean(classes, mask):
        rows = torch.isin(ds.labels, classes) & mask
        pred = _nearest(ds.features[rows], means, both)
        return sum(float((pred[ds.labels[rows] == c] == c).float().mean()) for c in classes) / len(
            classes
        )

    s = per_class_mean(seen, ds.is_test)
    u = per_class_mean(unseen, torch.ones_like(ds.is_test))
    assert math.isclose(result["S"], s, rel_tol=1e-6)
    assert math.isclose(result["U"], u, rel_tol=1e-6)
    assert 0 <= result["AUSUC"] <= 1
