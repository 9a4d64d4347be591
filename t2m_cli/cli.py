"""The `t2m` command line: parse, load the config, call one core function, render.

No machine learning here, and no torch import at module level: `t2m --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
def _errors(quiet: bool = False) -> Iterator[None]:
    """Map t2m's expected errors to a message and an exit code (2 user, 1 run time)."""
    console.set_quiet(quiet)
    try:
        yield
    except T2MError as exc:
        console.error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        console.error("Interrupted.")
        raise typer.Exit(130) from None


def _split_config_args(args: list[str] | None) -> tuple[Path | None, list[str]]:
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


def _load(args: list[str] | None, extra: list[str] | None = None):
    from t2m_cli.config import load_config

    path, overrides = _split_config_args(args)
    return load_config(path, [*overrides, *(extra or [])])


@app.command()
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
        typer.Option("--from", help="Use a file you already have instead of downloading."),
    ] = None,
    json_out: JsonOut = False,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Fetch a dataset into the cache; [bold]shapes[/] is generated on this machine."""
    with _errors(quiet):
        from t2m_cli.data.registry import download as fetch
        from t2m_cli.data.registry import get_spec, list_datasets

        if list_ or verify:
            _render_datasets(list_datasets(cache_dir, check_hash=verify), json_out)
            return
        if name is None:
            raise UserInputError("Name a dataset to download, or use --list to see them.")
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
        console.out.print(f"{spec.name}: {root}")


def _render_datasets(rows, json_out: bool) -> None:
    if json_out:
        console.out.print_json(
            json.dumps(
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
            f"{f} {'' if s is None else f'{s / 1e6:.0f} MB '}{st}" for f, _, s, st in r.files
        )
        table.add_row(r.name, "yes" if r.ready else "no", files or "generated", r.summary)
    console.out.print(table)


@app.command()
def encode(
    args: ConfigArgs = None,
    force: Annotated[bool, typer.Option(help="Rebuild features that already exist.")] = False,
    device: Annotated[str, typer.Option(help="Device for feature extraction.")] = "auto",
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Build a dataset's features (PointNet on seen classes for meshes) and embed its texts."""
    with _errors(quiet):
        config = _load(args)
        from t2m_cli.encoders.dataset import encode_dataset
        from t2m_cli.training.loop import resolve_device

        with console.progress_task("encode point clouds") as progress:
            report = encode_dataset(
                config,
                cache_dir=cache_dir,
                force=force,
                device=str(resolve_device(device)),
                progress=progress,
            )
        built = "built" if report.features_built else "already there"
        console.out.print(f"features: {report.feature_file} ({built})")
        console.out.print(f"texts: {report.texts} embedded, {report.text_dim}-d")


@app.command()
def train(
    args: ConfigArgs = None,
    hn_type: Annotated[
        str | None, typer.Option("--hn-type", help="Hypernetwork type: EV, IVEV, W or WW.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Outer epochs.")] = None,
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
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Train a hypernetwork on the seen classes; the best epoch is picked on validation classes."""
    with _errors(quiet):
        if resume is not None:
            given = [
                a
                for a, v in (
                    ("a config or overrides", args),
                    ("--hn-type", hn_type),
                    ("--epochs", epochs),
                    ("--seed", seed),
                    ("--device", device),
                    ("--name", name),
                    ("--runs-dir", runs_dir),
                )
                if v
            ]
            if given:
                raise UserInputError(
                    f"--resume continues a run with its own config; drop {', '.join(given)}."
                )
            _train_with_progress(None, resume, cache_dir)
            return
        flags = {
            "model.hn_type": hn_type,
            "train.epochs": epochs,
            "train.seed": seed,
            "train.device": device,
            "run.name": name,
            "run.dir": runs_dir,
            "wandb.enabled": True if wandb else None,
        }
        config = _load(args, [f"{k}={v}" for k, v in flags.items() if v is not None])
        _train_with_progress(config, None, cache_dir)


def _train_with_progress(
    config: Config | None, resume: Path | None, cache_dir: Path | None
) -> None:
    """Run `train_run` (or `resume_run`) with a progress bar and a log line per epoch."""
    from t2m_cli.training.run import load_run, resume_run, train_run

    if config is None:
        assert resume is not None, "either a config or a run to resume"
        config = load_run(resume)[0]
    total = config.train.epochs
    with console.progress_task("train", total=total) as progress:

        def on_epoch(result) -> None:
            progress(result.epoch, total)
            best = " *" if result.is_best else ""
            console.log(
                f"epoch {result.epoch:3d}  inner loss {result.inner_loss:.3f}  "
                f"val {100 * result.val.mean:5.1f} +- {100 * result.val.sem:.1f}%  "
                f"{result.seconds:.1f}s{best}"
            )

        if resume is not None:
            folder = resume_run(resume, cache_dir=cache_dir, on_epoch=on_epoch)
        else:
            folder = train_run(config, cache_dir=cache_dir, on_epoch=on_epoch)
    console.out.print(f"run: {folder}")


def _comma_list(items: list[str]) -> list[str]:
    """Values of a repeatable option that also takes comma-separated lists."""
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


METRIC_COLUMNS = {
    "pairs": ("seen", "unseen", "H", "val"),
    "zsl": ("top1",),
    "gzsl": ("S", "U", "H", "AUSUC"),
    "supersets": ("seen", "unseen", "H", "val"),
}
PROTOCOL_TITLES = {
    "pairs": "pair accuracy (%)",
    "zsl": "ZSL mean per-class top-1 (%)",
    "gzsl": "GZSL per-class accuracy (%); calibrated stacking tuned without unseen data",
    "supersets": "superset ROC-AUC per attribute (%)",
}
OVER_TEXT = {"pairs": "ordered pairs", "classes": "classes", "attributes": "attributes"}


def _cell(figure) -> str:
    if figure is None:
        return "n/a"
    if figure.sem is None:
        return f"{100 * figure.mean:.1f}"
    return f"{100 * figure.mean:.1f} +- {100 * figure.sem:.1f}"


def _render_eval(evaluations, figures) -> None:
    """One table per protocol: a row per method (GZSL: two, without and with calibration)."""
    from rich.table import Table

    from t2m_cli.evaluation.report import HYPERNET

    first = evaluations[0]
    label = {HYPERNET: f"T2M-HN ({first.info['hn_type']})"}
    several = len(evaluations) > 1
    by_key = {f.key: f for f in figures}
    methods = list(dict.fromkeys(f.method for f in figures))
    for protocol, metrics in METRIC_COLUMNS.items():
        rows = [f for f in figures if f.protocol == protocol]
        if not rows:
            continue
        if several:
            over = f"mean +- SEM over {len(evaluations)} runs"
        else:
            kinds = {f.over for f in rows if f.metric in ("seen", "unseen", "top1", "S", "U")}
            over = "mean +- SEM over " + ", ".join(OVER_TEXT.get(k, k) for k in sorted(kinds))
        title = first.run if not several else f"{len(evaluations)} runs"
        table = Table(title=f"{title}: {PROTOCOL_TITLES[protocol]}, {over}")
        table.add_column("method")
        gzsl = protocol == "gzsl"
        if gzsl:
            table.add_column("stacking")
        present = [m for m in metrics if any(f.metric == m for f in rows)]
        for metric in present:
            table.add_column(metric, justify="right")
        for method in methods:
            cells = [_cell(by_key.get((method, protocol, m))) for m in present]
            if not gzsl:
                table.add_row(label.get(method, method), *cells)
                continue
            table.add_row(label.get(method, method), "none", *cells)
            if (method, protocol, "S") not in by_key:
                continue
            constant = by_key[(method, protocol, "calibration")].mean
            calibrated = [
                _cell(by_key.get((method, protocol, f"{m}_calibrated"))) if m != "AUSUC" else ""
                for m in present
            ]
            table.add_row("", f"c = {constant:.3g}", *calibrated)
        console.out.print(table)
    skipped = sorted(
        {f.method for f in figures} - {f.method for f in figures if f.protocol != "pairs"}
    )
    if skipped and any(f.protocol != "pairs" for f in figures):
        console.log(
            f"{', '.join(skipped)}: pairs only (a hypernetwork of fixed k cannot induce a "
            "classifier over other numbers of classes)."
        )


@app.command()
def evaluate(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run folder(s) (default: the latest under runs/). Several runs, seeds of one "
            "setting, are averaged: mean +- SEM across runs.",
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        str, typer.Option(help="best (picked on validation classes) or last.")
    ] = "best",
    seed: Annotated[int | None, typer.Option(help="Seed of the description draws.")] = None,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            help="pairs (the paper), zsl, gzsl, supersets; repeat the option or separate with "
            "commas.",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            help="Also fit and score a baseline on the same features and texts: ridge, eszsl, "
            "W (the non-symmetric hypernetwork, trained once into RUN/baselines/W); repeat "
            "the option or separate with commas.",
            show_default=False,
        ),
    ] = None,
    draws: Annotated[
        int | None,
        typer.Option(help="Description draws averaged (eval.draws).", show_default=False),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="An eval.key=value setting for this evaluation, e.g. eval.source=names or "
            "eval.p_negative=1 (repeatable).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for eval.json and PNG plots (unseen pair matrix, training curves, "
            "GZSL curve).",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    json_out: JsonOut = False,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate runs: the paper's pair protocol, ZSL / GZSL, supersets, and baselines."""
    with _errors(quiet):
        if checkpoint not in ("best", "last"):
            raise UserInputError(f"--checkpoint must be 'best' or 'last', not '{checkpoint}'.")
        if output is not None and output.exists() and not output.is_dir():
            raise UserInputError(f"--output {output} is a file; give a folder.")
        from t2m_cli.evaluation.protocol import evaluate_run
        from t2m_cli.evaluation.report import aggregate, report_json
        from t2m_cli.training.run import latest_run

        folders = list(runs) if runs else [latest_run(runs_dir)]
        resolved = [f.resolve() for f in folders]
        if len(set(resolved)) != len(resolved):
            raise UserInputError("A run folder is given twice; give each run once.")
        overrides = list(settings or [])
        if draws is not None:
            overrides.append(f"eval.draws={draws}")
        protocols = _comma_list(protocol or ["pairs"])
        baselines = _comma_list(baseline or [])
        evaluations = []
        for folder in folders:
            with console.progress_task(f"evaluate {folder.name}"):
                evaluations.append(
                    evaluate_run(
                        folder,
                        cache_dir=cache_dir,
                        checkpoint=checkpoint,
                        seed=seed,
                        protocols=protocols,
                        baselines=baselines,
                        overrides=overrides,
                        log=console.log,
                    )
                )
        figures = aggregate(evaluations)
        if output is not None:
            from t2m_cli.evaluation.output import write_output

            for path in write_output(evaluations, output):
                console.log(f"wrote {path}")
        if json_out:
            console.out.print_json(json.dumps(report_json(evaluations)))
        else:
            _render_eval(evaluations, figures)


@app.command()
def induce(
    descriptions: Annotated[
        str,
        typer.Argument(
            help="Descriptions file, one class per line as 'name: description' or a bare "
            "name; '-' reads stdin."
        ),
    ],
    run: Annotated[
        Path | None, typer.Option(help="Run folder (default: the latest under runs/).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Classifier file (default: <input>.t2m.safetensors)."),
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    json_out: JsonOut = False,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Induce a classifier for described classes and write it to a safetensors file."""
    with _errors(quiet):
        from t2m_cli.induction import parse_descriptions

        if descriptions == "-":
            text, source = sys.stdin.read(), "stdin"
            default_out = Path("classifier.t2m.safetensors")
        else:
            path = Path(descriptions)
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise UserInputError(f"Descriptions file {path} does not exist.") from None
            except (UnicodeDecodeError, IsADirectoryError) as exc:
                raise UserInputError(f"{path} is not a UTF-8 text file ({exc}).") from None
            source = str(path)
            default_out = path.with_suffix(".t2m.safetensors")
        classes = parse_descriptions(text, source)
        from t2m_cli.induction import induce_from_run
        from t2m_cli.training.run import latest_run

        folder = run if run is not None else latest_run(runs_dir)
        with console.progress_task(f"induce {len(classes)} classes"):
            classifier = induce_from_run(folder, classes, cache_dir=cache_dir)
        target = output or default_out
        classifier.save(target)
        summary = {
            "output": str(target),
            "classes": classifier.class_names,
            "feature_dim": classifier.feature_dim,
            **classifier.info,
        }
        if json_out:
            console.out.print_json(json.dumps(summary))
        else:
            console.out.print(
                f"classifier: {target} ({len(classes)} classes over "
                f"{classifier.feature_dim}-d features, from run {folder.name})"
            )


data_app = typer.Typer(
    help="Your own data: check a folder in t2m's import format, and import it (or xlsa17 files).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="A folder in the import format (see README).")],
    quiet: Quiet = False,
) -> None:
    """Report every problem of a data folder at once; exit 2 if there is any."""
    with _errors(quiet):
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
    with _errors(quiet):
        import re

        from t2m_cli.data.registry import DATASETS
        from t2m_cli.paths import dataset_dir

        if name in DATASETS or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise UserInputError(
                f"--name '{name}' must be letters, digits, '.', '_' or '-', and not a built-in "
                f"dataset ({', '.join(sorted(DATASETS))})."
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
        console.out.print(f"train with: t2m train dataset.name={name} dataset.features={features}")


def main() -> None:
    """Console-script entry point."""
    app()
