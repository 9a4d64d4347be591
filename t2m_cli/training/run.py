"""A training run on disk: a folder with the resolved config, metrics and checkpoints.

Layout of ``<run.dir>/<run.name>/``:
``config.yaml`` (the resolved config), ``run.json`` (seed, device, library versions, timings,
best epoch), ``metrics.jsonl`` (one JSON object per epoch), ``best.safetensors`` (the epoch with
the best validation accuracy) and ``last.safetensors`` (the latest epoch).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli import __version__
from t2m_cli.config import Config, config_to_dict, load_config
from t2m_cli.data.dataset import write_json
from t2m_cli.errors import UserInputError
from t2m_cli.paths import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    METRICS,
    RUN_CONFIG,
    RUN_INFO,
    text_cache_dir,
)
from t2m_cli.yamlio import write_yaml

if TYPE_CHECKING:
    from t2m_cli.data.normalize import FeatureNorm
    from t2m_cli.training.loop import EpochResult, Trainer


def library_versions() -> dict[str, str]:
    """Versions of Python, t2m and the libraries a result depends on."""
    versions = {
        "python": sys.version.split()[0],
        "t2m": __version__,
        "platform": platform.platform(),
    }
    for dist in ("torch", "numpy", "sentence-transformers", "transformers", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def new_run_dir(config: Config) -> Path:
    """Create the run folder; refuse to reuse one that already holds a run."""
    name = config.run.name or datetime.now().strftime(f"%Y%m%d-%H%M%S-{config.model.hn_type}")
    folder = config.run.dir / name
    if (folder / RUN_INFO).exists():
        raise UserInputError(
            f"Run folder {folder} already holds a run. Choose another run.name "
            "(or delete that folder)."
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; each line is written whole, so a crash loses at most one line."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def train_run(
    config: Config,
    cache_dir: Path | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Path:
    """Train a hypernetwork as the config says and write a run folder.

    Args:
        config: the validated run config.
        cache_dir: cache root override (datasets and text embeddings).
        on_epoch: called after each epoch with its result (for progress display).

    Returns:
        the run folder.
    """
    import torch

    from t2m_cli.data.normalize import FeatureNorm
    from t2m_cli.data.registry import open_dataset
    from t2m_cli.data.texts import TextBank
    from t2m_cli.encoders.text import make_text_encoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.training.inner import InnerSettings
    from t2m_cli.training.loop import OuterSettings, Trainer, resolve_device

    device = resolve_device(config.train.device)
    dataset = open_dataset(
        config.dataset.name, config.dataset.root, config.dataset.features, cache_dir
    )
    norm = FeatureNorm.fit(dataset) if config.dataset.standardize else None
    if norm is not None:
        dataset = norm.apply(dataset)
    encoder = make_text_encoder(
        config.text.model, cache_dir=text_cache_dir(cache_dir), batch_size=config.text.batch_size
    )
    bank = TextBank.build(dataset.classes, dataset.descriptions, config.text.source, encoder)

    folder = new_run_dir(config)
    write_yaml(folder / RUN_CONFIG, config_to_dict(config))
    info: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": config.train.seed,
        "device": str(device),
        "dataset": {"name": dataset.name, "classes": len(dataset.classes), **dataset.meta},
        "versions": library_versions(),
    }
    write_json(folder / RUN_INFO, info)

    torch.manual_seed(config.train.seed)
    m, t = config.model, config.train
    hypernet = build_hypernet(
        m.hn_type,
        text_dim=bank.dim,
        feature_dim=dataset.feature_dim,
        hidden=m.hidden,
        k=t.classes_per_task,
    )
    trainer = Trainer(
        hypernet,
        bank,
        dataset,
        InnerSettings(
            t.inner_epochs, t.inner_batch_size, t.inner_lr, t.inner_momentum, t.inner_weight_decay
        ),
        OuterSettings(
            t.epochs,
            t.tasks_per_epoch,
            t.classes_per_task,
            t.lr,
            t.momentum,
            t.weight_decay,
            t.seed,
            config.eval.seed,
        ),
        device,
    )
    meta = {
        "text_model": config.text.model,
        "text_source": config.text.source,
        "dataset": dataset.name,
        "features": config.dataset.features,
    }
    began = time.perf_counter()
    threads = torch.get_num_threads()
    if device.type == "cpu":
        # A task's tensors are tiny (about 128 x 512): intra-op threads cost more in
        # synchronisation than they save. Measured on 2 cores: 250 tasks/s on one thread,
        # 85 tasks/s on two.
        torch.set_num_threads(1)
    try:
        best = _train_epochs(trainer, folder, meta, norm, on_epoch)
    finally:
        torch.set_num_threads(threads)
    info.update(
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        train_seconds=round(time.perf_counter() - began, 3),
        best=best,
    )
    write_json(folder / RUN_INFO, info)
    return folder


def _train_epochs(
    trainer: Trainer,
    folder: Path,
    meta: dict[str, Any],
    norm: FeatureNorm | None,
    on_epoch: Callable[[EpochResult], None] | None,
) -> dict[str, Any]:
    """Run the epochs, logging each and keeping the last and the best checkpoint.

    Returns:
        the best epoch, its validation accuracy and SEM.
    """
    from t2m_cli.training.checkpoint import save_checkpoint

    best: dict[str, Any] = {}
    for result in trainer.epochs():
        record = result.to_json()
        append_jsonl(folder / METRICS, record)
        epoch_meta = {**meta, "epoch": result.epoch, "val_acc": result.val.mean}
        save_checkpoint(folder / CHECKPOINT_LAST, trainer.hypernet, epoch_meta, norm)
        if result.is_best:
            save_checkpoint(folder / CHECKPOINT_BEST, trainer.hypernet, epoch_meta, norm)
            best = {"epoch": result.epoch, "val_acc": result.val.mean, "val_sem": result.val.sem}
        if on_epoch is not None:
            on_epoch(result)
    return best


def load_run(folder: Path) -> tuple[Config, dict[str, Any]]:
    """Read a run folder's resolved config and run info."""
    if not (folder / RUN_CONFIG).is_file() or not (folder / RUN_INFO).is_file():
        raise UserInputError(
            f"{folder} is not a t2m run folder (no {RUN_CONFIG} / {RUN_INFO}). "
            "Give the folder `t2m train` printed."
        )
    from t2m_cli.data.dataset import read_json

    return load_config(folder / RUN_CONFIG), read_json(folder / RUN_INFO, "run info")


def latest_run(runs_dir: Path) -> Path:
    """The most recently finished run under ``runs_dir`` (the one with a best checkpoint)."""
    candidates = (
        [
            p
            for p in runs_dir.glob("*")
            if (p / CHECKPOINT_BEST).is_file() and (p / RUN_INFO).is_file()
        ]
        if runs_dir.is_dir()
        else []
    )
    if not candidates:
        raise UserInputError(
            f"No trained run under {runs_dir}. Train one with `t2m train`, or name a run folder."
        )
    return max(candidates, key=lambda p: (p / CHECKPOINT_BEST).stat().st_mtime)
