"""Readers for the files the original project published (AwA, CUB, SUN), converted once.

The original zips hold ``<name>/features/<part>.pkl`` files, each a pickled tuple
``(X, class2idx)`` with ``X[class2idx[label]]`` a float (n_images, 512) tensor, plus two
pickled dictionaries of texts (GPT descriptions, AwA attribute names). All of them are read
with `safe_load` (never plain `pickle`) and written out as a t2m dataset folder: safetensors
features, JSON split, descriptions and attributes, so nothing is unpickled twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from t2m_cli.data.dataset import (
    FEATURES_DIR,
    Split,
    ZeroShotDataset,
    check_finite_features,
    save_dataset,
)
from t2m_cli.data.safe_pickle import safe_load
from t2m_cli.data.texts import class_name_text
from t2m_cli.errors import DataError

FEATURE_NAME = "original"
"""Stem of the converted feature file: ``features/original.safetensors``."""

ORIGINAL_PARTS: tuple[str, ...] = (
    "train_visual_feature_extractor",
    "eval_visual_feature_extractor",
    "train_hn",
    "eval_hn",
    "zs_classes",
)
"""Feature pickles of an original dataset: seen train / held-out, val train / held-out, unseen."""


def _to_matrix(value: Any, label: str, what: str) -> Any:
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.ndim != 2 or value.dtype.kind not in "fiu":
        shape = getattr(value, "shape", None)
        raise DataError(
            f"{what}: class '{label}' should hold a numeric (n_images, dim) matrix, got "
            f"{type(value).__name__}{'' if shape is None else f' of shape {tuple(shape)}'}. "
            "Is this an original features pickle?"
        )
    return np.ascontiguousarray(value, dtype=np.float32)


def read_feature_pickle(path: Path, source: str | None = None) -> dict[str, Any]:
    """Read one original features pickle ``(X, class2idx)``.

    Args:
        path: e.g. ``awa/features/train_hn.pkl``.
        source: how messages name the file (e.g. as a member of the zip the user passed);
            default ``path``.

    Returns:
        Class name -> (n_images, D) float32 numpy array, in ``class2idx`` index order.

    Raises:
        DataError: the file is unsafe, unreadable or not of that structure, or a feature is
            NaN or infinite (the message names the class and its row).
    """
    import numpy as np

    what = source or str(path)
    data = safe_load(path, source=what)
    if not isinstance(data, tuple | list) or len(data) != 2 or not isinstance(data[1], Mapping):
        raise DataError(
            f"{what} should hold a pair (X, class2idx) with class2idx a dict; got "
            f"{type(data).__name__}. Is this an original features pickle?"
        )
    x, class2idx = data
    if hasattr(x, "detach") or isinstance(x, np.ndarray):
        if x.ndim != 3:
            raise DataError(f"{what}: X should be a list of (n, dim) matrices or a 3-d array.")
    elif not isinstance(x, list | tuple):
        raise DataError(f"{what}: X should be a list of (n, dim) matrices, not {type(x).__name__}.")
    out: dict[str, Any] = {}
    for label, idx in sorted(class2idx.items(), key=lambda item: _index_key(item[1])):
        if not isinstance(label, str) or not label.strip():
            raise DataError(f"{what}: class names should be non-empty strings, got {label!r}.")
        if type(idx) is not int or not 0 <= idx < len(x):
            raise DataError(f"{what}: class '{label}' points at row {idx!r} of X, which has none.")
        out[label] = _to_matrix(x[idx], label, what)
    if not out:
        raise DataError(f"{what} lists no classes.")
    dims = {m.shape[1] for m in out.values()}
    if len(dims) > 1:
        raise DataError(f"{what}: classes have features of different sizes {sorted(dims)}.")
    check_finite_features(
        np.concatenate(list(out.values())),
        what,
        "t2m converts only finite features: if the file came from `--from` or a mirror, use "
        "the one the paper published.",
        np.concatenate([np.full(len(m), i) for i, m in enumerate(out.values())]),
        list(out),
        within_class=True,
    )
    return out


def _index_key(idx: Any) -> tuple[int, Any]:
    # Sort valid indices first; invalid ones are reported in the loop.
    return (0, idx) if type(idx) is int else (1, 0)


def _read_text_lists(path: Path, what: str, source: str | None) -> dict[str, list[str]]:
    shown = source or str(path)
    data = safe_load(path, source=shown)
    if not isinstance(data, Mapping) or not data:
        raise DataError(f"{shown} should hold a non-empty dict of class -> list of {what}.")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if type(key) is int:
            key = f"{key:03d}"
        if not isinstance(key, str):
            raise DataError(f"{shown}: keys should be class names or ids, got {key!r}.")
        if isinstance(value, str):
            value = [value]
        elif isinstance(value, set | frozenset):
            value = sorted(value)
        if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
            raise DataError(f"{shown}: '{key}' should map to a list of {what}.")
        out[key] = [t.strip() for t in value if t.strip()]
    return out


def read_descriptors(path: Path, source: str | None = None) -> dict[str, list[str]]:
    """Read ``gpt_label2descriptors.pkl``: class -> list of description texts.

    CUB's form keys classes by id (``"001"`` or ``1``); integer ids become zero-padded strings
    and `match_descriptions` matches them to names like ``001.Black_footed_Albatross`` by their
    number.

    Args:
        path: the pickle.
        source: how messages name it (e.g. the file the user passed); default ``path``.

    Returns:
        Class name (or id) -> non-empty texts, stripped.

    Raises:
        DataError: the pickle is unsafe, unreadable or not a dict of class -> texts.
    """
    return _read_text_lists(path, "description texts", source)


def read_attributes(path: Path, source: str | None = None) -> dict[str, list[str]]:
    """Read ``label2attributes_names.pkl``: class -> names of the AwA attributes it has.

    Args and errors as for `read_descriptors`.
    """
    return _read_text_lists(path, "attribute names", source)


def sun_class_text(path_name: str) -> str:
    """Text of a SUN class path.

    ``/a/apartment_building/outdoor`` -> ``apartment building outdoor``.
    """
    return class_name_text(path_name)


def _class_number(name: str) -> int | None:
    match = re.match(r"\s*(\d+)(?:[._\s]|$)", name)
    return int(match.group(1)) if match else None


def _match(mapping: Mapping[str, list[str]], classes: list[str]) -> dict[str, list[str]]:
    """Entries of ``mapping`` for ``classes``, by exact name, readable text or class number."""
    by_text = {class_name_text(k): v for k, v in mapping.items()}
    by_number = {n: v for k, v in mapping.items() if (n := _class_number(k)) is not None}
    out: dict[str, list[str]] = {}
    for name in classes:
        if name in mapping:
            out[name] = list(mapping[name])
        elif class_name_text(name) in by_text:
            out[name] = list(by_text[class_name_text(name)])
        elif (n := _class_number(name)) is not None and n in by_number:
            out[name] = list(by_number[n])
    return out


def match_descriptions(
    descriptions: Mapping[str, list[str]],
    classes: list[str],
    name: str,
    source: str = "The descriptions",
) -> dict[str, list[str]]:
    """Each class's texts, found in ``descriptions`` by name, readable text or class number.

    Args:
        descriptions: class name (or id) -> texts, as `read_descriptors` returns them.
        classes: the dataset's classes, in label order.
        name: the dataset's name, for the message.
        source: how the message names the descriptions (their file).

    Returns:
        Class -> texts, for every class, in the order of ``classes``.

    Raises:
        DataError: a class has no description.
    """
    texts = _match(descriptions, classes)
    bare = [c for c in classes if not texts.get(c)]
    if bare:
        raise DataError(
            f"{source} has no description for {len(bare)} of the {len(classes)} classes of "
            f"{name} (e.g. '{bare[0]}'); use the descriptions file made for {name}."
        )
    return texts


def match_attributes(
    attributes: Mapping[str, list[str]],
    classes: list[str],
    name: str,
    source: str = "The attributes",
) -> dict[str, list[str]]:
    """The attribute names of those ``classes`` that ``attributes`` lists (`match_descriptions`).

    Returns:
        Class -> attribute names, for the classes found, in the order of ``classes``.

    Raises:
        DataError: it lists none of the classes.
    """
    found = _match(attributes, classes)
    if not found:
        raise DataError(
            f"{source} names none of the classes of {name}; the attributes file is AwA's (use "
            "it with awa only)."
        )
    return found


def _held_out(
    train: dict[str, Any], held_out: dict[str, Any], train_file: str, held_file: str
) -> None:
    extra = sorted(set(held_out) - set(train))
    if extra:
        raise DataError(
            f"{held_file}.pkl has classes {extra[:5]} that {train_file}.pkl lacks; the two files "
            "should come from the same original dataset."
        )


def convert_original_dataset(
    src: Path,
    dst: Path,
    name: str,
    descriptions: dict[str, list[str]] | None = None,
    attributes: dict[str, list[str]] | None = None,
    archive: str | None = None,
) -> Path:
    """Convert an unpacked original dataset into a t2m dataset folder.

    Reads ``src/<name>/features/<part>.pkl`` for every part of `ORIGINAL_PARTS` and writes
    ``dst/features/original.safetensors`` (seen: train rows, then held-out rows flagged
    ``is_test``; val: ``train_hn`` then ``eval_hn`` flagged; unseen: ``zs_classes``, all
    flagged), ``split.json``, ``descriptions.json`` and, when given, ``attributes.json``. The
    folder is built beside ``dst`` and renamed into place, so ``dst`` is complete or absent.

    Args:
        src: folder the original zip was unpacked into (holding ``<name>/``).
        dst: dataset folder to create; must not exist or be empty.
        name: dataset name inside the zip, e.g. ``"awa"``.
        descriptions: class -> texts (e.g. from `read_descriptors`); None uses class names.
        attributes: class -> attribute names (e.g. from `read_attributes`), optional.
        archive: how messages name the zip ``src`` was unpacked from (the file the user passed,
            or its URL), so that a problem names the archive and its member rather than the
            temporary folder; default: paths under ``src``.

    Returns:
        ``dst``.

    Raises:
        DataError: a part is missing or malformed, the parts disagree, a class has no
            description, the split is one training or a protocol could not use
            (`t2m_cli.data.requirements`), or ``dst`` already holds something.
        RunFailure: the folder could not be written or moved into place.
    """
    import numpy as np
    import torch

    folder = Path(src) / name / FEATURES_DIR
    where = f"{archive}: {name}/{FEATURES_DIR}" if archive else str(folder)
    missing = [p for p in ORIGINAL_PARTS if not (folder / f"{p}.pkl").is_file()]
    if missing:
        fix = (
            f"it is not the original {name}.zip; pass the one the paper published"
            if archive
            else f"unpack the original {name}.zip into {src} first"
        )
        raise DataError(f"{where} lacks {', '.join(f'{p}.pkl' for p in missing)}; {fix}.")
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DataError(f"{dst} already exists; remove it or convert into another folder.")
    parts = {
        p: read_feature_pickle(folder / f"{p}.pkl", f"{where}/{p}.pkl") for p in ORIGINAL_PARTS
    }
    _held_out(
        parts["train_visual_feature_extractor"],
        parts["eval_visual_feature_extractor"],
        "train_visual_feature_extractor",
        "eval_visual_feature_extractor",
    )
    _held_out(parts["train_hn"], parts["eval_hn"], "train_hn", "eval_hn")
    split = Split(
        seen=tuple(parts["train_visual_feature_extractor"]),
        val=tuple(parts["train_hn"]),
        unseen=tuple(parts["zs_classes"]),
    )
    dims = {m.shape[1] for part in parts.values() for m in part.values()}
    if len(dims) > 1:
        raise DataError(f"The feature files under {where} disagree on the size {sorted(dims)}.")
    classes = list(split.classes)
    index = {c: i for i, c in enumerate(classes)}
    blocks, labels, flags = [], [], []
    order = [
        ("train_visual_feature_extractor", False),
        ("eval_visual_feature_extractor", True),
        ("train_hn", False),
        ("eval_hn", True),
        ("zs_classes", True),
    ]
    for part, is_test in order:
        for cls, matrix in parts[part].items():
            blocks.append(matrix)
            labels.append(np.full(len(matrix), index[cls], dtype=np.int64))
            flags.append(np.full(len(matrix), is_test, dtype=bool))

    texts = (
        {c: [class_name_text(c)] for c in classes}
        if descriptions is None
        else match_descriptions(descriptions, classes, name)
    )
    attrs = None if attributes is None else match_attributes(attributes, classes, name)

    dataset = ZeroShotDataset(
        name=name,
        classes=classes,
        features=torch.from_numpy(np.concatenate(blocks)),
        labels=torch.from_numpy(np.concatenate(labels)),
        is_test=torch.from_numpy(np.concatenate(flags)),
        split=split,
        descriptions=texts,
        meta={"source": "original", "dataset": name, "files": [f"{p}.pkl" for p in ORIGINAL_PARTS]},
        attributes=attrs or {},
    )
    # Replaces an empty dst; refuses, leaving it untouched, if someone filled it meanwhile.
    source = (
        f"{where}: seen = train_visual_feature_extractor.pkl, val = train_hn.pkl, unseen = "
        "zs_classes.pkl"
    )
    return save_dataset(dataset, dst, FEATURE_NAME, split_source=source)
