"""Protocols over many classes at once: ZSL and GZSL with one induced classifier.

EV and IVEV work on sets of any size, so one classifier is induced for all the classes of a
protocol at once (the multi-class setting of the paper's v3). W and WW fix k and cannot.

- ZSL: one classifier over the unseen classes, scored on all their rows; mean per-class top-1.
- GZSL: one classifier over seen + unseen classes, scored on the seen classes' held-out rows
  (S) and the unseen classes' rows (U), H = 2SU / (S + U). Calibrated stacking subtracts a
  constant from seen-class scores; the constant is tuned with the validation classes standing
  in for the unseen ones, on a share of the seen classes' held-out rows (`calibration_rows`),
  never on unseen data; S is reported on the remaining held-out rows. AUSUC is the area under
  the seen-unseen curve as the constant sweeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer
from t2m_cli.errors import DataError, UserInputError
from t2m_cli.models.hypernet import Inducer
from t2m_cli.scoring.metrics import (
    ausuc,
    harmonic_mean,
    per_class_accuracy,
    seen_unseen_curve,
    tune_calibration,
)


@torch.no_grad()
def class_scores(
    inducer: Inducer,
    bank: Describer,
    dataset: ZeroShotDataset,
    classes: Sequence[str],
    rows: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Logits of one classifier induced for ``classes``, on the given rows.

    Returns:
        (len(rows), len(classes)) scores, column j for ``classes[j]``.
    """
    fixed = getattr(inducer, "fixed_k", None)
    if fixed is not None and fixed != len(classes):
        raise UserInputError(
            f"The {inducer.hn_type} hypernetwork emits classifiers over exactly {fixed} classes; "
            "the zsl and gzsl protocols need EV or IVEV."
        )
    device = next(inducer.parameters()).device
    labels = torch.tensor([dataset.index(c) for c in classes])
    inducer.eval()
    params = inducer(bank.draw(labels.unsqueeze(0), generator))
    x = dataset.features[rows].to(device).unsqueeze(0)
    return inducer.target(params, x)[0].cpu()


def _rows(dataset: ZeroShotDataset, classes: Sequence[str], part: str) -> torch.Tensor:
    return torch.cat(dataset.scored_rows(classes, part))


@dataclass
class ZslResult:
    """ZSL over the unseen classes.

    Attributes:
        classes: the unseen classes, in the order of ``per_class``.
        per_class: (C,) top-1 accuracy of each class over its own rows.
    """

    classes: list[str]
    per_class: torch.Tensor

    @property
    def top1(self) -> float:
        """Mean per-class top-1 accuracy (the ZSL metric)."""
        return float(self.per_class.mean())


@dataclass
class GzslResult:
    """GZSL over seen + unseen classes, without and with calibrated stacking.

    Attributes:
        seen: (Cs,) per-class accuracy of the seen classes on their reporting rows.
        unseen: (Cu,) per-class accuracy of the unseen classes on all their rows.
        seen_calibrated, unseen_calibrated: the same after calibrated stacking.
        calibration: the constant subtracted from seen-class scores, tuned without unseen data.
        curve_s, curve_u: the exact seen-unseen curve as the constant sweeps.
    """

    seen: torch.Tensor
    unseen: torch.Tensor
    seen_calibrated: torch.Tensor
    unseen_calibrated: torch.Tensor
    calibration: float
    curve_s: torch.Tensor
    curve_u: torch.Tensor

    @property
    def ausuc(self) -> float:
        return ausuc(self.curve_s, self.curve_u)

    def figures(self) -> dict[str, float]:
        """S, U, H, their calibrated versions, the constant and AUSUC as plain numbers."""
        s, u = float(self.seen.mean()), float(self.unseen.mean())
        s_cal, u_cal = float(self.seen_calibrated.mean()), float(self.unseen_calibrated.mean())
        return {
            "S": s,
            "U": u,
            "H": harmonic_mean(s, u),
            "calibration": self.calibration,
            "S_calibrated": s_cal,
            "U_calibrated": u_cal,
            "H_calibrated": harmonic_mean(s_cal, u_cal),
            "AUSUC": self.ausuc,
        }


def zsl(
    inducer: Inducer, bank: Describer, dataset: ZeroShotDataset, generator: torch.Generator
) -> ZslResult:
    """Per-class top-1 accuracy of one classifier over all unseen classes, on all their rows."""
    classes = list(dataset.split.unseen)
    rows = _rows(dataset, classes, "all")
    pred = class_scores(inducer, bank, dataset, classes, rows, generator).argmax(1)
    target = _local_targets(dataset, classes, rows)
    return ZslResult(classes, per_class_accuracy(pred, target, torch.arange(len(classes))))


def calibration_rows(
    dataset: ZeroShotDataset, classes: Sequence[str], share: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each seen class's held-out rows into a tuning share and a reporting rest.

    The seen classes' training rows trained the model (and, for point clouds, the feature
    extractor), so their scores are over-confident and a constant tuned on them overshoots. A
    fixed share of each class's held-out rows tunes the constant instead; S is then reported on
    the rest only, so no row both tunes and reports. Every class keeps at least one reporting
    row. The split depends on ``seed`` only, never on a draw or on unseen data.

    Returns:
        (tune_rows, report_rows) dataset row indices.

    Raises:
        DataError: a class has no held-out rows.
    """
    generator = torch.Generator().manual_seed(seed)
    tune, report = [], []
    for rows in dataset.scored_rows(classes, "test"):
        rows = rows[torch.randperm(len(rows), generator=generator)]
        n_tune = min(len(rows) - 1, round(share * len(rows)))
        tune.append(rows[:n_tune])
        report.append(rows[n_tune:])
    return torch.cat(tune), torch.cat(report)


def gzsl(
    inducer: Inducer,
    bank: Describer,
    dataset: ZeroShotDataset,
    generator: torch.Generator,
    calibration_share: float = 0.5,
    split_seed: int = 0,
) -> GzslResult:
    """GZSL S, U and H without and with calibrated stacking, and the seen-unseen curve.

    Args:
        calibration_share: share of each seen class's held-out rows that tunes the constant,
            with the validation classes standing in for the unseen ones (`calibration_rows`).
        split_seed: seed of that split.
    """
    split = dataset.split
    tune_rows, report_rows = calibration_rows(dataset, split.seen, calibration_share, split_seed)
    if len(tune_rows) == 0:
        raise DataError(
            "GZSL calibration needs held-out rows of the seen classes to tune on, and "
            f"eval.calibration_share={calibration_share} leaves none. Raise it, or give the "
            "seen classes more held-out rows."
        )

    def scored(unseen: Sequence[str], seen_rows: torch.Tensor):
        classes = [*split.seen, *unseen]
        rows = torch.cat([seen_rows, _rows(dataset, unseen, "all")])
        scores = class_scores(inducer, bank, dataset, classes, rows, generator)
        target = _local_targets(dataset, classes, rows)
        seen_mask = torch.arange(len(classes)) < len(split.seen)
        is_seen_row = torch.arange(len(rows)) < len(seen_rows)
        return scores, target, seen_mask, is_seen_row

    # Validation classes play the unseen part while the constant is chosen.
    constant = tune_calibration(*scored(split.val, tune_rows))
    scores, target, seen_mask, seen_rows = scored(split.unseen, report_rows)
    n_seen = len(split.seen)
    seen_ids = torch.arange(n_seen)
    unseen_ids = torch.arange(n_seen, len(seen_mask))

    def per_class(calibration: float) -> tuple[torch.Tensor, torch.Tensor]:
        pred = (scores.double() - calibration * seen_mask.double()).argmax(1)
        return (
            per_class_accuracy(pred[seen_rows], target[seen_rows], seen_ids),
            per_class_accuracy(pred[~seen_rows], target[~seen_rows], unseen_ids),
        )

    seen, unseen = per_class(0.0)
    seen_cal, unseen_cal = per_class(constant)
    curve_s, curve_u = seen_unseen_curve(scores, target, seen_mask, seen_rows)
    return GzslResult(seen, unseen, seen_cal, unseen_cal, constant, curve_s, curve_u)


def _local_targets(
    dataset: ZeroShotDataset, classes: Sequence[str], rows: torch.Tensor
) -> torch.Tensor:
    """Each row's class as its position in ``classes`` (the classifier's column)."""
    lookup = torch.full((len(dataset.classes),), -1, dtype=torch.long)
    lookup[torch.tensor([dataset.index(c) for c in classes])] = torch.arange(len(classes))
    return lookup[dataset.labels[rows]]


PROTOCOLS = {"zsl": zsl, "gzsl": gzsl}
"""Class-wise protocols by the name `t2m evaluate --protocol` takes (besides 'pairs')."""
