"""Where t2m keeps things: the cache root and the file names inside a run folder.

The cache root is chosen as: an explicit ``--cache-dir`` > the ``T2M_HOME`` environment
variable > the platform's user cache folder (``~/.cache/t2m`` on Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "T2M_HOME"
DATASET_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
"""What a dataset name may be (it names a folder under the cache), as a regular expression."""
NAME_MAX_BYTES = 255
"""The longest file or folder name ext4 and most other file systems take, in UTF-8 bytes."""

# Files inside a run folder.
RUN_CONFIG = "config.yaml"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
CHECKPOINT_LAST = "last.safetensors"
CHECKPOINT_BEST = "best.safetensors"
TRAIN_STATE = "state.safetensors"
RUN_FILES = (RUN_CONFIG, RUN_INFO, METRICS, CHECKPOINT_BEST, CHECKPOINT_LAST, TRAIN_STATE)
"""Every file a run writes at its top level."""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one file or folder name inside a folder t2m chooses, or None.

    A name from a config or a flag (``run.name``, ``dataset.features``) is joined to a folder;
    a separator or ``..`` would put the file elsewhere (``..`` writes a run's files beside the
    runs folder, over a user's own), and a leading ``.`` hides it from the listings that find
    runs and feature files.

    Args:
        name: the name as given.

    Returns:
        A phrase such as ``"it holds '/', a path separator"``, or None for a usable name.
    """
    if not name.strip():
        return "it is empty"
    if name != name.strip():
        return "it starts or ends with whitespace"
    for separator in ("/", "\\"):
        if separator in name:
            return f"it holds '{separator}', a path separator"
    if name in (".", ".."):
        return f"'{name}' is {'the folder itself' if name == '.' else 'the folder above'}"
    if name.startswith("."):
        return "it starts with '.', which hides it from t2m's listings"
    if len(name.encode("utf-8", errors="surrogatepass")) > NAME_MAX_BYTES:
        return f"it is longer than {NAME_MAX_BYTES} bytes, the most a file system takes"
    return None


def cache_root(cache_dir: Path | None = None) -> Path:
    """The cache root: ``cache_dir`` if given, else ``$T2M_HOME``, else the platform cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("t2m"))


def datasets_dir(cache_dir: Path | None = None) -> Path:
    """Folder holding one sub-folder per dataset."""
    return cache_root(cache_dir) / "datasets"


def dataset_dir(name: str, cache_dir: Path | None = None) -> Path:
    """Folder of one dataset, e.g. ``<cache>/datasets/shapes``."""
    return datasets_dir(cache_dir) / name


def text_cache_dir(cache_dir: Path | None = None) -> Path:
    """Folder of cached text embeddings."""
    return cache_root(cache_dir) / "text-embeddings"
