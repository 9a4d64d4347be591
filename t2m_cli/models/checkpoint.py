"""Hypernetwork checkpoints: weights in safetensors, what rebuilds the model as metadata.

No pickle anywhere: the metadata (hypernetwork type and constructor arguments, text model,
dataset, epoch, validation accuracy) is a JSON string inside the safetensors header. Training
never saves NaN or infinite weights, and `load_checkpoint` refuses a file that holds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from t2m_cli.atomic import dumps_json, load_safetensors, save_safetensors
from t2m_cli.data.normalize import FeatureNorm
from t2m_cli.errors import DataError
from t2m_cli.models.hypernet import Hypernetwork, build_hypernet

FORMAT = "t2m-hypernet/1"
_NORM = "input_norm."


def save_checkpoint(
    path: Path, hypernet: Hypernetwork, meta: dict[str, Any], norm: FeatureNorm | None = None
) -> None:
    """Write a hypernetwork checkpoint atomically.

    Args:
        path: target ``.safetensors`` file.
        hypernet: the model; its state dict is written.
        meta: JSON-serialisable facts (text model, dataset, epoch, ...); the type and
            constructor arguments are added here.
        norm: the feature standardisation the model was trained behind, if any.
    """
    state = dict(hypernet.state_dict())
    if norm is not None:
        state.update({_NORM + k: v for k, v in norm.tensors().items()})
    header = {
        "format": FORMAT,
        "hn_type": hypernet.hn_type,
        "build_args": hypernet.build_args(),
        **meta,
    }
    save_safetensors(path, state, {"t2m": dumps_json(header)})


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[Hypernetwork, dict, FeatureNorm | None]:
    """Rebuild a hypernetwork from a checkpoint written by `save_checkpoint`.

    Returns:
        the model in eval mode on ``device``, the checkpoint's metadata, and the feature
        standardisation it expects (None when it reads raw features).

    Raises:
        DataError: the file is missing, damaged, not a t2m checkpoint, or holds NaN or
            infinite weights (its classifiers would score nothing but chance).
    """
    if not path.is_file():
        raise DataError(f"Checkpoint {path} does not exist; train a run first (`t2m train`).")
    try:
        state, meta = load_safetensors(path, "Checkpoint", finite=True)
    except DataError as exc:
        raise DataError(
            f"{exc} Nothing can be induced or scored from it; use another run's checkpoint, or "
            "train again (`t2m train`)."
        ) from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{path} is not a t2m hypernetwork checkpoint.")
    norm_state = {k[len(_NORM) :]: state.pop(k) for k in list(state) if k.startswith(_NORM)}
    norm = FeatureNorm(norm_state["mean"], norm_state["std"]) if norm_state else None
    hypernet = build_hypernet(meta["hn_type"], **meta["build_args"])
    hypernet.load_state_dict(state)
    return hypernet.to(device).eval(), meta, norm
