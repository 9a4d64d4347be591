"""`t2m download --list`: every registered dataset with the state of its folder and files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from t2m_cli.data.registry import DATASETS, FILE_ONLY, downloads_dir
from t2m_cli.paths import dataset_dir


@dataclass(frozen=True)
class DatasetStatus:
    """One row of `t2m download --list`."""

    name: str
    summary: str
    ready: bool
    """The dataset folder is built (for a text file: it is cached and verified)."""
    files: list[tuple[str, bool, int | None, str]]
    """(file name, cached, size in bytes, check state) per remote file."""


def list_datasets(cache_dir: Path | None = None, check_hash: bool = False) -> list[DatasetStatus]:
    """Every dataset with its folder's state and its remote files' cache and check state."""
    from t2m_cli.data.dataset import SPLIT_FILE
    from t2m_cli.download import REMOTE_DATASETS, VERIFIED, default_lock_path, status

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
        if spec.name in FILE_ONLY:
            # A text file is ready as downloaded; it has no dataset folder of its own.
            ready = bool(files) and all(
                cached and state == VERIFIED for _, cached, _, state in files
            )
        else:
            ready = (dataset_dir(spec.name, cache_dir) / SPLIT_FILE).is_file()
        rows.append(DatasetStatus(spec.name, spec.summary, ready, files))
    return rows
