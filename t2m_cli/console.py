"""The two rich consoles, the progress factory and the mapping of errors to exit codes.

Results go to stdout (``out``) so that scripts can read them; progress, logs and errors go to
stderr (``err``). ``--quiet`` silences stderr chatter but never results or errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from t2m_cli.progress import ProgressCallback, StepsCallback

# Results quote user input (paths, run and class names): brackets in them are text, not markup,
# and no highlighter colours parts of them.
out = Console(soft_wrap=True, markup=False, highlight=False)
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


# Results on a pipe are laid out as if the line were this wide: in practice, unbounded.
_PIPE_WIDTH = 10_000


def result(renderable: RenderableType) -> None:
    """Print a result (a line, a table) on stdout.

    On a terminal rich fits it to the window. On a pipe or in a file it is printed at its
    natural width, title included, so that a script reads each table row as one line with its
    cells whole (rich would otherwise wrap at 80 columns and split cells over lines).
    """
    if out.is_terminal:
        out.print(renderable)
        return
    from rich.table import Table
    from rich.text import Text

    if isinstance(renderable, Table) and renderable.title is not None:
        # rich wraps a title at the table's width: make the table at least as wide.
        title = renderable.title
        text = out.render_str(title) if isinstance(title, str) else title
        if isinstance(text, Text):
            renderable.min_width = max(renderable.min_width or 0, text.cell_len)
    width = Measurement.get(out, out.options.update_width(_PIPE_WIDTH), renderable).maximum
    # `out.print(width=...)` cannot go past the console's own width (80 on a pipe).
    Console(
        file=out.file, width=max(width, 1), soft_wrap=True, markup=False, highlight=False
    ).print(renderable)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=_quiet,
    )


@contextmanager
def progress_task(description: str, total: int | None = None) -> Iterator[ProgressCallback]:
    """A progress bar on stderr for one step; yields a ``callback(done, total)``.

    With ``--quiet`` the bar stays hidden; when stderr is not a terminal, rich draws it once, as
    it stands when the step ends.
    """
    with _progress() as progress:
        # escape: a description quotes folder and dataset names, whose brackets are not markup.
        task = progress.add_task(escape(description), total=total)

        def update(done: int, new_total: int) -> None:
            progress.update(task, completed=done, total=new_total)

        yield update


@contextmanager
def progress_steps() -> Iterator[StepsCallback]:
    """Progress bars on stderr for a task of named steps; yields a ``callback(step, done,
    total)`` that adds a bar, labelled with the step's name, the first time a step reports."""
    with _progress() as progress:
        tasks: dict[str, TaskID] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(escape(step), total=total)
            progress.update(tasks[step], completed=done, total=total)

        yield update
