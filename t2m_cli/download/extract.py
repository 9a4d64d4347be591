"""Unpack downloaded zip archives without trusting them.

A member is refused when its name is absolute or climbs out of the target with ``..``, when it
is a symlink, or when the archive looks like a zip bomb: its declared total is over a limit, a
member's declared compression ratio is too high, or (since headers can lie) the bytes actually
produced exceed what was declared or the total limit. A member whose header understates its
size is also caught by `zipfile` itself, which stops at the declared size and then fails the
CRC. Members are unpacked into a temporary sibling folder that is renamed into place only when
every member is out, so a refused or broken archive leaves nothing behind.

Every way an archive can fail to unpack (not a zip, truncated, a bad CRC or deflate stream, an
encrypted member, a compression method Python cannot read, a member that is both a file and a
folder, a name too long for the filesystem) is a `DataError` naming the archive as the user
knows it (``source``: the file they passed or the URL) and the member, never t2m's staging path.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from t2m_cli.atomic import staged_dir
from t2m_cli.errors import DataError, UserInputError

DEFAULT_MAX_TOTAL_BYTES = 20 * 1024**3
DEFAULT_MAX_RATIO = 200.0
# Small members may compress extremely well (a file of blanks) without being a threat; the ratio
# check only matters for members big enough to fill a disk.
_RATIO_FLOOR_BYTES = 1 << 20
_CHUNK = 1 << 20
# Longest file or folder name most filesystems take (NAME_MAX), in bytes of the encoded name.
_NAME_MAX = 255
_ENCRYPTED = 0x1


def _read_errors() -> tuple[type[BaseException], ...]:
    """What `zipfile` raises for a damaged or unreadable archive or member.

    Besides `BadZipFile`: a truncated stream (`EOFError`), a broken deflate, bzip2 or LZMA stream
    (`zlib.error`, `OSError`, `lzma.LZMAError`), a method it cannot decompress
    (`NotImplementedError`, or `RuntimeError` when its module is missing), a central directory
    with impossible offsets or a name that is not UTF-8 (`ValueError`, `struct.error`).
    """
    errors: list[type[BaseException]] = [
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        zlib.error,
        NotImplementedError,
        RuntimeError,
        ValueError,
        struct.error,
        OSError,
    ]
    try:
        import lzma

        errors.append(lzma.LZMAError)
    except ImportError:
        pass
    return tuple(errors)


_READ_ERRORS = _read_errors()
# Errors creating a member's file that come from the member's name, not from the disk.
_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR}


def extract_zip(
    archive: Path,
    target: Path,
    *,
    source: str | None = None,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Path:
    """Unpack ``archive`` into the new folder ``target``, all or nothing.

    Args:
        archive: The zip file.
        target: Folder to create; it must not exist yet.
        source: How messages name the archive: the file the user passed, or the URL it was
            downloaded from (default: ``archive``).
        max_total_bytes: Most bytes the members may add up to, declared or actual.
        max_ratio: Highest uncompressed/compressed size ratio allowed for a member over 1 MiB.

    Returns:
        ``target``.

    Raises:
        UserInputError: ``target`` already exists.
        RunFailure: the folder could not be written (disk full, no permission).
        DataError: The archive is not a zip, is damaged, or holds a member that is unsafe or
            cannot be unpacked (encrypted, an unknown compression method, a file that is also a
            folder, a name too long for the filesystem); the message names ``source`` and the
            member, and nothing is written.
    """
    archive, target = Path(archive), Path(target)
    label = source or str(archive)
    if target.exists():
        raise UserInputError(
            f"{target} already exists; delete it to unpack {archive.name} again, or use it as is."
        )
    with _open(archive, label) as zf:
        members = zf.infolist()
        _check_members(label, members, max_total_bytes, max_ratio)
        with staged_dir(target) as staging:
            _unpack(label, zf, members, staging, max_total_bytes)
    return target


def check_zip(archive: Path, source: str | None = None) -> None:
    """Refuse a file whose zip directory cannot be read, before anything trusts it.

    Catches a truncated download, an HTML error page and a file that is not a zip at all, in
    the time it takes to read the directory at the end of the file.

    Args:
        archive: The file.
        source: How the message names it (default: ``archive``).

    Raises:
        DataError: It is not a readable zip archive.
    """
    archive = Path(archive)
    with _open(archive, source or str(archive)):
        pass


def _open(archive: Path, label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except _READ_ERRORS as exc:
        raise DataError(
            f"{label} is not a readable zip archive ({_why(exc)}): it is truncated, damaged or "
            "not a zip at all. Get a good copy: download it again, or pass one with --from."
        ) from exc


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _unsafe(label: str, member: str, why: str) -> DataError:
    return DataError(
        f"{label} holds an unsafe member {_shown(member)} ({why}); nothing was extracted. "
        "Get the archive again from the official source."
    )


def _unusable(label: str, member: str, why: str, fix: str) -> DataError:
    return DataError(
        f"{label}: member {_shown(member)} cannot be unpacked ({why}); nothing was extracted. {fix}"
    )


def _shown(member: str) -> str:
    """The member's name for a message, cut short when it is too long to read."""
    return repr(member) if len(member) <= 100 else f"{member[:60]!r}... ({len(member)} characters)"


_REPACK = "Re-pack the archive with a standard zip tool (deflate, no password), or get it again."


def _member_parts(label: str, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's path components, refusing absolute paths and ``..``."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    # "C:foo" is relative on POSIX but a drive path on Windows; refuse it everywhere.
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise _unsafe(label, info.filename, "absolute path")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if ".." in parts:
        raise _unsafe(label, info.filename, "'..' would write outside the target folder")
    return parts


def _check_members(
    label: str, members: list[zipfile.ZipInfo], max_total_bytes: int, max_ratio: float
) -> None:
    """Refuse the archive before writing anything, on what its headers declare."""
    total = 0
    files: dict[tuple[str, ...], str] = {}
    folders: dict[tuple[str, ...], str] = {}
    for info in members:
        parts = _member_parts(label, info)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _unsafe(label, info.filename, "symbolic link")
        if info.flag_bits & _ENCRYPTED:
            raise _unusable(label, info.filename, "it is encrypted with a password", _REPACK)
        long = next((p for p in parts if len(os.fsencode(p)) > _NAME_MAX), None)
        if long is not None:
            raise _unusable(
                label,
                info.filename,
                f"a name in its path is {len(os.fsencode(long))} bytes long, over the "
                f"{_NAME_MAX} bytes a filesystem takes",
                "Shorten the name and re-pack the archive.",
            )
        for depth in range(1, len(parts)):
            folders.setdefault(parts[:depth], info.filename)
        if info.is_dir():
            folders.setdefault(parts, info.filename)
        elif parts:
            if parts in files:
                raise _unusable(
                    label, info.filename, "the archive holds two members of that name", _REPACK
                )
            files[parts] = info.filename
        total += info.file_size
        if total > max_total_bytes:
            raise _unsafe(label, info.filename, f"members add up to over {max_total_bytes} bytes")
        if info.file_size > _RATIO_FLOOR_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > max_ratio:
                raise _unsafe(
                    label, info.filename, f"compression ratio {ratio:.0f} over {max_ratio:g}"
                )
    clash = next((parts for parts in files if parts in folders), None)
    if clash is not None:
        raise _unusable(
            label,
            files[clash],
            f"it is a file, and {folders[clash]!r} makes the same path a folder",
            _REPACK,
        )


def _unpack(
    label: str,
    zf: zipfile.ZipFile,
    members: list[zipfile.ZipInfo],
    staging: Path,
    max_total_bytes: int,
) -> None:
    """Write the members under ``staging``, counting the bytes actually produced."""
    root = staging.resolve()
    written = 0
    for info in members:
        parts = _member_parts(label, info)
        if not parts:
            continue
        out = staging.joinpath(*parts)
        # Belt and braces: the name checks should make this impossible.
        if not out.resolve().is_relative_to(root):
            raise _unsafe(label, info.filename, "resolves outside the target folder")
        with ExitStack() as stack:
            with _name_refused(label, info):
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                dst = stack.enter_context(out.open("wb"))
            written = _copy_member(label, zf, info, dst, written, max_total_bytes)


@contextmanager
def _name_refused(label: str, info: zipfile.ZipInfo) -> Iterator[None]:
    """Turn the filesystem's refusal of a member's name into that member's error."""
    try:
        yield
    except OSError as exc:
        # A clash the header checks cannot see (a case-insensitive filesystem) or a limit
        # lower than NAME_MAX; a full disk or a missing permission stays a RunFailure.
        if exc.errno not in _NAME_ERRNOS:
            raise
        raise _unusable(
            label, info.filename, f"the filesystem refuses its name: {exc.strerror}", _REPACK
        ) from exc


def _copy_member(
    label: str,
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    dst: BinaryIO,
    written: int,
    max_total: int,
) -> int:
    """Decompress one member into ``dst``; return the archive's running byte count."""
    try:
        src = zf.open(info)
    except (NotImplementedError, RuntimeError) as exc:
        # Encryption was refused up front, so either means a method zipfile cannot decompress.
        raise _unusable(
            label,
            info.filename,
            f"it uses compression method {info.compress_type}, which Python's zipfile cannot "
            "decompress",
            _REPACK,
        ) from exc
    except _READ_ERRORS as exc:
        raise _damaged(label, info, exc) from exc
    produced = 0
    with src:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except _READ_ERRORS as exc:
                raise _damaged(label, info, exc) from exc
            if not chunk:
                return written
            produced += len(chunk)
            written += len(chunk)
            # Counted here rather than trusted to zipfile's own cap, so the limit holds for
            # any member reader, including a decompressor that overshoots.
            if produced > info.file_size or written > max_total:
                raise _unsafe(label, info.filename, "unpacks to more bytes than declared")
            dst.write(chunk)


def _damaged(label: str, info: zipfile.ZipInfo, exc: BaseException) -> DataError:
    return _unusable(
        label,
        info.filename,
        f"its data is damaged: {_why(exc)}",
        "Get a good copy of the archive: download it again, or pass one with --from.",
    )
