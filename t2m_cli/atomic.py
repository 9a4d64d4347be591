"""Atomic writes: a temporary file or folder beside the target, then `os.replace`.

Readers see the old file (or folder) or the new one, never a half-written one, and a failed or
interrupted write leaves no temporary file or folder behind. `load_safetensors` is the one reader
of the safetensors files written here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.errors import DataError, RunFailure, UserInputError
from t2m_cli.textio import check_strings, read_text

if TYPE_CHECKING:
    import torch


def _check_target(path: Path, what: str) -> None:
    """Refuse a target that cannot become ``what``: a folder where a file goes, a path with no
    name (``.``, ``..``, ``/``, an empty path), or one below a file."""
    shown = "'.' (the working folder)" if str(path) == "." else str(path)
    if path.name in ("", ".", ".."):
        raise UserInputError(
            f"Cannot write {shown}: it does not end in a {what} name ('.', '..' and '/' stand "
            f"for folders that exist). Give a path that ends in a {what} name."
        )
    if what == "file" and path.is_dir():
        raise UserInputError(
            f"Cannot write {shown}: it is a folder, not a file. Give a path that ends in a "
            "file name."
        )
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserInputError(
            f"Cannot write {path}: {above} is a file, not a folder. Give a path inside a folder."
        )


@contextmanager
def exclusive(path: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold an inter-process lock on ``path`` for a read-modify-write of it.

    Processes that share a cache (the ranks of a torchrun group embedding texts, two users
    downloading at once) each read the file, add theirs and write it back; an atomic write
    alone keeps the file whole but lets one process's write drop what the other added. The
    lock is ``filelock``'s, on a hidden ``.<name>.lock`` beside the file.

    Raises:
        RunFailure: another process held the lock for ``timeout`` seconds.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.with_name(f".{path.name}.lock")))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise RunFailure(
            f"Another t2m process has held {path} for {timeout:.0f} s. Wait for it to finish, "
            f"or delete {lock.lock_file} if no such process is running."
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success it replaces ``path``.

    Creates the target's folder.

    Raises:
        UserInputError: ``path`` is a folder or has no file name (``.``, ``..``, ``/``), or a
            folder above it is a file; checked before anything is written.
        RunFailure: an `OSError` while writing, naming the file.
    """
    path = Path(path)
    _check_target(path, "file")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise RunFailure(
            f"Could not write {path} ({exc.strerror or exc}); check that its folder is writable "
            "and the disk has room."
        ) from exc
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


@contextmanager
def staged_dir(target: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a fresh empty folder beside ``target``; on success it is renamed to ``target``.

    The folder is hidden (``.<name>.<uuid>.part``) and on the same filesystem as ``target``, so
    the final `os.replace` is atomic: ``target`` is complete or absent, never half-built. An
    exception in the ``with`` body (including an interrupt) removes the folder and propagates.

    Args:
        target: the folder to create; its parent is created if needed. An empty folder there
            counts as absent.
        replace: swap an existing ``target`` out: it is moved aside, the new folder moved in,
            and only then the old one deleted (restored if the move in fails).

    Yields:
        The temporary folder to fill.

    Raises:
        UserInputError: ``target`` has no folder name (``.``, ``..``, ``/``) or a folder above
            it is a file (checked first); or ``target`` exists (and is not an empty folder)
            when the folder is ready and ``replace`` is False: it is left as it was and the new
            folder is discarded.
        RunFailure: an `OSError` while building or moving the folder, naming ``target``.
    """
    target = Path(target)
    _check_target(target, "folder")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        if replace and (target.is_symlink() or target.exists()):
            _swap(tmp, target)
        else:
            _move_into_place(tmp, target)
    except OSError as exc:
        raise RunFailure(
            f"Could not build {target} ({exc.strerror or exc}); check that its folder is "
            "writable and the disk has room."
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, refusing to clobber a target that is not an empty folder."""
    try:
        # rename(2) replaces an empty folder but fails on a non-empty one or a file, so a target
        # that appeared meanwhile is never overwritten (no check-then-rename race).
        os.replace(tmp, target)
    except OSError:
        if target.is_symlink() or target.exists():
            raise UserInputError(
                f"{target} already exists, so the folder built for it was discarded and nothing "
                "was changed. Delete it, or choose another name, and run again."
            ) from None
        raise


def _swap(tmp: Path, target: Path) -> None:
    """Put ``tmp`` where ``target`` is, deleting the old target only once the new one is in."""
    retired = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    os.replace(target, retired)
    try:
        _move_into_place(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.replace(retired, target)
        raise
    if retired.is_dir() and not retired.is_symlink():
        shutil.rmtree(retired, ignore_errors=True)
    else:
        with suppress(OSError):
            retired.unlink()


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        # os.open with 0o666 lets the umask decide the mode, as for any file the user creates;
        # mkstemp would make it private (0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
            file.flush()
            # Without fsync a crash after the rename can leave an empty file under the new name.
            os.fsync(file.fileno())


def dumps_json(data: Any, indent: int | None = None) -> str:
    """Strict JSON text of `data`: the one serialiser of every JSON t2m writes.

    JSON has no NaN or Infinity. Python writes them as bare ``NaN`` / ``Infinity`` by default,
    which strict parsers (``jq``, JavaScript, Go, ``json.loads`` with ``parse_constant``) reject,
    so a float that is not finite is written as ``null``: t2m's mark of a value that is
    undefined (a pair without rows, a SEM of one value). Training, checkpoints and feature files
    refuse non-finite numbers before they get here, so this only ever meets undefined values.

    Args:
        data: JSON-serialisable data (dicts, lists, tuples, str, int, float, bool, None).
        indent: as for `json.dumps`; None writes one line (a ``.jsonl`` record, a header).

    Returns:
        The JSON text, without a trailing newline.
    """
    return json.dumps(_finite_or_null(data), indent=indent, allow_nan=False)


def _finite_or_null(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite_or_null(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite_or_null(value) for value in data]
    return data


def write_json(path: Path, data: Any) -> None:
    """Write strict JSON (see `dumps_json`) atomically, indented, with a trailing newline."""
    write_text(path, dumps_json(data, indent=2) + "\n")


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file.

    Args:
        path: the file.
        what: what it is, for the message (``"split"``, ``"run info"``).

    Raises:
        DataError: the file is missing or unreadable, its text is refused by
            `t2m_cli.textio.decode_text` (not UTF-8, UTF-16, a control character; a leading
            byte order mark is skipped), it is not valid JSON, or a string in it holds a
            control character (an escape such as ``"\\u0007"``).
    """
    if not Path(path).exists():
        raise DataError(f"The {what} file {path} is missing.")
    source = f"The {what} file {path}"
    try:
        data = json.loads(read_text(path, f"The {what} file"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{source} is not valid JSON: {exc}.") from None
    check_strings(data, source)
    return data


def save_safetensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (made contiguous, on the CPU) to a safetensors file atomically."""
    from safetensors.torch import save_file

    ready = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(ready, str(tmp), metadata=metadata)


def load_safetensors(
    path: Path, what: str, *, finite: bool = False, header_only: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read every tensor of a safetensors file, on the CPU, and its JSON header.

    The header is the JSON object stored under the ``"t2m"`` metadata key, as written with
    ``save_safetensors(path, tensors, {"t2m": dumps_json(header)})``. Files written before that
    layout (feature files and text caches kept each field as its own JSON string, e.g.
    ``{"classes": "[...]", "meta": "{...}"}``) read as the same header, so caches and
    converted datasets made by earlier versions stay usable.

    Args:
        path: the file.
        what: what the file is, starting the error message (e.g. ``"Feature file"``).
        finite: refuse a file whose floating-point tensors hold a NaN or an infinity: weights
            that diverged (or were edited) make every score computed from them meaningless.
        header_only: read the header alone (the tensors come back empty, unchecked).

    Returns:
        The tensors by name, and the decoded header (empty when the file has none).

    Raises:
        DataError: "<what> <path> does not exist." or "<what> <path> cannot be read (why)."
            (a damaged file, or a header that is not a JSON object); callers may add what to do.
            A string in the header holding a control character (`t2m_cli.textio.check_strings`).
            With `finite`: "<what> <path> holds NaN or infinite values (in 'name', ...)."
    """
    import torch
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = (
                {} if header_only else {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            )
            metadata = f.metadata() or {}
        header = _header(metadata)
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise DataError(f"{what} {path} cannot be read ({exc}).") from exc
    if not isinstance(header, dict):
        raise DataError(f"{what} {path} cannot be read (its header is not a JSON object).")
    # Class names come back from here into datasets and classifiers: the rule for any text.
    check_strings(header, f"{what} {path} (its header)")
    if finite:
        bad = [
            name
            for name, tensor in tensors.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ]
        if bad:
            names = ", ".join(repr(name) for name in bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise DataError(f"{what} {path} holds NaN or infinite values (in {names}).")
    return tensors, header


def _header(metadata: dict[str, str]) -> Any:
    if "t2m" in metadata:
        return json.loads(metadata["t2m"])
    return {key: _json_or_text(value) for key, value in metadata.items()}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # a plain string field (a text cache's model name)
