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

# Files inside a run folder.
RUN_CONFIG = "config.yaml"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
CHECKPOINT_LAST = "last.safetensors"
CHECKPOINT_BEST = "best.safetensors"
TRAIN_STATE = "state.safetensors"


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
