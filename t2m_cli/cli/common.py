"""What every `t2m` command shares: the Typer app, common options, the error-to-exit-code
mapping and the reading of config arguments."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from t2m_cli import console
from t2m_cli.errors import T2MError, UserInputError

if TYPE_CHECKING:
    from t2m_cli.config import Config

app = typer.Typer(
    name="t2m",
    help=(
        "Text2Model (T2M-HN): train a hypernetwork that turns class descriptions into "
        "classifiers, then induce classifiers for classes it never saw.\n\n"
        "Typical session: t2m download shapes; t2m encode; t2m train; t2m evaluate; "
        "t2m induce my_classes.txt"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Cache root for datasets and text embeddings (default: $T2M_HOME, else the "
        "platform's cache folder).",
        show_default=False,
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print results and errors only, no progress.")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ConfigArgs = Annotated[
    list[str] | None,
    typer.Argument(
        help="An optional YAML config file, then overrides as section.key=value "
        "(e.g. train.epochs=20 model.hidden=64).",
        show_default=False,
    ),
]
RunsDir = Annotated[
    Path, typer.Option("--runs-dir", help="Folder holding run folders (used to find the latest).")
]


@contextmanager
def handle_errors(quiet: bool = False) -> Iterator[None]:
    """Map t2m's expected errors to a message and an exit code (2 user, 1 run time).

    Under torchrun every process meets a mistake in the arguments or an interruption alike,
    and process 0 says so: the others exit with the same code and say nothing. A failure at
    run time may be a process's own, so each says it, naming its rank.
    """
    console.set_quiet(quiet)
    rank = _torchrun_rank()
    try:
        yield
    except T2MError as exc:
        if rank == 0:
            console.error(str(exc))
        elif not isinstance(exc, UserInputError):
            console.error(f"process {rank}: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if rank == 0:
            console.error("Interrupted.")
        raise typer.Exit(130) from None


def _torchrun_rank() -> int:
    """This process's rank under torchrun (``RANK``), 0 otherwise or when it is unreadable."""
    import os

    value = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
    return int(value) if value.isascii() and value.isdigit() else 0


def split_config_args(args: list[str] | None) -> tuple[Path | None, list[str]]:
    """Split positional arguments into an optional config path and the overrides."""
    args = list(args or [])
    path: Path | None = None
    if args and "=" not in args[0]:
        path = Path(args.pop(0))
    stray = [a for a in args if "=" not in a]
    if stray:
        raise UserInputError(
            f"Unexpected argument(s) {stray}: after the config file, give overrides as "
            "section.key=value."
        )
    return path, args


def load_config_args(
    args: list[str] | None,
    values: dict[str, Any] | None = None,
    flags: dict[str, str] | None = None,
) -> Config:
    """The config from the positional arguments, then typed flag values set as they are;
    `flags` names the option that set each key of `values`, for messages."""
    from t2m_cli.config import load_config

    path, overrides = split_config_args(args)
    return load_config(path, overrides, values, flags=flags)


def comma_list(items: list[str]) -> list[str]:
    """Values of a repeatable option that also takes comma-separated lists."""
    return [v.strip() for item in items for v in item.split(",") if v.strip()]
