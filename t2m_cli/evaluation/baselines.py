"""Baselines that need no hypernetwork, scored by the same pair harness as T2M-HN.

`RidgePrototypes` (DeViSE-like): a ridge map from a class's text embedding to its mean feature,
fitted on the seen classes; a description becomes a prototype in feature space and a sample goes
to the nearest prototype. It emits the same ``{"weight", "bias"}`` as the EV hypernetwork (a
nearest-prototype rule is a linear classifier: w = p, b = -||p||^2 / 2), so the same protocol
code, description draws and chunking apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import TextBank
from t2m_cli.evaluation.metrics import summarize
from t2m_cli.evaluation.pairs import pair_accuracies
from t2m_cli.models.hypernet import TargetParams, linear_target

RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


class RidgePrototypes(nn.Module):
    """Text embedding -> prototype feature by a linear map; nearest prototype wins.

    Args:
        weight: (d_text, D) map.
        bias: (D,) intercept.
    """

    hn_type = "ridge"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    @staticmethod
    def target(params: TargetParams, x: torch.Tensor) -> torch.Tensor:
        return linear_target(params, x)

    def forward(self, text: torch.Tensor) -> TargetParams:
        """(T, k, d_text) descriptions -> nearest-prototype classifiers (T, k, D), (T, k)."""
        proto = text @ self.weight + self.bias
        return {"weight": proto, "bias": -0.5 * (proto**2).sum(-1)}

    @classmethod
    def fit(cls, text: torch.Tensor, means: torch.Tensor, alpha: float) -> RidgePrototypes:
        """Closed-form ridge regression with an unpenalised intercept.

        Args:
            text: (c, d_text) one embedding per training class.
            means: (c, D) the classes' mean features.
            alpha: L2 penalty.
        """
        t = text.double()
        m = means.double()
        t_mean, m_mean = t.mean(0), m.mean(0)
        tc, mc = t - t_mean, m - m_mean
        gram = tc.T @ tc + alpha * torch.eye(t.shape[1], dtype=torch.float64)
        weight = torch.linalg.solve(gram, tc.T @ mc)
        bias = m_mean - t_mean @ weight
        return cls(weight.float(), bias.float())


def class_text_means(bank: TextBank, labels: Sequence[int]) -> torch.Tensor:
    """Mean embedding of each class's texts: (len(labels), d)."""
    return torch.stack([bank.embeddings[bank.options[i]].mean(0) for i in labels])


def fit_ridge_baseline(
    dataset: ZeroShotDataset,
    bank: TextBank,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    seed: int = 0,
) -> tuple[RidgePrototypes, float]:
    """Fit the ridge baseline on seen classes, choosing alpha on validation-class pairs only.

    Returns:
        the fitted baseline and the chosen alpha.
    """
    seen = [dataset.index(c) for c in dataset.split.seen]
    rows = [dataset.class_rows(c, "train") for c in dataset.split.seen]
    means = torch.stack([dataset.features[r].mean(0) for r in rows])
    text = class_text_means(bank, seen).cpu()
    best: tuple[float, RidgePrototypes, float] | None = None
    for alpha in alphas:
        model = RidgePrototypes.fit(text, means, alpha)
        _, acc = pair_accuracies(
            model,
            bank.to("cpu"),
            dataset,
            dataset.split.val,
            "all",
            torch.Generator().manual_seed(seed),
        )
        score = summarize(acc).mean
        if best is None or score > best[0]:
            best = (score, model, alpha)
    assert best is not None, "no alpha to try"
    return best[1], best[2]
