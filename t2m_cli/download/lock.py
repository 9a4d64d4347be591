"""The download lock file: the size and SHA-256 of every file t2m trusts, and checks against it.

Trust on first use: no checksums are published for the upstream files, so the first copy of
each file that passes its content check (not a web page, a readable zip, and the caller's check:
the archive converts, the pickle loads) has its size and SHA-256 recorded in
``downloads.lock.json`` at the cache root. Nothing is recorded before that check, and a refused
file is removed, so a bad first download cannot become the trusted hash. Later downloads and
`verify` compare against that record; a hash in the registry, where one exists, always wins; a
file passed with ``--from`` replaces the record. `t2m_cli.download.fetch` decides when a file is
trusted; this module keeps the record and compares files with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from t2m_cli.atomic import exclusive, write_json
from t2m_cli.download.registry import ENV_MIRROR, RemoteFile
from t2m_cli.errors import DataError
from t2m_cli.paths import cache_root

LOCK_FILENAME = "downloads.lock.json"

VERIFIED = "verified"
NOT_DOWNLOADED = "not downloaded"
NOT_RECORDED = "not recorded"

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileStatus:
    """What the cache holds for one remote file, for a ``--list`` view.

    Attributes:
        name: Dataset name.
        filename: File name in the cache.
        path: Where the file is (or would be) in the cache.
        cached: Whether the file is there.
        size: Its size in bytes, or ``None`` when not cached.
        state: ``"not downloaded"``, ``"verified"`` (size, and with ``check_hash`` the SHA-256,
            match the record), ``"not recorded"`` (cached but no record to compare with) or
            ``"size differs"`` / ``"hash differs"``.
    """

    name: str
    filename: str
    path: Path
    cached: bool
    size: int | None
    state: str


def default_lock_path(cache_dir: Path | None = None) -> Path:
    """The lock file holding recorded sizes and hashes, at the cache root."""
    return cache_root(cache_dir) / LOCK_FILENAME


def discard(remote: RemoteFile, dest_dir: Path, lock_path: Path) -> None:
    """Remove the cached copy of ``remote`` and its lock-file record, e.g. once it is refused.

    Args:
        remote: The file.
        dest_dir: Cache folder it lives in.
        lock_path: JSON lock file of recorded sizes and hashes.
    """
    (Path(dest_dir) / remote.filename).unlink(missing_ok=True)
    with exclusive(lock_path):
        locked = read_lock(lock_path)
        if locked.pop(remote.filename, None) is not None:
            write_json(lock_path, locked)


def verify(remote: RemoteFile, dest_dir: Path, lock_path: Path) -> str:
    """Re-hash the cached file and compare it with the registry hash and the recorded one.

    Nothing is recorded here: a file is trusted only by `fetch`, once its content is checked.

    Args:
        remote: The file.
        dest_dir: Cache folder it lives in.
        lock_path: JSON lock file of recorded sizes and hashes.

    Returns:
        ``"not downloaded"`` when absent, ``"verified"`` when it matches, or ``"not recorded"``
        when there is nothing to compare with (the next `fetch` checks and records it).

    Raises:
        DataError: The file's size or hash differs; the message says what to do.
    """
    final = Path(dest_dir) / remote.filename
    if not final.exists():
        return NOT_DOWNLOADED
    if remote.sha256 is None and remote.filename not in read_lock(lock_path):
        return NOT_RECORDED
    check_reference(
        remote, final, hash_file(final), lock_path, source=str(final), against_lock=True
    )
    return VERIFIED


def status(
    remote: RemoteFile, dest_dir: Path, lock_path: Path, *, check_hash: bool = False
) -> FileStatus:
    """Describe what the cache holds for ``remote`` without raising on a mismatch.

    Args:
        remote: The file.
        dest_dir: Cache folder it lives in.
        lock_path: JSON lock file of recorded sizes and hashes.
        check_hash: Also re-hash the file (slow for the multi-GB archives); by default only the
            size is compared.
    """
    final = Path(dest_dir) / remote.filename
    if not final.exists():
        return FileStatus(remote.name, remote.filename, final, False, None, NOT_DOWNLOADED)
    size = final.stat().st_size
    record = read_lock(lock_path).get(remote.filename)
    want_size = remote.size if remote.size is not None else (record or {}).get("size")
    want_hash = remote.sha256 or (record or {}).get("sha256")
    if want_size is None and want_hash is None:
        state = NOT_RECORDED
    elif want_size is not None and want_size != size:
        state = "size differs"
    elif check_hash and want_hash is not None and hash_file(final) != want_hash:
        state = "hash differs"
    else:
        state = VERIFIED
    return FileStatus(remote.name, remote.filename, final, True, size, state)


def check_reference(
    remote: RemoteFile,
    path: Path,
    sha256: str,
    lock_path: Path,
    *,
    source: str,
    against_lock: bool,
) -> None:
    """Compare ``path`` (hashed as ``sha256``) with the registry and, if asked, the lock.

    Args:
        remote: The file ``path`` is a copy of.
        path: The copy; only its size is read.
        sha256: Its SHA-256 as lowercase hex.
        lock_path: JSON lock file of recorded sizes and hashes.
        source: Where the copy came from (URL or path), for messages.
        against_lock: Also compare with the recorded size and hash, where there is a record.

    Raises:
        DataError: The size or hash differs from the registry's or the record's.
    """
    size = path.stat().st_size
    name = remote.filename
    if remote.sha256 is not None and sha256 != remote.sha256.lower():
        raise DataError(
            f"{name} from {source} has SHA-256 {sha256}, but the registry expects "
            f"{remote.sha256.lower()}; it was not kept: download again, and if it fails again, the "
            "server or mirror serves a different file: check the mirror (--mirror / "
            f"${ENV_MIRROR}) or fetch it from the original URL {remote.url}."
        )
    if remote.size is not None and size != remote.size:
        raise DataError(
            f"{name} from {source} is {size} bytes, but the registry expects {remote.size}; "
            "it was not kept: download again, or check the mirror."
        )
    record = read_lock(lock_path).get(name) if against_lock else None
    if record is not None and (record.get("sha256") != sha256 or record.get("size") != size):
        raise DataError(
            f"{name} from {source} has SHA-256 {sha256} ({size} bytes), but the one trusted on "
            f"{record.get('recorded')} from {record.get('url')} had SHA-256 "
            f"{record.get('sha256')} ({record.get('size')} bytes), as recorded in {lock_path}. "
            "The file on the server changed or this copy is corrupted: download again, or, if you "
            f"trust the new file, download it yourself and pass it with `t2m download "
            f"{remote.name} --from FILE`, which records it in place of the old one."
        )


def record_hash(
    remote: RemoteFile, path: Path, sha256: str, lock_path: Path, *, source: str
) -> None:
    """Trust ``path``: record its size and hash, replacing any earlier record.

    Args:
        remote: The file ``path`` is a checked copy of.
        path: The copy, already checked.
        sha256: Its SHA-256 as lowercase hex.
        lock_path: JSON lock file to record it in (rewritten atomically, under `exclusive`).
        source: Where the copy came from (URL or path), kept in the record.
    """
    record = {
        "sha256": sha256,
        "size": path.stat().st_size,
        "url": source,
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # Another process may record another file at the same time: read, add and write under
    # the lock, so that neither record is lost.
    with exclusive(lock_path):
        locked = read_lock(lock_path)
        locked[remote.filename] = record
        write_json(lock_path, dict(sorted(locked.items())))


def read_lock(lock_path: Path) -> dict[str, Any]:
    """The records of the lock file, by file name; empty when there is no lock file.

    Raises:
        DataError: The lock file is not valid JSON or not a JSON object; the message says to
            delete it.
    """
    try:
        text = Path(lock_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"The download lock file {lock_path} is not valid JSON ({exc}). Delete it; sizes and "
            "hashes are recorded again at the next download or verify."
        ) from exc
    if not isinstance(data, dict):
        raise DataError(f"The download lock file {lock_path} is not a JSON object; delete it.")
    return data


def hash_file(path: Path) -> str:
    """SHA-256 of ``path``'s bytes as lowercase hex."""
    digest = hashlib.sha256()
    hash_into(path, digest)
    return digest.hexdigest()


def hash_into(path: Path, digest: Any) -> int:
    """Feed ``path``'s bytes into ``digest`` (a hashlib object); return how many there were."""
    count = 0
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            count += len(chunk)
    return count


__all__ = [
    "LOCK_FILENAME",
    "NOT_DOWNLOADED",
    "NOT_RECORDED",
    "VERIFIED",
    "FileStatus",
    "check_reference",
    "default_lock_path",
    "discard",
    "hash_file",
    "hash_into",
    "read_lock",
    "record_hash",
    "status",
    "verify",
]
