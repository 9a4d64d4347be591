"""Run folders: create, find and read them (reading a run folder is not training).

Layout of ``<run.dir>/<run.name>/``:
``config.yaml`` (the resolved config), ``run.json`` (seed, device, library versions, timings,
best epoch), ``metrics.jsonl`` (one JSON object per epoch), ``best.safetensors`` (the epoch with
the best validation score), ``last.safetensors`` (the latest epoch), ``state.safetensors``
(everything an exact resume needs) and ``baselines/<name>/`` (a trained baseline such as the W
hypernetwork, itself a run folder).

A ``train.task: supersets`` run has the same layout; its validation score (``val_acc`` in
``metrics.jsonl`` and ``run.json``) is the mean ROC-AUC over attributes on the validation
classes instead of a pair accuracy.

This module sits below training, evaluation and induction so that each of them can read a run
without importing the others.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from t2m_cli import __version__
from t2m_cli.atomic import (
    dumps_json,
    load_safetensors,
    read_json,
    save_safetensors,
    write_json,
    write_text,
)
from t2m_cli.config import Config, config_to_dict, load_config, paper_values
from t2m_cli.errors import DataError, UserInputError
from t2m_cli.paths import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    METRICS,
    RUN_CONFIG,
    RUN_FILES,
    RUN_INFO,
    TRAIN_STATE,
)
from t2m_cli.textio import read_text, split_lines
from t2m_cli.yamlio import load_yaml, write_yaml

if TYPE_CHECKING:
    import torch

Checkpoint = Literal["best", "last"]
BASELINES_DIR = "baselines"
"""Folder inside a run where its trained baselines (the W hypernetwork) are kept."""


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


def check_free(folder: Path) -> None:
    """Refuse a run folder that already holds a run (`new_run` makes it; training calls this
    first too, so that a taken ``run.name`` is refused before the data and texts load).

    Raises:
        UserInputError: it holds a run; the message says whether that run has an epoch.
    """
    if (folder / RUN_INFO).exists():
        message = (
            f"Run folder {folder} already holds a run. Choose another run.name (or delete that "
            "folder)."
        )
        if not has_state(folder):
            # Nothing to resume; only a hard kill leaves such a folder, or a run still training.
            message += (
                " It has no finished epoch: it is still training, or it was stopped before its "
                "first epoch ended. If it is not running, delete the folder and train again."
            )
        raise UserInputError(message)


@contextmanager
def new_run(config: Config, info: dict[str, Any]) -> Iterator[Path]:
    """Create a run folder holding the resolved config and ``run.json``, for the block that
    trains into it; undo it if the block fails before the run's first epoch is saved.

    A run with no saved epoch has nothing to resume, and left on disk it would only make the
    next `t2m train` with the same ``run.name`` refuse: so the files it wrote are removed, and
    the folder with everything in it when this run created it (a folder that was there before
    keeps what it held). A run that saved an epoch stays, for ``t2m train --resume``.

    Args:
        config: the validated config; ``run.dir`` / ``run.name`` place the folder (a
            timestamp and the hypernetwork type when ``run.name`` is unset).
        info: the first contents of ``run.json`` (seed, device, dataset, versions, ...).

    Yields:
        the new run folder.

    Raises:
        UserInputError: the folder already holds a run, or it cannot be made (``run.dir`` is a
            file, or not writable).
    """
    import shutil

    name = config.run.name or datetime.now().strftime(f"%Y%m%d-%H%M%S-{config.model.hn_type}")
    folder = config.run.dir / name
    check_free(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(
            f"Cannot make the run folder {folder} ({exc.strerror or exc}); set run.dir "
            "(--runs-dir) to a folder you can write to."
        ) from None
    try:
        write_yaml(folder / RUN_CONFIG, config_to_dict(config))
        write_json(folder / RUN_INFO, info)
        yield folder
    except BaseException:
        if not has_state(folder):
            if created:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                for file in RUN_FILES:
                    (folder / file).unlink(missing_ok=True)
        raise


def run_name(folder: Path) -> str:
    """The name a run goes by (in reports, a classifier's info, ``--output`` folders): its
    folder's name, with ``.`` and ``..`` taken as the folders they stand for (a link keeps its
    own name)."""
    return Path(os.path.abspath(folder)).name


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run's config and ``run.json``."""
    return (folder / RUN_CONFIG).is_file() and (folder / RUN_INFO).is_file()


RECORDED_BEFORE_RECOMMENDED: dict[str, Any] = paper_values(
    "model.linear_skip",
    "train.classes_per_task_max",
    "train.objective",
    "train.patience",
    "eval.descriptions",
)
"""Keys that came with the recommended mode, and what a run whose config.yaml predates them
trained and was evaluated with: the paper's values."""


def predating_keys(folder: Path) -> dict[str, Any]:
    """The `RECORDED_BEFORE_RECOMMENDED` keys a run's ``config.yaml`` lacks, with their values,
    so that an older run reloads to what it trained with, not to today's defaults.

    Raises:
        ConfigError: the file cannot be read as YAML.
    """
    recorded = load_yaml(folder / RUN_CONFIG).data
    missing = {}
    for key, value in RECORDED_BEFORE_RECOMMENDED.items():
        section, name = key.split(".")
        if name not in (recorded.get(section) or {}):
            missing[key] = value
    return missing


def load_run(folder: Path) -> tuple[Config, dict[str, Any]]:
    """Read a run folder's resolved config and ``run.json``.

    Raises:
        UserInputError: ``folder`` is not a run folder.
        DataError: its ``run.json`` cannot be read.
    """
    if not is_run(folder):
        raise UserInputError(
            f"{folder} is not a t2m run folder (no {RUN_CONFIG} / {RUN_INFO}). "
            "Give the folder `t2m train` printed."
        )
    # A run keeps the config it was trained with: no command overrides it, so the message
    # offers none.
    config = load_config(folder / RUN_CONFIG, values=predating_keys(folder), override_form=None)
    return config, read_json(folder / RUN_INFO, "run info")


def write_run_info(folder: Path, info: dict[str, Any]) -> None:
    """Replace a run's ``run.json`` (atomically)."""
    write_json(folder / RUN_INFO, info)


def latest_run(runs_dir: Path) -> Path:
    """The most recently finished run under ``runs_dir`` (the one with a best checkpoint).

    Raises:
        UserInputError: no run with a best checkpoint is there.
    """
    candidates = (
        [p for p in runs_dir.glob("*") if (p / CHECKPOINT_BEST).is_file() and is_run(p)]
        if runs_dir.is_dir()
        else []
    )
    if not candidates:
        raise UserInputError(
            f"No trained run under {runs_dir}. Train one with `t2m train`, or name a run folder."
        )
    return max(candidates, key=lambda p: (p / CHECKPOINT_BEST).stat().st_mtime)


def checkpoint_path(folder: Path, which: Checkpoint = "best") -> Path:
    """The checkpoint file of a run: ``best`` (chosen on validation classes) or ``last``."""
    return folder / (CHECKPOINT_BEST if which == "best" else CHECKPOINT_LAST)


def metrics_path(folder: Path) -> Path:
    """A run's ``metrics.jsonl``."""
    return folder / METRICS


TRAINED_BASELINES = ("W",)
"""Baselines trained into ``RUN/baselines/<name>`` (`t2m train --baseline`) and read from there
at evaluation; the others are fitted at evaluation."""


def baseline_dir(folder: Path, name: str) -> Path:
    """Where a run keeps its trained baseline ``name`` (itself a run folder)."""
    return folder / BASELINES_DIR / name


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a run's ``metrics.jsonl``: one JSON object per line, blank lines ignored.

    Args:
        path: the file, or the run folder holding it.

    Returns:
        The records, in file order.

    Raises:
        DataError: the file is missing or unreadable, a line is not a JSON object, or it holds
            no records.
    """
    path = Path(path)
    if path.is_dir():
        path = metrics_path(path)
    if not path.is_file():
        raise DataError(
            f"Metrics file {path} does not exist; pass the metrics.jsonl of a training run "
            "(it is written in the run's folder)."
        )
    text = read_text(path, "Metrics file")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"Metrics file {path}, line {number}, is not valid JSON ({exc.msg}); the file may "
                "be truncated or not a metrics.jsonl."
            ) from exc
        if not isinstance(record, dict):
            raise DataError(
                f"Metrics file {path}, line {number}, is a JSON {type(record).__name__}, not an "
                "object with the keys epoch, val_acc, ..."
            )
        records.append(record)
    if not records:
        raise DataError(f"Metrics file {path} holds no records; did the run finish an epoch?")
    return records


def finished_epochs(folder: Path) -> int:
    """How many epochs a run has logged (0 when it has no metrics yet)."""
    path = metrics_path(folder)
    return int(read_metrics(path)[-1]["epoch"]) if path.is_file() else 0


def training_done(folder: Path, config: Config) -> bool:
    """Whether a run has trained all it will: every epoch of ``config.train.epochs``, or up to
    the epoch where ``train.patience`` stopped it.

    Raises:
        DataError: its metrics or state file is damaged.
    """
    if finished_epochs(folder) >= config.train.epochs:
        return True
    patience = config.train.patience
    if patience is None or not has_state(folder):
        return False
    return int(state_facts(folder).get("since_best", 0)) >= patience


def truncate_metrics(folder: Path, epoch: int) -> None:
    """Drop the metrics lines past ``epoch``: a resumed run writes those epochs again."""
    path = metrics_path(folder)
    if path.is_file():
        kept = [r for r in read_metrics(path) if r["epoch"] <= epoch]
        write_text(path, "".join(dumps_json(r) + "\n" for r in kept))


def has_state(folder: Path) -> bool:
    """Whether a run saved a resumable state (it finished at least one epoch)."""
    return (folder / TRAIN_STATE).is_file()


def save_state(folder: Path, tensors: dict[str, torch.Tensor], facts: dict[str, Any]) -> None:
    """Write the state a resume needs: tensors (weights, momentum, generators) and facts."""
    save_safetensors(folder / TRAIN_STATE, tensors, {"t2m": dumps_json(facts)})


def state_facts(folder: Path) -> dict[str, Any]:
    """The facts `save_state` wrote (epoch, best, since_best, ...), without reading tensors.

    Raises:
        UserInputError, DataError: as `load_state`.
    """
    return load_state(folder, header_only=True)[1]


def load_state(
    folder: Path, header_only: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read the state written by `save_state`: its tensors and facts (with ``header_only``,
    the facts alone and no tensors).

    Raises:
        UserInputError: the run has no state file (it stopped before its first epoch ended, or
            the file was removed).
        DataError: the state file is damaged or holds NaN or infinite values.
    """
    if not has_state(folder):
        raise UserInputError(
            f"{folder} has no {TRAIN_STATE}, the file a resume starts from: the run stopped "
            "before its first epoch ended, or the file was removed, so there is nothing to "
            "resume. Delete that folder and train again with `t2m train`, or train under "
            f"another run.name (a {CHECKPOINT_BEST} it holds can still be evaluated)."
        )
    try:
        return load_safetensors(
            folder / TRAIN_STATE, "Training state", finite=True, header_only=header_only
        )
    except DataError as exc:
        raise DataError(
            f"{exc} The run cannot be resumed from it; train again with `t2m train`."
        ) from None
