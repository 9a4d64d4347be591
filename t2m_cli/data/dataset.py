"""The common in-memory form of a zero-shot dataset, and its feature file on disk.

Every dataset family (the embedded `shapes`, ModelNet40, AwA/CUB/SUN) ends up as one
`ZeroShotDataset`: a feature matrix over all classes, a label per row, a flag marking a class's
held-out rows, the seen / validation / unseen class split and each class's descriptions.

Feature files are safetensors (no pickle): tensors `features` (N, D) float32, `labels` (N,) int64
and `is_test` (N,) uint8, with the class names and the feature extractor's description stored as
JSON strings in the safetensors metadata (``classes`` and ``meta``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.atomic import dumps_json, load_safetensors, save_safetensors, staged_dir
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
from t2m_cli.data.requirements import split_requirements
from t2m_cli.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import torch

SPLIT_FILE = "split.json"
DESCRIPTIONS_FILE = "descriptions.json"
ATTRIBUTES_FILE = "attributes.json"
FEATURES_DIR = "features"
BUILD_FEATURES = (
    "`t2m encode --force` for a mesh dataset; for imported or downloaded features, delete the "
    "dataset folder and import (`t2m data import`) or download (`t2m download NAME`) it again"
)
"""How a dataset's features are made again, for messages: `t2m encode` builds only a mesh
dataset's (and keeps a readable feature file built with the same settings, split and meshes
unless `--force`)."""


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

    @property
    def classes(self) -> tuple[str, ...]:
        """Every class of the split: seen, then validation, then unseen."""
        return (*self.seen, *self.val, *self.unseen)

    def to_json(self) -> dict[str, list[str]]:
        return {"seen": list(self.seen), "val": list(self.val), "unseen": list(self.unseen)}

    @classmethod
    def read(cls, root: Path) -> Split:
        """The split of a dataset folder, from its ``split.json``.

        Raises:
            DataError: the file is missing, unreadable or not a valid split (names the file).
        """
        path = root / SPLIT_FILE
        return cls.from_json(read_json(path, "split"), str(path))

    @classmethod
    def from_json(cls, data: Any, source: str = "split") -> Split:
        """A split from the contents of a ``split.json`` file.

        Raises:
            DataError: ``data`` is not a valid split file (see `SplitFile`); names ``source``.
        """
        parts = parse_file(SplitFile, data, source)
        return cls(tuple(parts.seen), tuple(parts.val), tuple(parts.unseen))


@dataclass(frozen=True)
class FeatureSource:
    """A feature file, and what identifies the features it held when it was read.

    Attributes:
        path: the ``.safetensors`` file.
        sha256: `features_digest` of its tensors and class names.
        meta: the facts it records about how its features were made (the extractor's
            settings).
    """

    path: Path
    sha256: str
    meta: dict[str, Any]


def features_digest(
    features: torch.Tensor, labels: torch.Tensor, is_test: torch.Tensor, classes: Sequence[str]
) -> str:
    """SHA-256 of a feature file's contents: what a model trained on them depends on.

    The tensors' shapes and bytes and the class names are hashed, not the file: its metadata
    (timings of the extractor, say) may change while the features do not. A SUN-sized matrix
    (14,340 x 2048 float32, 117 MB) takes about 0.08 s on a CPU with SHA instructions (and
    some 0.3 s on one without, at software SHA-256's ~400 MB/s); the bytes are hashed in
    place, not copied.

    Args:
        features: (N, D) float32 features.
        labels: (N,) integer labels.
        is_test: (N,) bool or uint8 held-out flags.
        classes: the class names the labels index.

    Returns:
        A hex SHA-256.
    """
    import torch

    digest = hashlib.sha256()
    for tensor in (
        features.to(torch.float32),
        labels.to(torch.int64),
        is_test.to(torch.uint8),
    ):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{list(array.shape)}\0".encode())
        digest.update(array.data)
    digest.update(dumps_json(list(classes)).encode("utf-8"))
    return digest.hexdigest()


def read_feature_source(path: Path) -> FeatureSource:
    """Read a feature file (`load_features`) for what identifies it, not its features.

    Raises:
        DataError: the file is missing or unreadable (see `load_features`).
    """
    features, labels, is_test, classes, meta = load_features(path)
    return FeatureSource(path, features_digest(features, labels, is_test, classes), meta)


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
        source: the feature file it was read from and the digest of what that file held
            (`load_dataset`); None for a dataset built in memory.
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
    source: FeatureSource | None = None

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

    def scored_rows(
        self, classes: Sequence[str], part: str, scored: str = "them"
    ) -> list[torch.Tensor]:
        """Each class's rows of ``part`` (as `class_rows`), which a protocol scores them on.

        Args:
            classes: class names.
            part: 'train', 'test' or 'all'.
            scored: what the message says the rows score (``"their pairs"``).

        Returns:
            One (n,) int64 index tensor per class, in the order of ``classes``.

        Raises:
            DataError: a class has no such rows: its score would be 0 / 0.
        """
        rows = [self.class_rows(c, part) for c in classes]
        empty = [c for c, r in zip(classes, rows) if len(r) == 0]
        if empty:
            which = {"test": "held-out ", "train": "training "}.get(part, "")
            raise DataError(
                f"Classes {empty} of dataset '{self.name}' have no {which}rows to score "
                f"{scored} on. Give each class of the split such rows (`t2m data check` lists "
                "what a split needs), then import the data again."
            )
        return rows

    def row_counts(self) -> dict[str, tuple[int, int]]:
        """Class name -> (training rows, held-out rows)."""
        import torch

        n = len(self.classes)
        train = torch.bincount(self.labels[~self.is_test], minlength=n).tolist()
        test = torch.bincount(self.labels[self.is_test], minlength=n).tolist()
        return {c: (int(train[i]), int(test[i])) for i, c in enumerate(self.classes)}

    def check_usable(
        self, subject: str, classes_per_task: int = 2, val_classes: str = "holdout"
    ) -> None:
        """Refuse a split that training or a protocol could not use (`split_requirements`).

        Args:
            subject: what the message calls the split, naming the file to fix (``"split.json
                of /data/x"``).
            classes_per_task: classes in a training task; the seen part needs this many.
            val_classes: ``train.val_classes``; 'train' asks more of the validation classes.

        Raises:
            DataError: every shortfall, in one message.
        """
        problems = split_requirements(
            self.split.to_json(), self.row_counts(), classes_per_task, val_classes
        )
        if problems:
            raise DataError(
                " ".join([f"{subject} {problems[0]}", *(f"It {p}" for p in problems[1:])])
            )


def nonfinite_rows(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    *,
    within_class: bool = False,
    shown: int = 3,
) -> str | None:
    """Where a feature matrix holds NaN or infinite values, in words; None where it holds none.

    Args:
        features: (N, D) features, a tensor or an array.
        labels: (N,) class index of each row, to name the class of a bad row (ignored unless
            it has N entries).
        classes: the class names the labels index.
        within_class: count a row within its class (``row 3 of class 'cat'``), for files that
            keep one matrix per class, instead of within the whole matrix
            (``row 17 (class 'cat')``).
        shown: how many bad rows to name.

    Returns:
        e.g. ``"NaN or infinite values in 2 rows: row 3 (class 'cat'), row 17 (class 'dog')"``.
    """
    import numpy as np

    def array(values: torch.Tensor | np.ndarray) -> np.ndarray:
        return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)

    bad = np.flatnonzero(~np.isfinite(array(features)).all(axis=1))
    if not bad.size:
        return None
    y = array(labels) if labels is not None else None
    if y is None or classes is None or y.shape != (len(array(features)),):
        named = [f"row {row}" for row in bad[:shown]]
    else:
        named = []
        for row in bad[:shown].tolist():
            label = int(y[row])
            name = f"'{classes[label]}'" if 0 <= label < len(classes) else f"label {label}"
            if within_class:
                named.append(f"row {int((y[:row] == label).sum())} of class {name}")
            else:
                named.append(f"row {row} (class {name})")
    more = ", ..." if bad.size > shown else ""
    rows = f"{bad.size} row{'s' * (bad.size != 1)}"
    return f"NaN or infinite values in {rows}: {', '.join(named)}{more}"


def check_finite_features(
    features: torch.Tensor | np.ndarray,
    source: str,
    fix: str,
    labels: torch.Tensor | np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    *,
    within_class: bool = False,
) -> None:
    """Refuse features with NaN or infinite values: every reader and writer of features calls it.

    A single such row turns the hypernetwork's inner loss, then its weights, into NaN, and every
    accuracy computed from it into chance, so it is stopped where it enters.

    Args:
        features: (N, D) features, a tensor or an array.
        source: the file (and field) they come from, starting the message.
        fix: what to do, ending the message.
        labels: (N,) class index of each row, to name classes (see `nonfinite_rows`).
        classes: the class names the labels index.
        within_class: count rows within their class (see `nonfinite_rows`).

    Raises:
        DataError: "<source> has NaN or infinite values in n rows: row 3 (class 'cat'), ...
            <fix>".
    """
    where = nonfinite_rows(features, labels, classes, within_class=within_class)
    if where is not None:
        raise DataError(f"{source} has {where}. {fix}")


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
        features: (N, D) float features, all finite.
        labels: (N,) integer labels indexing ``classes``.
        is_test: (N,) bool, held-out rows.
        classes: class names.
        meta: JSON-serialisable facts about the extractor.

    Raises:
        DataError: a feature is NaN or infinite (nothing is written).
    """
    import torch

    tensors = {
        "features": features.to(torch.float32),
        "labels": labels.to(torch.int64),
        "is_test": is_test.to(torch.uint8),
    }
    # After the cast: a float64 value beyond float32's range becomes infinite only here.
    check_finite_features(
        tensors["features"],
        f"The features to be written to {path}",
        "Nothing was written; fix or drop those rows.",
        labels,
        classes,
    )
    save_safetensors(path, tensors, {"classes": dumps_json(classes), "meta": dumps_json(meta)})


def save_dataset(
    dataset: ZeroShotDataset, dst: Path, feature_name: str, split_source: str | None = None
) -> Path:
    """Write a dataset folder all at once, as `load_dataset` reads it.

    The folder is built beside ``dst`` and renamed into place (`staged_dir`), so a failure midway
    leaves nothing at ``dst`` to block a rerun. A split that training or a protocol could not
    use (`t2m_cli.data.requirements`) is refused before anything is written.

    Args:
        dataset: what to write; ``attributes.json`` is written when it has attributes.
        dst: the folder to create; it must not exist (or be an empty folder).
        feature_name: stem of the feature file under ``features/``.
        split_source: where the split came from, for the message about an unusable one
            (``"val_loc of att_splits.mat"``).

    Returns:
        ``dst``.

    Raises:
        DataError: the split is unusable, or a feature is NaN or infinite.
        UserInputError: ``dst`` holds something by the time the new folder is ready.
        RunFailure: the folder could not be written.
    """
    check_finite_features(
        dataset.features,
        f"The features of dataset '{dataset.name}'",
        f"Nothing was written to {dst}; fix or drop those rows in the source data.",
        dataset.labels,
        dataset.classes,
    )
    subject = f"The split of dataset '{dataset.name}'"
    dataset.check_usable(f"{subject} (from {split_source})" if split_source else subject)
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
        DataError: the file is missing, damaged, lacks a tensor or the class names, its shapes
            disagree, or a feature is NaN or infinite.
    """
    if not path.is_file():
        raise DataError(f"Feature file {path} does not exist. Build it: {BUILD_FEATURES}.")
    try:
        tensors, header = load_safetensors(path, "Feature file")
        lacking = [k for k in ("features", "labels", "is_test") if k not in tensors]
        if not isinstance(header.get("classes"), list):
            lacking.append("class names")
        if lacking:
            raise DataError(f"Feature file {path} cannot be read (no {', '.join(lacking)}).")
    except DataError as exc:
        raise DataError(f"{exc} Build it again: {BUILD_FEATURES}.") from exc
    features, labels = tensors["features"], tensors["labels"]
    is_test = tensors["is_test"].bool()
    n = features.shape[0]
    if features.ndim != 2 or labels.shape != (n,) or is_test.shape != (n,):
        raise DataError(
            f"Feature file {path} has inconsistent shapes. Build it again: {BUILD_FEATURES}."
        )
    check_finite_features(
        features,
        f"Feature file {path}",
        "Build it again from finite data: `t2m encode --force` for a mesh dataset; for "
        "imported or downloaded features, delete the dataset folder, fix the source if it is "
        "yours, and import (`t2m data import`) or download it again.",
        labels,
        header["classes"],
    )
    return features, labels, is_test, header["classes"], header.get("meta", {})


def load_dataset(root: Path, name: str, feature_name: str) -> ZeroShotDataset:
    """Load a dataset folder: its split, descriptions and one feature file.

    Args:
        root: dataset folder holding ``split.json``, ``descriptions.json`` and ``features/``.
        name: dataset name to report.
        feature_name: stem of the feature file under ``features/`` (e.g. ``"pointnet"``).

    Raises:
        DataError: a file is missing or invalid (see `t2m_cli.data.folder_files`), or the files
            disagree: a class without features or description, or a split that training or a
            protocol could not use (`t2m_cli.data.requirements`).
    """
    split = Split.read(root)
    descriptions = read_file(DescriptionsFile, root / DESCRIPTIONS_FILE, "descriptions")
    feature_file = root / FEATURES_DIR / f"{feature_name}.safetensors"
    features, labels, is_test, classes, meta = load_features(feature_file)
    missing = [c for c in split.classes if c not in classes]
    if missing:
        raise DataError(
            f"Split classes {missing} have no features in {root}. Build them: {BUILD_FEATURES}."
        )
    undescribed = descriptions.undescribed(classes)
    if undescribed:
        raise DataError(f"{root / DESCRIPTIONS_FILE} {undescribed}")
    attributes: dict[str, list[str]] = {}
    if (root / ATTRIBUTES_FILE).is_file():
        attributes = read_file(AttributesFile, root / ATTRIBUTES_FILE, "attributes").root
    dataset = ZeroShotDataset(
        attributes=attributes,
        name=name,
        classes=list(classes),
        features=features,
        labels=labels,
        is_test=is_test,
        split=split,
        descriptions=descriptions.root,
        meta=meta,
        # Hashed as read, before any standardisation: a run records it to notice, later, that
        # the file now holds other features (`t2m encode` with other settings rewrites it).
        source=FeatureSource(
            feature_file, features_digest(features, labels, is_test, classes), meta
        ),
    )
    # A folder written before these checks, or edited by hand, is refused here with the words
    # `t2m data check` uses, instead of failing in the middle of training or evaluation.
    dataset.check_usable(f"{root / SPLIT_FILE} (with {feature_name}.safetensors)")
    return dataset
