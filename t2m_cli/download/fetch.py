"""Download files safely: stream, hash while streaming, resume, verify, then rename into place.

A download streams into ``<dest>/<filename>.part``. That name is fixed rather than unique so
that an interrupted download can be found and resumed with an HTTP ``Range`` request; a sidecar
``<filename>.part.lock``, created with ``O_EXCL``, keeps two processes from writing the same
partial file. Only a file whose size and SHA-256 check out is renamed (``os.replace``) to its
final name, so the cache never holds a half-written or corrupted file under a real name.

Trust on first use: no checksums are published for the upstream files, so the first download of
each file records its size and SHA-256 in a JSON lock file in the cache. Later downloads and
`verify` compare against that record; a hash in the registry, where one exists, always wins.

Mirrors: a mirror is a flat folder holding every file under its registry ``filename``. The URL
used is ``<mirror base>/<filename>``, whatever the original host and path were; e.g. mirror
``https://mirror.example/t2m`` turns ``https://chechiklab.biu.ac.il/~amosy/awa.zip`` into
``https://mirror.example/t2m/awa.zip``. It comes from the ``mirror`` argument, else from the
``T2M_MIRROR`` environment variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from t2m_cli.atomic import atomic_path, write_json
from t2m_cli.download.registry import RemoteFile
from t2m_cli.errors import DataError, RunFailure, UserInputError
from t2m_cli.paths import cache_root

ENV_MIRROR = "T2M_MIRROR"
LOCK_FILENAME = "downloads.lock.json"

VERIFIED = "verified"
NOT_DOWNLOADED = "not downloaded"
RECORDED = "recorded"

_CHUNK = 1 << 20
# Short on purpose: a flaky connection usually recovers in a second or two, and a user waiting
# on a dead one should hear about it soon. Tests set it to zero.
_BACKOFF_S = 0.5
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

ProgressFn = Callable[[int, int], None]


class _Retryable(Exception):
    """A transfer failure worth another try (connection dropped, short read, server error)."""


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


def resolve_url(remote: RemoteFile, mirror: str | None = None) -> str:
    """The URL to download ``remote`` from: ``<mirror>/<filename>`` with a mirror, else its URL.

    Args:
        remote: The file.
        mirror: Mirror base URL; ``None`` falls back to ``$T2M_MIRROR``, then to no mirror.
    """
    base = mirror if mirror is not None else os.environ.get(ENV_MIRROR)
    if not base:
        return remote.url
    return f"{base.rstrip('/')}/{remote.filename}"


def fetch(
    remote: RemoteFile,
    dest_dir: Path,
    *,
    lock_path: Path,
    mirror: str | None = None,
    from_path: Path | None = None,
    retries: int = 3,
    timeout: float = 30,
    progress: ProgressFn | None = None,
) -> Path:
    """Put a verified copy of ``remote`` at ``dest_dir / remote.filename`` and return its path.

    A file already in place whose size matches the record is returned as is (use `verify` for a
    full re-hash). Otherwise the file is downloaded, resuming a ``.part`` left by an interrupted
    run, or copied from ``from_path``; then checked against the registry hash, else against the
    lock file's record, else recorded there.

    Args:
        remote: The file to fetch.
        dest_dir: Cache folder to put it in (created if needed).
        lock_path: JSON lock file of recorded sizes and hashes.
        mirror: Mirror base URL (see the module docstring); default ``$T2M_MIRROR``.
        from_path: A copy the user already has; it is copied in and checked, nothing is
            downloaded.
        retries: Extra attempts after a dropped connection, short read or server error; each
            resumes where the last one stopped.
        timeout: Socket timeout in seconds for connecting and for each read.
        progress: Called as ``progress(bytes_done, bytes_total)``; total is 0 when unknown.

    Returns:
        The path of the verified file.

    Raises:
        DataError: The file does not match the registry hash or the recorded one; nothing of it
            is left in the cache.
        UserInputError: ``from_path`` does not exist.
        RunFailure: The download failed after all retries (its ``.part`` is kept so that the next
            run resumes), or the server refused it.
    """
    dest_dir = Path(dest_dir)
    final = dest_dir / remote.filename
    record = _read_lock(lock_path).get(remote.filename)
    if final.exists() and (record is None or record.get("size") == final.stat().st_size):
        if record is None:
            # A file put there by hand, or by a run that died before recording it.
            _check_and_record(remote, final, _hash_file(final), lock_path, source=str(final))
        return final

    dest_dir.mkdir(parents=True, exist_ok=True)
    if from_path is not None:
        return _copy_in(remote, Path(from_path), final, lock_path)
    url = resolve_url(remote, mirror)
    with _part_lock(final):
        part = final.with_name(final.name + ".part")
        digest = _download(url, part, retries=retries, timeout=timeout, progress=progress)
        try:
            _check_and_record(remote, part, digest, lock_path, source=url)
        except DataError:
            # A corrupted body must not linger: resuming from it would only corrupt again.
            part.unlink(missing_ok=True)
            raise
        os.replace(part, final)
    return final


def verify(remote: RemoteFile, dest_dir: Path, lock_path: Path) -> str:
    """Re-hash the cached file and compare it with the registry hash and the recorded one.

    Args:
        remote: The file.
        dest_dir: Cache folder it lives in.
        lock_path: JSON lock file of recorded sizes and hashes.

    Returns:
        ``"not downloaded"`` when absent, ``"verified"`` when it matches, or ``"recorded"`` when
        there was nothing to compare with and its hash has now been recorded.

    Raises:
        DataError: The file's size or hash differs; the message says what to do.
    """
    final = Path(dest_dir) / remote.filename
    if not final.exists():
        return NOT_DOWNLOADED
    had_reference = remote.sha256 is not None or remote.filename in _read_lock(lock_path)
    _check_and_record(remote, final, _hash_file(final), lock_path, source=str(final))
    return VERIFIED if had_reference else RECORDED


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
    record = _read_lock(lock_path).get(remote.filename)
    want_size = remote.size if remote.size is not None else (record or {}).get("size")
    want_hash = remote.sha256 or (record or {}).get("sha256")
    if want_size is None and want_hash is None:
        state = "not recorded"
    elif want_size is not None and want_size != size:
        state = "size differs"
    elif check_hash and want_hash is not None and _hash_file(final) != want_hash:
        state = "hash differs"
    else:
        state = VERIFIED
    return FileStatus(remote.name, remote.filename, final, True, size, state)


def _download(
    url: str, part: Path, *, retries: int, timeout: float, progress: ProgressFn | None
) -> str:
    """Stream ``url`` into ``part`` (resuming it if present); return the whole file's SHA-256."""
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
        try:
            return _attempt(url, part, timeout=timeout, progress=progress)
        except _Retryable as exc:
            last_error = exc
    raise RunFailure(
        f"Downloading {url} failed after {retries + 1} attempts ({last_error}). The partial "
        f"file {part} is kept: run the same command again to resume, or pass a mirror "
        f"(--mirror / ${ENV_MIRROR})."
    )


def _attempt(url: str, part: Path, *, timeout: float, progress: ProgressFn | None) -> str:
    """One request: resume ``part`` with a Range request when it has bytes, else start over."""
    import http.client
    import urllib.error
    import urllib.request

    digest = hashlib.sha256()
    offset = _hash_into(part, digest) if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "t2m"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The partial is as long as (or longer than) the file: it cannot be trusted.
            part.unlink(missing_ok=True)
            raise _Retryable(f"HTTP 416 for a resume at byte {offset}; starting over") from exc
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code}") from exc
        raise RunFailure(
            f"The server refused {url} (HTTP {exc.code} {exc.reason}). Check the URL or mirror, "
            "or download the file yourself and pass it with --from-path."
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise _Retryable(str(getattr(exc, "reason", exc))) from exc

    with response:
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        if offset and response.status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _Retryable("the server answered a resume with the wrong range")
            mode = "ab"
        else:
            # The server ignored the Range header and sent the whole file: start over.
            digest, offset, mode = hashlib.sha256(), 0, "wb"
        total = offset + remaining if remaining is not None else 0
        done = offset
        try:
            with open(part, mode) as file:
                while chunk := response.read(_CHUNK):
                    file.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
                file.flush()
                os.fsync(file.fileno())
        except (http.client.HTTPException, OSError) as exc:
            raise _Retryable(f"connection lost after {done} bytes ({exc})") from exc
    # urllib returns b"" rather than raising when a server closes early, so count the bytes.
    if total and done < total:
        raise _Retryable(f"connection closed after {done} of {total} bytes")
    return digest.hexdigest()


def _copy_in(remote: RemoteFile, source: Path, final: Path, lock_path: Path) -> Path:
    """Copy a file the user already has into the cache, hashing it on the way."""
    if not source.is_file():
        raise UserInputError(
            f"--from-path {source} is not a file; pass the path of a downloaded {remote.filename}."
        )
    digest = hashlib.sha256()
    with atomic_path(final) as tmp:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
                digest.update(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        # Raising here, inside atomic_path, removes the copy and leaves the cache untouched.
        _check_and_record(remote, tmp, digest.hexdigest(), lock_path, source=str(source))
    return final


def _check_and_record(
    remote: RemoteFile, path: Path, sha256: str, lock_path: Path, *, source: str
) -> None:
    """Compare ``path`` (hashed as ``sha256``) with the registry and the lock; record if new."""
    size = path.stat().st_size
    name = remote.filename
    if remote.sha256 is not None and sha256 != remote.sha256.lower():
        raise DataError(
            f"{name} from {source} has SHA-256 {sha256}, but the registry expects "
            f"{remote.sha256.lower()}; it was not kept. Delete any copy of {name} in the cache "
            "and download again; if it fails again, the server or mirror serves a different "
            "file: check the mirror (--mirror / $T2M_MIRROR) or fetch it from the original URL "
            f"{remote.url}."
        )
    if remote.size is not None and size != remote.size:
        raise DataError(
            f"{name} from {source} is {size} bytes, but the registry expects {remote.size}; "
            "delete it and download again, or check the mirror."
        )
    locked = _read_lock(lock_path)
    record = locked.get(name)
    if record is not None:
        if record.get("sha256") != sha256 or record.get("size") != size:
            raise DataError(
                f"{name} from {source} has SHA-256 {sha256} ({size} bytes), but the one first "
                f"downloaded on {record.get('recorded')} from {record.get('url')} had SHA-256 "
                f"{record.get('sha256')} ({record.get('size')} bytes), as recorded in "
                f"{lock_path}. The file on the server changed or the copy is corrupted. Delete "
                f"the cached {name} and download again; if you trust the new file, remove its "
                f"entry from {lock_path} first."
            )
        return
    locked[name] = {
        "sha256": sha256,
        "size": size,
        "url": source,
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(lock_path, dict(sorted(locked.items())))


def _read_lock(lock_path: Path) -> dict[str, Any]:
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


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_into(path, digest)
    return digest.hexdigest()


def _hash_into(path: Path, digest: Any) -> int:
    """Feed ``path``'s bytes into ``digest``; return how many there were."""
    count = 0
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            count += len(chunk)
    return count


@contextmanager
def _part_lock(final: Path) -> Iterator[None]:
    """Hold ``<final>.part.lock`` so that only one process writes ``<final>.part``.

    A lock left by a process that no longer runs (killed mid-download) is taken over.
    """
    lock = final.with_name(final.name + ".part.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and _alive(owner):
                raise RunFailure(
                    f"Another t2m process (pid {owner}) is downloading {final.name}. Wait for it "
                    f"to finish; if no such process runs, delete {lock}."
                ) from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as file:
            file.write(str(os.getpid()))
        break
    else:
        raise RunFailure(f"Could not take the download lock {lock}; delete it and try again.")
    try:
        yield
    finally:
        with suppress(OSError):
            lock.unlink()


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "ENV_MIRROR",
    "LOCK_FILENAME",
    "NOT_DOWNLOADED",
    "RECORDED",
    "VERIFIED",
    "FileStatus",
    "default_lock_path",
    "fetch",
    "resolve_url",
    "status",
    "verify",
]
