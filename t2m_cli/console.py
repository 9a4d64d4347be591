"""The two rich consoles, the progress factory and the mapping of errors to exit codes.

Results go to stdout (``out``) so that scripts can read them; progress, logs and errors go to
stderr (``err``). ``--quiet`` silences stderr chatter but never results or errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from t2m_cli.progress import ProgressCallback

out = Console(soft_wrap=True)
err = Console(stderr=True)

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) progress and log messages on stderr."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def log(message: str) -> None:
    """A log line on stderr, unless ``--quiet``."""
    if not _quiet:
        err.print(escape(message), highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """An error paragraph on stderr; shown even with ``--quiet``."""
    # soft_wrap: a message that a script greps must not gain line breaks at the terminal width.
    # escape: messages quote user input and lists, whose brackets are not rich markup.
    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextmanager
def progress_task(description: str, total: int | None = None) -> Iterator[ProgressCallback]:
    """A progress bar on stderr for one step; yields a ``callback(done, total)``.

    With ``--quiet`` (or when stderr is not a terminal and rich decides so) the bar stays hidden.
    """
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=_quiet,
    )
    with progress:
        task = progress.add_task(description, total=total)

        def update(done: int, new_total: int) -> None:
            progress.update(task, completed=done, total=new_total)

        yield update
