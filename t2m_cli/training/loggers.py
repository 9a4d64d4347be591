"""Run loggers behind one small interface: JSONL in the run folder always, wandb when asked.

The terminal display lives in the CLI (it is presentation); these loggers record. A logger
receives the resolved config once, then one record per epoch, then `close`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from t2m_cli.atomic import dumps_json
from t2m_cli.errors import UserInputError


class RunLogger(Protocol):
    """What the training loop tells a logger."""

    def log_epoch(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonlLogger:
    """One strict JSON object per epoch, appended to ``metrics.jsonl``; each line written whole."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def log_epoch(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(dumps_json(record) + "\n")

    def close(self) -> None:
        """Nothing to flush: every line is closed when written."""


class WandbLogger:
    """Weights & Biases, imported only when a run asks for it.

    Args:
        config: the resolved run config, recorded with the wandb run.
        mode: 'online' or 'offline' (offline runs are uploaded later with `wandb sync`).
        project: wandb project.
        entity: wandb entity (user or team), or None for the default.
        tags: run tags.
        name: run name; default the t2m run folder's name.
        folder: the t2m run folder; wandb files go under ``<folder>/wandb`` unless
            ``WANDB_DIR`` says otherwise.
        quiet: silence wandb's own lines on the terminal (its run banner, history and sync
            hints), as ``--quiet`` asks; its warnings too. Otherwise wandb prints as it is set
            up to (``WANDB_SILENT`` and the like).
        run_id: the wandb run's id, kept in ``run.json``: a resumed t2m run logs its
            further epochs to the same wandb run (``resume="allow"``), not to a new one.
    """

    def __init__(
        self,
        config: dict[str, Any],
        mode: str,
        project: str,
        entity: str | None,
        tags: list[str],
        name: str,
        folder: Path,
        quiet: bool = False,
        run_id: str | None = None,
    ) -> None:
        import os

        try:
            import wandb
        except ImportError:
            raise UserInputError(
                "wandb logging was asked for but wandb is not installed; "
                "`pip install wandb` (or `pip install t2m-cli[wandb]`), or drop --wandb."
            ) from None
        self._run = wandb.init(
            project=project,
            entity=entity,
            name=name,
            tags=tags,
            mode=mode,  # type: ignore[arg-type]
            config=config,
            dir=os.environ.get("WANDB_DIR") or str(folder),
            reinit="finish_previous",
            id=run_id,
            resume="allow" if run_id is not None else None,
            settings=wandb.Settings(silent=True, show_warnings=False) if quiet else None,
        )

    def log_epoch(self, record: dict[str, Any]) -> None:
        self._run.log(record, step=int(record["epoch"]))

    def close(self) -> None:
        self._run.finish()
