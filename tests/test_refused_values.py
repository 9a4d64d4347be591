"""Values t2m used to trust: names that are paths, outputs that are folders or inputs, seeds
torch cannot take, a `#` in an override, line separators in text, and messages that sent users
the wrong way. Each is refused with exit 2 and a message, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_dataset
from typer.testing import CliRunner

from t2m_cli.atomic import save_safetensors, staged_dir, write_text
from t2m_cli.cli import app
from t2m_cli.config import SEED_MAX, load_config
from t2m_cli.errors import ConfigError, UserInputError
from t2m_cli.paths import TRAIN_STATE

runner = CliRunner()
TINY = ["text.model=hashing", "train.epochs=2", "train.tasks_per_epoch=5", "model.hidden=8"]
DESCRIPTIONS = "red: a red round thing\nblue: a blue square thing\n"


def _message(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny dataset and one trained run, ``runs/r``; tests only read the run."""
    base = tmp_path_factory.mktemp("refused")
    make_tiny_dataset(base / "tiny")
    result = runner.invoke(app, _train_args(base, "--name", "r", "--runs-dir", str(base / "runs")))
    assert result.exit_code == 0, result.output
    return base


def _train_args(base: Path, *extra: str) -> list[str]:
    return [
        "train",
        f"dataset.root={base / 'tiny'}",
        *TINY,
        *extra,
        "--cache-dir",
        str(base / "cache"),
        "-q",
    ]


# 1. Names that are paths.

BAD_NAMES = ["..", ".", "../escape", "a/b", "/abs/olute", "   ", "x\\y", " lead", ".hidden", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_train_name_must_be_one_folder_name(base, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    result = runner.invoke(app, _train_args(base, "--name", name))
    assert result.exit_code == 2, result.output
    message = _message(result)
    assert "run.name (--name)" in message and "one folder name inside run.dir" in message
    assert "Traceback" not in result.output
    # Nothing written: not in the working folder, not under runs/, not beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize(
    ("token", "needle"),
    [
        ("run.name=..", "'..' is the folder above"),
        ("run.name=a/b", "it holds '/'"),
        ("run.name=x\\y", "it holds '\\'"),
        ("run.name=.", "'.' is the folder itself"),
        ("dataset.features=../../elsewhere", "dataset.features"),
        ("dataset.features=.x", "it starts with '.'"),
    ],
)
def test_an_override_that_names_a_path_is_refused(base, tmp_path, monkeypatch, token, needle):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, _train_args(base, token, "--runs-dir", str(tmp_path / "runs")))
    assert result.exit_code == 2, result.output
    assert needle in _message(result)
    assert list(tmp_path.iterdir()) == []


def test_run_name_in_a_config_file_names_its_line(base, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochs: 1\nrun:\n  name: ../escape\n")
    result = runner.invoke(app, ["train", str(config), f"dataset.root={base / 'tiny'}"])
    assert result.exit_code == 2, result.output
    assert f"run.name ({config}, line 4)" in _message(result)


def test_a_good_name_still_trains_after_a_refused_one(base, tmp_path):
    runs = str(tmp_path / "runs")
    assert runner.invoke(app, _train_args(base, "--name", "..", "--runs-dir", runs)).exit_code == 2
    result = runner.invoke(app, _train_args(base, "--name", "seed 0", "--runs-dir", runs))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "seed 0" / "best.safetensors").is_file()


def test_a_runs_dir_that_is_a_file_is_refused(base, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    result = runner.invoke(
        app, _train_args(base, "--name", "r", "--runs-dir", str(tmp_path / "runs"))
    )
    assert result.exit_code == 2, result.output
    assert "Cannot make the run folder" in _message(result)
    assert "--runs-dir" in _message(result)


@pytest.mark.parametrize("name", [".", "..", "../r", "W/.."])
def test_a_baseline_name_is_checked_before_it_becomes_a_path(base, name):
    run = base / "runs" / "r"
    keep = run / "baselines" / "keep"
    keep.mkdir(parents=True, exist_ok=True)
    before = sorted(p.name for p in run.iterdir())
    result = runner.invoke(
        app, ["train", "--baseline", name, str(run), "--cache-dir", str(base / "cache"), "-q"]
    )
    assert result.exit_code == 2, result.output
    assert "is not a baseline that needs training" in _message(result)
    # `--baseline .` used to delete RUN/baselines, `--baseline ..` to resume the run itself.
    assert keep.is_dir()
    assert sorted(p.name for p in run.iterdir()) == before


def test_evaluate_a_run_given_as_dot_names_it_by_its_folder(base, monkeypatch):
    monkeypatch.chdir(base / "runs" / "r")
    result = runner.invoke(app, ["evaluate", ".", "--json", "--cache-dir", str(base / "cache")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"][0]["run"] == "r"


# 2. Outputs that are folders, or the command's own inputs.


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        ("", "Cannot write '.' (the working folder): it does not end in a file name"),
        (".", "Cannot write '.' (the working folder): it does not end in a file name"),
        ("/", "Cannot write /: it does not end in a file name"),
        ("..", "Cannot write ..: it does not end in a file name"),
        ("adir", "Cannot write adir: it is a folder, not a file"),
        ("afile/c.safetensors", "afile is a file, not a folder"),
    ],
)
def test_induce_output_that_is_no_file_is_refused(base, tmp_path, monkeypatch, output, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.txt").write_text(DESCRIPTIONS)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    args = ["induce", "ok.txt", "--run", str(base / "runs" / "r"), "-o", output]
    result = runner.invoke(app, [*args, "--cache-dir", str(base / "cache")])
    assert result.exit_code == 2, result.output
    assert needle in _message(result)
    assert "writable" not in _message(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "ok.txt"]
    assert list((tmp_path / "adir").iterdir()) == []


def test_induce_refuses_to_write_over_its_descriptions_or_the_run(base, tmp_path):
    descriptions = tmp_path / "ok.txt"
    descriptions.write_text(DESCRIPTIONS)
    best = base / "runs" / "r" / "best.safetensors"
    before = best.read_bytes()
    for output, needle in ((descriptions, "is the descriptions file"), (best, "a file of run")):
        args = ["induce", str(descriptions), "--run", str(base / "runs" / "r"), "-o", str(output)]
        result = runner.invoke(app, [*args, "--cache-dir", str(base / "cache")])
        assert result.exit_code == 2, result.output
        assert needle in _message(result)
    assert descriptions.read_text() == DESCRIPTIONS
    assert best.read_bytes() == before


def test_evaluate_refuses_an_empty_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["evaluate", "--output", ""])
    assert result.exit_code == 2, result.output
    assert "--output is empty" in _message(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["", ".", "/", "..", "adir", "afile/x", "afile/x/y"])
def test_the_atomic_writers_refuse_a_target_that_is_no_file(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserInputError, match="Cannot write"):
        write_text(Path(target), "text")
    with pytest.raises(UserInputError, match="Cannot write"):
        save_safetensors(Path(target), {"w": torch.zeros(1)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("target", [".", "..", "afile/x"])
def test_staged_dir_refuses_a_target_with_no_folder_name(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserInputError, match="Cannot write"), staged_dir(Path(target)):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# 3. Seeds torch cannot take.

HUGE = "99999999999999999999"


@pytest.mark.parametrize("seed", [HUGE, "-1", str(SEED_MAX + 1)])
def test_train_seed_flag_out_of_range(base, tmp_path, seed):
    result = runner.invoke(app, _train_args(base, "--seed", seed, "--runs-dir", str(tmp_path)))
    assert result.exit_code == 2, result.output
    assert "train.seed (--seed)" in _message(result)
    assert "Overflow" not in result.output and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", ["train.seed", "pointnet.seed", "eval.seed"])
def test_every_config_seed_is_bounded(tmp_path, key):
    section, name = key.split(".")
    config = tmp_path / "c.yaml"
    config.write_text(f"{section}:\n  {name}: {HUGE}\n")
    with pytest.raises(ConfigError, match=rf"{key} \({config}, line 2\): Input should be less"):
        load_config(config)
    with pytest.raises(ConfigError, match=rf"{key} .*greater than or equal to 0"):
        load_config(None, [f"{key}=-1"])
    assert load_config(None, [f"{key}={SEED_MAX}"]) is not None


def test_the_largest_seed_is_one_torch_takes():
    torch.manual_seed(SEED_MAX)
    torch.Generator().manual_seed(SEED_MAX)


def test_evaluate_seed_out_of_range(tmp_path):
    result = runner.invoke(app, ["evaluate", "--seed", HUGE, "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"--seed {HUGE} is not a seed t2m can use" in _message(result)


def test_evaluate_set_seed_out_of_range(base):
    args = ["evaluate", str(base / "runs" / "r"), "--set", f"eval.seed={HUGE}"]
    result = runner.invoke(app, [*args, "--cache-dir", str(base / "cache")])
    assert result.exit_code == 2, result.output
    assert "eval.seed" in _message(result)


@pytest.mark.parametrize("seed", [HUGE, "-1"])
def test_download_seed_out_of_range(tmp_path, seed):
    result = runner.invoke(
        app, ["download", "shapes", "--seed", seed, "--cache-dir", str(tmp_path), "-q"]
    )
    assert result.exit_code == 2, result.output
    assert f"--seed {seed} is not a seed t2m can use" in _message(result)
    assert list(tmp_path.iterdir()) == []


# 4. A `#` in an override value is text, not a comment.


@pytest.mark.parametrize(
    ("token", "key", "value"),
    [
        ("run.dir=my runs #1", ("run", "dir"), Path("my runs #1")),
        ("dataset.root=/x/no such #root", ("dataset", "root"), Path("/x/no such #root")),
        ("run.name=#1", ("run", "name"), "#1"),
        ("run.name=a\t#b", ("run", "name"), "a\t#b"),
        ('run.name="my #1"', ("run", "name"), "my #1"),
        ("run.name=a#b", ("run", "name"), "a#b"),
        ("wandb.tags=[a, '#b']", ("wandb", "tags"), ["a", "#b"]),
    ],
)
def test_a_hash_in_an_override_is_part_of_the_value(token, key, value):
    config = load_config(None, [token])
    assert getattr(getattr(config, key[0]), key[1]) == value


def test_a_hash_in_run_dir_makes_that_folder(base, tmp_path):
    runs = tmp_path / "my runs #1"
    result = runner.invoke(app, _train_args(base, f"run.dir={runs}", "--name", "r"))
    assert result.exit_code == 0, result.output
    assert (runs / "r" / "config.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my runs #1"]


def test_a_hash_in_dataset_root_is_the_folder_named(tmp_path):
    result = runner.invoke(
        app, ["encode", f"dataset.root={tmp_path}/no such #root", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert f"There is no dataset at {tmp_path}/no such #root" in _message(result)


# 5. Line and paragraph separators in text.


@pytest.mark.parametrize("separator", ["\u2028", "\u2029"])
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_unicode_line_separators_are_refused(base, tmp_path, separator, via):
    raw = f"red: a red thing{separator}blue: a blue thing\ngreen\n".encode()
    out = tmp_path / "c.t2m.safetensors"
    args = ["--run", str(base / "runs" / "r"), "-o", str(out), "--cache-dir", str(base / "cache")]
    if via == "file":
        (tmp_path / "d.txt").write_bytes(raw)
        result = runner.invoke(app, ["induce", str(tmp_path / "d.txt"), *args])
    else:
        result = runner.invoke(app, ["induce", "-", *args], input=raw)
    assert result.exit_code == 2, result.output
    message = _message(result)
    assert "line 1, column 17" in message and f"U+{ord(separator):04X}" in message
    assert "use a newline" in message
    assert not out.exists()


def test_a_line_separator_in_a_config_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("run:\n  name: a\u2028b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 2, column 10: the line separator U\+2028"):
        load_config(config)


def test_a_hash_inside_a_descriptions_line_is_text():
    from t2m_cli.induction import parse_descriptions

    classes = parse_descriptions("  # a comment\nred: a red # thing\nblue #2\n", "d.txt")
    assert classes == [("red", "a red # thing"), ("blue #2", "blue #2")]


# 6. Messages that sent users the wrong way.


@pytest.mark.parametrize("name", ["..", ".", "-x", "_x"])
def test_data_import_name_must_start_with_a_letter_or_digit(tmp_path, name):
    result = runner.invoke(
        app, ["data", "import", str(tmp_path), "--name", name, "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "must start with a letter or digit" in _message(result)


def test_resume_without_a_state_file_says_so(base, tmp_path):
    result = runner.invoke(app, _train_args(base, "--name", "r2", "--runs-dir", str(tmp_path)))
    assert result.exit_code == 0, result.output
    run = tmp_path / "r2"
    (run / TRAIN_STATE).unlink()
    result = runner.invoke(app, ["train", "--resume", str(run), "--cache-dir", str(base / "cache")])
    assert result.exit_code == 2, result.output
    message = _message(result)
    assert f"has no {TRAIN_STATE}" in message and "the file was removed" in message
    assert "under another run.name" in message


def test_a_dataset_root_that_is_not_there_says_to_fix_it(tmp_path):
    for command in ("train", "encode"):
        result = runner.invoke(
            app,
            [command, f"dataset.root={tmp_path / 'nonexistent'}", "--cache-dir", str(tmp_path)],
        )
        assert result.exit_code == 2, result.output
        message = _message(result)
        assert f"There is no dataset at {tmp_path / 'nonexistent'}" in message
        assert "Fix dataset.root, or drop it" in message
        assert "t2m download" not in message
