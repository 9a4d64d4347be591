"""Download files safely: stream, hash while streaming, resume, verify, then rename into place.

A download streams into ``<dest>/<filename>.part``. That name is fixed rather than unique so
that an interrupted download can be found and resumed with an HTTP ``Range`` request; a sidecar
``<filename>.part.lock``, created with ``O_EXCL``, keeps two processes from writing the same
partial file. Only a file that passes every check below is renamed (``os.replace``) to its
final name, so the cache never holds a half-written or corrupted file under a real name.

Trust on first use: the first copy of each file that passes its content check (not a web page,
a readable zip, and the caller's check: the archive converts, the pickle loads) has its size and
SHA-256 recorded in the lock file (`t2m_cli.download.lock`), and later downloads must match it.
Where the bytes come from (the original URL or a mirror) is `t2m_cli.download.registry`'s
`resolve_url`.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from t2m_cli.atomic import atomic_path
from t2m_cli.download.extract import check_zip
from t2m_cli.download.lock import (
    check_reference,
    discard,
    hash_file,
    hash_into,
    read_lock,
    record_hash,
)
from t2m_cli.download.registry import ENV_MIRROR, RemoteFile, resolve_url
from t2m_cli.errors import DataError, RunFailure, UserInputError

_CHUNK = 1 << 20
# Short on purpose: a flaky connection usually recovers in a second or two, and a user waiting
# on a dead one should hear about it soon. Tests set it to zero.
_BACKOFF_S = 0.5
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

ProgressFn = Callable[[int, int], None]
CheckFn = Callable[[Path, str], None]


class _Retryable(Exception):
    """A transfer failure worth another try (connection dropped, short read, server error)."""


def fetch(
    remote: RemoteFile,
    dest_dir: Path,
    *,
    lock_path: Path,
    mirror: str | None = None,
    from_path: Path | None = None,
    check: CheckFn | None = None,
    retries: int = 3,
    timeout: float = 30,
    progress: ProgressFn | None = None,
) -> Path:
    """Put a checked copy of ``remote`` at ``dest_dir / remote.filename`` and return its path.

    The file is copied from ``from_path`` when one is given (it replaces whatever the cache
    holds), else taken from the cache when it is there (a trusted copy is not re-hashed: use
    `verify`), else downloaded, resuming a ``.part`` left by an interrupted run. It is trusted
    (kept under its name, its size and SHA-256 recorded in the lock file) only once it has
    passed every check: the registry hash; for a download, the hash recorded when the file was
    first trusted; not a web page; a readable zip when it is an archive; then ``check``. A file
    that fails one is removed from the cache and from the lock file, so the next attempt, with a
    good file, works as if it had never been there.

    Args:
        remote: The file to fetch.
        dest_dir: Cache folder to put it in (created if needed).
        lock_path: JSON lock file of recorded sizes and hashes.
        mirror: Mirror base URL (see `t2m_cli.download.registry`); default ``$T2M_MIRROR``.
        from_path: A copy the user already has; it is copied in and checked, nothing is
            downloaded, and its hash replaces any recorded one.
        check: ``check(path, source)`` inspects the content before the file is trusted (loads
            it, or unpacks and converts it), ``source`` naming it for messages (the
            ``from_path``, the URL or the cached path); it raises `DataError` to refuse it. It
            runs on a cached file too, so it has always run on the file returned.
        retries: Extra attempts after a dropped connection, short read or server error; each
            resumes where the last one stopped.
        timeout: Socket timeout in seconds for connecting and for each read.
        progress: Called as ``progress(bytes_done, bytes_total)``; total is 0 when unknown.

    Returns:
        The path of the checked file.

    Raises:
        DataError: The file does not match the registry hash or the recorded one, is a web page
            or a broken archive, or ``check`` refused it; nothing of it is left in the cache.
        UserInputError: ``from_path`` is not a file.
        RunFailure: The download failed after all retries (a ``.part`` with bytes in it is kept
            so that the next run resumes), or the server refused it.
    """
    dest_dir = Path(dest_dir)
    final = dest_dir / remote.filename
    if from_path is not None:
        return _copy_in(remote, Path(from_path), final, lock_path, check)
    record = read_lock(lock_path).get(remote.filename)
    if final.exists() and (record is None or record.get("size") == final.stat().st_size):
        # Without a record it was put there by hand, or by a run that died before its check.
        digest = hash_file(final) if record is None else None
        try:
            _accept(remote, final, lock_path, source=str(final), check=check, sha256=digest)
        except DataError:
            discard(remote, dest_dir, lock_path)
            raise
        if digest is not None:
            record_hash(remote, final, digest, lock_path, source=str(final))
        return final

    dest_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_url(remote, mirror)
    with _part_lock(final):
        part = final.with_name(final.name + ".part")
        digest = _download(url, part, retries=retries, timeout=timeout, progress=progress)
        try:
            _accept(
                remote, part, lock_path, source=url, check=check, sha256=digest, against_lock=True
            )
        except DataError:
            # A refused body must not linger: resuming from it would only corrupt again.
            part.unlink(missing_ok=True)
            raise
        os.replace(part, final)
        if record is None:
            record_hash(remote, final, digest, lock_path, source=url)
    return final


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
    # Only say a partial is kept when there is one: a refused connection writes nothing.
    again = (
        f"The partial file {part} is kept: run the same command again to resume it"
        if part.is_file() and part.stat().st_size
        else "Run the same command again"
    )
    raise RunFailure(
        f"Downloading {url} failed after {retries + 1} attempts ({last_error}). {again}, pass a "
        f"mirror (--mirror / ${ENV_MIRROR}), or download the file yourself and pass it with "
        "--from."
    )


def _attempt(url: str, part: Path, *, timeout: float, progress: ProgressFn | None) -> str:
    """One request: resume ``part`` with a Range request when it has bytes, else start over."""
    import http.client
    import urllib.error
    import urllib.request

    digest = hashlib.sha256()
    offset = hash_into(part, digest) if part.exists() else 0
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
            "or download the file yourself and pass it with --from."
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


def _copy_in(
    remote: RemoteFile, source: Path, final: Path, lock_path: Path, check: CheckFn | None
) -> Path:
    """Copy a file the user has into the cache, check it, and trust it in place of what is there.

    The user vouches for this file, so the hash recorded at an earlier download does not apply;
    a refused copy leaves the cached file and its record as they were.
    """
    if not source.is_file():
        raise UserInputError(
            f"--from {source} is not a file; pass the path of a downloaded {remote.filename}."
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
        _accept(remote, tmp, lock_path, source=str(source), check=check, sha256=digest.hexdigest())
    record_hash(remote, final, digest.hexdigest(), lock_path, source=str(source))
    return final


def _accept(
    remote: RemoteFile,
    path: Path,
    lock_path: Path,
    *,
    source: str,
    check: CheckFn | None,
    sha256: str | None,
    against_lock: bool = False,
) -> None:
    """Every check a file passes before it is trusted; `DataError` when one fails.

    ``sha256`` is None for a file trusted before, whose hash is not computed again.
    """
    if sha256 is not None:
        check_reference(remote, path, sha256, lock_path, source=source, against_lock=against_lock)
    _check_content(remote, path, source)
    if check is not None:
        check(path, source)


def _check_content(remote: RemoteFile, path: Path, source: str) -> None:
    """Refuse what a server sends instead of the file: an HTML page, a truncated archive."""
    with open(path, "rb") as file:
        head = file.read(1024).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        raise DataError(
            f"{remote.filename} from {source} is a web page (HTML), not the file: the server or "
            f"mirror answered with an error or sign-in page. Check the URL or mirror (--mirror / "
            f"${ENV_MIRROR}), or download {remote.filename} in a browser and pass it with --from."
        )
    if remote.archive:
        check_zip(path, f"{remote.filename} from {source}")


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


__all__ = ["fetch"]
