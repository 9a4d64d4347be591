"""The paper's "beyond individual classes" protocol: one classifier per attribute (super-set).

A super-set is every class that has an attribute X ("has stripes"). For each attribute named in
``dataset.attributes`` a description is made from a template (``template.format(name)``, the
attribute name made readable by `class_name_text`) and embedded; the inducer is given a set of
that ONE description (k = 1) and emits a single-logit classifier. Within a split part, the rows
of the part's classes that have X are positives and the rows of its classes that lack X are
negatives, and the classifier's logit is scored by ROC AUC. An attribute that every class of the
part has, or none has, cannot be scored there and is skipped. Each part reports mean +- SEM of the
per-attribute AUCs, and H = 2SU / (S + U) of the seen and unseen means.

Rows per part are those of the pair protocol (`SUPERSET_PARTS`): the seen classes' held-out
rows, and all rows of the validation and unseen classes.

The paper scores a model trained for super-sets: a single-logit BCE objective with attribute
descriptions as targets, which is ``t2m train train.task=supersets``. Any class-task EV or IVEV
run can be scored too: it is asked for its classifier of a one-description set, which measures
how well the class-task model transfers to attributes. W and WW emit classifiers over the number
of classes they were built for: those trained on class pairs cannot be asked for k = 1, those
trained with ``train.task: supersets`` (the original's super-set model is W) are built for it.

Classes of a part that ``dataset.attributes`` does not list are unlabelled for this protocol and
their rows are left out (an empty list means "has none of the attributes" and counts).
"""

from __future__ import annotations

from typing import Any

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.errors import DataError
from t2m_cli.models.hypernet import Inducer
from t2m_cli.scoring.metrics import Summary, harmonic_mean, summarize
from t2m_cli.scoring.supersets import (
    SUPERSET_PARTS,
    TextEmbedder,
    attribute_texts,
    check_inducer,
    superset_aucs,
)


def supersets(
    inducer: Inducer,
    encoder: TextEmbedder,
    dataset: ZeroShotDataset,
    template: str = "{}",
    chunk: int = 64,
) -> dict[str, Any]:
    """Per-attribute ROC AUC of one-description classifiers on the seen, val and unseen parts.

    Args:
        inducer: a trained EV or IVEV hypernetwork, or a W / WW built for one description
            (one trained on class pairs is refused).
        encoder: embeds the attribute descriptions (all in one ``encode`` call).
        dataset: must carry ``attributes`` (class -> list of attribute names).
        template: description of an attribute, ``{}`` standing for its name.
        chunk: attributes induced at once.

    Returns:
        ``{"seen": Summary, "val": Summary, "unseen": Summary, "H": float,
        "per_attribute": {part: {attribute: auc}}}``; each Summary is mean +- SEM over the
        attributes scored in that part, H the harmonic mean of the seen and unseen means.

    Raises:
        UserInputError: a W / WW inducer built for pairs, or a template without ``{}``.
        DataError: the dataset has no attributes, or a part has no attribute that some but
            not all of its classes have.
    """
    check_inducer(inducer)
    if not dataset.attributes:
        raise DataError(
            f"Dataset '{dataset.name}' has no attributes. The supersets protocol needs "
            "attributes.json in the dataset folder (class name -> list of attribute names)."
        )
    names = sorted({a for values in dataset.attributes.values() for a in values})
    if not names:
        raise DataError(
            f"The attributes of dataset '{dataset.name}' name no attribute at all; the "
            "supersets protocol needs attributes.json to list some (class -> attribute names)."
        )
    texts = encoder.encode(attribute_texts(names, template))
    per_attribute: dict[str, dict[str, float]] = {}
    summaries: dict[str, Summary] = {}
    for part, rows in SUPERSET_PARTS.items():
        aucs = superset_aucs(
            inducer, texts, names, dataset, dataset.split.part(part), rows, chunk=chunk
        )
        if not aucs:
            raise DataError(
                f"No attribute can be scored on the '{part}' classes of dataset "
                f"'{dataset.name}': each attribute is held by all of them or by none (or they "
                "have no attributes listed). Give that part classes that differ in attributes."
            )
        per_attribute[part] = aucs
        summaries[part] = summarize(torch.tensor(list(aucs.values()), dtype=torch.float64))
    return {
        **summaries,
        "H": harmonic_mean(summaries["seen"].mean, summaries["unseen"].mean),
        "per_attribute": per_attribute,
    }
