"""Which torch device a command runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from t2m_cli.errors import UserInputError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """The device a ``--device`` / ``train.device`` value names.

    Args:
        name: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        UserInputError: CUDA is asked for on a machine without it.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            f"Device '{name}' was asked for but this machine has no CUDA device; "
            "use --device cpu (or auto)."
        )
    return device
