"""Datasets by name: how each is fetched or generated, and where its files live.

A dataset folder is always in t2m's own layout (``split.json``, ``descriptions.json``, optional
``attributes.json``, ``features/``), plus the meshes of a mesh dataset. Remote files land in
``<cache>/downloads`` first, checked against the lock file (see `t2m_cli.download`), and are
then extracted or converted into ``<cache>/datasets/<name>``. A remote file is trusted (its hash
recorded) only once that conversion worked, and a refused one is removed, so a bad archive never
blocks the next attempt; ``--from`` always replaces the cached file and the folder built from it.

The text files (``descriptors``, ``attributes``) feed the awa folder whichever is downloaded
first: converting awa applies those already cached, and downloading one re-derives the
``descriptions.json`` / ``attributes.json`` of an awa folder already there.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
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
        from_path: a file the user already has, used instead of downloading; it replaces the
            cached file and the folder built from it.
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


def fetch_remote(
    name: str, request: FetchRequest, check: Callable[[Path, str], None] | None = None
) -> list[Path]:
    """Download (or take from ``from_path``) every remote file of a registry entry.

    Args:
        name: a key of `t2m_cli.download.REMOTE_DATASETS`.
        request: what the fetch step may use.
        check: ``check(path, source)`` runs on each file before it is trusted and raises
            `DataError` to refuse it (see `t2m_cli.download.fetch`); e.g. the conversion.

    Returns:
        The checked files in the cache.

    Raises:
        DataError: a file was refused; nothing of it is left in the cache.
        UserInputError: ``from_path`` is given for an entry of several files.
        RunFailure: a download failed.
    """
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
            check=check,
            progress=request.progress,
        )
        for remote in files
    ]


def _needs_fetch(request: FetchRequest) -> bool:
    """Whether to fetch: the folder is not built yet, or ``--from`` brings a file to rebuild it."""
    from t2m_cli.data.dataset import SPLIT_FILE

    return request.from_path is not None or not (request.root / SPLIT_FILE).is_file()


def _staged_root(root: Path) -> AbstractContextManager[Path]:
    """`staged_dir` for a dataset folder; a built one (only with ``--from``) is swapped out."""
    from t2m_cli.atomic import staged_dir
    from t2m_cli.data.dataset import SPLIT_FILE

    return staged_dir(root, replace=(root / SPLIT_FILE).is_file())


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

    from t2m_cli.data.dataset import DESCRIPTIONS_FILE, SPLIT_FILE, write_json
    from t2m_cli.data.modelnet import MODELNET40_SPLIT
    from t2m_cli.data.texts import class_name_text
    from t2m_cli.download import extract_zip

    def build(archive: Path, source: str) -> None:
        with _staged_root(request.root) as folder:
            unpacked = extract_zip(archive, folder / ".archive", source=source)
            # The archive holds one top folder (ModelNet40/); its class folders become the
            # dataset's.
            inner = [
                p for p in unpacked.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))
            ]
            top = inner[0] if len(inner) == 1 else unpacked
            classes = (*MODELNET40_SPLIT.seen, *MODELNET40_SPLIT.val, *MODELNET40_SPLIT.unseen)
            missing = [c for c in classes if not (top / c).is_dir()]
            if missing:
                raise DataError(
                    f"{source} has no folders for {missing[:5]}; it is not ModelNet40. Pass the "
                    "ModelNet40.zip published by Princeton, or download it again."
                )
            for child in list(top.iterdir()):
                child.rename(folder / child.name)
            shutil.rmtree(unpacked)
            write_json(folder / SPLIT_FILE, MODELNET40_SPLIT.to_json())
            write_json(folder / DESCRIPTIONS_FILE, {c: [class_name_text(c)] for c in classes})

    if _needs_fetch(request):
        fetch_remote("modelnet40", request, check=build)
    return request.root


TEXT_FILE_USERS = ("awa",)
"""Datasets whose folders take their descriptions and attributes from the text files."""


def _apply_text_file(kind: str, path: Path, source: str, name: str, root: Path) -> None:
    """(Re)write a built folder's descriptions.json or attributes.json from a text file.

    Args:
        kind: ``"descriptors"`` or ``"attributes"``.
        path: the pickle.
        source: how messages name it.
        name: the dataset whose folder ``root`` is.
        root: a built dataset folder.

    Raises:
        DataError: the pickle is unsafe or malformed, or does not describe the dataset's classes.
    """
    from t2m_cli.data.dataset import (
        ATTRIBUTES_FILE,
        DESCRIPTIONS_FILE,
        Split,
        write_json,
    )
    from t2m_cli.data.original import (
        match_attributes,
        match_descriptions,
        read_attributes,
        read_descriptors,
    )

    split = Split.read(root)
    classes = list(split.classes)
    if kind == "descriptors":
        texts = match_descriptions(read_descriptors(path, source), classes, name, source)
        write_json(root / DESCRIPTIONS_FILE, texts)
    else:
        attributes = match_attributes(read_attributes(path, source), classes, name, source)
        write_json(root / ATTRIBUTES_FILE, attributes)


def _fetch_file(kind: str) -> Callable[[FetchRequest], Path]:
    """A registry entry that is one remote file feeding other datasets (descriptors, attributes).

    The file is kept as downloaded. Its check loads it through the restricted unpickler and
    re-derives the folders of `TEXT_FILE_USERS` already built, so the order of downloads does
    not change the result, and a file that does not fit them is refused.
    """
    from t2m_cli.data.dataset import SPLIT_FILE
    from t2m_cli.data.original import read_attributes, read_descriptors

    reader = read_descriptors if kind == "descriptors" else read_attributes

    def fetch(request: FetchRequest) -> Path:
        def check(path: Path, source: str) -> None:
            reader(path, source)
            for name in TEXT_FILE_USERS:
                root = dataset_dir(name, request.cache_dir)
                if (root / SPLIT_FILE).is_file():
                    _apply_text_file(kind, path, source, name, root)

        (path,) = fetch_remote(kind, request, check=check)
        return path

    return fetch


def _apply_cached_text_files(name: str, root: Path, cache_dir: Path | None) -> None:
    """Give a built folder the descriptions and attributes of the text files already cached.

    A cached file that does not fit is removed from the cache (its record too), the others
    still apply, and the folder keeps what it had for that file's part.

    Raises:
        DataError: a cached text file was refused; the message says which and what to run.
    """
    from t2m_cli.download import REMOTE_DATASETS, default_lock_path, discard

    refused = []
    for kind in FILE_ONLY:
        (remote,) = REMOTE_DATASETS[kind]
        path = downloads_dir(cache_dir) / remote.filename
        if not path.is_file():
            continue
        try:
            _apply_text_file(kind, path, str(path), name, root)
        except DataError as exc:
            discard(remote, downloads_dir(cache_dir), default_lock_path(cache_dir))
            refused.append(
                f"{exc} It was removed from the cache: get the one made for {name} with "
                f"`t2m download {kind}` (or `--from FILE`)."
            )
    if refused:
        raise DataError(
            f"{name} is ready at {root}, but a cached text file does not fit it. "
            + " ".join(refused)
        )


def _fetch_original(name: str) -> Callable[[FetchRequest], Path]:
    """<name>.zip of the paper's host -> a t2m dataset folder (features as published)."""

    def convert(root: Path, archive: Path, source: str) -> None:
        import tempfile

        from t2m_cli.data.original import convert_original_dataset
        from t2m_cli.download import extract_zip

        # The unpacked zip is only read from: scratch beside the dataset, on the same disk,
        # removed however the conversion ends.
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix=f".{root.name}.", suffix=".unpacked", dir=root.parent
        ) as scratch:
            unpacked = extract_zip(archive, Path(scratch) / "zip", source=source)
            # Class names as descriptions: the text files are applied once the archive is
            # trusted, so that a text file that does not fit refuses itself, not the archive.
            built = convert_original_dataset(
                unpacked, Path(scratch) / "dataset", name, archive=source
            )
            with _staged_root(root) as folder:
                for child in list(built.iterdir()):
                    child.rename(folder / child.name)

    def fetch(request: FetchRequest) -> Path:
        if _needs_fetch(request):
            fetch_remote(
                name, request, check=lambda archive, source: convert(request.root, archive, source)
            )
        if name in TEXT_FILE_USERS:
            _apply_cached_text_files(name, request.root, request.cache_dir)
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
        summary="GPT descriptions of the AwA classes (awa uses them, whichever comes first)",
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


def open_dataset(
    name: str, root: Path | None, features: str, cache_dir: Path | None = None
) -> ZeroShotDataset:
    """Load a downloaded and encoded dataset, saying which step is missing if it is not."""
    folder = dataset_folder(name, root, cache_dir, then=" (and `t2m encode`)")
    check_features(name, folder, features, root_set=root is not None)
    return load_dataset(folder, name, features)


def dataset_folder(name: str, root: Path | None, cache_dir: Path | None, then: str = "") -> Path:
    """A dataset's folder (`resolve_root`), or an error saying how to get one.

    Args:
        name: the dataset's name (``dataset.name``).
        root: ``dataset.root``; None for the cache's folder.
        cache_dir: cache root override.
        then: what the advice adds after the command that fetches the dataset.

    Raises:
        DataError: the folder does not exist. With ``root`` set the message says to fix or drop
            ``dataset.root`` (`t2m download` and `t2m data import` write to the cache, never
            there); otherwise it names the command that puts the dataset in the cache.
    """
    folder = resolve_root(name, root, cache_dir)
    if folder.is_dir():
        return folder
    if root is not None:
        raise DataError(
            f"There is no dataset at {folder}, the dataset.root of the config. Fix dataset.root, "
            f"or drop it to use dataset '{name}' in the cache ({dataset_dir(name, cache_dir)})."
        )
    how = f"`t2m download {name}`" if name in DATASETS else "`t2m data import PATH --name`"
    raise DataError(f"Dataset '{name}' is not at {folder}. Run {how} first{then}.")


def check_features(name: str, folder: Path, features: str, *, root_set: bool = False) -> Path:
    """The feature file a config names, or an error saying which ones the dataset has.

    Args:
        name: the dataset's name.
        folder: its folder.
        features: the feature file's stem (``dataset.features``).
        root_set: ``folder`` is a ``dataset.root`` of the config, where no download writes.

    Raises:
        DataError: the file is not there; the message lists the ones that are, or says how
            to make one.
    """
    path = folder / "features" / f"{features}.safetensors"
    if path.is_file():
        return path
    available = sorted(
        p.stem for p in (folder / "features").glob("*.safetensors") if not p.stem.endswith("_model")
    )
    spec = DATASETS.get(name)
    if available:
        hint = f" It has {', '.join(available)}: set dataset.features to one of them."
    elif spec is not None and spec.meshes:
        hint = " Run `t2m encode`."
    elif root_set:
        # Downloads and imports write to the cache, so neither would add features here.
        hint = (
            " Its features come with its data, not from `t2m encode`: fix dataset.root, or "
            "drop it to use the dataset in the cache."
        )
    elif spec is not None:
        # `t2m encode` builds mesh datasets' features only: sending users there would loop.
        hint = (
            " Its features come with the download, not from `t2m encode`: delete "
            f"{folder} and run `t2m download {name}` again."
        )
    else:
        hint = (
            " Its features come with its data, not from `t2m encode`: import the data again "
            "as a new dataset (`t2m data import PATH --name NAME`)."
        )
    raise DataError(f"Dataset '{name}' at {folder} has no '{features}' features.{hint}")
