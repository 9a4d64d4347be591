"""Generation of the `shapes` dataset, and reuse of a cached copy.

A dataset is built in a hidden folder beside its target and renamed into place when complete, so
an interrupted run leaves no half-written dataset and readers never see one.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from t2m_cli.atomic import read_json, staged_dir, write_json
from t2m_cli.data.dataset import ATTRIBUTES_FILE, DESCRIPTIONS_FILE, SPLIT_FILE
from t2m_cli.data.meshes import write_off
from t2m_cli.data.shapes.classes import (
    CLASS_SPECS,
    SHAPES_ATTRIBUTES,
    SHAPES_DESCRIPTIONS,
    SHAPES_SPLIT,
    ShapeClass,
)
from t2m_cli.data.shapes.geometry import Mesh, combine
from t2m_cli.errors import DataError

DATASET_NAME = "shapes"
DATASET_FILE = "dataset.json"
# Bump when a change to the builders changes the meshes a seed produces, so cached datasets are
# regenerated instead of silently mixing versions.
GENERATOR_VERSION = 1
DEFAULT_N_TRAIN = 60
DEFAULT_N_TEST = 20


def make_instance(shape: ShapeClass, rng: np.random.Generator, noise: float = 0.006) -> Mesh:
    """Build one instance of a class: its parts, vertex noise, a turn about z and a size.

    Args:
        shape: the class.
        rng: source of randomness for proportions, noise, heading and size.
        noise: vertex jitter as a fraction of the instance's largest extent.

    Returns:
        vertices (V, 3) float64 and faces (F, 3) int64 of one triangle mesh.
    """
    vertices, faces = combine(shape.build(rng))
    extent = float(np.ptp(vertices, axis=0).max())
    vertices = vertices + rng.normal(scale=noise * extent, size=vertices.shape)
    angle = rng.uniform(0.0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    turn = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    # Real collections mix sizes and positions; the loader's normalisation removes both.
    size = rng.uniform(0.5, 2.0)
    shift = rng.normal(scale=0.5, size=3)
    return (vertices @ turn.T) * size + shift, faces


def _instance_rng(seed: int, shape: ShapeClass, number: int) -> np.random.Generator:
    # Keyed by the class name, not its position, so adding or reordering classes leaves the
    # other classes' meshes unchanged for a seed.
    return np.random.default_rng([seed, zlib.crc32(shape.name.encode()), number])


def generate_shapes(
    root: Path,
    seed: int = 0,
    n_train: int = DEFAULT_N_TRAIN,
    n_test: int = DEFAULT_N_TEST,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate the `shapes` dataset in ModelNet40's layout, or reuse an identical one.

    The dataset is built in a hidden sibling folder and renamed into place at the end (see
    `t2m_cli.atomic.staged_dir`), so an interrupted run leaves no half-written dataset. An
    existing `shapes` dataset made with other settings (and any features computed from it) is
    replaced. A reused one whose ``attributes.json`` is missing or differs from
    `SHAPES_ATTRIBUTES` gets it rewritten in place; attributes change no mesh, so its features
    stay valid.

    Args:
        root: dataset folder to create, e.g. ``<cache>/datasets/shapes``.
        seed: the same seed, counts and generator version give byte-identical files.
        n_train: training meshes per class.
        n_test: held-out meshes per class.
        progress: called as ``progress(meshes_done, meshes_total)`` while generating.

    Returns:
        ``root``.

    Raises:
        DataError: bad counts, or ``root`` exists and is not a `shapes` dataset (it is never
            deleted then).
        RunFailure: a file could not be written.
    """
    root = Path(root)
    if n_train < 1 or n_test < 1 or n_train + n_test > 9999:
        raise DataError(
            f"The shapes dataset needs at least 1 training and 1 test mesh per class and at "
            f"most 9999 in all, got n_train={n_train}, n_test={n_test}."
        )
    info = {
        "name": DATASET_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "n_classes": len(CLASS_SPECS),
        "up_axis": "z",
    }
    if _matches(root, info):
        _refresh_attributes(root)
        return root
    if root.exists() and not _replaceable(root):
        raise DataError(
            f"{root} exists and is not a generated shapes dataset; refusing to overwrite it. "
            "Choose another folder or remove it."
        )
    with staged_dir(root, replace=True) as build:
        total = len(CLASS_SPECS) * (n_train + n_test)
        done = 0
        for shape in CLASS_SPECS:
            for number in range(1, n_train + n_test + 1):
                part = "train" if number <= n_train else "test"
                vertices, faces = make_instance(shape, _instance_rng(seed, shape, number))
                name = f"{shape.name}_{number:04d}.off"
                write_off(build / shape.name / part / name, vertices, faces)
                done += 1
                if progress is not None:
                    progress(done, total)
        write_json(build / DESCRIPTIONS_FILE, {k: list(v) for k, v in SHAPES_DESCRIPTIONS.items()})
        write_json(build / SPLIT_FILE, SHAPES_SPLIT.to_json())
        write_json(build / ATTRIBUTES_FILE, SHAPES_ATTRIBUTES)
        write_json(build / DATASET_FILE, info)
    return root


def _refresh_attributes(root: Path) -> None:
    """(Re)write ``attributes.json`` of a reused dataset when it is missing or stale.

    Attributes do not change meshes or features, so a dataset made before they existed (or
    before they were last edited) is updated in place, atomically, instead of regenerated.
    """
    path = root / ATTRIBUTES_FILE
    if path.is_file():
        try:
            if read_json(path, "attributes") == SHAPES_ATTRIBUTES:
                return
        except DataError:
            pass  # malformed: rewrite it
    write_json(path, SHAPES_ATTRIBUTES)


def _matches(root: Path, info: dict) -> bool:
    path = root / DATASET_FILE
    if not path.is_file():
        return False
    try:
        existing = read_json(path, "dataset")
    except DataError:
        return False
    return isinstance(existing, dict) and all(existing.get(k) == v for k, v in info.items())


def _replaceable(root: Path) -> bool:
    """True for an empty folder or an earlier `shapes` dataset (another seed or version)."""
    if not root.is_dir():
        return False
    if not any(root.iterdir()):
        return True
    try:
        existing = read_json(root / DATASET_FILE, "dataset")
    except DataError:
        return False
    return isinstance(existing, dict) and existing.get("name") == DATASET_NAME
