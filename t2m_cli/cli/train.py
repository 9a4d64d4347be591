"""`t2m encode` and `t2m train`: features and text embeddings, then a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from t2m_cli import console
from t2m_cli.cli.common import (
    CacheDir,
    ConfigArgs,
    Quiet,
    handle_errors,
    load_config_args,
)
from t2m_cli.errors import UserInputError

if TYPE_CHECKING:
    from t2m_cli.config import Config


def encode(
    args: ConfigArgs = None,
    force: Annotated[
        bool,
        typer.Option(help="Rebuild features and text embeddings that already exist."),
    ] = False,
    device: Annotated[str, typer.Option(help="Device for feature extraction.")] = "auto",
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Build a dataset's features (PointNet on seen classes for meshes) and embed its texts."""
    with handle_errors(quiet):
        config = load_config_args(args)
        from t2m_cli.device import resolve_device
        from t2m_cli.encoders.dataset import encode_dataset

        with console.progress_steps() as progress:
            report = encode_dataset(
                config,
                cache_dir=cache_dir,
                force=force,
                device=str(resolve_device(device)),
                progress=progress,
                log=console.log,
            )
        built = "built" if report.features_built else "already there"
        console.out.print(f"features: {report.feature_file} ({built})")
        console.out.print(f"texts: {report.texts} embedded, {report.text_dim}-d")


def train(
    args: ConfigArgs = None,
    hn_type: Annotated[
        str | None, typer.Option("--hn-type", help="Hypernetwork type: EV, IVEV, W or WW.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Outer epochs, at most: train.patience may stop training earlier."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    name: Annotated[str | None, typer.Option(help="Run folder name.")] = None,
    runs_dir: Annotated[
        Path | None, typer.Option("--runs-dir", help="Folder for run folders.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue an interrupted run folder from its last finished epoch, with its "
            "own config (no other settings may be given).",
            show_default=False,
        ),
    ] = None,
    wandb: Annotated[
        bool, typer.Option("--wandb", help="Also log to Weights & Biases (see the wandb section).")
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Train a baseline for a run instead: `t2m train --baseline W RUN` trains the "
            "paper's non-symmetric W hypernetwork with RUN's own settings into "
            "RUN/baselines/W, where `t2m evaluate --baseline W` finds it.",
            show_default=False,
        ),
    ] = None,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Train a hypernetwork on the seen classes; the best epoch is picked on validation classes."""
    with handle_errors(quiet):
        others = {
            "--hn-type": hn_type,
            "--epochs": epochs,
            "--seed": seed,
            "--device": device,
            "--name": name,
            "--runs-dir": runs_dir,
        }
        if baseline is not None:
            given = [a for a, v in others.items() if v is not None]
            if resume is not None:
                given.append("--resume")
            if len(args or []) != 1 or given:
                raise UserInputError(
                    "--baseline trains with the settings of the run it is given: write "
                    "`t2m train --baseline W RUN_FOLDER`"
                    + (f", and drop {', '.join(given)}." if given else ".")
                )
            _train_with_progress(None, Path((args or [])[0]), cache_dir, baseline)
            return
        if resume is not None:
            given = [a for a, v in others.items() if v is not None]
            if args:
                given.insert(0, "a config or overrides")
            if given:
                raise UserInputError(
                    f"--resume continues a run with its own config; drop {', '.join(given)}."
                )
            _train_with_progress(None, resume, cache_dir)
            return
        flags = {
            "model.hn_type": ("--hn-type", hn_type),
            "train.epochs": ("--epochs", epochs),
            "train.seed": ("--seed", seed),
            "train.device": ("--device", device),
            "run.name": ("--name", name),
            "run.dir": ("--runs-dir", runs_dir),
            "wandb.enabled": ("--wandb", True if wandb else None),
        }
        named = {k: flag for k, (flag, v) in flags.items() if v is not None}
        config = load_config_args(args, {k: flags[k][1] for k in named}, named)
        _train_with_progress(config, None, cache_dir)


def _train_with_progress(
    config: Config | None,
    resume: Path | None,
    cache_dir: Path | None,
    baseline: str | None = None,
) -> None:
    """Run `train_run` (or `resume_run`, or `train_baseline` of the run ``resume``) with a
    progress bar and a log line per epoch."""
    from t2m_cli.distributed import from_environment
    from t2m_cli.runs import load_run
    from t2m_cli.training.run import resume_run, train_baseline, train_run

    # Under torchrun, process 0 speaks for the group; the others print errors only.
    writes = from_environment().writes
    if not writes:
        console.set_quiet(True)
    if config is None:
        assert resume is not None, "either a config or a run to resume"
        config = load_run(resume)[0]
    total = config.train.epochs
    # The paper's rule logs its inner loop's loss; the induced objective has no inner loop.
    # (A W baseline always trains by the paper's rule.)
    induced = baseline is None and config.train.objective == "induced"
    loss_label = "loss" if induced else "inner loss"
    # The core prints nothing itself; wandb would, unless told that --quiet was given.
    quiet = console.is_quiet()
    with console.progress_task("train", total=total) as progress:

        def on_epoch(result) -> None:
            progress(result.epoch, total)
            best = " *" if result.is_best else ""
            # A validation score over one pair or attribute has no SEM.
            sem = "" if result.val.sem is None else f" +- {100 * result.val.sem:.1f}"
            console.log(
                f"epoch {result.epoch:3d}  {loss_label} {result.inner_loss:.3f}  "
                f"val {100 * result.val.mean:5.1f}{sem}%  {result.seconds:.1f}s{best}"
            )

        if baseline is not None:
            assert resume is not None, "a baseline belongs to a run"
            folder = train_baseline(resume, baseline, cache_dir=cache_dir, on_epoch=on_epoch)
        elif resume is not None:
            folder = resume_run(resume, cache_dir=cache_dir, on_epoch=on_epoch, quiet=quiet)
        else:
            folder = train_run(
                config, cache_dir=cache_dir, on_epoch=on_epoch, log=console.log, quiet=quiet
            )
    if writes:
        _log_ending(folder)
        console.out.print(f"run: {folder}")


def _log_ending(folder: Path) -> None:
    """Say how training ended: its best epoch, and whether train.patience stopped it early."""
    from t2m_cli.runs import load_run

    config, info = load_run(folder)
    best = info.get("best") or {}
    stopped = info.get("stopped_early")
    if stopped:
        console.log(
            f"stopped after epoch {stopped['after_epoch']}: {config.train.patience} epochs "
            "without a better validation score (train.patience)"
        )
    if best.get("epoch") is not None:
        console.log(f"best epoch {best['epoch']}: val {100 * best['val_acc']:.1f}%")
