"""What t2m's messages, help texts and README name exists: options, commands, config keys,
folders and files.

A message is read as an instruction: after a mirror answers 404 it once told users to pass
`--from-path`, an option that never existed (it is `--from`). These tests read every string
literal and f-string of the package (with the `ast` module), the README and the example
configs' comments, and check what they name against the real Typer app, the pydantic config
model and the folder names in the code, so such a message fails here instead of in a user's
terminal.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.config import Config
from t2m_cli.encoders.dataset import POINT_CLOUD_STEP, TEXT_STEP

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "t2m_cli"


@dataclass(frozen=True)
class Text:
    """One string to check: where it is, what it says, and whether it is a docstring."""

    where: str
    text: str
    docstring: bool = False


def _rendered(node: ast.JoinedStr) -> str:
    # A placeholder stands for whatever the f-string fills in: a path, a name, a number.
    return "".join(
        v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{X}"
        for v in node.values
    )


def _docstring_ids(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
        else:
            continue
        for i, stmt in enumerate(body):
            # The docstring, and the attribute docstrings written under an assignment.
            is_doc = i == 0 or isinstance(body[i - 1], ast.Assign | ast.AnnAssign)
            if (
                is_doc
                and isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                ids.add(id(stmt.value))
    return ids


@functools.cache
def source_texts() -> list[Text]:
    """Every string literal and f-string in the package, with its file and line."""
    texts = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstring_ids(tree)
        inside = {
            id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
        }
        for node in ast.walk(tree):
            if id(node) in inside:
                continue
            if isinstance(node, ast.JoinedStr):
                text = _rendered(node)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            texts.append(Text(where, text, id(node) in docs))
    return texts


@functools.cache
def document_texts() -> list[Text]:
    """The README, one paragraph or code block at a time, and the example configs' comments.

    A fenced code block's lines become code spans (their ``#`` comments dropped), so that
    ``t2m ...`` lines in it are read as commands.
    """
    texts = []
    readme = ROOT / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines()
    fenced, start, block = False, 0, []
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            code = re.split(r"\s#\s", line, maxsplit=1)[0].strip()
            if code:
                texts.append(Text(f"README.md:{number}", f"`{code}`"))
            continue
        if line.strip():
            start = start or number
            block.append(line)
        if block and (not line.strip() or number == len(lines)):
            texts.append(Text(f"README.md:{start}", "\n".join(block)))
            start, block = 0, []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        comments = [
            line.strip()[1:].strip()
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith("#")
        ]
        texts.append(Text(str(path.relative_to(ROOT)), "\n".join(comments)))
    return texts


def all_texts() -> list[Text]:
    return source_texts() + document_texts()


# --- the real names -------------------------------------------------------------------------


# Typer builds on its own copy of click, so commands are told apart by what they have.
Command = Any


def is_group(command: Command) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def cli_commands() -> dict[tuple[str, ...], Command]:
    """Every command path of `t2m` (``()`` is `t2m` itself) and its click command."""
    found: dict[tuple[str, ...], Command] = {}

    def walk(path: tuple[str, ...], command: Command) -> None:
        found[path] = command
        if is_group(command):
            for name, sub in command.commands.items():
                walk((*path, name), sub)

    walk((), typer.main.get_command(app))
    return found


def options_of(command: Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts, param.secondary_opts)
    return names


def config_keys() -> dict[str, set[str]]:
    """Config section -> its key names, from the pydantic model."""
    sections = {}
    for section, field in Config.model_fields.items():
        model = field.annotation
        assert isinstance(model, type), section
        sections[section] = set(model.model_fields)
    return sections


# --- what texts name ------------------------------------------------------------------------

CODE_SPAN = re.compile(r"``(.+?)``|`([^`\n]+)`", re.S)
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Words a prose segment ends at, so that "the t2m run folder. Use --device" is two segments.
PROSE_END = re.compile(r"[;()\n]|\.\s")
OTHER_TOOLS = ("pip ", "nox ", "python ", "python3 ", "git ", "torchrun ")


def code_and_prose(text: str) -> tuple[list[str], list[str]]:
    """The code spans of a text (between backticks), and the prose between them."""
    code = [a or b for a, b in CODE_SPAN.findall(text)]
    prose = [p for p in PROSE_END.split(CODE_SPAN.sub("\n", text)) if p.strip()]
    return code, prose


@dataclass(frozen=True)
class Invocation:
    """`t2m COMMAND ...` as a text writes it: the words after `t2m`."""

    words: tuple[str, ...]
    in_code: bool


def invocations(text: str) -> Iterator[Invocation]:
    code, prose = code_and_prose(text)
    for segments, in_code in ((code, True), (prose, False)):
        for segment in segments:
            for part in re.split(r"(?<![\w/.-])t2m\s+", segment)[1:]:
                words = tuple(w.strip("`") for w in re.split(r"\s+", part.strip()) if w.strip("`"))
                if words:
                    yield Invocation(words, in_code)


def resolve(
    words: tuple[str, ...], commands: dict[tuple[str, ...], Command]
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """Split `t2m` words into a command path and its arguments; None if no command matches."""
    path: tuple[str, ...] = ()
    rest = list(words)
    while rest and all((*path, w) in commands for w in rest[0].split("|")):
        # `t2m data check|import` names both.
        path = (*path, rest.pop(0).split("|")[0])
    # `t2m` and `t2m data` take a command name, not an argument.
    if rest and not rest[0].startswith("-") and is_group(commands[path]):
        return None
    return path, tuple(rest)


def _option_word(word: str) -> str | None:
    match = re.match(r"--?[a-z][a-z0-9-]*", word)
    return match.group(0) if match else None


KEY_SUFFIXES = {
    "json", "jsonl", "yaml", "yml", "py", "txt", "png", "safetensors", "npy", "mat", "zip",
    "off", "pkl", "part", "csv",
}  # fmt: skip
# The README's example of the message for a misspelt key.
DELIBERATE = {"train.lrr"}


def dotted_keys(text: str, sections: set[str]) -> Iterator[str]:
    """``section.key`` names in a text, file names such as ``run.json`` left out."""
    pattern = rf"(?<![\w./$<{{-])({'|'.join(sorted(sections))})\.(\*|[A-Za-z_]\w*\*?)(?![\w(/-])"
    for section, key in re.findall(pattern, text):
        if key not in KEY_SUFFIXES:
            yield f"{section}.{key}"


def key_problem(key: str, sections: dict[str, set[str]]) -> str | None:
    section, _, name = key.partition(".")
    fields = sections[section]
    # Placeholders: `eval.*`, `eval.key=value`, `train.inner_*`.
    if name in ("*", "key") or (
        name.endswith("*") and any(f.startswith(name[:-1]) for f in fields)
    ):
        return None
    if name in fields or key in DELIBERATE:
        return None
    return f"{key} is not a config key ({section} has {', '.join(sorted(fields))})"


def problems_in(texts: list[Text]) -> list[str]:
    """Everything named in ``texts`` that the CLI or the config does not have."""
    commands = cli_commands()
    every_option = set().union(*(options_of(c) for c in commands.values()))
    sections = config_keys()
    found = []
    for t in texts:
        in_invocation: set[str] = set()
        for call in invocations(t.text):
            resolved = resolve(call.words, commands)
            if call.words[0].isupper():
                # A placeholder, as in `t2m COMMAND --help`, stands for every command.
                name, known, rest = "t2m COMMAND", every_option, call.words[1:]
            elif resolved is None:
                # Prose such as "t2m reads them" is not a command; a code span always is.
                if call.in_code or (call.words[0],) in commands:
                    found.append(f"{t.where}: `t2m {' '.join(call.words)}`: no such command")
                continue
            else:
                path, rest = resolved
                name, known = " ".join(("t2m", *path)), options_of(commands[path])
            for i, word in enumerate(rest):
                option = _option_word(word)
                if option is not None:
                    in_invocation.add(option)
                    if option not in known:
                        found.append(f"{t.where}: {name} has no option {option}")
                    value = rest[i + 1].strip("'\"") if i + 1 < len(rest) else ""
                    if option == "--set" and value and not value.startswith(("eval.", "{X}")):
                        found.append(f"{t.where}: --set takes eval.* keys, not {value}")
                    continue
                override = re.match(r"^['\"]?([a-z_]+\.[\w.]+)=", word)
                if override and override.group(1).split(".")[0] in sections:
                    problem = key_problem(override.group(1), sections)
                    if problem:
                        found.append(f"{t.where}: {problem}")
        code, prose = code_and_prose(t.text)
        for segment in (*code, *prose):
            if segment.lstrip().startswith(OTHER_TOOLS):
                continue
            for option in OPTION.findall(segment):
                if option not in in_invocation and option not in every_option:
                    found.append(f"{t.where}: no t2m command has an option {option}")
        if not t.docstring:
            # Docstrings name Python attributes (``dataset.attributes``); messages name keys.
            for key in dotted_keys(t.text, set(sections)):
                problem = key_problem(key, sections)
                if problem:
                    found.append(f"{t.where}: {problem}")
    return sorted(set(found))


# --- the tests ------------------------------------------------------------------------------


def test_named_options_commands_and_keys_exist_in_the_package() -> None:
    problems = problems_in(source_texts())
    assert not problems, "\n".join(problems)


def test_named_options_commands_and_keys_exist_in_the_readme_and_examples() -> None:
    problems = problems_in(document_texts())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("download the file yourself and pass it with --from-path.", "option --from-path"),
        ("Run `t2m fit examples/shapes.yaml` first.", "t2m fit"),
        ("`t2m evaluate runs/A --epochs 3`", "t2m evaluate has no option --epochs"),
        (
            "`t2m data import x --splits y --name z --from q`",
            "t2m data import has no option --from",
        ),
        ("`t2m data convert x`", "t2m data convert"),
        ("then: t2m train train.lrate=0.1", "train.lrate is not a config key"),
        ("set train.learning_rate=0.1", "train.learning_rate is not a config key"),
        ("`t2m evaluate --set train.lr=1`", "--set takes eval.* keys"),
    ],
)
def test_the_checker_finds_what_does_not_exist(text: str, expected: str) -> None:
    problems = problems_in([Text("x.py:1", text)])
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "text",
    [
        "t2m reads them with a restricted unpickler; see --from and --mirror.",
        "`t2m download shapes`; `t2m data import PATH --name`; `t2m --help`",
        "`t2m train --baseline W {X}`, then `t2m evaluate {X} --baseline W`.",
        "give overrides as section.key=value, e.g. eval.* keys or train.inner_* ones",
        "writes run.json, eval.json and features/pointnet.safetensors",
        "`pip install --upgrade t2m-cli`",
    ],
)
def test_the_checker_accepts_what_exists(text: str) -> None:
    assert problems_in([Text("x.py:1", text)]) == []


# --- folders and files ----------------------------------------------------------------------


def folder_problems(texts: list[Text]) -> list[str]:
    """``<cache>/X``, ``RUN/X`` and ``<root>/X`` (a dataset folder) in ``texts`` whose X the
    code does not write there."""
    from t2m_cli import paths, runs
    from t2m_cli.data import dataset
    from t2m_cli.data.modelnet import POINT_CLOUDS_DIR
    from t2m_cli.data.registry import downloads_dir
    from t2m_cli.data.shapes import DATASET_FILE

    cache = Path("cache")
    in_cache = {
        paths.datasets_dir(cache).name,
        paths.text_cache_dir(cache).name,
        downloads_dir(cache).name,
    }
    in_run = {
        paths.RUN_CONFIG,
        paths.RUN_INFO,
        paths.METRICS,
        paths.CHECKPOINT_BEST,
        paths.CHECKPOINT_LAST,
        paths.TRAIN_STATE,
        runs.BASELINES_DIR,
        "wandb",
    }
    in_dataset = {
        dataset.SPLIT_FILE,
        dataset.DESCRIPTIONS_FILE,
        dataset.ATTRIBUTES_FILE,
        dataset.FEATURES_DIR,
        DATASET_FILE,
        POINT_CLOUDS_DIR,
        "<class>",
    }
    anchors = {
        r"<cache>": in_cache,
        r"(?:RUN|RUN_FOLDER|<run_dir>|<run\.dir>/<run\.name>|runs/[\w<>{}]+)": in_run,
        r"(?:<root>|<cache>/datasets/[\w<>]+)": in_dataset,
    }
    found = []
    for t in texts:
        for anchor, names in anchors.items():
            for child in re.findall(rf"(?<![\w/.<]){anchor}/([\w<>.-]*[\w>])", t.text):
                if child not in names:
                    found.append(f"{t.where}: {child} is not one of {sorted(names)}")
    return found


def test_folders_named_in_texts_are_the_real_ones() -> None:
    problems = folder_problems(all_texts())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("kept in <cache>/download/x.zip", "download"),
        ("trained into RUN/baseline/W", "baseline"),
        ("see runs/A/best.pt", "best.pt"),
        ("<cache>/datasets/shapes/splits.json", "splits.json"),
    ],
)
def test_the_folder_checker_finds_what_does_not_exist(text: str, wrong: str) -> None:
    problems = folder_problems([Text("x.py:1", text)])
    assert len(problems) == 1 and f" {wrong} is not one of" in problems[0], problems


def test_the_default_runs_folder_is_runs() -> None:
    """Messages and help say "under runs/": the config and every --runs-dir default agree."""
    from t2m_cli.config import RunConfig

    assert RunConfig().dir == Path("runs")
    for path, command in cli_commands().items():
        for param in command.params:
            if "--runs-dir" in getattr(param, "opts", ()) and param.default is not None:
                assert Path(str(param.default)) == Path("runs"), path
    assert any("runs/" in t.text for t in all_texts())


def test_project_files_named_in_texts_exist() -> None:
    """Paths such as ``examples/shapes.yaml`` or ``t2m_cli/data/custom.py`` exist; a bare
    ``data/registry.py`` is read inside the package."""
    rooms = "|".join(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    found = []
    for t in all_texts():
        for name in re.findall(
            r"(?<![\w/.<-])((?:t2m_cli|examples|benchmarks|tests)/[\w./-]*\w)", t.text
        ):
            if not (ROOT / name).exists():
                found.append(f"{t.where}: {name} does not exist")
        for name in re.findall(rf"(?<![\w/.<-])((?:{rooms})/\w+\.py)\b", t.text):
            if not (PACKAGE / name).exists():
                found.append(f"{t.where}: t2m_cli/{name} does not exist")
    assert not found, "\n".join(found)


def test_nox_sessions_named_in_the_readme_exist() -> None:
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    sessions = set(re.findall(r"@nox\.session[^\n]*\ndef (\w+)", noxfile))
    named = set(re.findall(r"nox -s (\w+)", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert named and named <= sessions, named - sessions


# --- what the commands print ----------------------------------------------------------------

runner = CliRunner()


def test_encode_names_its_steps_on_a_features_only_dataset(tiny_root, tmp_path):
    result = runner.invoke(
        app,
        [
            "encode",
            "dataset.name=tiny",
            f"dataset.root={tiny_root}",
            "text.model=hashing",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert TEXT_STEP in result.stderr
    # The dataset has features and no meshes: nothing is done to point clouds.
    assert "point cloud" not in result.stderr
    assert "already there" in result.stdout


def test_encode_names_its_steps_on_a_mesh_dataset(tmp_path):
    from t2m_cli.data.shapes import generate_shapes

    generate_shapes(tmp_path / "cache" / "datasets" / "shapes", seed=0, n_train=1, n_test=1)
    fast = ["pointnet.epochs=1", "pointnet.n_points=32", "pointnet.train_points=16"]
    result = runner.invoke(
        app, ["encode", *fast, "text.model=hashing", "--cache-dir", str(tmp_path / "cache")]
    )
    assert result.exit_code == 0, result.output
    assert POINT_CLOUD_STEP in result.stderr and TEXT_STEP in result.stderr
    assert result.stderr.index(POINT_CLOUD_STEP) < result.stderr.index(TEXT_STEP)


def test_encode_reports_each_step_to_its_callback(tiny_root, tmp_path):
    from t2m_cli.config import load_config
    from t2m_cli.encoders.dataset import encode_dataset

    calls: list[tuple[str, int, int]] = []
    config = load_config(None, ["dataset.name=tiny", f"dataset.root={tiny_root}"])
    config.text.model = "hashing"
    report = encode_dataset(config, cache_dir=tmp_path, progress=lambda *a: calls.append(a))
    assert calls == [(TEXT_STEP, 0, report.texts), (TEXT_STEP, report.texts, report.texts)]


def _table_rows(stdout: str) -> list[list[str]]:
    """The body rows of the tables rich drew: cells between the vertical bars."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]


def test_download_list_on_a_pipe_prints_each_dataset_on_one_line(tmp_path):
    from t2m_cli.data.listing import list_datasets

    # A narrow terminal width must not matter: stdout here is not a terminal.
    result = runner.invoke(
        app, ["download", "--list", "--cache-dir", str(tmp_path)], env={"COLUMNS": "40"}
    )
    assert result.exit_code == 0, result.output
    rows = _table_rows(result.stdout)
    expected = list_datasets(tmp_path)
    assert [r[0] for r in rows] == [d.name for d in expected]
    for row, dataset in zip(rows, expected):
        assert row[3] == dataset.summary
        for name, *_ in dataset.files:
            assert name in row[2]
    assert "datasets" in result.stdout.splitlines()[0]


def test_evaluate_on_a_pipe_prints_each_method_on_one_line(tiny_root, tmp_path):
    from test_cli import _train

    from t2m_cli.cli.evaluate import PROTOCOL_TITLES

    assert _train(tiny_root, tmp_path).exit_code == 0
    args = ["evaluate", str(tmp_path / "runs" / "r1"), "--protocol", "pairs,zsl,gzsl"]
    args += ["--baseline", "ridge,eszsl", "--cache-dir", str(tmp_path / "cache"), "-q"]
    result = runner.invoke(app, args, env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for protocol in ("pairs", "zsl", "gzsl"):
        assert any(f"r1: {PROTOCOL_TITLES[protocol]}, mean +- SEM over" in line for line in lines)
    rows = _table_rows(result.stdout)
    methods = [r[0] for r in rows if r[0]]
    # pairs, zsl, gzsl: a row per method (gzsl: one more, calibrated, without a method name).
    assert methods == ["T2M-HN (EV)", "ridge", "eszsl"] * 3
    assert len(rows) == 3 * 4
    figure = re.compile(r"\d+\.\d( \+- \d+\.\d)?|n/a|none|c = \S+")
    for row in rows:
        assert all(figure.fullmatch(cell) for cell in row[1:] if cell), row


# --- advice that works ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("mine", "import the data again as a new dataset (`t2m data import PATH --name NAME`)"),
        ("awa", "and run `t2m download awa` again"),
    ],
)
def test_a_features_only_dataset_without_features_is_not_sent_to_encode(tmp_path, name, advice):
    from conftest import make_tiny_dataset

    root = make_tiny_dataset(tmp_path / "cache" / "datasets" / name)
    for path in (root / "features").iterdir():
        path.unlink()
    args = ["encode", f"dataset.name={name}", "text.model=hashing"]
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    # `t2m encode` builds only mesh datasets' features: sending users there would loop.
    assert "Run `t2m encode`" not in message
    assert "no 'pointnet' features" in message and advice in message


def test_a_mesh_dataset_without_features_is_sent_to_encode(tmp_path):
    from t2m_cli.data.shapes import generate_shapes

    generate_shapes(tmp_path / "cache" / "datasets" / "shapes", seed=0, n_train=1, n_test=1)
    args = ["train", "text.model=hashing", "--runs-dir", str(tmp_path / "runs")]
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    assert "Run `t2m encode`" in " ".join(result.stderr.split())


def test_a_damaged_feature_file_says_how_each_kind_of_dataset_rebuilds_it(tiny_root, tmp_path):
    import torch

    from t2m_cli.atomic import save_safetensors

    feature_file = tiny_root / "features" / "pointnet.safetensors"
    tensors = {"features": torch.zeros(4, 3), "labels": torch.zeros(3), "is_test": torch.zeros(4)}
    save_safetensors(feature_file, tensors, {"classes": '["class_00"]'})
    args = ["train", "dataset.name=tiny", f"dataset.root={tiny_root}", "text.model=hashing"]
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"{feature_file} has inconsistent shapes" in message
    # Without --force, `t2m encode` keeps a feature file that exists.
    assert "`t2m encode --force` for a mesh dataset" in message
    assert "`t2m data import`" in message


def test_xlsa17_without_val_loc_names_the_option_that_carves_validation(tmp_path):
    from test_xlsa17 import usable_files

    res101, splits = usable_files(tmp_path, with_val=False)
    args = ["data", "import", str(res101), "--format", "xlsa17", "--splits", str(splits)]
    args += ["--name", "small", "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--n-val N" in result.stderr
    result = runner.invoke(app, [*args, "--n-val", "2"])
    assert result.exit_code == 0, result.output


def test_environment_variables_named_in_texts_are_read() -> None:
    from t2m_cli.device import THREADS_ENV
    from t2m_cli.download.registry import ENV_MIRROR
    from t2m_cli.paths import ENV_HOME

    read = {ENV_HOME, ENV_MIRROR, THREADS_ENV}
    named = {
        (t.where, name)
        for t in all_texts()
        for name in re.findall(r"(?<![\w{])\$?(T2M_[A-Z_]+)\b", t.text)
    }
    assert named and all(name in read for _, name in named), sorted(named)


def test_the_readme_config_table_names_real_keys() -> None:
    """The README's table of sections and keys lists the config model's keys, all of them."""
    sections = config_keys()
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", (ROOT / "README.md").read_text(), re.M)
    checked = [
        (s, key) for s, cell in rows if s in sections for key in re.findall(r"`(\w+)`", cell)
    ]
    assert {s for s, _ in checked} == set(sections)
    assert [f"{s}.{key}" for s, key in checked if key not in sections[s]] == []
    listed = {f"{s}.{key}" for s, key in checked}
    assert (
        sorted(f"{s}.{k}" for s in sections for k in sections[s] if f"{s}.{k}" not in listed) == []
    )


def test_results_print_user_text_as_it_is_not_as_markup(tmp_path):
    # A folder or run name with brackets must reach stdout intact (rich would read [red] as a
    # style and drop it).
    from test_custom import make_folder
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    folder = make_folder(tmp_path / "mine [red]x[/red]")
    result = CliRunner().invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{folder}: no problems found"
