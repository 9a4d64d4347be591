"""Downloading and unpacking the datasets t2m uses.

`registry` names the files and where to fetch them from, `fetch` downloads and checks them into
the cache, `lock` keeps the size and hash of every trusted file and verifies the cache against
them, `extract` unpacks archives safely.
"""

from t2m_cli.download.extract import check_zip, extract_zip
from t2m_cli.download.fetch import fetch
from t2m_cli.download.lock import VERIFIED, FileStatus, default_lock_path, discard, status, verify
from t2m_cli.download.registry import ENV_MIRROR, REMOTE_DATASETS, RemoteFile, resolve_url

__all__ = [
    "ENV_MIRROR",
    "REMOTE_DATASETS",
    "VERIFIED",
    "FileStatus",
    "RemoteFile",
    "check_zip",
    "default_lock_path",
    "discard",
    "extract_zip",
    "fetch",
    "resolve_url",
    "status",
    "verify",
]
