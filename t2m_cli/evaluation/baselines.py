"""The baselines `t2m evaluate --baseline` scores beside T2M-HN, and their registry.

`RidgePrototypes` (DeViSE-like): a ridge map from a class's text embedding to its mean feature,
fitted on the seen classes; a description becomes a prototype in feature space and a sample goes
to the nearest prototype. It emits the same ``{"weight", "bias"}`` as the EV hypernetwork (a
nearest-prototype rule is a linear classifier: w = p, b = -||p||^2 / 2), so the same protocol
code, description draws and chunking apply.

`EszslBaseline` (Romera-Paredes & Torr 2015, "An embarrassingly simple approach to zero-shot
learning"): a bilinear compatibility ``x^T V s`` between a feature and a class signature, with V
in closed form. Read as an inducer it maps a description s to the linear classifier ``w = V s``.

`BASELINES` maps each name to how it is obtained: ridge and ESZSL are fitted here on the seen
classes (hyperparameters chosen on validation classes); the non-symmetric W hypernetwork is
trained by `t2m train --baseline W RUN` and only read here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from t2m_cli import runs
from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import TextBank
from t2m_cli.errors import UserInputError
from t2m_cli.models.hypernet import TargetParams, linear_target
from t2m_cli.scoring.pairs import validation_pair_accuracy

if TYPE_CHECKING:
    from t2m_cli.encoders.text import TextEncoder

RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
ESZSL_GAMMAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
"""Feature-side penalties tried by `fit_eszsl` (the paper's grid, 10^-3 .. 10^3)."""
ESZSL_LAMBDAS = ESZSL_GAMMAS
"""Signature-side penalties tried by `fit_eszsl`."""


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

    # The plain linear target (not a wrapper), so pair scoring takes its fast path.
    target = staticmethod(linear_target)

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
        score = validation_pair_accuracy(model, bank.to("cpu"), dataset, seed).mean
        if best is None or score > best[0]:
            best = (score, model, alpha)
    assert best is not None, "no alpha to try"
    return best[1], best[2]


def eszsl_targets(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """ESZSL's ground-truth matrix Y: +1 for a row's class, -1 elsewhere, as in the paper.

    The -1 (rather than 0) asks the square loss to push a wrong class's score below zero, not
    just to zero; the two differ by a rank-one term that is not constant across classes, so the
    choice changes which class of a pair wins, and the paper's is kept for comparability.

    Args:
        labels: (m,) int64 in ``[0, n_classes)``.
        n_classes: z, the number of training classes.

    Returns:
        (m, z) float64 in {-1, 1}.
    """
    y = torch.full((len(labels), n_classes), -1.0, dtype=torch.float64)
    y[torch.arange(len(labels)), labels] = 1.0
    return y


class _EszslSolver:
    """The closed form for many (gamma, lambda), sharing the Gram matrices between them.

    With the paper's column-major X (D x m), Y (m x z), S (a x z):
    ``V = (X X^T + gamma I)^-1 X Y S^T (S S^T + lambda I)^-1``, (D x a).

    Args:
        features: (m, D) training rows, i.e. X^T.
        targets: (m, z) Y.
        signatures: (z, a) one signature per class, i.e. S^T.
    """

    def __init__(
        self, features: torch.Tensor, targets: torch.Tensor, signatures: torch.Tensor
    ) -> None:
        x = features.double()
        s = signatures.double()
        self.xxt = x.T @ x  # (D, D)
        self.sst = s.T @ s  # (a, a)
        self.xys = x.T @ targets.double() @ s  # (D, a)

    def solve(self, gamma: float, lam: float) -> torch.Tensor:
        """V for one pair of penalties: (D, a) float64."""
        eye_d = torch.eye(self.xxt.shape[0], dtype=torch.float64)
        eye_a = torch.eye(self.sst.shape[0], dtype=torch.float64)
        left = torch.linalg.solve(self.xxt + gamma * eye_d, self.xys)
        # S S^T + lambda I is symmetric, so right division is a left solve of the transpose.
        return torch.linalg.solve(self.sst + lam * eye_a, left.T).T


def eszsl_map(
    features: torch.Tensor,
    targets: torch.Tensor,
    signatures: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """ESZSL's closed form, the minimiser of
    ``||X^T V S - Y||^2 + gamma ||V S||^2 + lambda ||X^T V||^2 + gamma lambda ||V||^2``.

    Args:
        features: (m, D) training rows (the paper's X is its transpose, D x m).
        targets: (m, z) Y, e.g. from `eszsl_targets`.
        signatures: (z, a) class signatures (the paper's S is its transpose, a x z).
        gamma: feature-side penalty.
        lam: signature-side penalty.

    Returns:
        V, (D, a) float64.
    """
    return _EszslSolver(features, targets, signatures).solve(gamma, lam)


class EszslBaseline(nn.Module):
    """ESZSL as an inducer: a description s becomes the linear classifier ``w = V s``, ``b = 0``.

    Args:
        v: (D, d_text) the compatibility matrix V.
    """

    hn_type = "eszsl"

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.v = nn.Parameter(v, requires_grad=False)

    # The plain linear target (not a wrapper), so pair scoring takes its fast path.
    target = staticmethod(linear_target)

    def forward(self, text: torch.Tensor) -> TargetParams:
        """(T, k, d_text) descriptions -> linear classifiers (T, k, D), (T, k) of zeros."""
        weight = text @ self.v.T
        return {"weight": weight, "bias": weight.new_zeros(weight.shape[:-1])}

    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        labels: torch.Tensor,
        signatures: torch.Tensor,
        gamma: float,
        lam: float,
    ) -> EszslBaseline:
        """Solve ESZSL in float64 on labelled rows.

        Args:
            features: (m, D) training rows.
            labels: (m,) int64 indices into ``signatures``.
            signatures: (z, d_text) one embedding per training class.
            gamma: feature-side penalty.
            lam: signature-side penalty.
        """
        targets = eszsl_targets(labels, len(signatures))
        return cls(eszsl_map(features, targets, signatures, gamma, lam).float())


def fit_eszsl(
    dataset: ZeroShotDataset,
    bank: TextBank,
    gammas: Sequence[float] = ESZSL_GAMMAS,
    lambdas: Sequence[float] = ESZSL_LAMBDAS,
    seed: int = 0,
) -> tuple[EszslBaseline, float, float]:
    """Fit ESZSL on the seen classes' training rows, choosing (gamma, lambda) on validation pairs.

    Signatures are each seen class's mean description embedding; the grid point with the best
    mean pair accuracy over the validation classes wins (the first one on a tie). Unseen classes
    play no part.

    Returns:
        the fitted baseline, the chosen gamma and the chosen lambda.
    """
    seen = [dataset.index(c) for c in dataset.split.seen]
    rows = [dataset.class_rows(c, "train") for c in dataset.split.seen]
    features = dataset.features[torch.cat(rows)]
    labels = torch.cat([torch.full((len(r),), i, dtype=torch.long) for i, r in enumerate(rows)])
    signatures = class_text_means(bank, seen).cpu()
    solver = _EszslSolver(features.cpu(), eszsl_targets(labels, len(seen)), signatures)
    cpu_bank = bank.to("cpu")
    best: tuple[float, EszslBaseline, float, float] | None = None
    for gamma in gammas:
        for lam in lambdas:
            model = EszslBaseline(solver.solve(gamma, lam).float())
            score = validation_pair_accuracy(model, cpu_bank, dataset, seed).mean
            if best is None or score > best[0]:
                best = (score, model, gamma, lam)
    assert best is not None, "no (gamma, lambda) to try"
    return best[1], best[2], best[3]


@dataclass
class BaselineInputs:
    """What a baseline may use: the seen classes' data, validation classes, the run folder.

    Attributes:
        dataset: features, standardised as the run's hypernetwork sees them.
        bank: the positive descriptions (CPU).
        seed: seed of the description draws used to pick hyperparameters.
        run_dir: the run folder (a trained baseline is read from inside it).
        device: where scoring happens.
        encoder: the text encoder the descriptions were embedded with; a trained baseline
            must have been trained with its model.
    """

    dataset: ZeroShotDataset
    bank: TextBank
    seed: int
    run_dir: Path
    device: torch.device
    encoder: TextEncoder


def _fit_ridge(inputs: BaselineInputs) -> tuple[Any, dict[str, Any]]:
    model, alpha = fit_ridge_baseline(inputs.dataset, inputs.bank, seed=inputs.seed)
    return model, {"alpha": alpha}


def _fit_eszsl(inputs: BaselineInputs) -> tuple[Any, dict[str, Any]]:
    model, gamma, lam = fit_eszsl(inputs.dataset, inputs.bank, seed=inputs.seed)
    return model, {"gamma": gamma, "lambda": lam}


def _load_w(inputs: BaselineInputs) -> tuple[Any, dict[str, Any]]:
    """The non-symmetric W hypernetwork that `t2m train --baseline W RUN` trained into
    ``RUN/baselines/W``; evaluation only reads it."""
    from t2m_cli.encoders.dataset import check_trained_features
    from t2m_cli.encoders.text import check_trained_model
    from t2m_cli.models.checkpoint import load_checkpoint

    folder = runs.baseline_dir(inputs.run_dir, "W")
    config = runs.load_run(folder)[0] if runs.is_run(folder) else None
    if config is None or not runs.training_done(folder, config):
        state = "is not finished" if config is not None else "has not been trained"
        raise UserInputError(
            f"The W baseline of run {inputs.run_dir} {state}. Train it with "
            f"`t2m train --baseline W {inputs.run_dir}`, then evaluate again."
        )
    model, meta, _ = load_checkpoint(runs.checkpoint_path(folder, "best"), inputs.device)
    what = f"The W baseline of run {inputs.run_dir}"
    check_trained_model(inputs.encoder, meta, what)
    check_trained_features(meta, inputs.dataset.source, what, folder, config)
    return model, {
        "folder": f"{runs.BASELINES_DIR}/W",
        "epoch": meta.get("epoch"),
        "epochs": config.train.epochs,
    }


# A fitted baseline is an nn.Module that is also an Inducer.
BASELINES: dict[str, Callable[[BaselineInputs], tuple[Any, dict[str, Any]]]] = {
    "ridge": _fit_ridge,
    "eszsl": _fit_eszsl,
    "W": _load_w,
}
"""Baselines `t2m evaluate --baseline` scores beside the run's hypernetwork: ridge and ESZSL
are fitted in closed form at evaluation; W is read from the run folder (`t2m train --baseline
W`)."""
