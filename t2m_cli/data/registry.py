"""Datasets by name: how each is fetched or generated, and where its files live."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from t2m_cli.console import ProgressCallback
from t2m_cli.data.dataset import ZeroShotDataset, load_dataset
from t2m_cli.errors import DataError, UserInputError
from t2m_cli.paths import dataset_dir


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset family.

    Attributes:
        name: the name the CLI and configs use.
        summary: one line for listings.
        fetch: ``fetch(root, seed, progress) -> root`` downloads or generates the dataset.
        meshes: the dataset holds meshes, so `t2m encode` must build point-cloud features.
    """

    name: str
    summary: str
    fetch: Callable[[Path, int, ProgressCallback | None], Path]
    meshes: bool


def _fetch_shapes(root: Path, seed: int, progress: ProgressCallback | None) -> Path:
    from t2m_cli.data.shapes import generate_shapes

    return generate_shapes(root, seed=seed, progress=progress)


DATASETS: dict[str, DatasetSpec] = {
    "shapes": DatasetSpec(
        name="shapes",
        summary="40 classes of generated 3-D shapes with written descriptions (no network)",
        fetch=_fetch_shapes,
        meshes=True,
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of a dataset name; a clear error lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserInputError(
            f"Unknown dataset '{name}'; known datasets: {', '.join(sorted(DATASETS))}."
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
) -> Path:
    """Fetch (or generate) a dataset into the cache and return its folder."""
    spec = get_spec(name)
    return spec.fetch(resolve_root(name, root, cache_dir), seed, progress)


def open_dataset(
    name: str, root: Path | None, features: str, cache_dir: Path | None = None
) -> ZeroShotDataset:
    """Load a downloaded and encoded dataset, saying which step is missing if it is not."""
    folder = resolve_root(name, root, cache_dir)
    if not folder.is_dir():
        raise DataError(
            f"Dataset '{name}' is not at {folder}. Run `t2m download {name}` first"
            " (and `t2m encode`)."
        )
    if not (folder / "features" / f"{features}.safetensors").is_file():
        raise DataError(
            f"Dataset '{name}' at {folder} has no '{features}' features yet. Run `t2m encode`."
        )
    return load_dataset(folder, name, features)
