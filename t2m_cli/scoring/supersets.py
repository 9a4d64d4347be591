"""Scoring one-description (super-set) classifiers: per-attribute ROC AUC.

The scoring core of the paper's "beyond individual classes" protocol, shared by the supersets
evaluation protocol (`t2m_cli.evaluation.supersets`) and by super-set training's model selection
on validation classes. A super-set is every class that has an attribute X; its description is
``template.format(name)`` with the attribute name made readable by `class_name_text`. Within a
split part, the rows of the part's classes that have X are positives and the rows of its classes
that lack X are negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import class_name_text
from t2m_cli.errors import UserInputError
from t2m_cli.models.hypernet import Inducer
from t2m_cli.scoring.metrics import roc_auc

SUPERSET_PARTS = {"seen": "test", "val": "all", "unseen": "all"}
"""Split part -> the rows of its classes that are scored (the pair protocol's choice)."""


class TextEmbedder(Protocol):
    """What the protocol needs of a text encoder (`t2m_cli.encoders.text` has two)."""

    def encode(self, texts: list[str]) -> torch.Tensor: ...


def check_inducer(inducer: Inducer) -> None:
    """Refuse an inducer that cannot emit a one-description (k = 1) classifier.

    EV and IVEV work for any k; W and WW only for the k they were built with, so only those
    trained with ``train.task: supersets`` (built for k = 1) are scored.

    Raises:
        UserInputError: ``inducer.fixed_k`` is set and is not 1.
    """
    fixed = getattr(inducer, "fixed_k", None)
    if fixed is not None and fixed != 1:
        raise UserInputError(
            f"The {getattr(inducer, 'hn_type', '?')} hypernetwork emits classifiers over exactly "
            f"{fixed} classes; the supersets protocol asks for a one-description classifier "
            "(k = 1): use EV or IVEV, or a W or WW trained with train.task supersets."
        )


def _device_dtype(inducer: Inducer) -> tuple[torch.device, torch.dtype]:
    param = next(iter(inducer.parameters()), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    dtype = param.dtype if param.dtype.is_floating_point else torch.float32
    return param.device, dtype


@torch.no_grad()
def superset_aucs(
    inducer: Inducer,
    texts: torch.Tensor,
    attributes: list[str],
    dataset: ZeroShotDataset,
    classes: Sequence[str],
    part: str,
    chunk: int = 64,
) -> dict[str, float]:
    """ROC AUC of the one-description classifier of each attribute on the rows of ``classes``.

    Args:
        inducer: EV / IVEV hypernetwork, a super-set W / WW, or anything with ``fixed_k``
            None or 1, mapping (T, 1, d) description sets to target weights, with
            ``target(params, x)``.
        texts: (A, d) embeddings of the attributes' descriptions, row i for ``attributes[i]``.
        attributes: the A attribute names, as ``dataset.attributes`` spells them.
        dataset: features, labels and ``attributes`` (class -> names of its attributes).
        classes: the classes whose rows are scored; those absent from ``dataset.attributes``
            are left out.
        part: which rows of each class: 'train', 'test' or 'all'.
        chunk: attributes induced and scored at once; memory grows with it (chunk x rows
            logits, and the target's hidden layer for IVEV), not with the attribute count.

    Returns:
        attribute -> AUC in [0, 1]; attributes that all or none of the scored rows have are
        absent.
    """
    check_inducer(inducer)
    if texts.dim() != 2 or texts.shape[0] != len(attributes):
        raise ValueError(
            f"texts {tuple(texts.shape)} must be (A, d) with A = {len(attributes)} attributes"
        )
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    labelled = [c for c in classes if c in dataset.attributes]
    if not labelled or not attributes:
        return {}
    # (A, C): does attribute a belong to class c; then (A, N) per row through the row's class.
    owned = [set(dataset.attributes[c]) for c in labelled]
    has = torch.tensor([[a in own for own in owned] for a in attributes], dtype=torch.bool)
    row_lists = [dataset.class_rows(c, part) for c in labelled]
    rows = torch.cat(row_lists)
    row_class = torch.repeat_interleave(
        torch.arange(len(labelled)), torch.tensor([len(r) for r in row_lists])
    )
    positive = has[:, row_class]
    n_pos = positive.sum(1)
    scorable = (n_pos > 0) & (n_pos < len(rows))
    if not bool(scorable.any()):
        return {}

    device, dtype = _device_dtype(inducer)
    # One copy of the part's features, shared by every attribute through an expanded view.
    x = dataset.features[rows].to(device=device, dtype=dtype).unsqueeze(0)
    keep = torch.nonzero(scorable).flatten()
    aucs: dict[str, float] = {}
    was_training = inducer.training
    inducer.eval()
    try:
        for start in range(0, len(keep), chunk):
            idx = keep[start : start + chunk]
            sets = texts[idx].to(device=device, dtype=dtype).unsqueeze(1)  # (c, 1, d)
            params = inducer(sets)
            logits = inducer.target(params, x.expand(len(idx), -1, -1))  # (c, N, 1)
            scores = logits[..., 0].double().cpu()
            for j, a in enumerate(idx.tolist()):
                aucs[attributes[a]] = roc_auc(scores[j], positive[a])
    finally:
        inducer.train(was_training)
    return aucs


def attribute_texts(names: Sequence[str], template: str = "{}") -> list[str]:
    """The description of each attribute: ``template`` filled with its readable name."""
    if "{}" not in template:
        raise UserInputError(
            f"The supersets template {template!r} has no '{{}}' for the attribute name; "
            "write it like 'a shape with {}'."
        )
    try:
        return [template.format(class_name_text(a)) for a in names]
    except (IndexError, KeyError, ValueError) as exc:
        raise UserInputError(
            f"The supersets template {template!r} cannot be filled ({exc}); use exactly one "
            "'{}' and double any other brace ('{{' or '}}')."
        ) from None
