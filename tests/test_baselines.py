"""The ridge prototype baseline."""

from __future__ import annotations

import torch

from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.evaluation.baselines import RidgePrototypes, fit_ridge_baseline
from t2m_cli.evaluation.metrics import summarize
from t2m_cli.evaluation.pairs import pair_accuracies


def test_ridge_recovers_an_exact_linear_map():
    g = torch.Generator().manual_seed(0)
    text = torch.randn(40, 5, generator=g)
    true_w, true_b = torch.randn(5, 3, generator=g), torch.randn(3, generator=g)
    model = RidgePrototypes.fit(text, text @ true_w + true_b, alpha=1e-8)
    assert torch.allclose(model.weight, true_w, atol=1e-4)
    assert torch.allclose(model.bias, true_b, atol=1e-4)


def test_prototype_classifier_is_nearest_prototype():
    model = RidgePrototypes(torch.eye(2), torch.zeros(2))
    params = model(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    x = torch.tensor([[[0.9, 0.2], [0.1, 0.8], [0.6, 0.55]]])
    assert model.target(params, x).argmax(-1).tolist() == [[0, 1, 0]]


def test_ridge_transfers_on_the_tiny_dataset(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(64))
    model, alpha = fit_ridge_baseline(ds, bank)
    assert alpha > 0
    _, acc = pair_accuracies(model, bank, ds, ds.split.unseen, "all", torch.Generator())
    assert summarize(acc).mean > 0.7
    # Shuffled text breaks the transfer: the baseline reads the descriptions, not the labels.
    shuffled = TextBank(
        bank.classes, bank.embeddings[torch.randperm(len(bank.embeddings))], bank.options
    )
    _, acc_shuffled = pair_accuracies(
        model, shuffled, ds, ds.split.unseen, "all", torch.Generator()
    )
    assert summarize(acc_shuffled).mean < summarize(acc).mean
