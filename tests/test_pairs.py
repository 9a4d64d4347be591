"""The pair protocol and its metrics."""

from __future__ import annotations

import math

import torch

from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.evaluation.metrics import harmonic_mean, summarize
from t2m_cli.evaluation.pairs import ordered_pairs, pair_accuracies
from t2m_cli.models.hypernet import EVHypernet


def test_summary_mean_and_sem_by_hand():
    s = summarize(torch.tensor([0.5, 0.7, 0.9, 1.0], dtype=torch.float64))
    assert math.isclose(s.mean, 0.775)
    std = math.sqrt(sum((v - 0.775) ** 2 for v in (0.5, 0.7, 0.9, 1.0)) / 3)
    assert math.isclose(s.sem, std / 2)
    assert s.n == 4
    assert summarize(torch.tensor([0.3])).sem == 0.0


def test_harmonic_mean():
    assert math.isclose(harmonic_mean(0.9, 0.6), 2 * 0.9 * 0.6 / 1.5)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_ordered_pairs():
    pairs = ordered_pairs(4)
    assert pairs.shape == (12, 2)
    assert len({tuple(p) for p in pairs.tolist()}) == 12
    assert all(a != b for a, b in pairs.tolist())


class _Oracle(EVHypernet):
    """Emits weights that score x by its distance to fixed per-class means (by text)."""

    def __init__(self, means: torch.Tensor, bank: TextBank) -> None:
        super().__init__(bank.dim, means.shape[1], hidden=4)
        self.means, self.bank = means, bank

    def forward(self, text):
        # Find which class each text row belongs to, then emit the nearest-mean classifier.
        sims = text @ self.bank.embeddings.T
        rows = sims.argmax(-1)
        owner = torch.tensor(
            [
                next(c for c, o in enumerate(self.bank.options) if int(r) in o)
                for r in rows.flatten()
            ]
        ).reshape(rows.shape)
        mu = self.means[owner]
        return {"weight": 2 * mu, "bias": -(mu**2).sum(-1)}


def test_pair_accuracy_is_per_pair_and_matches_a_direct_count(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(64))
    means = torch.stack([ds.features[ds.labels == c].mean(0) for c in range(len(ds.classes))])
    hn = _Oracle(means, bank)
    classes = ds.split.unseen
    pairs, acc = pair_accuracies(hn, bank, ds, classes, "all", torch.Generator(), chunk=2)
    assert acc.shape == (len(classes) * (len(classes) - 1),)
    for (a, b), value in zip(pairs.tolist(), acc.tolist()):
        x = ds.features[(ds.labels == a) | (ds.labels == b)]
        y = ds.labels[(ds.labels == a) | (ds.labels == b)]
        d_a = ((x - means[a]) ** 2).sum(1)
        d_b = ((x - means[b]) ** 2).sum(1)
        pred = torch.where(d_a <= d_b, a, b)
        assert math.isclose(value, float((pred == y).float().mean()), rel_tol=1e-6)


def test_held_out_rows_only_for_part_test(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    c = ds.split.seen[0]
    test = ds.class_rows(c, "test")
    train = ds.class_rows(c, "train")
    assert set(test.tolist()).isdisjoint(train.tolist())
    assert len(test) + len(train) == len(ds.class_rows(c, "all"))
    assert bool(ds.is_test[test].all())
