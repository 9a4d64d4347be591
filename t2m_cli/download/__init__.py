"""Downloading and unpacking the datasets t2m uses.

`registry` names the files, `fetch` downloads and verifies them into the cache, `extract`
unpacks archives safely.
"""

from t2m_cli.download.extract import extract_zip
from t2m_cli.download.fetch import (
    ENV_MIRROR,
    FileStatus,
    default_lock_path,
    fetch,
    resolve_url,
    status,
    verify,
)
from t2m_cli.download.registry import REMOTE_DATASETS, RemoteFile

__all__ = [
    "ENV_MIRROR",
    "REMOTE_DATASETS",
    "FileStatus",
    "RemoteFile",
    "default_lock_path",
    "extract_zip",
    "fetch",
    "resolve_url",
    "status",
    "verify",
]
