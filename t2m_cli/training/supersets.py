"""Super-set tasks (``train.task: supersets``): one attribute against the seen classes without it.

`SupersetTrainer` is the class trainer (`t2m_cli.training.loop.Trainer`) with other tasks: a
single-logit target trained with binary cross-entropy on one attribute's description, and a
validation ROC-AUC over attributes in place of pair accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer
from t2m_cli.errors import DataError
from t2m_cli.models.hypernet import Hypernetwork
from t2m_cli.scoring.metrics import Summary, summarize
from t2m_cli.scoring.supersets import superset_aucs
from t2m_cli.training.inner import InnerSettings
from t2m_cli.training.loop import OuterSettings, Trainer, shuffled


def superset_tasks(
    n_attributes: int, n_tasks: int, generator: torch.Generator, fill: bool = True
) -> torch.Tensor:
    """Super-set tasks of one epoch: the attributes shuffled, the first ``n_tasks`` taken.

    The analogue of `t2m_cli.training.loop.sample_tasks` for pairs: no attribute twice in an
    epoch unless there are fewer attributes than tasks, in which case the shuffles repeat
    (``fill``), or the epoch has each attribute once (``train.task_sampling: once``).

    Returns:
        (n, 1) int64 indices in ``range(n_attributes)``; n = ``n_tasks``, or
        ``n_attributes`` if smaller and ``fill`` is False.
    """
    if n_attributes < 1:
        raise ValueError("super-set tasks need at least one attribute")
    return shuffled(n_attributes, n_tasks, generator, fill).unsqueeze(1)


class SupersetTrainer(Trainer):
    """Trains a hypernetwork on super-set tasks (``train.task: supersets``).

    A task is one attribute X of ``dataset.attributes`` that splits the seen classes (some
    have it, some lack it). The hypernetwork reads a set of ONE description, the attribute's
    text, and emits a single-logit target; the inner loop trains it with binary cross-entropy
    on the training rows of every seen class that ``dataset.attributes`` lists, label 1 for the
    rows of classes that have X and 0 for the others (unlisted classes are unlabelled and left
    out, as in the evaluation protocol). With ``balance="subsample"`` (the original code) a
    task reads every row of its smaller side (with or without X) and as many rows of its
    larger side, drawn for each task with the trainer's generator, so a resumed run draws
    what an unbroken one would. Everything else (tasks per step, mixed precision, processes,
    the hypernetwork update, state and resume) is the class trainer's.

    Validation is the mean ROC-AUC over attributes on all rows of the validation classes
    (`superset_aucs`; attributes that do not split them are skipped). Unseen classes are
    never read.

    Args:
        attributes: names of the A attributes, as ``dataset.attributes`` spells them.
        texts: (A, d) embeddings of their descriptions (see
            `t2m_cli.scoring.supersets.attribute_texts`), row i for ``attributes[i]``.
        balance: ``train.superset_balance``: 'none' (every row) or 'subsample'.
        The others: as for `Trainer`; ``bank`` is kept but not read by the super-set tasks.

    Raises:
        DataError: no attribute splits the seen classes, or none splits the validation ones.
    """

    def __init__(
        self,
        hypernet: Hypernetwork,
        bank: Describer,
        dataset: ZeroShotDataset,
        inner: InnerSettings,
        outer: OuterSettings,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        *,
        attributes: Sequence[str],
        texts: torch.Tensor,
        balance: Literal["none", "subsample"] = "none",
        val_bank: Describer | None = None,
    ) -> None:
        super().__init__(hypernet, bank, dataset, inner, outer, device, rank, world_size, val_bank)
        self.balance = balance
        names = list(attributes)
        if texts.dim() != 2 or texts.shape[0] != len(names):
            raise ValueError(
                f"texts {tuple(texts.shape)} must be (A, d) with A = {len(names)} attributes"
            )
        param = next(iter(self.hypernet.parameters()))
        self.all_attributes = names
        self.all_texts = texts.to(device=device, dtype=param.dtype)
        seen = dataset.split.seen
        labelled = [i for i, c in enumerate(seen) if c in dataset.attributes]
        has = torch.tensor(
            [[a in dataset.attributes[seen[i]] for i in labelled] for a in names],
            dtype=torch.bool,
        ).reshape(len(names), len(labelled))
        splits = has.any(1) & ~has.all(1)
        if not bool(splits.any()):
            raise DataError(
                f"No attribute of dataset '{dataset.name}' splits its seen classes (each is "
                "held by all of them or by none): train.task supersets needs attributes.json "
                "to give some seen classes an attribute that others lack."
            )
        self._check_val_splits(names)
        keep = torch.nonzero(splits).flatten()
        # The training attributes: those that split the seen classes.
        self.attributes = [names[i] for i in keep.tolist()]
        self.texts = self.all_texts[keep.to(device)]
        rows = [self.train_rows[i] for i in labelled]
        self.task_rows = torch.cat(rows)
        row_class = torch.repeat_interleave(
            torch.arange(len(labelled)), torch.tensor([len(r) for r in rows])
        )
        # (A_train, N): 1 where the row's class has the attribute.
        positive = has[keep][:, row_class]
        self.labels = positive.to(device=device, dtype=self.features.dtype)
        # Positions in `task_rows` of each training attribute's positives and negatives, on
        # the CPU where balanced tasks are drawn. Every seen class has training rows (the split
        # is checked when the dataset loads), so an attribute that splits the classes has both.
        self.sides = [
            (torch.nonzero(p).flatten(), torch.nonzero(~p).flatten()) for p in positive.unbind()
        ]

    def _check_val_splits(self, names: list[str]) -> None:
        val = [
            set(self.dataset.attributes[c])
            for c in self.dataset.split.val
            if c in self.dataset.attributes and len(self.dataset.class_rows(c, "all"))
        ]
        if not any(0 < sum(a in own for own in val) < len(val) for a in names):
            raise DataError(
                f"No attribute of dataset '{self.dataset.name}' splits its validation classes, "
                "so train.task supersets has no validation AUC to select epochs with: "
                "attributes.json must give some validation classes an attribute that others "
                "lack."
            )

    def sample_epoch(self) -> torch.Tensor:
        """(n, 1) indices into `attributes`, see `superset_tasks`."""
        return superset_tasks(
            len(self.attributes),
            self.outer.tasks_per_epoch,
            self.generator,
            fill=self.outer.task_sampling == "fill",
        )

    def task_data(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows, 0 / 1 labels and counts of a batch of super-set tasks.

        Without balancing every task reads the same rows (the training rows of the labelled
        seen classes) and only the labels differ. With ``balance="subsample"`` each task keeps
        those rows of the smaller side and an equal number of the larger side, drawn with the
        generator; tasks are then padded to the longest.

        Args:
            tasks: (T, 1) indices into `attributes`.

        Returns:
            rows (T, n) into the feature matrix, y (T, n) floats (1 = the row's class has the
            attribute), counts (T,) of real rows per task (the rest is padding).
        """
        n_tasks = len(tasks)
        y = self.labels[tasks[:, 0].to(self.labels.device)]
        if self.balance == "none":
            rows = self.task_rows.unsqueeze(0).expand(n_tasks, -1)
            counts = torch.full((n_tasks,), len(self.task_rows), dtype=torch.long)
            return rows, y, counts
        kept = [self._balanced(int(a)) for a in tasks[:, 0].tolist()]
        counts = torch.tensor([len(k) for k in kept])
        # Padding points at the first row; the inner loop masks it out by the counts.
        where = torch.zeros(n_tasks, int(counts.max()), dtype=torch.long)
        for t, k in enumerate(kept):
            where[t, : len(k)] = k
        where = where.to(self.task_rows.device)
        return self.task_rows[where], torch.gather(y, 1, where.to(y.device)), counts

    def _balanced(self, attribute: int) -> torch.Tensor:
        """Positions in `task_rows` of one balanced task, in row order: every row of the
        smaller side and as many of the larger, drawn with the generator (one draw per task,
        whichever side is larger, as the original draws)."""
        positive, negative = self.sides[attribute]
        small, large = (
            (positive, negative) if len(positive) <= len(negative) else (negative, positive)
        )
        drawn = large[torch.randperm(len(large), generator=self.generator)[: len(small)]]
        return torch.cat([small, drawn]).sort().values

    def draw_text(self, tasks: torch.Tensor) -> torch.Tensor:
        """(T, 1, d) embeddings of the tasks' attribute descriptions (no random draw)."""
        return self.texts[tasks.to(self.texts.device)]

    def validate(self) -> Summary:
        """ROC-AUC over attributes on all rows of the validation classes (mean +- SEM)."""
        aucs = superset_aucs(
            self.hypernet,
            self.all_texts,
            self.all_attributes,
            self.dataset,
            self.dataset.split.val,
            "all",
        )
        return summarize(torch.tensor(list(aucs.values()), dtype=torch.float64))
