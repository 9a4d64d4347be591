"""Datasets of ``.off`` meshes in ModelNet40's layout: ModelNet40 itself and the `shapes` set.

The layout is ``<root>/<class>/{train,test}/<class>_NNNN.off``. Loading samples a fixed number of
points uniformly on each mesh's surface, centres them and scales them into the unit sphere, as
the paper's ModelNet40 preprocessing does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from t2m_cli.data.dataset import FEATURES_DIR, Split
from t2m_cli.data.meshes import normalize_points, read_off, sample_points
from t2m_cli.errors import DataError

if TYPE_CHECKING:
    import torch

MODELNET40_CLASSES: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio",
    "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand",
    "vase", "wardrobe", "xbox",
)  # fmt: skip

_MODELNET40_VAL = ("table", "xbox", "bookshelf", "cup", "glass_box", "monitor", "range_hood")
_MODELNET40_UNSEEN = ("tent", "bottle", "curtain", "guitar", "night_stand", "sink", "toilet")

#: The paper's ModelNet40 split: 26 seen, 7 validation and 7 unseen classes.
MODELNET40_SPLIT = Split(
    seen=tuple(
        c for c in MODELNET40_CLASSES if c not in _MODELNET40_VAL and c not in _MODELNET40_UNSEEN
    ),
    val=_MODELNET40_VAL,
    unseen=_MODELNET40_UNSEEN,
)

_PARTS = ("train", "test")


def scan_modelnet(root: Path) -> list[tuple[str, str, Path]]:
    """List every mesh of a ModelNet40-style folder.

    Class folders are the sub-folders of ``root`` holding a ``train`` or ``test`` folder;
    hidden folders and ``features/`` (where encoders write) are skipped.

    Args:
        root: dataset folder.

    Returns:
        ``(class, 'train' | 'test', path)`` for every ``.off`` file, sorted by class, then
        train before test, then file name.

    Raises:
        DataError: ``root`` is missing, holds no class folders, a class folder has neither
            ``train`` nor ``test``, or there is no ``.off`` file at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Dataset folder {root} does not exist.")
    meshes: list[tuple[str, str, Path]] = []
    class_dirs = sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith((".", "_")) and d.name != FEATURES_DIR
    )
    if not class_dirs:
        raise DataError(
            f"{root} holds no class folders; expected ModelNet40's layout "
            "<root>/<class>/{train,test}/*.off."
        )
    for class_dir in class_dirs:
        parts = [p for p in _PARTS if (class_dir / p).is_dir()]
        if not parts:
            raise DataError(
                f"Class folder {class_dir} has no 'train' or 'test' folder; expected "
                "<root>/<class>/{train,test}/*.off."
            )
        for part in parts:
            folder = class_dir / part
            files = sorted(f for f in folder.iterdir() if f.suffix.lower() == ".off")
            meshes.extend((class_dir.name, part, f) for f in files)
    if not meshes:
        raise DataError(f"{root} has class folders but no .off meshes in them.")
    return meshes


def mesh_fingerprint(root: Path) -> str:
    """SHA-256 of the relative name, size and modification time of every mesh `scan_modelnet`
    lists: what features built from the meshes record, to tell when the meshes have changed.

    File metadata, not contents: hashing ModelNet40's 12,311 meshes (about 2 GB) would cost
    many seconds at every `t2m encode`, while a mesh replaced, edited, added or removed changes
    the listing, a size or a time.

    Raises:
        DataError: as `scan_modelnet`.
    """
    root = Path(root)
    digest = hashlib.sha256()
    for _, _, path in scan_modelnet(root):
        stat = path.stat()
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


POINT_CLOUDS_DIR = "_point_clouds"
"""Folder of a mesh dataset where `load_point_clouds` keeps the clouds it sampled (its ``_``
keeps `scan_modelnet` from taking it for a class)."""

_IN_PROCESS_BELOW = 64
"""Fewer meshes than this are read in this process: starting workers would cost more."""


def sample_cloud(path: Path, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """Read one mesh and sample a cloud on its surface, centred and scaled into the unit
    sphere: what `load_point_clouds` does to every mesh, and `t2m predict` to a new one.

    Returns:
        (n_points, 3) float points.

    Raises:
        DataError: the mesh cannot be read or has no surface; the message names the file.
    """
    vertices, faces = read_off(path)
    try:
        return normalize_points(sample_points(vertices, faces, n_points, rng))
    except DataError as exc:
        raise DataError(f"Mesh {path}: {exc}") from None


def _sample_mesh(job: tuple[int, Path, int, int]) -> tuple[int, np.ndarray]:
    """`sample_cloud` of mesh ``i`` of a listing, seeded by ``(seed, i)`` (in a worker process
    or in this one); ``job`` is (i, path, points, seed)."""
    i, path, n_points, seed = job
    return i, sample_cloud(path, n_points, np.random.default_rng([seed, i]))


def load_point_clouds(
    root: Path,
    n_points: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    cache: bool = False,
    fingerprint: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Read every mesh of a ModelNet40-style folder and sample a normalised point cloud from it.

    Each mesh gets its own random stream derived from ``seed`` and its position in the sorted
    listing, so the clouds do not depend on the order they are read in, nor on how many
    processes read them.

    Args:
        root: dataset folder (see `scan_modelnet`).
        n_points: points sampled per mesh.
        seed: the same seed and files give the same clouds.
        progress: called as ``progress(meshes_done, meshes_total)``.
        workers: processes that read meshes at once (ModelNet40 has 12,311, some of 100,000
            faces or more); 1 reads them here, as do folders of fewer than 64 meshes.
        cache: keep the clouds in ``<root>/_point_clouds/`` and read them from there while the
            meshes are unchanged (`mesh_fingerprint`): a second `t2m encode` reads no mesh.
        fingerprint: the meshes' `mesh_fingerprint`, when the caller took it already.

    Returns:
        points (N, n_points, 3) float32 in the unit sphere, labels (N,) int64 indexing
        ``classes``, is_test (N,) bool (True for the ``test`` folder), and ``classes``: the
        sorted class names.

    Raises:
        DataError: a bad layout, or a mesh that cannot be read or has no surface; the message
            names the file.
    """
    import torch

    from t2m_cli.atomic import load_safetensors, save_safetensors

    if n_points < 1:
        raise DataError(f"n_points must be at least 1, got {n_points}.")
    meshes = scan_modelnet(root)
    classes = sorted({name for name, _, _ in meshes})
    class_index = {name: i for i, name in enumerate(classes)}
    labels = torch.tensor([class_index[name] for name, _, _ in meshes], dtype=torch.int64)
    is_test = torch.tensor([part == "test" for _, part, _ in meshes], dtype=torch.bool)
    stored = Path(root) / POINT_CLOUDS_DIR / f"n{n_points}-seed{seed}.safetensors"
    if cache and fingerprint is None:
        fingerprint = mesh_fingerprint(root)
    if cache and stored.is_file():
        try:
            tensors, header = load_safetensors(stored, "Point-cloud cache", finite=True)
        except DataError:
            tensors, header = {}, {}  # a damaged cache costs a re-read, never a failed encode
        kept = tensors.get("points")
        fits = kept is not None and kept.shape == (len(meshes), n_points, 3)
        if kept is not None and fits and header.get("meshes") == fingerprint:
            if progress is not None:
                progress(len(meshes), len(meshes))
            return kept, labels, is_test, classes
    points = np.empty((len(meshes), n_points, 3), dtype=np.float32)
    jobs = [(i, path, n_points, seed) for i, (_, _, path) in enumerate(meshes)]
    done: Iterator[tuple[int, np.ndarray]]
    if workers <= 1 or len(jobs) < _IN_PROCESS_BELOW:
        done = iter(map(_sample_mesh, jobs))
        pool = None
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # "spawn": a forked child would inherit torch's threads in whatever state they are.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        done = pool.map(_sample_mesh, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers))))
    try:
        for count, (i, cloud) in enumerate(done, 1):
            points[i] = cloud
            if progress is not None:
                progress(count, len(meshes))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    clouds = torch.from_numpy(points)
    if cache and fingerprint is not None:
        save_safetensors(stored, {"points": clouds}, {"meshes": fingerprint})
    return clouds, labels, is_test, classes
