"""What each part of a split must hold for t2m to train and evaluate on it, written down once.

- ``seen``: at least ``max(2, train.classes_per_task)`` classes, because a training task draws
  that many distinct seen classes; each with at least one training row (tasks learn from them)
  and at least one held-out row (the pair protocol's seen part and GZSL's S score a seen class
  on its held-out rows only; without any, a pair would be scored on its partner's rows alone).
- ``val``: at least 2 classes, each with rows: the best epoch (and every baseline's
  hyperparameters) is chosen on pairs of validation classes. With ``train.val_classes:
  train`` (the original code's protocol) it needs ``train.classes_per_task`` classes (tasks
  are drawn from them too), each also with a training row (tasks learn from them) and a
  held-out row (the epoch is chosen on those alone).
- ``unseen``: at least 2 classes, each with rows: the pair and ZSL protocols score them.

`t2m data check` and `t2m data import` (`t2m_cli.data.custom`), every converter (through
`t2m_cli.data.dataset.save_dataset`), every load of a dataset folder (`load_dataset`) and
`t2m train` before it builds anything (with its ``train.classes_per_task`` and
``train.val_classes``) ask `split_requirements`, so each of them refuses the same splits in
the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

MIN_CLASSES = {"seen": 2, "val": 2, "unseen": 2}
"""Fewest classes each part may have (seen: more when a task has more classes)."""
MIN_ROWS = 2
"""Fewest rows a class needs to be usable as a seen class: one to train, one held out."""


def _in_part(names: Sequence[str], part: str) -> str:
    """``2 classes in 'val' (a, b)``."""
    n = len(names)
    listed = ", ".join(names) if names else "none"
    return f"{n} class{'' if n == 1 else 'es'} in '{part}' ({listed})"


# For each side a class can lack: its index in (training, held-out) counts, what the
# message says it lacks, and the fix that keeps the class where it is.
_SIDES = (
    (0, "training rows (all their rows are held out)", "keep some of their rows for training"),
    (1, "held-out rows", "hold out some of their rows (is_test)"),
)


def _one_sided(
    label: str,
    names: Sequence[str],
    count: Callable[[str], tuple[int, int]],
    no_train: tuple[str, str],
    no_test: tuple[str, str],
) -> list[str]:
    """Problems of the classes in ``names`` that have rows on one side only.

    Args:
        label: how the message names them (``"seen classes"``).
        names: the classes.
        count: class -> (training rows, held-out rows).
        no_train: (why the part needs training rows, the other way out) for the message.
        no_test: the same for held-out rows.

    Returns:
        One sentence for the classes with no training rows, one for those with no held-out
        rows; none for classes with no rows at all (`split_requirements` names those).
    """
    problems = []
    for (side, lacks, keep), (why, fix) in zip(_SIDES, (no_train, no_test)):
        lacking = [c for c in names if count(c)[side] == 0 < count(c)[1 - side]]
        if lacking:
            problems.append(f"has {label} {lacking} with no {lacks}; {why}: {keep}, or {fix}.")
    return problems


def split_requirements(
    parts: Mapping[str, Sequence[str]],
    rows: Mapping[str, tuple[int, int]],
    classes_per_task: int = 2,
    val_classes: str = "holdout",
) -> list[str]:
    """Every way a split falls short of what training and the protocols need.

    Args:
        parts: ``"seen"``, ``"val"`` and ``"unseen"`` -> class names.
        rows: class name -> (training rows, held-out rows); a class absent here has none.
        classes_per_task: classes in a training task (``train.classes_per_task``); the seen part
            needs at least this many classes.
        val_classes: ``train.val_classes``; with 'train' every validation class needs a
            training row and a held-out row, as a seen class does.

    Returns:
        Problems, each a sentence that follows the split's name (``"split.json"``, ``"The
        split of dataset 'x'"``) and says what to change; empty when the split is usable.
    """
    problems = []

    def count(name: str) -> tuple[int, int]:
        return rows.get(name, (0, 0))

    seen, val, unseen = list(parts["seen"]), list(parts["val"]), list(parts["unseen"])
    need_seen = max(MIN_CLASSES["seen"], classes_per_task)
    if len(seen) < need_seen:
        lower = " (or lower train.classes_per_task)" if classes_per_task > 2 else ""
        problems.append(
            f"has {_in_part(seen, 'seen')}; a training task draws "
            f"{need_seen} distinct seen classes, so it needs at least {need_seen}: move classes "
            f"to 'seen'{lower}."
        )
    move = "move them to 'val' or 'unseen'"
    problems += _one_sided(
        "seen classes",
        seen,
        count,
        ("training learns from a seen class's training rows", move),
        ("the pair and GZSL protocols score a seen class on its held-out rows", move),
    )
    if val_classes == "train":
        if MIN_CLASSES["val"] <= len(val) < classes_per_task:
            problems.append(
                f"has {_in_part(val, 'val')}; with train.val_classes=train a task of validation "
                f"classes draws {classes_per_task} of them, so it needs at least "
                f"{classes_per_task}: move classes to 'val', lower train.classes_per_task, or "
                "set train.val_classes=holdout."
            )
        trains = "train.val_classes=train trains on a validation class's training rows"
        problems += _one_sided(
            "validation classes",
            val,
            count,
            (trains, "set train.val_classes=holdout"),
            (
                f"{trains} and chooses the epoch on its held-out rows alone",
                "set train.val_classes=holdout to keep validation classes out of training",
            ),
        )
    for part, names, why in (
        ("val", val, "the best epoch is chosen on pairs of validation classes"),
        ("unseen", unseen, "the pair and ZSL protocols score pairs of unseen classes"),
    ):
        need = MIN_CLASSES[part]
        if len(names) < need:
            problems.append(
                f"has {_in_part(names, part)}; {why}, so it needs at "
                f"least {need}: move classes to '{part}'."
            )
    for part, names in (("seen", seen), ("val", val), ("unseen", unseen)):
        empty = [c for c in names if sum(count(c)) == 0]
        if empty:
            problems.append(
                f"has '{part}' classes {empty} with no rows; add rows for them or drop them "
                "from the split."
            )
    return problems
