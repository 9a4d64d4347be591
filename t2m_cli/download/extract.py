"""Unpack downloaded zip archives without trusting them.

A member is refused when its name is absolute or climbs out of the target with ``..``, when it
is a symlink, or when the archive looks like a zip bomb: its declared total is over a limit, a
member's declared compression ratio is too high, or (since headers can lie) the bytes actually
produced exceed what was declared or the total limit. A member whose header understates its
size is also caught by `zipfile` itself, which stops at the declared size and then fails the
CRC. Members are unpacked into a temporary sibling folder that is renamed into place only when
every member is out, so a refused or broken archive leaves nothing behind.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from t2m_cli.atomic import staged_dir
from t2m_cli.errors import DataError, UserInputError

DEFAULT_MAX_TOTAL_BYTES = 20 * 1024**3
DEFAULT_MAX_RATIO = 200.0
# Small members may compress extremely well (a file of blanks) without being a threat; the ratio
# check only matters for members big enough to fill a disk.
_RATIO_FLOOR_BYTES = 1 << 20
_CHUNK = 1 << 20


def extract_zip(
    archive: Path,
    target: Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Path:
    """Unpack ``archive`` into the new folder ``target``, all or nothing.

    Args:
        archive: The zip file.
        target: Folder to create; it must not exist yet.
        max_total_bytes: Most bytes the members may add up to, declared or actual.
        max_ratio: Highest uncompressed/compressed size ratio allowed for a member over 1 MiB.

    Returns:
        ``target``.

    Raises:
        UserInputError: ``target`` already exists.
        RunFailure: the folder could not be written.
        DataError: The archive is not a zip, is corrupted, or holds an unsafe member; nothing is
            written.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise UserInputError(
            f"{target} already exists; delete it to unpack {archive.name} again, or use it as is."
        )
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_members(archive, members, max_total_bytes, max_ratio)
            with staged_dir(target) as staging:
                _unpack(archive, zf, members, staging, max_total_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DataError(
            f"{archive} is not a readable zip archive ({exc}); delete it and download it again."
        ) from exc
    return target


def _unsafe(archive: Path, member: str, why: str) -> DataError:
    return DataError(
        f"{archive.name} holds an unsafe member {member!r} ({why}); nothing was extracted. "
        "Delete the archive and download it again from the official source."
    )


def _member_parts(archive: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's path components, refusing absolute paths and ``..``."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    # "C:foo" is relative on POSIX but a drive path on Windows; refuse it everywhere.
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise _unsafe(archive, info.filename, "absolute path")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if ".." in parts:
        raise _unsafe(archive, info.filename, "'..' would write outside the target folder")
    return parts


def _check_members(
    archive: Path, members: list[zipfile.ZipInfo], max_total_bytes: int, max_ratio: float
) -> None:
    """Refuse the archive before writing anything, on what its headers declare."""
    total = 0
    for info in members:
        _member_parts(archive, info)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _unsafe(archive, info.filename, "symbolic link")
        total += info.file_size
        if total > max_total_bytes:
            raise _unsafe(archive, info.filename, f"members add up to over {max_total_bytes} bytes")
        if info.file_size > _RATIO_FLOOR_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > max_ratio:
                raise _unsafe(
                    archive, info.filename, f"compression ratio {ratio:.0f} over {max_ratio:g}"
                )


def _unpack(
    archive: Path,
    zf: zipfile.ZipFile,
    members: list[zipfile.ZipInfo],
    staging: Path,
    max_total_bytes: int,
) -> None:
    """Write the members under ``staging``, counting the bytes actually produced."""
    root = staging.resolve()
    written = 0
    for info in members:
        parts = _member_parts(archive, info)
        if not parts:
            continue
        out = staging.joinpath(*parts)
        # Belt and braces: the name checks should make this impossible.
        if not out.resolve().is_relative_to(root):
            raise _unsafe(archive, info.filename, "resolves outside the target folder")
        if info.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        produced = 0
        with zf.open(info) as src, open(out, "wb") as dst:
            while chunk := src.read(_CHUNK):
                produced += len(chunk)
                written += len(chunk)
                # Counted here rather than trusted to zipfile's own cap, so the limit holds for
                # any member reader, including a decompressor that overshoots.
                if produced > info.file_size or written > max_total_bytes:
                    raise _unsafe(archive, info.filename, "unpacks to more bytes than declared")
                dst.write(chunk)
