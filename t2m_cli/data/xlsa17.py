"""AwA1 / AwA2 / CUB / SUN in the xlsa17 form ("Proposed Splits", Xian et al., GBU).

Two MATLAB files per dataset, read with `scipy.io.loadmat`:

- ``res101.mat``: ``features`` (D x N, ResNet-101, D = 2048 in the published files; any D is
  read), ``labels`` (N x 1, 1-based rows of ``allclasses_names``), ``image_files`` (ignored).
- ``att_splits.mat`` (CUB: ``sent_splits.mat``): ``allclasses_names`` (cell array of names such
  as ``antelope``, ``002.Laysan_Albatross``, ``abbey``), ``att`` (A x classes), and the 1-based
  image indices ``trainval_loc``, ``test_seen_loc``, ``test_unseen_loc``; most files also hold
  ``train_loc`` / ``val_loc``, a train / validation division *of the seen classes* whose union
  is every image of the seen classes (``trainval_loc`` and ``test_seen_loc`` together).

Seen classes are the classes of ``trainval_loc``, unseen those of ``test_unseen_loc``, validation
classes those of ``val_loc`` where the file has it. A splits file without ``val_loc`` gives no
validation classes; `to_t2m` then carves a seeded number of seen classes out instead. Which
index fields a file had is kept as `Xlsa17Data.version` and in the written feature meta.

Attribute *names* are not in either file (AwA's ``predicates.txt`` and SUN's attribute list
ship separately; CUB's ``att`` here is 1024-d sentence vectors), so `to_t2m` writes
``attributes.json`` only when the caller passes the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.data.dataset import Split, ZeroShotDataset, check_finite_features, save_dataset
from t2m_cli.data.requirements import MIN_CLASSES
from t2m_cli.data.texts import class_name_text
from t2m_cli.errors import DataError
from t2m_cli.textio import check_strings

if TYPE_CHECKING:
    import numpy as np

REQUIRED_LOCS = ("trainval_loc", "test_seen_loc", "test_unseen_loc")
OPTIONAL_LOCS = ("train_loc", "val_loc")


@dataclass
class Xlsa17Data:
    """One xlsa17 dataset, read and checked; every index here is 0-based.

    Attributes:
        classes: names in ``allclasses_names`` order; a label indexes this list.
        features: (N, D) float32 image features.
        labels: (N,) int64 class index of each image.
        locs: image rows of each index field present, keyed by the field's name without
            ``_loc`` (``trainval``, ``test_seen``, ``test_unseen`` and maybe ``train``, ``val``).
        version: the index fields the splits file had, in the order read.
        seen: classes of ``trainval``, in class order.
        unseen: classes of ``test_unseen``, in class order.
        val: classes of ``val`` (a subset of ``seen``), or None when the file has no ``val_loc``.
        class_att: (classes, A) the ``att`` matrix, or None when absent.
        files: names (not paths) of the two files read.
        notes: facts a user should know about this file (no validation classes, ...).
    """

    classes: list[str]
    features: np.ndarray
    labels: np.ndarray
    locs: dict[str, np.ndarray]
    version: tuple[str, ...]
    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    val: tuple[str, ...] | None
    class_att: np.ndarray | None = None
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _loadmat(path: Path, what: str) -> dict[str, Any]:
    import scipy.io

    if not path.is_file():
        raise DataError(
            f"The xlsa17 {what} file {path} does not exist. Download xlsa17 (Xian et al., "
            "'Proposed Splits') and give the path of the dataset's file."
        )
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise DataError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which cannot be read here; save it again "
            "in MATLAB with `save(..., '-v7')`."
        ) from None
    except Exception as exc:  # loadmat raises ValueError, TypeError, OSError for bad files
        raise DataError(
            f"{path} is not a readable MATLAB file ({exc}); download the {what} file again."
        ) from None


def _field(mat: dict[str, Any], key: str, path: Path) -> Any:
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(
            f"{path} has no field '{key}' (it has {found}); give the xlsa17 file it belongs to."
        )
    return mat[key]


def _names(raw: Any, path: Path) -> list[str]:
    import numpy as np

    names = []
    for item in np.asarray(raw, dtype=object).ravel():
        value = np.asarray(item).ravel()
        if value.size != 1 or not isinstance(value[0], str) or not value[0].strip():
            raise DataError(
                f"{path}: 'allclasses_names' must be a cell array of non-empty class names."
            )
        names.append(str(value[0]).strip())
    check_strings(names, f"{path}: 'allclasses_names'")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: 'allclasses_names' lists a class twice; the file is damaged.")
    return names


def _indices(raw: Any, key: str, n: int, path: Path) -> np.ndarray:
    """1-based MATLAB indices -> 0-based int64, checked to lie in ``1..n`` with no repeats."""
    import numpy as np

    values = np.asarray(raw).ravel()
    if values.size and not np.issubdtype(values.dtype, np.number):
        raise DataError(f"{path}: '{key}' must hold numbers, not {values.dtype}.")
    # uint16 in the published files: widen before subtracting so 0 does not wrap around.
    as_int = values.astype(np.int64)
    if values.size and not np.array_equal(as_int, values):
        raise DataError(f"{path}: '{key}' must hold whole numbers (1-based indices).")
    if as_int.size and (as_int.min() < 1 or as_int.max() > n):
        raise DataError(
            f"{path}: '{key}' holds indices from {as_int.min()} to {as_int.max()}, outside "
            f"1..{n}; the two files do not belong together (or the file is damaged)."
        )
    if np.unique(as_int).size != as_int.size:
        raise DataError(f"{path}: '{key}' lists an index twice; the file is damaged.")
    return as_int - 1


def read_xlsa17(res101: Path, splits: Path) -> Xlsa17Data:
    """Read and check one xlsa17 dataset.

    Args:
        res101: the dataset's ``res101.mat`` (``features`` D x N, ``labels`` N x 1, 1-based).
        splits: its ``att_splits.mat`` (CUB: ``sent_splits.mat``).

    Returns:
        The dataset with 0-based labels and index arrays, features as (N, D) float32.

    Raises:
        DataError: a file is missing or unreadable, a field is missing, an index is out of range
            or repeated, the sizes disagree, a feature is NaN or infinite, or seen and unseen
            classes overlap; the message names the field.
    """
    import numpy as np

    res101, splits = Path(res101), Path(splits)
    rmat = _loadmat(res101, "res101.mat")
    smat = _loadmat(splits, "att_splits.mat")
    classes = _names(_field(smat, "allclasses_names", splits), splits)

    raw_labels = np.asarray(_field(rmat, "labels", res101)).ravel()
    n = raw_labels.size
    # Many images share a label, so check the distinct values against 1..classes.
    _indices(np.unique(raw_labels), "labels", len(classes), res101)
    labels = raw_labels.astype(np.int64) - 1
    features = np.asarray(_field(rmat, "features", res101))
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise DataError(f"{res101}: 'features' must be a numeric D x N matrix.")
    if features.shape[1] == n:
        features = features.T
    elif features.shape[0] != n:
        raise DataError(
            f"{res101}: 'features' is {features.shape[0]} x {features.shape[1]} but 'labels' has "
            f"{n} entries; N must match (features are D x N)."
        )
    with np.errstate(over="ignore"):  # a value beyond float32's range is refused below
        features = np.ascontiguousarray(features, dtype=np.float32)
    check_finite_features(
        features,
        f"{res101}: 'features' (images counted from 0)",
        "t2m converts only finite features (within float32's range): use the published "
        "res101.mat, or fix or drop those images.",
        labels,
        classes,
    )

    version = tuple(k for k in (*REQUIRED_LOCS, *OPTIONAL_LOCS) if k in smat)
    for key in REQUIRED_LOCS:
        _field(smat, key, splits)
    locs = {k.removesuffix("_loc"): _indices(smat[k], k, n, splits) for k in version}
    for i, a in enumerate(REQUIRED_LOCS):
        for b in REQUIRED_LOCS[i + 1 :]:
            shared = np.intersect1d(locs[a.removesuffix("_loc")], locs[b.removesuffix("_loc")])
            if shared.size:
                raise DataError(
                    f"{splits}: '{a}' and '{b}' share {shared.size} images (e.g. index "
                    f"{shared[0] + 1}); they must be disjoint."
                )

    def classes_of(part: str) -> set[int]:
        return {int(c) for c in np.unique(labels[locs[part]])}

    seen_ids, unseen_ids = classes_of("trainval"), classes_of("test_unseen")
    both = seen_ids & unseen_ids
    if both:
        raise DataError(
            f"Classes {[classes[i] for i in sorted(both)]} have images in both 'trainval_loc' "
            f"and 'test_unseen_loc' ({splits.name} with {res101.name}); seen and unseen classes "
            "must be disjoint. Check that the two files come from the same dataset."
        )
    stray = classes_of("test_seen") - seen_ids
    if stray:
        raise DataError(
            f"'test_seen_loc' holds classes {[classes[i] for i in sorted(stray)]} that have no "
            f"'trainval_loc' images; check that {splits.name} and {res101.name} belong together."
        )
    notes: list[str] = []
    val: tuple[str, ...] | None = None
    if "val" in locs:
        val_ids = classes_of("val")
        if not val_ids <= seen_ids:
            raise DataError(
                f"{splits}: 'val_loc' holds unseen classes "
                f"{[classes[i] for i in sorted(val_ids - seen_ids)]}; validation classes must be "
                "seen classes."
            )
        if "train" in locs and classes_of("train") & val_ids:
            raise DataError(
                f"{splits}: 'train_loc' and 'val_loc' share classes; they must divide the seen "
                "classes."
            )
        val = tuple(c for i, c in enumerate(classes) if i in val_ids)
    else:
        notes.append(
            f"{splits.name} has no 'val_loc', so it names no validation classes; converting "
            "carves a seeded number of seen classes out for validation (n_val)."
        )
    unused = sorted(set(range(len(classes))) - seen_ids - unseen_ids)
    if unused:
        notes.append(f"{len(unused)} classes are in no split: {[classes[i] for i in unused]}.")
    att = smat.get("att")
    class_att = None
    if att is not None:
        att = np.asarray(att, dtype=np.float64)
        if att.ndim == 2 and att.shape[1] == len(classes):
            class_att = att.T
        elif att.ndim == 2 and att.shape[0] == len(classes):
            class_att = att
        else:
            raise DataError(f"{splits}: 'att' is {att.shape}, which does not match the classes.")
    return Xlsa17Data(
        classes=classes,
        features=features,
        labels=labels,
        locs=locs,
        version=version,
        seen=tuple(c for i, c in enumerate(classes) if i in seen_ids),
        unseen=tuple(c for i, c in enumerate(classes) if i in unseen_ids),
        val=val,
        class_att=class_att,
        files={"res101": res101.name, "splits": splits.name},
        notes=notes,
    )


def xlsa17_text(name: str) -> str:
    """Readable text of an xlsa17 class name: ``002.Laysan_Albatross`` -> ``Laysan Albatross``."""
    head, dot, rest = name.partition(".")
    if dot and head.isdigit() and rest:
        name = rest
    return class_name_text(name)


def carve_val(seen: Sequence[str], n_val: int, seed: int) -> tuple[str, ...]:
    """Pick ``n_val`` of the seen classes for validation, the same ones for the same seed.

    Raises:
        DataError: ``n_val`` leaves fewer than the fewest classes validation or the seen part
            need (`t2m_cli.data.requirements.MIN_CLASSES`).
    """
    import numpy as np

    low, high = MIN_CLASSES["val"], len(seen) - MIN_CLASSES["seen"]
    if not low <= n_val <= high:
        raise DataError(
            f"n_val={n_val} (--n-val) cannot split {len(seen)} seen classes: validation needs "
            f"at least {low} classes and the seen part keeps at least {MIN_CLASSES['seen']}, so "
            f"give n_val from {low} to {high}."
            if low <= high
            else f"The xlsa17 files have {len(seen)} seen classes, too few to carve "
            f"{low} validation classes out and keep {MIN_CLASSES['seen']} seen."
        )
    pool = sorted(seen)
    chosen = np.random.default_rng(seed).choice(len(pool), size=n_val, replace=False)
    picked = {pool[int(i)] for i in chosen}
    return tuple(c for c in seen if c in picked)


def to_t2m(
    data: Xlsa17Data,
    dst: Path,
    *,
    n_val: int | None = None,
    seed: int = 0,
    feature_name: str = "res101",
    attribute_names: Sequence[str] | None = None,
    threshold: float | None = None,
) -> Path:
    """Write an xlsa17 dataset as a t2m dataset folder.

    Rows are every image of ``trainval`` (``is_test`` False), ``test_seen`` and ``test_unseen``
    (``is_test`` True); images in none of them are left out. ``split.json`` puts the validation
    classes in ``val`` and the other seen classes in ``seen`` (the parts must be disjoint); the
    full seen set is kept in the feature meta as ``xlsa17_seen``.

    Args:
        data: from `read_xlsa17`.
        dst: the dataset folder to create; it must not exist (or be an empty folder). It is
            built beside and renamed into place, so a failure leaves nothing there.
        n_val: carve this many seen classes out for validation (seeded). Required when the file
            has no ``val_loc``; when given it replaces the file's validation classes.
        seed: seed of the carve-out.
        feature_name: stem of the feature file under ``features/``.
        attribute_names: names of the rows of ``att``; with them, ``attributes.json`` maps each
            class to the names of its attributes above ``threshold``. They are not in the .mat
            files, so without them no attributes file is written.
        threshold: attribute value a class must exceed; None uses each attribute's mean over
            the classes.

    Returns:
        ``dst``.

    Raises:
        DataError: no validation classes (no ``val_loc`` and no ``n_val``), an ``n_val`` out of
            range, a split that training or a protocol could not use
            (`t2m_cli.data.requirements`), attribute names that do not fit the file, or an
            ``att`` that is not finite.
        UserInputError: ``dst`` holds something by the time the new folder is ready.
        RunFailure: ``dst`` could not be written.
    """
    import numpy as np
    import torch

    dst = Path(dst)
    if n_val is not None:
        val = carve_val(data.seen, n_val, seed)
        val_source = f"carved: {n_val} seen classes, seed {seed}"
    elif data.val is not None:
        val = data.val
        val_source = "val_loc"
    else:
        raise DataError(
            f"{data.files.get('splits', 'The splits file')} has no 'val_loc', so it names no "
            "validation classes; give `t2m data import` --n-val N (n_val in Python) to carve "
            "N seen classes out as validation classes (seeded)."
        )
    split = Split(
        seen=tuple(c for c in data.seen if c not in val), val=val, unseen=tuple(data.unseen)
    )
    seen_rows = data.locs["trainval"]
    test_rows = np.concatenate([data.locs["test_seen"], data.locs["test_unseen"]])
    rows = np.sort(np.concatenate([seen_rows, test_rows]))
    is_test = np.isin(rows, test_rows)

    attributes = None
    if attribute_names is not None:
        if data.class_att is None or data.class_att.shape[1] != len(attribute_names):
            have = None if data.class_att is None else data.class_att.shape[1]
            raise DataError(
                f"Got {len(attribute_names)} attribute names but the splits file has {have} "
                "attributes per class; give one name per row of 'att'."
            )
        att = data.class_att
        bad = [data.classes[i] for i in np.flatnonzero(~np.isfinite(att).all(axis=1))]
        if bad:
            raise DataError(
                f"{data.files.get('splits', 'the splits file')}: 'att' has NaN or infinite "
                f"values for classes {bad[:3]}{' ...' if len(bad) > 3 else ''}, so their "
                "attributes cannot be told; fix the file, or convert without attribute names."
            )
        cut = att.mean(axis=0) if threshold is None else np.full(att.shape[1], threshold)
        attributes = {
            c: [str(a) for a, on in zip(attribute_names, att[i] > cut) if on]
            for i, c in enumerate(data.classes)
        }

    meta = {
        "source": "xlsa17",
        "extractor": "ResNet-101 (xlsa17 res101.mat)",
        "version": list(data.version),
        "files": dict(data.files),
        "val": val_source,
        "xlsa17_seen": list(data.seen),
        "attributes": "written" if attributes is not None else "not written: no attribute names",
        "notes": list(data.notes),
    }
    dataset = ZeroShotDataset(
        name=dst.name,
        classes=list(data.classes),
        features=torch.from_numpy(data.features[rows]),
        labels=torch.from_numpy(data.labels[rows]),
        is_test=torch.from_numpy(is_test),
        split=split,
        descriptions={c: [xlsa17_text(c)] for c in data.classes},
        meta=meta,
        attributes=attributes or {},
    )
    splits = data.files.get("splits", "the splits file")
    source = f"{splits}, validation {val_source}" if val_source == "val_loc" else val_source
    return save_dataset(dataset, dst, feature_name, split_source=source)
