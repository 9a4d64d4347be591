"""A training run on disk: a folder with the resolved config, metrics and checkpoints.

Layout of ``<run.dir>/<run.name>/``:
``config.yaml`` (the resolved config), ``run.json`` (seed, device, library versions, timings,
best epoch), ``metrics.jsonl`` (one JSON object per epoch), ``best.safetensors`` (the epoch with
the best validation accuracy) and ``last.safetensors`` (the latest epoch).

A ``train.task: supersets`` run has the same layout; its validation score (``val_acc`` in
``metrics.jsonl`` and ``run.json``) is the mean ROC-AUC over attributes on the validation
classes instead of a pair accuracy.
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
from t2m_cli.atomic import write_text
from t2m_cli.config import Config, config_to_dict, load_config
from t2m_cli.data.dataset import read_json, write_json
from t2m_cli.errors import DataError, UserInputError
from t2m_cli.paths import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    METRICS,
    RUN_CONFIG,
    RUN_INFO,
    TRAIN_STATE,
    text_cache_dir,
)
from t2m_cli.yamlio import write_yaml

if TYPE_CHECKING:
    import torch

    from t2m_cli.data.dataset import ZeroShotDataset
    from t2m_cli.data.normalize import FeatureNorm
    from t2m_cli.data.texts import Describer
    from t2m_cli.encoders.text import TextEncoder
    from t2m_cli.training.loggers import RunLogger
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


def describer_for(dataset: ZeroShotDataset, config: Config, encoder: TextEncoder) -> Describer:
    """The description source a run's text config asks for, over all of a dataset's classes."""
    from t2m_cli.data.texts import build_describer

    t = config.text
    return build_describer(
        dataset.classes,
        dataset.descriptions,
        dataset.attributes,
        encoder,
        t.source,
        t.p_negative,
        t.n_attributes,
        t.negative_prefix,
    )


def _build_trainer(config: Config, cache_dir: Path | None) -> tuple[Trainer, FeatureNorm | None]:
    """Everything a run trains with, built from its config: data, texts, model, optimiser."""
    import torch

    from t2m_cli.data.normalize import FeatureNorm
    from t2m_cli.data.registry import open_dataset
    from t2m_cli.encoders.text import make_text_encoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.training.inner import InnerSettings
    from t2m_cli.training.loop import OuterSettings, SupersetTrainer, Trainer, resolve_device

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
    bank = describer_for(dataset, config, encoder)
    m, t = config.model, config.train
    supersets = t.task == "supersets"
    if supersets:
        names, texts = _superset_texts(dataset, config, encoder)
    torch.manual_seed(config.train.seed)
    hypernet = build_hypernet(
        m.hn_type,
        text_dim=bank.dim,
        feature_dim=dataset.feature_dim,
        hidden=m.hidden,
        k=1 if supersets else t.classes_per_task,
    )
    args = (
        hypernet,
        bank,
        dataset,
        InnerSettings(
            epochs=t.inner_epochs,
            batch_size=t.inner_batch_size,
            lr=t.inner_lr,
            momentum=t.inner_momentum,
            weight_decay=t.inner_weight_decay,
        ),
        OuterSettings(
            epochs=t.epochs,
            tasks_per_epoch=t.tasks_per_epoch,
            classes_per_task=t.classes_per_task,
            tasks_per_step=t.tasks_per_step,
            amp=t.amp,
            lr=t.lr,
            momentum=t.momentum,
            weight_decay=t.weight_decay,
            seed=t.seed,
            eval_seed=config.eval.seed,
        ),
        device,
    )
    trainer = SupersetTrainer(*args, attributes=names, texts=texts) if supersets else Trainer(*args)
    return trainer, norm


def _superset_texts(
    dataset: ZeroShotDataset, config: Config, encoder: TextEncoder
) -> tuple[list[str], torch.Tensor]:
    """Every attribute of the dataset and the embeddings of its descriptions (super-set tasks).

    The description is the one the supersets evaluation protocol uses:
    ``eval.superset_template`` filled with the attribute's readable name.
    """
    from t2m_cli.evaluation.supersets import attribute_texts

    names = sorted({a for values in dataset.attributes.values() for a in values})
    if not names:
        raise DataError(
            f"train.task supersets trains on attributes, but dataset '{dataset.name}' has no "
            "attributes.json in its folder (class name -> list of attribute names), or it "
            "names no attribute. Add one, or train with train.task classes."
        )
    return names, encoder.encode(attribute_texts(names, config.eval.superset_template))


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
    trainer, norm = _build_trainer(config, cache_dir)
    folder = new_run_dir(config)
    write_yaml(folder / RUN_CONFIG, config_to_dict(config))
    info: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": config.train.seed,
        "device": str(trainer.device),
        "dataset": {
            "name": trainer.dataset.name,
            "classes": len(trainer.dataset.classes),
            **trainer.dataset.meta,
        },
        "versions": library_versions(),
    }
    write_json(folder / RUN_INFO, info)
    return _run_epochs(config, trainer, norm, folder, info, 1, on_epoch)


def resume_run(
    folder: Path,
    cache_dir: Path | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Path:
    """Continue an interrupted run from its last finished epoch.

    The run's own resolved config is used; the weights, optimiser momentum and random state
    come from its ``state.safetensors``, so the epochs that follow are the ones an
    uninterrupted run would have trained.
    """
    from safetensors import safe_open

    config, info = load_run(folder)
    if not (folder / TRAIN_STATE).is_file():
        raise UserInputError(
            f"{folder} has no {TRAIN_STATE}: it stopped before its first epoch ended. "
            "Start it again with `t2m train`."
        )
    trainer, norm = _build_trainer(config, cache_dir)
    try:
        with safe_open(str(folder / TRAIN_STATE), framework="pt", device="cpu") as f:
            facts = json.loads((f.metadata() or {})["t2m"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise UserInputError(f"{folder / TRAIN_STATE} cannot be read ({exc}).") from exc
    trainer.load_state(tensors, facts)
    epoch = int(facts["epoch"])
    if epoch >= config.train.epochs:
        raise UserInputError(
            f"Run {folder} already finished all {config.train.epochs} epochs; nothing to resume."
        )
    # Lines past the saved epoch were written after the state: the resumed epochs replace them.
    metrics = folder / METRICS
    if metrics.is_file():
        kept = [
            line
            for line in metrics.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["epoch"] <= epoch
        ]
        write_text(metrics, "".join(line + "\n" for line in kept))
    info["resumed_from_epoch"] = epoch
    return _run_epochs(config, trainer, norm, folder, info, epoch + 1, on_epoch, facts["best"])


def _run_epochs(
    config: Config,
    trainer: Trainer,
    norm: FeatureNorm | None,
    folder: Path,
    info: dict[str, Any],
    start: int,
    on_epoch: Callable[[EpochResult], None] | None,
    best: dict[str, Any] | None = None,
) -> Path:
    """Train epochs ``start..`` with checkpoints and logs, then record the run's summary."""
    import torch

    meta = {
        "text_model": config.text.model,
        "text_source": config.text.source,
        "dataset": trainer.dataset.name,
        "features": config.dataset.features,
    }
    began = time.perf_counter()
    threads = torch.get_num_threads()
    if trainer.device.type == "cpu" and config.train.tasks_per_step == 1:
        # One task's tensors are tiny (about 128 x 512): intra-op threads cost more in
        # synchronisation than they save. Measured on 2 cores: 250 tasks/s on one thread,
        # 85 tasks/s on two. Batched tasks are large enough for threads to pay.
        torch.set_num_threads(1)
    loggers = _loggers(config, folder)
    try:
        best = _train_epochs(trainer, folder, meta, norm, start, on_epoch, best or {}, loggers)
    finally:
        torch.set_num_threads(threads)
        for logger in loggers:
            logger.close()
    info.update(
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        train_seconds=round(time.perf_counter() - began + info.get("train_seconds", 0.0), 3),
        best=best,
    )
    write_json(folder / RUN_INFO, info)
    return folder


def _loggers(config: Config, folder: Path) -> list[RunLogger]:
    """metrics.jsonl always; wandb when the config asks for it."""
    from t2m_cli.training.loggers import JsonlLogger, WandbLogger

    loggers: list[RunLogger] = [JsonlLogger(folder / METRICS)]
    w = config.wandb
    if w.enabled:
        loggers.append(
            WandbLogger(
                config_to_dict(config),
                mode=w.mode,
                project=w.project,
                entity=w.entity,
                tags=w.tags,
                name=w.name or folder.name,
                folder=folder,
            )
        )
    return loggers


def _train_epochs(
    trainer: Trainer,
    folder: Path,
    meta: dict[str, Any],
    norm: FeatureNorm | None,
    start: int,
    on_epoch: Callable[[EpochResult], None] | None,
    best: dict[str, Any],
    loggers: list[RunLogger],
) -> dict[str, Any]:
    """Run the epochs, logging each and keeping the last and best checkpoints and the state.

    Returns:
        the best epoch, its validation accuracy and SEM.
    """
    from t2m_cli.atomic import save_safetensors
    from t2m_cli.training.checkpoint import save_checkpoint

    for result in trainer.epochs(start):
        for logger in loggers:
            logger.log_epoch(result.to_json())
        epoch_meta = {**meta, "epoch": result.epoch, "val_acc": result.val.mean}
        save_checkpoint(folder / CHECKPOINT_LAST, trainer.hypernet, epoch_meta, norm)
        if result.is_best:
            save_checkpoint(folder / CHECKPOINT_BEST, trainer.hypernet, epoch_meta, norm)
            best = {"epoch": result.epoch, "val_acc": result.val.mean, "val_sem": result.val.sem}
        # Written last: a run stopped at any point resumes from an epoch whose checkpoints
        # are all on disk.
        tensors, facts = trainer.state()
        state_meta = {**facts, "epoch": result.epoch, "best": best}
        save_safetensors(folder / TRAIN_STATE, tensors, {"t2m": json.dumps(state_meta)})
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
