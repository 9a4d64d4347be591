"""Bring your own data: a plain folder of arrays and text files, checked and converted.

The folder holds:

- ``features.npy`` (N, D) numbers, **or** ``features.safetensors`` with a tensor ``features``
  (N, D); not both. Every value must be finite, and within float32's range (about 3.4e38).
- ``labels.npy`` (N,) integers, each an index into ``classes.json``.
- ``classes.json``: a JSON list of the class names, each once.
- ``descriptions.yaml`` (or ``.yml``, or ``descriptions.json``; exactly one of them): a mapping
  from each class name to one text or a list of texts. Every class needs at least one.
- ``split.json`` (optional): ``{"seen": [...], "val": [...], "unseen": [...]}``, class names,
  each in at most one part, and enough of them for training and every protocol (at least two
  per part, each seen class with training and held-out rows: `t2m_cli.data.requirements`).
  Without it, `convert_custom` draws a seeded split (at least six classes, each of two rows).
- ``is_test.npy`` (optional): (N,) bool (or 0/1), True for a class's held-out rows. Without it,
  `convert_custom` holds out a seeded fraction of each class's rows (at least one, never all).
- ``attributes.json`` (optional): class name -> list of attribute names.

Example ``descriptions.yaml``::

    zebra: a striped horse-like animal of the savanna
    tiger:
      - a large striped cat
      - an orange cat with black stripes

`check_custom` reports every problem it finds at once, so a user fixes the folder in one pass;
the text files are checked by the models of `t2m_cli.data.folder_files`, which also check them
when a t2m dataset folder is loaded, so both speak alike.
`convert_custom` writes a t2m dataset folder (``split.json``, ``descriptions.json``,
``features/<name>.safetensors``, maybe ``attributes.json``) from a folder that passes the check.
Arrays are read with ``allow_pickle=False`` and YAML with `t2m_cli.yamlio.load_yaml` (no
aliases, no duplicate keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from t2m_cli.data.dataset import (
    ATTRIBUTES_FILE,
    SPLIT_FILE,
    Split,
    ZeroShotDataset,
    nonfinite_rows,
    save_dataset,
)
from t2m_cli.data.folder_files import (
    AttributesFile,
    ClassesFile,
    DescriptionsFile,
    FileT,
    SplitFile,
    check_file,
)
from t2m_cli.data.requirements import MIN_CLASSES, MIN_ROWS, split_requirements
from t2m_cli.errors import DataError
from t2m_cli.textio import check_strings, read_text

if TYPE_CHECKING:
    import numpy as np

FEATURE_FILES = ("features.npy", "features.safetensors")
DEFAULT_TEST_FRACTION = 0.2
"""Share of each class's rows `convert_custom` holds out when there is no ``is_test.npy``."""
DESCRIPTION_FILES = ("descriptions.yaml", "descriptions.yml", "descriptions.json")


@dataclass
class _Folder:
    """What could be read of a custom folder; None where a file was missing or unusable."""

    features: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    descriptions: DescriptionsFile | None = None
    split: SplitFile | None = None
    is_test: np.ndarray | None = None
    attributes: AttributesFile | None = None
    problems: list[str] = field(default_factory=list)


def _npy(path: Path, problems: list[str]) -> np.ndarray | None:
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        problems.append(
            f"{path.name} cannot be read without pickle ({exc}); save a plain numeric array "
            "with numpy.save."
        )
    except Exception as exc:  # a damaged .npy raises OSError, EOFError, ...
        problems.append(f"{path.name} is not a readable .npy file ({exc}); save it again.")
    return None


def _load(
    path: Path, model: type[FileT], problems: list[str], classes: list[str] | None = None
) -> FileT | None:
    """Read a JSON (or YAML) file of the folder and validate it with its model.

    Returns None, with the problems noted, when the file cannot be read or is invalid. With
    ``classes`` (from classes.json) the file's class names are checked against them.
    """
    from t2m_cli.yamlio import load_yaml

    try:
        if path.suffix == ".json":
            raw = json.loads(read_text(path))
            check_strings(raw, str(path))
        else:
            raw = load_yaml(path, error=DataError).data
    except DataError as exc:
        problems.append(str(exc))
        return None
    except json.JSONDecodeError as exc:
        problems.append(f"{path.name} is not valid JSON ({exc}); fix its syntax.")
        return None
    value, found = check_file(model, raw, path.name, classes)
    problems.extend(found)
    return value


def _read_features(root: Path, problems: list[str]) -> np.ndarray | None:
    import numpy as np

    present = [name for name in FEATURE_FILES if (root / name).is_file()]
    if not present:
        problems.append(
            "features are missing: add features.npy (N, D) or features.safetensors "
            "(tensor 'features')."
        )
        return None
    if len(present) > 1:
        problems.append("both features.npy and features.safetensors exist; keep only one.")
        return None
    path = root / present[0]
    if path.suffix == ".npy":
        features = _npy(path, problems)
    else:
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises several types for a damaged file
            problems.append(f"{path.name} is not a readable safetensors file ({exc}).")
            return None
        if "features" not in tensors:
            problems.append(
                f"{path.name} has no tensor named 'features' (it has {sorted(tensors)}); "
                "save the (N, D) matrix under that name."
            )
            return None
        features = tensors["features"]
    if features is None:
        return None
    if features.ndim != 2 or not (
        np.issubdtype(features.dtype, np.floating) or np.issubdtype(features.dtype, np.integer)
    ):
        problems.append(
            f"{path.name} must be a 2-D numeric (N, D) array; it is {features.dtype} of shape "
            f"{features.shape}."
        )
        return None
    return features


def _finite_problem(root: Path, folder: _Folder) -> str | None:
    """A bad-rows problem of the features, naming each row's class where the labels allow."""
    import numpy as np

    assert folder.features is not None
    # Checked as converted: a float64 value beyond float32's range becomes infinite there.
    with np.errstate(over="ignore"):
        stored = folder.features.astype(np.float32, copy=False)
    where = nonfinite_rows(stored, folder.labels, folder.classes)
    if where is None:
        return None
    name = next(n for n in FEATURE_FILES if (root / n).is_file())
    beyond = " (beyond float32's range)" if np.isfinite(folder.features).all() else ""
    return f"{name} has {where}{beyond}; fix or drop those samples and their labels."


def _read_labels(root: Path, problems: list[str]) -> np.ndarray | None:
    import numpy as np

    path = root / "labels.npy"
    if not path.is_file():
        problems.append("labels.npy is missing: add an (N,) integer array of class indices.")
        return None
    labels = _npy(path, problems)
    if labels is None:
        return None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        problems.append(
            f"labels.npy must be a 1-D integer array; it is {labels.dtype} of shape {labels.shape}."
        )
        return None
    return labels.astype(np.int64)


def _read_classes(root: Path, problems: list[str]) -> list[str] | None:
    path = root / "classes.json"
    if not path.is_file():
        problems.append('classes.json is missing: add a JSON list of class names ["cat", ...].')
        return None
    classes = _load(path, ClassesFile, problems)
    return None if classes is None else classes.root


def _read_descriptions(
    root: Path, problems: list[str], classes: list[str] | None
) -> DescriptionsFile | None:
    present = [name for name in DESCRIPTION_FILES if (root / name).is_file()]
    if not present:
        problems.append(
            "descriptions are missing: add descriptions.yaml (or descriptions.json) mapping "
            "each class to a text or a list of texts."
        )
        return None
    if len(present) > 1:
        problems.append(f"{present} all exist; keep exactly one descriptions file.")
        return None
    return _load(root / present[0], DescriptionsFile, problems, classes)


def _read_is_test(root: Path, problems: list[str]) -> np.ndarray | None:
    import numpy as np

    path = root / "is_test.npy"
    if not path.is_file():
        return None
    is_test = _npy(path, problems)
    if is_test is None:
        return None
    if is_test.ndim != 1 or not (
        is_test.dtype == np.bool_
        or (np.issubdtype(is_test.dtype, np.integer) and np.isin(is_test, (0, 1)).all())
    ):
        problems.append("is_test.npy must be a 1-D bool (or 0/1) array, one entry per row.")
        return None
    return is_test.astype(bool)


def _read(root: Path) -> _Folder:
    import numpy as np

    folder = _Folder()
    problems = folder.problems
    if not root.is_dir():
        problems.append(f"{root} is not a folder; give the folder that holds features and labels.")
        return folder
    folder.features = _read_features(root, problems)
    folder.labels = _read_labels(root, problems)
    folder.classes = _read_classes(root, problems)
    if folder.features is not None and (problem := _finite_problem(root, folder)):
        problems.append(problem)
    folder.descriptions = _read_descriptions(root, problems, folder.classes)
    if (root / SPLIT_FILE).is_file():
        folder.split = _load(root / SPLIT_FILE, SplitFile, problems, folder.classes)
    folder.is_test = _read_is_test(root, problems)
    if (root / ATTRIBUTES_FILE).is_file():
        folder.attributes = _load(root / ATTRIBUTES_FILE, AttributesFile, problems, folder.classes)

    features, labels, classes = folder.features, folder.labels, folder.classes
    if features is not None and labels is not None and len(labels) != len(features):
        problems.append(
            f"labels.npy has {len(labels)} entries but the features have {len(features)} rows; "
            "give one label per row."
        )
    if folder.is_test is not None and labels is not None and len(folder.is_test) != len(labels):
        problems.append(
            f"is_test.npy has {len(folder.is_test)} entries but labels.npy has {len(labels)}; "
            "give one per row."
        )
    if labels is not None and classes is not None:
        outside = (labels < 0) | (labels >= len(classes))
        if outside.any():
            problems.append(
                f"labels.npy has {int(outside.sum())} labels outside 0..{len(classes) - 1} (e.g. "
                f"{int(labels[outside][0])}); a label is an index into classes.json."
            )
        counts = np.bincount(labels[~outside], minlength=len(classes))
        empty = [c for c, k in zip(classes, counts) if k == 0]
        if empty:
            problems.append(
                f"classes {empty} have no rows in labels.npy; add samples or remove them from "
                "classes.json."
            )
    problems.extend(_split_problems(folder, (root / SPLIT_FILE).is_file()))
    return folder


def _held_out(n: int, fraction: float) -> int:
    """Rows of an n-row class that `convert_custom` holds out without ``is_test.npy``: at
    least one and at most n - 1, so a class of two or more rows can be seen (it has both)."""
    return min(n - 1, max(1, int(n * fraction))) if n >= MIN_ROWS else 0


def _split_problems(folder: _Folder, split_file: bool) -> list[str]:
    """What `split_requirements` says of the split and held-out rows the folder will get.

    Held-out rows are those of ``is_test.npy``, or those `convert_custom` would draw. Without
    ``split.json`` the split is drawn, so any class may become seen or validation; the folder
    then needs enough classes for every part, and every class a training and a held-out row.
    Nothing is said when the labels (or ``is_test.npy``) are unusable: that is reported already.
    """
    import numpy as np

    labels, classes, is_test = folder.labels, folder.classes, folder.is_test
    if labels is None or classes is None or ((labels < 0) | (labels >= len(classes))).any():
        return []
    if is_test is not None and len(is_test) != len(labels):
        return []
    n = len(classes)
    if is_test is not None:
        train = np.bincount(labels[~is_test], minlength=n)
        test = np.bincount(labels[is_test], minlength=n)
    else:
        total = np.bincount(labels, minlength=n)
        test = np.array([_held_out(int(k), DEFAULT_TEST_FRACTION) for k in total], dtype=np.int64)
        train = total - test
    rows = {c: (int(train[i]), int(test[i])) for i, c in enumerate(classes)}
    if split_file:
        if folder.split is None:  # split.json itself is invalid, and reported
            return []
        return [f"{SPLIT_FILE} {p}" for p in split_requirements(folder.split.model_dump(), rows)]
    problems = []
    needed = sum(MIN_CLASSES.values())
    if n < needed:
        problems.append(
            f"there is no {SPLIT_FILE} and only {n} classes; a drawn split needs at least "
            f"{needed} ({', '.join(f'{k} {part}' for part, k in MIN_CLASSES.items())}). Add "
            f"classes or write {SPLIT_FILE}."
        )
    lacking = [
        c
        for c, (k_train, k_test) in rows.items()
        if k_train + k_test > 0 and not (k_train and k_test)
    ]
    if lacking:
        how = (
            "is_test.npy must leave each a training row and hold out another"
            if is_test is not None
            else f"each needs at least {MIN_ROWS} rows"
        )
        problems.append(
            f"there is no {SPLIT_FILE}, so any class may be drawn as seen, and a seen class "
            f"needs training and held-out rows: classes {lacking} lack one or the other "
            f"({how}). Write {SPLIT_FILE} putting them in 'val' or 'unseen', or fix their rows."
        )
    return problems


def check_custom(path: Path) -> list[str]:
    """Every problem with a bring-your-own-data folder, each saying what to fix.

    Args:
        path: the folder (format in the module docstring).

    Returns:
        Problems, in a stable order; empty when the folder can be converted.
    """
    return _read(Path(path)).problems


def convert_custom(
    path: Path,
    dst: Path,
    *,
    feature_name: str = "custom",
    seed: int = 0,
    val_fraction: float = 0.1,
    unseen_fraction: float = 0.25,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> Path:
    """Check a bring-your-own-data folder and write it as a t2m dataset folder.

    Args:
        path: the custom folder (format in the module docstring).
        dst: the t2m dataset folder to create; it must not exist (or be an empty folder). It is
            built beside and renamed into place, so a failure leaves nothing there.
        feature_name: stem of the feature file under ``features/``; load it with
            ``load_dataset(dst, name, feature_name)``.
        seed: seed of the split and held-out rows drawn when ``split.json`` / ``is_test.npy``
            are absent.
        val_fraction: share of classes drawn for validation without ``split.json``.
        unseen_fraction: share of classes drawn as unseen without ``split.json``.
        test_fraction: share of each class's rows held out without ``is_test.npy``.

    Returns:
        ``dst``.

    Raises:
        DataError: the folder has problems; the message lists all of them.
        UserInputError: ``dst`` holds something by the time the new folder is ready.
        RunFailure: ``dst`` could not be written.
    """
    import numpy as np
    import torch

    path, dst = Path(path), Path(dst)
    folder = _read(path)
    if folder.problems:
        listing = "\n".join(f"  - {p}" for p in folder.problems)
        raise DataError(
            f"{path} cannot be converted; fix these {len(folder.problems)} problems:\n{listing}"
        )
    assert folder.features is not None and folder.labels is not None
    assert folder.classes is not None and folder.descriptions is not None
    classes, labels = folder.classes, folder.labels
    rng = np.random.default_rng(seed)
    if folder.split is not None:
        split = Split.from_json(folder.split.model_dump(), str(path / SPLIT_FILE))
        split_source = "split.json"
    else:
        split = _draw_split(classes, rng, val_fraction, unseen_fraction)
        split_source = f"drawn: seed {seed}, val {val_fraction}, unseen {unseen_fraction}"
    if folder.is_test is not None:
        is_test = folder.is_test
        test_source = "is_test.npy"
    else:
        is_test = np.zeros(len(labels), dtype=bool)
        for c in range(len(classes)):
            rows = np.flatnonzero(labels == c)
            n_test = _held_out(len(rows), test_fraction)
            is_test[rng.choice(rows, size=n_test, replace=False)] = True
        test_source = f"drawn: {test_fraction} of each class's rows, seed {seed}"
    dataset = ZeroShotDataset(
        name=dst.name,
        classes=list(classes),
        features=torch.from_numpy(np.ascontiguousarray(folder.features, dtype=np.float32)),
        labels=torch.from_numpy(labels),
        is_test=torch.from_numpy(is_test),
        split=split,
        descriptions={c: folder.descriptions.root[c] for c in classes},
        meta={
            "source": "custom",
            "extractor": "user-supplied features",
            "split": split_source,
            "is_test": test_source,
        },
        attributes=folder.attributes.root if folder.attributes is not None else {},
    )
    return save_dataset(dataset, dst, feature_name)


def _draw_split(
    classes: list[str], rng: np.random.Generator, val_fraction: float, unseen_fraction: float
) -> Split:
    # `_read` has made sure of enough classes for every part's minimum.
    n = len(classes)
    least = MIN_CLASSES
    n_unseen = min(
        max(least["unseen"], round(n * unseen_fraction)), n - least["seen"] - least["val"]
    )
    n_val = min(max(least["val"], round(n * val_fraction)), n - least["seen"] - n_unseen)
    order = [classes[int(i)] for i in rng.permutation(n)]
    unseen, val = set(order[:n_unseen]), set(order[n_unseen : n_unseen + n_val])
    return Split(
        seen=tuple(c for c in classes if c not in unseen and c not in val),
        val=tuple(c for c in classes if c in val),
        unseen=tuple(c for c in classes if c in unseen),
    )
