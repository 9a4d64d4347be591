"""Train a run: build everything a config asks for, train epochs, keep checkpoints and logs.

The run folder's layout and readers live in `t2m_cli.runs`; this module writes into it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli import runs
from t2m_cli.config import Config, config_to_dict, paper_values, validate_config
from t2m_cli.data.texts import class_name_text, describer_for, with_policy
from t2m_cli.device import cpu_threads, phase_threads
from t2m_cli.distributed import SINGLE, Group, from_environment, from_writer, joined
from t2m_cli.errors import DataError, T2MError, UserInputError
from t2m_cli.paths import text_cache_dir

if TYPE_CHECKING:
    import torch

    from t2m_cli.data.dataset import ZeroShotDataset
    from t2m_cli.data.normalize import FeatureNorm
    from t2m_cli.encoders.text import TextEncoder
    from t2m_cli.training.loggers import RunLogger
    from t2m_cli.training.loop import EpochResult, Trainer


def _build_trainer(
    config: Config, cache_dir: Path | None, group: Group = SINGLE
) -> tuple[Trainer, FeatureNorm | None, TextEncoder]:
    """Everything a run trains with, built from its config: data, texts, model, optimiser, and
    the text encoder that embedded the texts (the run records its facts); under torchrun,
    this process's share of it (``group``)."""
    import torch

    from t2m_cli.data.dataset import SPLIT_FILE
    from t2m_cli.data.normalize import FeatureNorm
    from t2m_cli.data.registry import open_dataset, resolve_root
    from t2m_cli.device import fixed_threads, resolve_device
    from t2m_cli.distributed import process_device
    from t2m_cli.encoders.text import make_text_encoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.training.inner import InnerSettings
    from t2m_cli.training.loop import OuterSettings, Trainer
    from t2m_cli.training.supersets import SupersetTrainer

    fixed_threads()  # a bad T2M_THREADS is refused before anything is built or written

    device = process_device(resolve_device(config.train.device), group)
    dataset = open_dataset(
        config.dataset.name, config.dataset.root, config.dataset.features, cache_dir
    )
    # Before any text is encoded or any file written: a split that cannot give the tasks'
    # classes is refused here, not in the first epoch (super-set tasks are one class each).
    k = 2 if config.train.task == "supersets" else config.train.classes_per_task
    root = resolve_root(config.dataset.name, config.dataset.root, cache_dir)
    val_classes = config.train.val_classes
    settings = f"train.classes_per_task={k}" + (
        ", train.val_classes=train" if val_classes == "train" else ""
    )
    dataset.check_usable(f"{root / SPLIT_FILE}, with {settings},", k, val_classes)
    norm = FeatureNorm.fit(dataset) if config.dataset.standardize else None
    if norm is not None:
        dataset = norm.apply(dataset)
    encoder = make_text_encoder(
        config.text.model, cache_dir=text_cache_dir(cache_dir), batch_size=config.text.batch_size
    )
    bank = describer_for(dataset, config.text, encoder)
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
        linear_skip=m.linear_skip,
    )
    args = (
        hypernet,
        bank,
        dataset,
        InnerSettings.from_config(t),
        OuterSettings.from_config(t, eval_seed=config.eval.seed),
        device,
        group.rank,
        group.world_size,
    )
    # Validation induces from the texts evaluation will (eval.descriptions), so the epoch is
    # chosen for the classifiers that are scored.
    val_bank = with_policy(bank, config.eval.descriptions)
    trainer = (
        SupersetTrainer(
            *args, attributes=names, texts=texts, balance=t.superset_balance, val_bank=val_bank
        )
        if supersets
        else Trainer(*args, val_bank=val_bank)
    )
    return trainer, norm, encoder


def _superset_texts(
    dataset: ZeroShotDataset, config: Config, encoder: TextEncoder
) -> tuple[list[str], torch.Tensor]:
    """The attributes of the seen and validation classes and the embeddings of their
    descriptions (super-set tasks). Unseen classes' attributes are not read: training never
    sees what only unseen classes have.

    The description is the one the supersets evaluation protocol uses:
    ``eval.superset_template`` filled with the attribute's readable name.
    """
    from t2m_cli.scoring.supersets import attribute_texts

    known = (*dataset.split.seen, *dataset.split.val)
    names = sorted({a for c in known for a in dataset.attributes.get(c, ())})
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
    log: Callable[[str], None] | None = None,
    quiet: bool = False,
) -> Path:
    """Train a hypernetwork as the config says and write a run folder.

    Args:
        config: the validated run config.
        cache_dir: cache root override (datasets and text embeddings).
        on_epoch: called after each epoch with its result (for progress display).
        log: receives one line when the config's ``pointnet.*`` settings are not the ones
            the features were built with (training reads the features as built; ``run.json``
            records their settings).
        quiet: keep loggers that print (wandb) off the terminal, as ``--quiet`` asks.

    Returns:
        the run folder.

    Raises:
        UserInputError: the data, texts or settings cannot train (checked before the run
            folder is made), or the folder already holds a run.
        T2MError: training failed; a run that finished no epoch leaves no folder behind.
    """
    if config.run.name is not None:
        runs.check_free(config.run.dir / config.run.name)  # before the data and texts load
    group = from_environment()
    if group.world_size > config.train.tasks_per_step and log is not None and group.writes:
        log(
            f"train.tasks_per_step={config.train.tasks_per_step} gives each step's tasks to "
            f"{config.train.tasks_per_step} of the {group.world_size} processes; the others "
            "wait. Give at least as many tasks a step as processes (and scale train.lr)."
        )
    with joined(group):
        trainer, norm, encoder = _build_trainer(config, cache_dir, group)
        return _new_run(config, trainer, norm, encoder, on_epoch, log, quiet=quiet)


def _new_run(
    config: Config,
    trainer: Trainer,
    norm: FeatureNorm | None,
    encoder: TextEncoder,
    on_epoch: Callable[[EpochResult], None] | None,
    log: Callable[[str], None] | None = None,
    quiet: bool = False,
) -> Path:
    """Write a new run folder for ``config`` and train it from its first epoch."""
    from t2m_cli.encoders.dataset import trained_features_facts, unused_pointnet_settings

    source = trainer.dataset.source
    note = unused_pointnet_settings(config.pointnet.model_dump(), source)
    if note is not None and log is not None:
        log(note)
    info: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": config.train.seed,
        "device": str(trainer.device),
        "dataset": {
            "name": trainer.dataset.name,
            "classes": len(trainer.dataset.classes),
            # What made the features, as their file records it: config.yaml's pointnet
            # section applies only to `t2m encode`, and may not be what built them.
            **trained_features_facts(source),
            **({"features_note": note} if note is not None else {}),
        },
        "versions": runs.library_versions(),
    }
    if config.wandb.enabled:
        # Kept in run.json before the first epoch, so `--resume` continues this wandb run.
        info["wandb_id"] = uuid.uuid4().hex[:12]
    group = Group(trainer.rank, trainer.world_size)
    if not group.writes:
        made = from_writer(group, None)
        if made is None:
            raise UserInputError("Process 0 could not make the run folder; see its message.")
        return _run_epochs(config, trainer, norm, encoder, Path(made), info, 1, on_epoch)
    with ExitStack() as stack:
        try:
            folder = stack.enter_context(runs.new_run(config, info))
        except T2MError:
            from_writer(group, None)  # the other processes stop too
            raise
        from_writer(group, str(folder))
        return _run_epochs(config, trainer, norm, encoder, folder, info, 1, on_epoch, quiet=quiet)


def resume_run(
    folder: Path,
    cache_dir: Path | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    quiet: bool = False,
) -> Path:
    """Continue an interrupted run from its last finished epoch.

    The run's own resolved config is used; the weights, optimiser momentum and random state
    come from its ``state.safetensors``, so the epochs that follow are the ones an
    uninterrupted run would have trained. ``quiet`` keeps wandb off the terminal.

    Raises:
        UserInputError: the run has finished all its epochs.
        DataError: the text model found under the run's ``text.model`` is not the one its
            epochs were trained with (`check_trained_model`), or its dataset's feature file
            now holds other features (`check_trained_features`).
    """
    from t2m_cli.encoders.dataset import check_trained_features

    config, info = runs.load_run(folder)
    tensors, facts = runs.load_state(folder)
    epoch = int(facts["epoch"])
    if epoch >= config.train.epochs:
        raise UserInputError(
            f"Run {folder} already finished all {config.train.epochs} epochs; nothing to resume."
        )
    patience = config.train.patience
    if patience is not None and int(facts.get("since_best", 0)) >= patience:
        raise UserInputError(
            f"Run {folder} stopped early after epoch {epoch}: {patience} epochs in a row "
            "(train.patience) did not better its validation score; nothing to resume."
        )
    # Epochs trained on another model's embeddings would not continue the ones saved.
    meta = _check_text_model(config, folder, cache_dir)
    # Under torchrun every process reads the run folder (on storage they share) and checks it
    # alike; the world size may differ from the one the run was started with.
    group = from_environment()
    with joined(group):
        trainer, norm, encoder = _build_trainer(config, cache_dir, group)
        # Nor would epochs trained on other features.
        check_trained_features(meta, trainer.dataset.source, f"Run {folder}", folder, config)
        trainer.load_state(tensors, facts)
        if group.writes:
            # Lines past the saved epoch were written after the state: the resumed epochs
            # replace them.
            runs.truncate_metrics(folder, epoch)
        info["resumed_from_epoch"] = epoch
        return _run_epochs(
            config,
            trainer,
            norm,
            encoder,
            folder,
            info,
            epoch + 1,
            on_epoch,
            facts["best"],
            quiet=quiet,
        )


def _run_epochs(
    config: Config,
    trainer: Trainer,
    norm: FeatureNorm | None,
    encoder: TextEncoder,
    folder: Path,
    info: dict[str, Any],
    start: int,
    on_epoch: Callable[[EpochResult], None] | None,
    best: dict[str, Any] | None = None,
    quiet: bool = False,
) -> Path:
    """Train epochs ``start..`` with checkpoints and logs, then record the run's summary."""

    from t2m_cli.encoders.dataset import trained_features_facts
    from t2m_cli.encoders.text import trained_model_facts

    # The first seen class's first text in the bank: embedded already, so read from the cache.
    first = trainer.dataset.split.seen[0]
    probe = (
        class_name_text(first)
        if config.text.source == "names"
        else trainer.dataset.descriptions[first][0]
    )
    meta = {
        "text_model": config.text.model,
        # The name alone would let `evaluate` and `induce` embed with whatever model is saved
        # under it later; these tell them when it is not this one.
        **trained_model_facts(encoder, probe),
        "text_source": config.text.source,
        "dataset": trainer.dataset.name,
        "features": config.dataset.features,
        # Nor does the feature file's name say what it holds later (`t2m encode` rewrites it):
        # `evaluate`, `induce` and `--resume` compare its contents with these.
        **trained_features_facts(trainer.dataset.source),
    }
    began = time.perf_counter()
    # One task a step works on tiny tensors: one thread; batched steps take every core,
    # whatever the load, so that the weights never depend on it (see `phase_threads`).
    threads = phase_threads(config.train.tasks_per_step == 1, adaptive=False)
    if trainer.rank != 0:
        # Another process of a torchrun group: it trains its share and writes nothing.
        with cpu_threads(threads):
            for _ in trainer.epochs(start):
                pass
        return folder
    loggers = _loggers(config, folder, quiet, info.get("wandb_id"))
    try:
        with cpu_threads(threads):
            best = _train_epochs(trainer, folder, meta, norm, start, on_epoch, best or {}, loggers)
    except T2MError as exc:
        if not runs.has_state(folder):
            raise
        raise type(exc)(f"{exc} {_kept(folder, exc)}") from exc
    finally:
        for logger in loggers:
            logger.close()
    last = int(runs.state_facts(folder)["epoch"])
    # A run whose patience ran out with its last epoch still trained every epoch.
    if trainer.stopped_early() and last < config.train.epochs:
        info["stopped_early"] = {"after_epoch": last}
    info.update(
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        train_seconds=round(time.perf_counter() - began + info.get("train_seconds", 0.0), 3),
        best=best,
    )
    runs.write_run_info(folder, info)
    return folder


def _check_text_model(config: Config, folder: Path, cache_dir: Path | None) -> dict[str, Any]:
    """Refuse to go on training a run, or a baseline for it, once its text model is no longer
    the one its last checkpoint was trained with (`check_trained_model`).

    Returns:
        the last checkpoint's metadata.
    """
    from t2m_cli.encoders.text import check_trained_model, make_text_encoder
    from t2m_cli.models.checkpoint import load_checkpoint

    _, meta, _ = load_checkpoint(runs.checkpoint_path(folder, "last"))
    encoder = make_text_encoder(config.text.model, cache_dir=text_cache_dir(cache_dir))
    check_trained_model(encoder, meta, f"Run {folder}")
    return meta


def _kept(folder: Path, exc: T2MError) -> str:
    """What becomes of a run that failed after saving an epoch, to follow the error."""
    if isinstance(exc, UserInputError):
        # Resuming replays the same settings on the same data, so it would fail again.
        return (
            f"The epochs it finished are kept in {folder}; train with the changed settings "
            "under another run.name (or delete that folder)."
        )
    return (
        f"The epochs it finished are kept in {folder}; once that is fixed, continue it with "
        f"`t2m train --resume {folder}`."
    )


def _loggers(
    config: Config, folder: Path, quiet: bool = False, wandb_id: str | None = None
) -> list[RunLogger]:
    """metrics.jsonl always; wandb when the config asks for it (silent when ``quiet``), to the
    wandb run ``wandb_id`` (the one a resumed run started)."""
    from t2m_cli.training.loggers import JsonlLogger, WandbLogger

    loggers: list[RunLogger] = [JsonlLogger(runs.metrics_path(folder))]
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
                quiet=quiet,
                run_id=wandb_id,
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
    from t2m_cli.models.checkpoint import save_checkpoint

    for result in trainer.epochs(start):
        for logger in loggers:
            logger.log_epoch(result.to_json())
        epoch_meta = {**meta, "epoch": result.epoch, "val_acc": result.val.mean}
        save_checkpoint(runs.checkpoint_path(folder, "last"), trainer.hypernet, epoch_meta, norm)
        if result.is_best:
            save_checkpoint(
                runs.checkpoint_path(folder, "best"), trainer.hypernet, epoch_meta, norm
            )
            best = {"epoch": result.epoch, "val_acc": result.val.mean, "val_sem": result.val.sem}
        # Written last: a run stopped at any point resumes from an epoch whose checkpoints
        # are all on disk.
        tensors, facts = trainer.state()
        runs.save_state(folder, tensors, {**facts, "epoch": result.epoch, "best": best})
        if on_epoch is not None:
            on_epoch(result)
    return best


def _check_trained_baseline(name: str) -> None:
    """Refuse a name outside `runs.TRAINED_BASELINES`; it names a folder, so before any path
    is made of it (``--baseline ..`` would be the run folder itself)."""
    if name not in runs.TRAINED_BASELINES:
        raise UserInputError(
            f"'{name}' is not a baseline that needs training; `t2m train --baseline` takes "
            f"{', '.join(runs.TRAINED_BASELINES)} (ridge and eszsl are fitted by `t2m evaluate`)."
        )


PAPER_W = paper_values(
    "model.hidden",
    "model.linear_skip",
    "train.classes_per_task_max",
    "train.objective",
    "train.weight_decay",
    "train.patience",
)
"""The paper's model and training rule, which the W baseline always trains with (for the run's
number of epochs)."""


def baseline_config(config: Config, folder: Path, name: str) -> Config:
    """The config a baseline trains with: the run's own (same data, texts, seed, epochs, tasks
    per epoch, task) except the hypernetwork type, pairs for class tasks, the paper's width and
    training rule (`PAPER_W`: the W baseline is the paper's, whatever the run's mode), its
    folder, and no wandb. The W baseline of a ``train.task: supersets`` run is a super-set W
    (one description).

    Raises:
        UserInputError: ``name`` is not a baseline that needs training.
    """
    _check_trained_baseline(name)
    data = config_to_dict(config)
    data["model"]["hn_type"] = name
    # W is the paper's baseline, trained by the paper's rule whatever the run's mode: under
    # the recommended mode's objective and weight decay it emitted the same logits for both
    # classes (pair accuracy 50% on shapes and textmap), and stopping it by patience left it
    # 20 points below its paper-mode accuracy on textmap.
    for dotted, value in PAPER_W.items():
        section, key = dotted.split(".")
        data[section][key] = value
    data["train"]["classes_per_task"] = 2
    data["run"] = {"dir": str(folder.parent), "name": folder.name}
    data["wandb"]["enabled"] = False
    return validate_config(data, f"the {name} baseline's config")


def train_baseline(
    run_dir: Path,
    name: str,
    cache_dir: Path | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Path:
    """Train a run's baseline ``name`` (the paper's non-symmetric W hypernetwork) into
    ``RUN/baselines/<name>``, where `t2m evaluate --baseline` reads it.

    An interrupted baseline resumes from its last finished epoch; one started but without a
    finished epoch starts again.

    Args:
        run_dir: a run folder written by `train_run`.
        name: a name from `runs.TRAINED_BASELINES`.
        cache_dir: cache root override.
        on_epoch: called after each epoch with its result.

    Returns:
        the baseline's run folder.

    Raises:
        UserInputError: ``run_dir`` is not a run, is itself a ``name`` run, the baseline is
            unknown or already fully trained, or torchrun started several processes.
        DataError: the text model found under the run's ``text.model`` is not the one the
            run was trained with (`check_trained_model`), or the run's dataset's feature file
            now holds other features than it was trained on (`check_trained_features`).
    """
    import shutil

    from t2m_cli.encoders.dataset import check_trained_features

    _check_trained_baseline(name)
    if from_environment().world_size > 1:
        raise UserInputError(
            f"`t2m train --baseline {name}` trains in one process; start it without torchrun."
        )
    config, _ = runs.load_run(run_dir)
    if config.model.hn_type == name:
        raise UserInputError(
            f"Run {run_dir} is itself a {name} hypernetwork; it needs no {name} baseline."
        )
    meta: dict[str, Any] = {}
    if runs.checkpoint_path(run_dir, "last").is_file():
        # A baseline trained on other embeddings than the run's would compare nothing.
        meta = _check_text_model(config, run_dir, cache_dir)
    folder = runs.baseline_dir(run_dir, name)
    wanted = baseline_config(config, folder, name)
    if runs.has_state(folder):
        if runs.training_done(folder, wanted):
            raise UserInputError(
                f"The {name} baseline of {run_dir} is already trained ({folder}); "
                f"evaluate it with `t2m evaluate {run_dir} --baseline {name}`."
            )
        return resume_run(folder, cache_dir, on_epoch)
    trainer, norm, encoder = _build_trainer(wanted, cache_dir)
    # Nor would one trained on other features; checked before the folder below is replaced.
    check_trained_features(meta, trainer.dataset.source, f"Run {run_dir}", run_dir, config)
    if folder.exists():
        shutil.rmtree(folder)  # started, but no epoch finished: nothing to keep
    return _new_run(wanted, trainer, norm, encoder, on_epoch)
