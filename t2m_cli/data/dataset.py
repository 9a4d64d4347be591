"""The common in-memory form of a zero-shot dataset, and its feature file on disk.

Every dataset family (the embedded `shapes`, ModelNet40, AwA/CUB/SUN) ends up as one
`ZeroShotDataset`: a feature matrix over all classes, a label per row, a flag marking a class's
held-out rows, the seen / validation / unseen class split and each class's descriptions.

Feature files are safetensors (no pickle): tensors `features` (N, D) float32, `labels` (N,) int64
and `is_test` (N,) uint8, with the class names and the feature extractor's description stored as
JSON strings in the safetensors metadata (``classes`` and ``meta``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.atomic import load_safetensors, save_safetensors, staged_dir
from t2m_cli.atomic import read_json as read_json
from t2m_cli.atomic import write_json as write_json
from t2m_cli.data.folder_files import (
    AttributesFile,
    DescriptionsFile,
    SplitFile,
    parse_file,
    read_file,
    split_problems,
)
from t2m_cli.errors import DataError

if TYPE_CHECKING:
    import torch

SPLIT_FILE = "split.json"
DESCRIPTIONS_FILE = "descriptions.json"
ATTRIBUTES_FILE = "attributes.json"
FEATURES_DIR = "features"


@dataclass(frozen=True)
class Split:
    """Class names of the three disjoint parts of a zero-shot split.

    Attributes:
        seen: classes the hypernetwork trains on.
        val: classes used only to pick the best epoch.
        unseen: classes never touched before the final evaluation.
    """

    seen: tuple[str, ...]
    val: tuple[str, ...]
    unseen: tuple[str, ...]

    def __post_init__(self) -> None:
        problems = split_problems(self.to_json())
        if problems:
            raise DataError(" ".join(f"The split {text}" for _, text in problems))

    def part(self, name: str) -> tuple[str, ...]:
        """Return the classes of one part: 'seen', 'val' or 'unseen'."""
        if name not in ("seen", "val", "unseen"):
            raise ValueError(f"unknown split part {name!r}")
        return tuple(getattr(self, name))

    def to_json(self) -> dict[str, list[str]]:
        return {"seen": list(self.seen), "val": list(self.val), "unseen": list(self.unseen)}

    @classmethod
    def from_json(cls, data: Any, source: str = "split") -> Split:
        """A split from the contents of a ``split.json`` file.

        Raises:
            DataError: ``data`` is not a valid split file (see `SplitFile`); names ``source``.
        """
        parts = parse_file(SplitFile, data, source)
        return cls(tuple(parts.seen), tuple(parts.val), tuple(parts.unseen))


@dataclass
class ZeroShotDataset:
    """Features of every class of a dataset, with its split and descriptions.

    Attributes:
        name: dataset name, e.g. ``"shapes"``.
        classes: all class names; a label is an index into this list.
        features: (N, D) float32 features of every sample.
        labels: (N,) int64 class index of each row.
        is_test: (N,) bool, True for a class's held-out rows (a seen class's evaluation data).
        split: the seen / validation / unseen classes.
        descriptions: class name -> one or more texts describing it.
        meta: free-form facts about how the features were made.
        attributes: class name -> names of the attributes it has (optional; negative
            descriptions are built from them).
    """

    name: str
    classes: list[str]
    features: torch.Tensor
    labels: torch.Tensor
    is_test: torch.Tensor
    split: Split
    descriptions: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    def index(self, name: str) -> int:
        """Label of a class name."""
        try:
            return self.classes.index(name)
        except ValueError:
            raise DataError(f"Class '{name}' is not in dataset '{self.name}'.") from None

    def class_rows(self, name: str, part: str = "all") -> torch.Tensor:
        """Row indices of one class: ``part`` is 'train', 'test' or 'all'.

        Returns:
            (n,) int64 indices into ``features``.
        """
        import torch

        mask = self.labels == self.index(name)
        if part == "train":
            mask &= ~self.is_test
        elif part == "test":
            mask &= self.is_test
        elif part != "all":
            raise ValueError(f"unknown part {part!r}")
        return torch.nonzero(mask, as_tuple=False).flatten()


def save_features(
    path: Path,
    features: torch.Tensor,
    labels: torch.Tensor,
    is_test: torch.Tensor,
    classes: list[str],
    meta: dict[str, Any],
) -> None:
    """Write a feature file atomically (safetensors, class names and meta as JSON strings).

    Args:
        path: target ``.safetensors`` file.
        features: (N, D) float features.
        labels: (N,) integer labels indexing ``classes``.
        is_test: (N,) bool, held-out rows.
        classes: class names.
        meta: JSON-serialisable facts about the extractor.
    """
    import torch

    tensors = {
        "features": features.to(torch.float32),
        "labels": labels.to(torch.int64),
        "is_test": is_test.to(torch.uint8),
    }
    save_safetensors(path, tensors, {"classes": json.dumps(classes), "meta": json.dumps(meta)})


def save_dataset(dataset: ZeroShotDataset, dst: Path, feature_name: str) -> Path:
    """Write a dataset folder all at once, as `load_dataset` reads it.

    The folder is built beside ``dst`` and renamed into place (`staged_dir`), so a failure midway
    leaves nothing at ``dst`` to block a rerun.

    Args:
        dataset: what to write; ``attributes.json`` is written when it has attributes.
        dst: the folder to create; it must not exist (or be an empty folder).
        feature_name: stem of the feature file under ``features/``.

    Returns:
        ``dst``.

    Raises:
        UserInputError: ``dst`` holds something by the time the new folder is ready.
        RunFailure: the folder could not be written.
    """
    with staged_dir(dst) as tmp:
        save_features(
            tmp / FEATURES_DIR / f"{feature_name}.safetensors",
            dataset.features,
            dataset.labels,
            dataset.is_test,
            dataset.classes,
            dataset.meta,
        )
        write_json(tmp / SPLIT_FILE, dataset.split.to_json())
        write_json(tmp / DESCRIPTIONS_FILE, dataset.descriptions)
        if dataset.attributes:
            write_json(tmp / ATTRIBUTES_FILE, dataset.attributes)
    return dst


def load_features(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str], dict]:
    """Read a feature file written by `save_features`.

    Returns:
        features (N, D) float32, labels (N,) int64, is_test (N,) bool, class names, meta.

    Raises:
        DataError: the file is missing, damaged, lacks a tensor or the class names, or its
            shapes disagree.
    """
    if not path.is_file():
        raise DataError(f"Feature file {path} does not exist. Run `t2m encode` first.")
    try:
        tensors, header = load_safetensors(path, "Feature file")
        lacking = [k for k in ("features", "labels", "is_test") if k not in tensors]
        if not isinstance(header.get("classes"), list):
            lacking.append("class names")
        if lacking:
            raise DataError(f"Feature file {path} cannot be read (no {', '.join(lacking)}).")
    except DataError as exc:
        raise DataError(f"{exc} Delete it and run `t2m encode` again.") from exc
    features, labels = tensors["features"], tensors["labels"]
    is_test = tensors["is_test"].bool()
    n = features.shape[0]
    if features.ndim != 2 or labels.shape != (n,) or is_test.shape != (n,):
        raise DataError(f"Feature file {path} has inconsistent shapes; run `t2m encode` again.")
    return features, labels, is_test, header["classes"], header.get("meta", {})


def load_dataset(root: Path, name: str, feature_name: str) -> ZeroShotDataset:
    """Load a dataset folder: its split, descriptions and one feature file.

    Args:
        root: dataset folder holding ``split.json``, ``descriptions.json`` and ``features/``.
        name: dataset name to report.
        feature_name: stem of the feature file under ``features/`` (e.g. ``"pointnet"``).

    Raises:
        DataError: a file is missing or invalid (see `t2m_cli.data.folder_files`), or the files
            disagree: a class without features, description or rows.
    """
    import torch

    split = Split.from_json(read_json(root / SPLIT_FILE, "split"), str(root / SPLIT_FILE))
    descriptions = read_file(DescriptionsFile, root / DESCRIPTIONS_FILE, "descriptions")
    features, labels, is_test, classes, meta = load_features(
        root / FEATURES_DIR / f"{feature_name}.safetensors"
    )
    missing = [c for c in (*split.seen, *split.val, *split.unseen) if c not in classes]
    if missing:
        raise DataError(f"Split classes {missing} have no features in {root}; encode again.")
    undescribed = descriptions.undescribed(classes)
    if undescribed:
        raise DataError(f"{root / DESCRIPTIONS_FILE} {undescribed}")
    counts = torch.bincount(labels, minlength=len(classes))
    for c in split.seen:
        i = classes.index(c)
        if int(((labels == i) & ~is_test).sum()) == 0:
            raise DataError(f"Seen class '{c}' has no training rows in the features of {root}.")
    empty = [c for c in (*split.val, *split.unseen) if counts[classes.index(c)] == 0]
    if empty:
        raise DataError(f"Classes {empty} have no rows in the features of {root}.")
    attributes: dict[str, list[str]] = {}
    if (root / ATTRIBUTES_FILE).is_file():
        attributes = read_file(AttributesFile, root / ATTRIBUTES_FILE, "attributes").root
    return ZeroShotDataset(
        attributes=attributes,
        name=name,
        classes=list(classes),
        features=features,
        labels=labels,
        is_test=is_test,
        split=split,
        descriptions=descriptions.root,
        meta=meta,
    )
