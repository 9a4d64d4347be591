"""Datasets by name: how each is fetched or generated, and where its files live.

A dataset folder is always in t2m's own layout (``split.json``, ``descriptions.json``, optional
``attributes.json``, ``features/``), plus the meshes of a mesh dataset. Remote files land in
``<cache>/downloads`` first, checked against the lock file (see `t2m_cli.download`), and are
then extracted or converted into ``<cache>/datasets/<name>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from t2m_cli.data.dataset import ZeroShotDataset, load_dataset
from t2m_cli.download.registry import FILE_ONLY as FILE_ONLY
from t2m_cli.errors import DataError, UserInputError
from t2m_cli.paths import cache_root, dataset_dir
from t2m_cli.progress import ProgressCallback


@dataclass(frozen=True)
class FetchRequest:
    """What a dataset's fetch step may use.

    Attributes:
        root: the dataset folder to create.
        cache_dir: cache root override.
        seed: seed of a generated dataset.
        mirror: base URL replacing the original host (see `t2m_cli.download.resolve_url`).
        from_path: a file the user already has, used instead of downloading.
        progress: ``callback(done, total)``.
    """

    root: Path
    cache_dir: Path | None = None
    seed: int = 0
    mirror: str | None = None
    from_path: Path | None = None
    progress: ProgressCallback | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset family.

    Attributes:
        name: the name the CLI and configs use.
        summary: one line for listings.
        fetch: ``fetch(request) -> root`` downloads or generates the dataset.
        meshes: the dataset holds meshes, so `t2m encode` must build point-cloud features.
        remote: names of the registry's remote files it needs (empty when generated).
    """

    name: str
    summary: str
    fetch: Callable[[FetchRequest], Path]
    meshes: bool
    remote: tuple[str, ...] = ()


def downloads_dir(cache_dir: Path | None = None) -> Path:
    """Where remote files are kept, as downloaded."""
    return cache_root(cache_dir) / "downloads"


def fetch_remote(name: str, request: FetchRequest) -> list[Path]:
    """Download (or take from ``from_path``) every remote file of a registry entry."""
    from t2m_cli.download import REMOTE_DATASETS, default_lock_path, fetch

    files = REMOTE_DATASETS[name]
    if request.from_path is not None and len(files) != 1:
        raise UserInputError(f"--from takes one file, and '{name}' has {len(files)}.")
    return [
        fetch(
            remote,
            downloads_dir(request.cache_dir),
            lock_path=default_lock_path(request.cache_dir),
            mirror=request.mirror,
            from_path=request.from_path,
            progress=request.progress,
        )
        for remote in files
    ]


def _fetch_shapes(request: FetchRequest) -> Path:
    from t2m_cli.data.shapes import generate_shapes

    if request.from_path is not None or request.mirror is not None:
        raise UserInputError(
            "'shapes' is generated on this machine: --from and --mirror do not apply."
        )
    return generate_shapes(request.root, seed=request.seed, progress=request.progress)


def _fetch_modelnet40(request: FetchRequest) -> Path:
    """ModelNet40.zip -> ``<root>/<class>/{train,test}/*.off`` with the paper's split."""
    import shutil

    from t2m_cli.atomic import staged_dir
    from t2m_cli.data.dataset import DESCRIPTIONS_FILE, SPLIT_FILE, write_json
    from t2m_cli.data.modelnet import MODELNET40_SPLIT
    from t2m_cli.data.texts import class_name_text
    from t2m_cli.download import extract_zip

    (archive,) = fetch_remote("modelnet40", request)
    if (request.root / SPLIT_FILE).is_file():
        return request.root
    with staged_dir(request.root) as folder:
        unpacked = extract_zip(archive, folder / ".archive")
        # The archive holds one top folder (ModelNet40/); its class folders become the dataset's.
        inner = [p for p in unpacked.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
        top = inner[0] if len(inner) == 1 else unpacked
        classes = (*MODELNET40_SPLIT.seen, *MODELNET40_SPLIT.val, *MODELNET40_SPLIT.unseen)
        missing = [c for c in classes if not (top / c).is_dir()]
        if missing:
            raise DataError(
                f"{archive.name} has no folders for {missing[:5]}; it is not ModelNet40. "
                "Delete it from the downloads folder and download again."
            )
        for child in list(top.iterdir()):
            child.rename(folder / child.name)
        shutil.rmtree(unpacked)
        write_json(folder / SPLIT_FILE, MODELNET40_SPLIT.to_json())
        write_json(folder / DESCRIPTIONS_FILE, {c: [class_name_text(c)] for c in classes})
    return request.root


def _fetch_file(name: str) -> Callable[[FetchRequest], Path]:
    """A registry entry that is one remote file, kept as downloaded (descriptors, attributes)."""

    def fetch(request: FetchRequest) -> Path:
        (path,) = fetch_remote(name, request)
        return path

    return fetch


def _cached_pickle(
    name: str, cache_dir: Path | None, reader: Callable[[Path], dict[str, list[str]]]
) -> dict[str, list[str]] | None:
    """Read a remote pickle of the registry with ``reader`` if it was downloaded, else None."""
    from t2m_cli.download import REMOTE_DATASETS

    path = downloads_dir(cache_dir) / REMOTE_DATASETS[name][0].filename
    return reader(path) if path.is_file() else None


def _fetch_original(name: str) -> Callable[[FetchRequest], Path]:
    """<name>.zip of the paper's host -> a t2m dataset folder (features as published)."""

    def fetch(request: FetchRequest) -> Path:
        import tempfile

        from t2m_cli.data.dataset import SPLIT_FILE
        from t2m_cli.data.original import (
            convert_original_dataset,
            read_attributes,
            read_descriptors,
        )
        from t2m_cli.download import extract_zip

        (archive,) = fetch_remote(name, request)
        if (request.root / SPLIT_FILE).is_file():
            return request.root
        # The unpacked zip is only read from (the conversion builds its own folder): scratch
        # beside the dataset, on the same disk, removed however the conversion ends.
        request.root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix=f".{request.root.name}.", suffix=".unpacked", dir=request.root.parent
        ) as scratch:
            unpacked = extract_zip(archive, Path(scratch) / "zip")
            # GPT descriptions and attribute lists (AwA) are used when they were downloaded:
            # `t2m download descriptors` / `t2m download attributes` before this one.
            descriptions = attributes = None
            if name == "awa":
                descriptions = _cached_pickle("descriptors", request.cache_dir, read_descriptors)
                attributes = _cached_pickle("attributes", request.cache_dir, read_attributes)
            convert_original_dataset(unpacked, request.root, name, descriptions, attributes)
        return request.root

    return fetch


DATASETS: dict[str, DatasetSpec] = {
    "shapes": DatasetSpec(
        name="shapes",
        summary="40 classes of generated 3-D shapes with written descriptions (no network)",
        fetch=_fetch_shapes,
        meshes=True,
    ),
    "modelnet40": DatasetSpec(
        name="modelnet40",
        summary="ModelNet40 meshes (Princeton), the paper's 26 / 7 / 7 split, class names",
        fetch=_fetch_modelnet40,
        meshes=True,
        remote=("modelnet40",),
    ),
    "awa": DatasetSpec(
        name="awa",
        summary="AwA2 as the paper publishes it: 512-d features, 28 / 12 / 10 classes",
        fetch=_fetch_original("awa"),
        meshes=False,
        remote=("awa",),
    ),
    "cub": DatasetSpec(
        name="cub",
        summary="CUB-200 as the paper publishes it: 512-d features, 100 / 50 / 50 classes",
        fetch=_fetch_original("cub"),
        meshes=False,
        remote=("cub",),
    ),
    "sun": DatasetSpec(
        name="sun",
        summary="SUN as the paper publishes it: 512-d features",
        fetch=_fetch_original("sun"),
        meshes=False,
        remote=("sun",),
    ),
    "descriptors": DatasetSpec(
        name="descriptors",
        summary="GPT descriptions of the AwA classes (used by `t2m download awa`)",
        fetch=_fetch_file("descriptors"),
        meshes=False,
        remote=("descriptors",),
    ),
    "attributes": DatasetSpec(
        name="attributes",
        summary="AwA attribute names per class, for negative descriptions",
        fetch=_fetch_file("attributes"),
        meshes=False,
        remote=("attributes",),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of a dataset name; a clear error lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserInputError(
            f"Unknown dataset '{name}'; known datasets: {', '.join(sorted(DATASETS))} "
            "(your own data: `t2m data import`)."
        ) from None


def resolve_root(name: str, root: Path | None, cache_dir: Path | None) -> Path:
    """A dataset's folder: the configured ``root`` or ``<cache>/datasets/<name>``."""
    return root if root is not None else dataset_dir(name, cache_dir)


def download(
    name: str,
    cache_dir: Path | None = None,
    seed: int = 0,
    root: Path | None = None,
    progress: ProgressCallback | None = None,
    mirror: str | None = None,
    from_path: Path | None = None,
) -> Path:
    """Fetch (or generate) a dataset into the cache and return its folder."""
    spec = get_spec(name)
    request = FetchRequest(
        resolve_root(name, root, cache_dir), cache_dir, seed, mirror, from_path, progress
    )
    return spec.fetch(request)


@dataclass(frozen=True)
class DatasetStatus:
    """One row of `t2m download --list`."""

    name: str
    summary: str
    ready: bool
    files: list[tuple[str, bool, int | None, str]]
    """(file name, cached, size in bytes, check state) per remote file."""


def list_datasets(cache_dir: Path | None = None, check_hash: bool = False) -> list[DatasetStatus]:
    """Every dataset with its folder's state and its remote files' cache and check state."""
    from t2m_cli.data.dataset import SPLIT_FILE
    from t2m_cli.download import REMOTE_DATASETS, default_lock_path, status

    rows = []
    for spec in DATASETS.values():
        files = []
        for name in spec.remote:
            for remote in REMOTE_DATASETS[name]:
                s = status(
                    remote,
                    downloads_dir(cache_dir),
                    default_lock_path(cache_dir),
                    check_hash=check_hash,
                )
                files.append((s.filename, s.cached, s.size, s.state))
        ready = (dataset_dir(spec.name, cache_dir) / SPLIT_FILE).is_file()
        rows.append(DatasetStatus(spec.name, spec.summary, ready, files))
    return rows


def open_dataset(
    name: str, root: Path | None, features: str, cache_dir: Path | None = None
) -> ZeroShotDataset:
    """Load a downloaded and encoded dataset, saying which step is missing if it is not."""
    folder = resolve_root(name, root, cache_dir)
    if not folder.is_dir():
        how = f"`t2m download {name}`" if name in DATASETS else "`t2m data import PATH --name`"
        raise DataError(f"Dataset '{name}' is not at {folder}. Run {how} first (and `t2m encode`).")
    check_features(name, folder, features)
    return load_dataset(folder, name, features)


def check_features(name: str, folder: Path, features: str) -> Path:
    """The feature file a config names, or an error saying which ones the dataset has."""
    path = folder / "features" / f"{features}.safetensors"
    if path.is_file():
        return path
    available = sorted(
        p.stem for p in (folder / "features").glob("*.safetensors") if not p.stem.endswith("_model")
    )
    hint = (
        f" It has {', '.join(available)}: set dataset.features to one of them."
        if available
        else " Run `t2m encode`."
    )
    raise DataError(f"Dataset '{name}' at {folder} has no '{features}' features.{hint}")
