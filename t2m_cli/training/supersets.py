"""Super-set tasks (``train.task: supersets``): one attribute against the seen classes without it.

`SupersetTrainer` is the class trainer (`t2m_cli.training.loop.Trainer`) with other tasks: a
single-logit target trained with binary cross-entropy on one attribute's description, and a
validation ROC-AUC over attributes in place of pair accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer
from t2m_cli.errors import DataError
from t2m_cli.models.hypernet import Hypernetwork
from t2m_cli.scoring.metrics import Summary, summarize
from t2m_cli.scoring.supersets import superset_aucs
from t2m_cli.training.inner import InnerSettings
from t2m_cli.training.loop import OuterSettings, Trainer


def superset_tasks(n_attributes: int, n_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """Super-set tasks of one epoch: the attributes shuffled, the first ``n_tasks`` taken.

    The analogue of `t2m_cli.training.loop.sample_tasks` for pairs: no attribute twice in an
    epoch unless there are fewer attributes than tasks, in which case the shuffles repeat.

    Returns:
        (n_tasks, 1) int64 indices in ``range(n_attributes)``.
    """
    if n_attributes < 1:
        raise ValueError("super-set tasks need at least one attribute")
    reps = -(-n_tasks // n_attributes)
    order = torch.cat([torch.randperm(n_attributes, generator=generator) for _ in range(reps)])
    return order[:n_tasks].unsqueeze(1)


class SupersetTrainer(Trainer):
    """Trains a hypernetwork on super-set tasks (``train.task: supersets``).

    A task is one attribute X of ``dataset.attributes`` that splits the seen classes (some
    have it, some lack it). The hypernetwork reads a set of ONE description, the attribute's
    text, and emits a single-logit target; the inner loop trains it with binary cross-entropy
    on the training rows of every seen class that ``dataset.attributes`` lists, label 1 for the
    rows of classes that have X and 0 for the others (unlisted classes are unlabelled and left
    out, as in the evaluation protocol). Everything else (tasks per step, mixed precision,
    processes, the hypernetwork update, state and resume) is the class trainer's.

    Validation is the mean ROC-AUC over attributes on all rows of the validation classes
    (`superset_aucs`; attributes that do not split them are skipped). Unseen classes are
    never read.

    Args:
        attributes: names of the A attributes, as ``dataset.attributes`` spells them.
        texts: (A, d) embeddings of their descriptions (see
            `t2m_cli.scoring.supersets.attribute_texts`), row i for ``attributes[i]``.
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
    ) -> None:
        super().__init__(hypernet, bank, dataset, inner, outer, device, rank, world_size)
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
        self.labels = has[keep][:, row_class].to(device=device, dtype=self.features.dtype)

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
        """(tasks_per_epoch, 1) indices into `attributes`, see `superset_tasks`."""
        return superset_tasks(len(self.attributes), self.outer.tasks_per_epoch, self.generator)

    def task_data(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows, 0 / 1 labels and counts of a batch of super-set tasks.

        Every task reads the same rows (the training rows of the labelled seen classes);
        only the labels differ.

        Args:
            tasks: (T, 1) indices into `attributes`.

        Returns:
            rows (T, N), y (T, N) floats (1 = the row's class has the attribute), counts (T,).
        """
        n_tasks = len(tasks)
        rows = self.task_rows.unsqueeze(0).expand(n_tasks, -1)
        y = self.labels[tasks[:, 0].to(self.labels.device)]
        counts = torch.full((n_tasks,), len(self.task_rows), dtype=torch.long)
        return rows, y, counts

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
