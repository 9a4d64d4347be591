"""The common in-memory form of a zero-shot dataset, and its feature file on disk.

Every dataset family (the embedded `shapes`, ModelNet40, AwA/CUB/SUN) ends up as one
`ZeroShotDataset`: a feature matrix over all classes, a label per row, a flag marking a class's
held-out rows, the seen / validation / unseen class split and each class's descriptions.

Feature files are safetensors (no pickle): tensors `features` (N, D) float32, `labels` (N,) int64
and `is_test` (N,) uint8, with the class names and the feature extractor's description stored as
JSON strings in the safetensors metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.atomic import save_safetensors
from t2m_cli.atomic import write_json as write_json
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
        parts = {"seen": self.seen, "val": self.val, "unseen": self.unseen}
        for name, classes in parts.items():
            if len(set(classes)) != len(classes):
                raise DataError(f"The split lists a class twice in '{name}'. List each class once.")
        overlap = (
            (set(self.seen) & set(self.val))
            | (set(self.seen) & set(self.unseen))
            | (set(self.val) & set(self.unseen))
        )
        if overlap:
            raise DataError(
                f"Classes {sorted(overlap)} are in more than one part of the split; "
                "a class must be seen, validation or unseen, not several."
            )

    def part(self, name: str) -> tuple[str, ...]:
        """Return the classes of one part: 'seen', 'val' or 'unseen'."""
        if name not in ("seen", "val", "unseen"):
            raise ValueError(f"unknown split part {name!r}")
        return tuple(getattr(self, name))

    def to_json(self) -> dict[str, list[str]]:
        return {"seen": list(self.seen), "val": list(self.val), "unseen": list(self.unseen)}

    @classmethod
    def from_json(cls, data: Any, source: str = "split") -> Split:
        if not isinstance(data, dict) or set(data) != {"seen", "val", "unseen"}:
            raise DataError(
                f"{source} must be a JSON object with exactly the keys 'seen', 'val' and 'unseen'."
            )
        for key, value in data.items():
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise DataError(f"{source}: '{key}' must be a list of class names.")
        return cls(tuple(data["seen"]), tuple(data["val"]), tuple(data["unseen"]))


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
    """Write a feature file atomically (safetensors, metadata as JSON strings).

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
    metadata = {"classes": json.dumps(classes), "meta": json.dumps(meta)}
    save_safetensors(path, tensors, metadata)


def load_features(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str], dict]:
    """Read a feature file written by `save_features`.

    Returns:
        features (N, D) float32, labels (N,) int64, is_test (N,) bool, class names, meta.
    """
    from safetensors import safe_open

    if not path.is_file():
        raise DataError(f"Feature file {path} does not exist. Run `t2m encode` first.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            features = f.get_tensor("features")
            labels = f.get_tensor("labels")
            is_test = f.get_tensor("is_test").bool()
        classes = json.loads(metadata["classes"])
        meta = json.loads(metadata.get("meta", "{}"))
    except DataError:
        raise
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise DataError(
            f"Feature file {path} cannot be read ({exc}). Delete it and run `t2m encode` again."
        ) from exc
    n = features.shape[0]
    if features.ndim != 2 or labels.shape != (n,) or is_test.shape != (n,):
        raise DataError(f"Feature file {path} has inconsistent shapes; run `t2m encode` again.")
    return features, labels, is_test, classes, meta


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file, turning a missing or malformed file into a `DataError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"The {what} file {path} is missing.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"The {what} file {path} is not valid JSON: {exc}.") from None


def load_dataset(root: Path, name: str, feature_name: str) -> ZeroShotDataset:
    """Load a dataset folder: its split, descriptions and one feature file.

    Args:
        root: dataset folder holding ``split.json``, ``descriptions.json`` and ``features/``.
        name: dataset name to report.
        feature_name: stem of the feature file under ``features/`` (e.g. ``"pointnet"``).
    """
    import torch

    split = Split.from_json(read_json(root / SPLIT_FILE, "split"), str(root / SPLIT_FILE))
    raw = read_json(root / DESCRIPTIONS_FILE, "descriptions")
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and v and all(isinstance(t, str) and t.strip() for t in v)
        for v in raw.values()
    ):
        raise DataError(
            f"{root / DESCRIPTIONS_FILE} must map each class name to a non-empty list of texts."
        )
    features, labels, is_test, classes, meta = load_features(
        root / FEATURES_DIR / f"{feature_name}.safetensors"
    )
    missing = [c for c in (*split.seen, *split.val, *split.unseen) if c not in classes]
    if missing:
        raise DataError(f"Split classes {missing} have no features in {root}; encode again.")
    undescribed = [c for c in classes if c not in raw]
    if undescribed:
        raise DataError(f"Classes {undescribed} have no description in {root / DESCRIPTIONS_FILE}.")
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
        attributes = read_json(root / ATTRIBUTES_FILE, "attributes")
        if not isinstance(attributes, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v) for v in attributes.values()
        ):
            raise DataError(
                f"{root / ATTRIBUTES_FILE} must map each class name to a list of attribute names."
            )
    return ZeroShotDataset(
        attributes=attributes,
        name=name,
        classes=list(classes),
        features=features,
        labels=labels,
        is_test=is_test,
        split=split,
        descriptions={k: list(v) for k, v in raw.items()},
        meta=meta,
    )
