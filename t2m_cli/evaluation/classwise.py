"""Protocols over many classes at once: ZSL and GZSL with one induced classifier.

EV and IVEV work on sets of any size, so one classifier is induced for all the classes of a
protocol at once (the multi-class setting of the paper's v3). W and WW fix k and cannot.

- ZSL: one classifier over the unseen classes, scored on all their rows; mean per-class top-1.
- GZSL: one classifier over seen + unseen classes, scored on the seen classes' held-out rows
  (S) and the unseen classes' rows (U), H = 2SU / (S + U). Calibrated stacking subtracts a
  constant from seen-class scores; the constant is tuned with the validation classes standing
  in for the unseen ones (seen training rows and validation rows), never on unseen data.
  AUSUC is the area under the seen-unseen curve as the constant sweeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer
from t2m_cli.errors import UserInputError
from t2m_cli.evaluation.metrics import (
    ausuc,
    gzsl_scores,
    mean_per_class_accuracy,
    seen_unseen_curve,
    tune_calibration,
)
from t2m_cli.models.hypernet import Inducer


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
    return torch.cat([dataset.class_rows(c, part) for c in classes])


def zsl(
    inducer: Inducer, bank: Describer, dataset: ZeroShotDataset, generator: torch.Generator
) -> dict[str, float]:
    """Mean per-class top-1 accuracy of one classifier over all unseen classes."""
    classes = dataset.split.unseen
    rows = _rows(dataset, classes, "all")
    pred = class_scores(inducer, bank, dataset, classes, rows, generator).argmax(1)
    local = {dataset.index(c): i for i, c in enumerate(classes)}
    target = torch.tensor([local[int(y)] for y in dataset.labels[rows]])
    return {"top1": mean_per_class_accuracy(pred, target), "classes": float(len(classes))}


def gzsl(
    inducer: Inducer, bank: Describer, dataset: ZeroShotDataset, generator: torch.Generator
) -> dict[str, float]:
    """S, U and H without and with calibrated stacking, and AUSUC."""
    split = dataset.split

    def scored(unseen: Sequence[str], seen_part: str):
        classes = [*split.seen, *unseen]
        seen_rows = _rows(dataset, split.seen, seen_part)
        rows = torch.cat([seen_rows, _rows(dataset, unseen, "all")])
        scores = class_scores(inducer, bank, dataset, classes, rows, generator)
        local = {dataset.index(c): i for i, c in enumerate(classes)}
        target = torch.tensor([local[int(y)] for y in dataset.labels[rows]])
        seen_mask = torch.arange(len(classes)) < len(split.seen)
        is_seen_row = torch.arange(len(rows)) < len(seen_rows)
        return scores, target, seen_mask, is_seen_row

    # Validation classes play the unseen part while the constant is chosen.
    constant = tune_calibration(*scored(split.val, "train"))
    scores, target, seen_mask, seen_rows = scored(split.unseen, "test")
    s, u, h = gzsl_scores(scores, target, seen_mask, seen_rows)
    s_cal, u_cal, h_cal = gzsl_scores(scores, target, seen_mask, seen_rows, constant)
    curve_s, curve_u = seen_unseen_curve(scores, target, seen_mask, seen_rows)
    return {
        "S": s,
        "U": u,
        "H": h,
        "calibration": constant,
        "S_calibrated": s_cal,
        "U_calibrated": u_cal,
        "H_calibrated": h_cal,
        "AUSUC": ausuc(curve_s, curve_u),
    }


PROTOCOLS = {"zsl": zsl, "gzsl": gzsl}
"""Class-wise protocols by the name `t2m evaluate --protocol` takes (besides 'pairs')."""
