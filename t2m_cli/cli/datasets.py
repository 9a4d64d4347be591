"""`t2m download` and `t2m data check|import`: datasets into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from t2m_cli import console
from t2m_cli.atomic import dumps_json
from t2m_cli.cli.common import (
    CacheDir,
    JsonOut,
    Quiet,
    handle_errors,
)
from t2m_cli.errors import UserInputError


def download(
    name: Annotated[
        str | None, typer.Argument(help="Dataset name (see --list).", show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of a generated dataset.")] = 0,
    list_: Annotated[
        bool, typer.Option("--list", help="Show every dataset, its files and their state.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="With --list: re-hash cached files (slow).")
    ] = False,
    mirror: Annotated[
        str | None,
        typer.Option(
            help="Base URL serving the same file names (default: $T2M_MIRROR).",
            show_default=False,
        ),
    ] = None,
    from_path: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Use a file you already have instead of downloading; it replaces the cached "
            "copy and the dataset built from it.",
        ),
    ] = None,
    json_out: JsonOut = False,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Fetch a dataset into the cache; [bold]shapes[/] is generated on this machine."""
    with handle_errors(quiet):
        from t2m_cli.data.listing import list_datasets
        from t2m_cli.data.registry import download as fetch
        from t2m_cli.data.registry import get_spec

        if list_ or verify:
            _render_datasets(list_datasets(cache_dir, check_hash=verify), json_out)
            return
        if name is None:
            raise UserInputError("Name a dataset to download, or use --list to see them.")
        from t2m_cli.config import check_seed

        check_seed(seed, "--seed")
        spec = get_spec(name)
        with console.progress_task(f"download {spec.name}") as progress:
            root = fetch(
                spec.name,
                cache_dir=cache_dir,
                seed=seed,
                progress=progress,
                mirror=mirror,
                from_path=from_path,
            )
        if json_out:
            console.out.print_json(dumps_json({"name": spec.name, "path": str(root)}))
        else:
            console.out.print(f"{spec.name}: {root}")


def _render_datasets(rows, json_out: bool) -> None:
    if json_out:
        console.out.print_json(
            dumps_json(
                [
                    {
                        "name": r.name,
                        "ready": r.ready,
                        "files": [
                            {"file": f, "cached": c, "size": s, "state": st}
                            for f, c, s, st in r.files
                        ],
                    }
                    for r in rows
                ]
            )
        )
        return
    from rich.table import Table

    table = Table(title="datasets")
    for column in ("name", "ready", "files", "what"):
        table.add_column(column)
    for r in rows:
        files = "; ".join(
            f"{f} {'' if s is None else _size(s) + ' '}{st}" for f, _, s, st in r.files
        )
        table.add_row(r.name, "yes" if r.ready else "no", files or "generated", r.summary)
    console.result(table)


def _size(n: int) -> str:
    """``812 B``, ``3.4 kB``, ``57 MB``, ``1.2 GB``: small files too show a size, not ``0 MB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


data_app = typer.Typer(
    help="Your own data: check a folder in t2m's import format, and import it (or xlsa17 files).",
    no_args_is_help=True,
)


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="A folder in the import format (see README).")],
    quiet: Quiet = False,
) -> None:
    """Report every problem of a data folder at once; exit 2 if there is any."""
    with handle_errors(quiet):
        from t2m_cli.data.custom import check_custom

        problems = check_custom(path)
        if problems:
            listed = "\n".join(f"  - {p}" for p in problems)
            raise UserInputError(f"{path} has {len(problems)} problem(s):\n{listed}")
        console.out.print(f"{path}: no problems found")


@data_app.command("import")
def data_import(
    path: Annotated[
        Path, typer.Argument(help="A data folder (custom) or a res101.mat file (xlsa17).")
    ],
    name: Annotated[str, typer.Option(help="Dataset name to train with (dataset.name).")],
    format_: Annotated[
        str, typer.Option("--format", help="custom (the import folder format) or xlsa17.")
    ] = "custom",
    splits: Annotated[
        Path | None,
        typer.Option(help="xlsa17: the att_splits.mat / sent_splits.mat file.", show_default=False),
    ] = None,
    n_val: Annotated[
        int | None, typer.Option(help="xlsa17: validation classes to carve out of the seen ones.")
    ] = None,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Convert your data into a t2m dataset under the cache, ready for encode and train."""
    with handle_errors(quiet):
        import re

        from t2m_cli.data.registry import DATASETS
        from t2m_cli.paths import DATASET_NAME, dataset_dir

        if name in DATASETS or not re.fullmatch(DATASET_NAME, name):
            raise UserInputError(
                f"--name '{name}' must start with a letter or digit, hold only letters, digits, "
                f"'.', '_' and '-', and not be a built-in dataset ({', '.join(sorted(DATASETS))})."
            )
        dst = dataset_dir(name, cache_dir)
        if dst.exists():
            raise UserInputError(f"{dst} already exists; choose another --name or delete it.")
        if format_ == "custom":
            from t2m_cli.data.custom import convert_custom

            convert_custom(path, dst)
            features = "custom"
        elif format_ == "xlsa17":
            from t2m_cli.data.xlsa17 import read_xlsa17, to_t2m

            if splits is None:
                raise UserInputError("--format xlsa17 needs --splits (att_splits.mat).")
            to_t2m(read_xlsa17(path, splits), dst, n_val=n_val)
            features = "res101"
        else:
            raise UserInputError(f"--format must be 'custom' or 'xlsa17', not '{format_}'.")
        console.out.print(f"{name}: {dst}")
        from t2m_cli.config_text import apply_overrides

        # Read the token as `t2m train` will: a name such as 007 or 1e3 must be quoted there.
        token = f"dataset.name={name}"
        if apply_overrides({}, [token])["dataset"]["name"] != name:
            token = f"'dataset.name=\"{name}\"'"
        console.out.print(f"train with: t2m train {token} dataset.features={features}")
