"""Atomic file writes: a temporary file in the target's folder, then `os.replace`.

Readers see the old file or the new one, never a half-written one, and a failed or interrupted
write leaves no temporary file behind.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.errors import RunFailure

if TYPE_CHECKING:
    import torch


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success it replaces ``path``.

    Creates the target's folder. An `OSError` becomes a `RunFailure` naming the file.
    """
    path = Path(path)
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


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indented, trailing newline)."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_safetensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (made contiguous, on the CPU) to a safetensors file atomically."""
    from safetensors.torch import save_file

    ready = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(ready, str(tmp), metadata=metadata)
