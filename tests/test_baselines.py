"""The ridge prototype and ESZSL baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.evaluation import baselines
from t2m_cli.evaluation.baselines import (
    EszslBaseline,
    RidgePrototypes,
    eszsl_map,
    eszsl_targets,
    fit_eszsl,
    fit_ridge_baseline,
)
from t2m_cli.scoring import pairs as pairs_module
from t2m_cli.scoring.metrics import summarize
from t2m_cli.scoring.pairs import pair_accuracies


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


def _assert_transfers_through_text(model, bank, ds):
    """Unseen pairs well above chance, and worse with shuffled text: the baseline reads the
    descriptions, not the labels."""
    _, acc = pair_accuracies(model, bank, ds, ds.split.unseen, "all", torch.Generator())
    assert summarize(acc).mean > 0.7
    shuffled = TextBank(
        bank.classes, bank.embeddings[torch.randperm(len(bank.embeddings))], bank.options
    )
    _, acc_shuffled = pair_accuracies(
        model, shuffled, ds, ds.split.unseen, "all", torch.Generator()
    )
    assert summarize(acc_shuffled).mean < summarize(acc).mean


def test_ridge_transfers_on_the_tiny_dataset(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(64))
    model, alpha = fit_ridge_baseline(ds, bank)
    assert alpha > 0
    _assert_transfers_through_text(model, bank, ds)


def _random_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    m, d, z, a = 25, 6, 4, 5
    x = torch.randn(m, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, z, (m,), generator=g)
    s = torch.randn(z, a, generator=g, dtype=torch.float64)
    return x, eszsl_targets(labels, z), s


def test_eszsl_targets_are_plus_minus_one():
    y = eszsl_targets(torch.tensor([2, 0]), 3)
    assert y.tolist() == [[-1.0, -1.0, 1.0], [1.0, -1.0, -1.0]]


@pytest.mark.parametrize(("gamma", "lam"), [(0.1, 1.0), (3.0, 0.01), (1e-3, 1e3)])
def test_eszsl_closed_form_minimises_the_regularised_objective(gamma, lam):
    x, y, s = _random_problem()
    v = eszsl_map(x, y, s, gamma, lam).requires_grad_(True)
    # The paper's column-major names: X (D x m), S (a x z).
    big_x, big_s = x.T, s.T
    loss = (
        ((big_x.T @ v @ big_s - y) ** 2).sum()
        + gamma * ((v @ big_s) ** 2).sum()
        + lam * ((big_x.T @ v) ** 2).sum()
        + gamma * lam * (v**2).sum()
    )
    (grad,) = torch.autograd.grad(loss, v)
    assert grad.abs().max() < 1e-9 * max(1.0, float(loss.detach()))


def test_eszsl_closed_form_matches_numpy():
    x, y, s = _random_problem(1)
    gamma, lam = 0.5, 2.0
    big_x, big_y, big_s = x.numpy().T, y.numpy(), s.numpy().T
    expected = (
        np.linalg.inv(big_x @ big_x.T + gamma * np.eye(big_x.shape[0]))
        @ big_x
        @ big_y
        @ big_s.T
        @ np.linalg.inv(big_s @ big_s.T + lam * np.eye(big_s.shape[0]))
    )
    np.testing.assert_allclose(eszsl_map(x, y, s, gamma, lam).numpy(), expected, rtol=1e-9)


def test_eszsl_inducer_scores_are_the_bilinear_form():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(6, 5, generator=g)
    model = EszslBaseline(v)
    text = torch.randn(3, 2, 5, generator=g)
    x = torch.randn(3, 7, 6, generator=g)
    params = model(text)
    assert params["weight"].shape == (3, 2, 6)
    assert params["bias"].shape == (3, 2)
    assert not params["bias"].any()
    expected = torch.einsum("tnd,da,tka->tnk", x, v, text)
    assert torch.allclose(model.target(params, x), expected, atol=1e-5)


def test_eszsl_transfers_on_the_tiny_dataset(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(64))
    model, gamma, lam = fit_eszsl(ds, bank)
    assert model.hn_type == "eszsl"
    assert gamma in baselines.ESZSL_GAMMAS
    assert lam in baselines.ESZSL_LAMBDAS
    _assert_transfers_through_text(model, bank, ds)


def test_eszsl_chooses_its_penalties_on_validation_classes_only(tiny_root, monkeypatch):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(64))
    scored: list[list[str]] = []
    real = pairs_module.pair_accuracies

    def spy(hypernet, bank, dataset, classes, *args, **kwargs):
        scored.append(list(classes))
        return real(hypernet, bank, dataset, classes, *args, **kwargs)

    # Every selection score goes through pair_accuracies (via validation_pair_accuracy).
    monkeypatch.setattr(pairs_module, "pair_accuracies", spy)
    gammas, lambdas = (0.01, 1.0, 100.0), (0.1, 10.0)
    _, gamma, lam = fit_eszsl(ds, bank, gammas, lambdas)
    assert len(scored) == len(gammas) * len(lambdas)
    assert all(c == list(ds.split.val) for c in scored)

    # Scrambling the unseen classes' features and texts leaves the choice as it was.
    unseen = torch.cat([ds.class_rows(c) for c in ds.split.unseen])
    ds.features[unseen] = torch.randn(len(unseen), ds.feature_dim)
    for c in ds.split.unseen:
        for i in bank.options[ds.index(c)]:
            bank.embeddings[i] = torch.randn(bank.embeddings.shape[1])
    _, gamma2, lam2 = fit_eszsl(ds, bank, gammas, lambdas)
    assert (gamma2, lam2) == (gamma, lam)
