"""Config overrides (YAML tokens and typed values), validation messages, and the CLI flags."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.config import load_config
from t2m_cli.config_text import apply_overrides, format_validation_error
from t2m_cli.errors import ConfigError

runner = CliRunner()

# Overrides.


@pytest.mark.parametrize(
    ("token", "key", "value"),
    [
        ("train.epochs=3", "epochs", 3),
        ("train.lr=0.5", "lr", 0.5),
        ("train.shuffle=true", "shuffle", True),
        ("train.note=null", "note", None),
        ("train.note=abc", "note", "abc"),
        ("train.note='3'", "note", "3"),
        ('train.note="a: b"', "note", "a: b"),
        ("train.note=", "note", ""),
        ("train.note=x=y", "note", "x=y"),
        ("train.tags=[a, b]", "tags", ["a", "b"]),
        (
            "train.opt={name: adam, betas: [0.9, 0.99]}",
            "opt",
            {"name": "adam", "betas": [0.9, 0.99]},
        ),
    ],
)
def test_an_override_reads_its_value_as_yaml(token, key, value):
    result = apply_overrides({"train": {"lr": 0.1}}, [token])
    assert result["train"][key] == value
    assert type(result["train"][key]) is type(value)


def test_overrides_create_missing_sections_and_apply_in_order():
    result = apply_overrides(
        {"train": {"lr": 0.1}}, ["model.hn_type=IVEV", "a.b.c=1", "train.lr=0.2", "train.lr=0.3"]
    )
    assert result == {"train": {"lr": 0.3}, "model": {"hn_type": "IVEV"}, "a": {"b": {"c": 1}}}


def test_typed_values_are_set_as_they_are_and_after_the_tokens():
    values = {"run.name": "007", "run.dir": Path("/data/runs #2"), "train.lr": 0.5}
    result = apply_overrides({"train": {"lr": 0.1}}, ["train.lr=0.2", "run.name=x"], values)
    assert result == {"train": {"lr": 0.5}, "run": {"name": "007", "dir": Path("/data/runs #2")}}


def test_overrides_leave_the_input_untouched():
    data = {"train": {"lr": 0.1, "tags": ["a"]}, "model": {"hn_type": "EV"}}
    before = copy.deepcopy(data)
    result = apply_overrides(data, ["train.lr=0.2", "model.x.y=1"], {"train.seed": 3})
    assert data == before
    assert result["train"] == {"lr": 0.2, "tags": ["a"], "seed": 3}


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("train.lr", "no '='"),
        ("=3", "empty key"),
        ("train.=3", "empty key"),
        ("train..lr=3", "empty key"),
        ("train.lr.x=1", "'train.lr' is 0.1, not a mapping"),
        ("train.tags=[a, b", "The value of override 'train.tags' is not valid YAML at line 1"),
        ("train.x=&a [1, *a]", "anchors and aliases"),
        ("train.x=!!python/name:os.system ''", "is not allowed"),
    ],
)
def test_a_bad_override_is_a_config_error(token, expected):
    with pytest.raises(ConfigError) as info:
        apply_overrides({"train": {"lr": 0.1, "tags": ["a"]}}, [token])
    assert expected in str(info.value)


# Control characters and raw line separators are not text YAML keeps inside a quoted scalar.
_NAMES = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _NAMES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_NAMES, inner, max_size=4),
    max_leaves=12,
)


@given(value=_JSON)
@example(value="007")
@example(value=5e-324)
def test_an_override_of_json_reads_back_as_written(value):
    # JSON is YAML flow syntax, so `key=json` must give the value back unchanged.
    token = f"train.x={json.dumps(value, ensure_ascii=False)}"
    assert apply_overrides({}, [token])["train"]["x"] == value


# Validation messages.


class _Train(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 0.01
    epochs: int = 1
    tags: list[str] = []


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hn_type: Literal["EV", "IVEV", "W", "WW"] = "EV"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train: _Train = _Train()
    model: _Model = _Model()


def _message(data: object, lines: dict | None = None) -> str:
    with pytest.raises(ValidationError) as info:
        _Config.model_validate(data)
    return format_validation_error(info.value, "run.yaml", _Config, lines)


def test_a_misspelt_key_is_unknown_with_a_suggestion():
    message = _message({"train": {"lrr": 0.1}})
    assert "  train.lrr: unknown key 'train.lrr'; did you mean 'train.lr'?" in message
    assert message.startswith("Invalid config in run.yaml (1 error):")
    assert "did you mean 'train'?" in _message({"trian": {}})


def test_without_a_close_match_the_allowed_keys_are_listed():
    assert "unknown key 'model.zzz'; allowed keys here: hn_type" in _message({"model": {"zzz": 1}})


def test_errors_name_the_key_its_line_and_the_value():
    lines = {("train",): 1, ("train", "epochs"): 2, ("train", "tags"): 3, ("model",): 5}
    message = _message(
        {"train": {"epochs": "many", "tags": ["a", 3]}, "model": {"hn_type": "X"}}, lines
    )
    assert "(3 errors)" in message
    assert "  train.epochs (run.yaml, line 2): Input should be a valid integer" in message
    assert "(got 'many')" in message
    assert "  train.tags[1] (run.yaml, line 3): Input should be a valid string (got 3)" in message
    # No line of its own: the closest enclosing key in the file stands for it.
    assert (
        "  model.hn_type (run.yaml, line 5): Input should be 'EV', 'IVEV', 'W' or 'WW'" in message
    )
    assert message.endswith("\nFix these keys in run.yaml.")


def test_huge_inputs_are_truncated_and_many_errors_capped():
    nested: list[object] = ["x" * 10_000]
    for _ in range(50):
        nested = [nested, nested]  # 2**50 leaves if anything walked it in full
    message = _message({"train": {"epochs": "9" * 100_000, "lr": nested}})
    assert all(len(line) < 200 for line in message.splitlines())
    message = _message({"train": {f"k{i}": i for i in range(50)}})
    assert "(50 errors)" in message and "... and 30 more" in message


def test_load_config_names_the_line_in_the_file_but_not_for_an_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lrr: 0.1\n  epochs: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.epochs=-3"])
    message = str(info.value)
    assert message.startswith(f"Invalid config in {path} and on the command line (2 errors):")
    assert f"train.lrr ({path}, line 2): unknown key 'train.lrr'; did you mean" in message
    assert "  train.epochs (train.epochs=-3): Input should be greater than 0 (got -3)" in message
    assert message.endswith(
        f"Fix these keys in {path}, and train.epochs=-3 on the command line (written as "
        "section.key=value)."
    )


def test_load_config_takes_typed_values_with_no_yaml_between():
    config = load_config(None, ["run.name=x"], {"run.name": "2024-01-01", "train.epochs": 2})
    assert config.run.name == "2024-01-01" and config.train.epochs == 2


# Where a bad value came from: the file and its line, or the setting on the command line.

SMALL = "train:\n  epochs: 2\n"


@pytest.mark.parametrize(
    ("args", "error", "fix"),
    [
        (
            ["train.lrr=1"],
            "  train.lrr (train.lrr=1): unknown key 'train.lrr'; did you mean 'train.lr'?",
            "Fix train.lrr=1 on the command line (written as section.key=value).",
        ),
        (
            ["--device", "tpu"],
            "  train.device (--device): Value error, must be 'auto', 'cpu', 'cuda' or 'cuda:N' "
            "(got 'tpu')",
            "Fix --device on the command line.",
        ),
        (
            ["wandb.mode=bogus"],
            "  wandb.mode (wandb.mode=bogus): Input should be 'online' or 'offline' (got 'bogus')",
            "Fix wandb.mode=bogus on the command line (written as section.key=value).",
        ),
        (
            ["run.name=007"],
            "  run.name (run.name=007): Input should be a valid string (got 7); an override's "
            "value is read as YAML, where 007 is a number: to keep it text, write "
            "'run.name=\"007\"'",
            "Fix run.name=007 on the command line (written as section.key=value).",
        ),
        (
            ["run.name=2024-01-01"],
            "where 2024-01-01 is a date: to keep it text, write 'run.name=\"2024-01-01\"'",
            "Fix run.name=2024-01-01 on the command line",
        ),
        (
            ["wandb.name=true"],
            "where true is a boolean: to keep it text, write 'wandb.name=\"true\"'",
            "Fix wandb.name=true on the command line",
        ),
    ],
)
def test_a_bad_setting_is_blamed_on_the_command_line_not_the_file(tmp_path, args, error, fix):
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(config), *args, "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: Invalid settings on the command line (1 error):"
    assert error in lines[1] and lines[1].startswith("  "), lines[1]
    assert lines[-1].startswith(fix), lines[-1]
    assert "small.yaml" not in result.stderr and "Traceback" not in result.output
    assert not runs.exists()


def test_a_bad_file_and_a_bad_setting_each_name_their_place(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epochs: 2\n  lrr: 3\npointnet:\n  global_dim: 64\n")
    result = runner.invoke(app, ["train", str(config), "train.epochs=-3"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: Invalid config in {config} and on the command line (3 errors):"
    assert f"  train.lrr ({config}, line 3): unknown key 'train.lrr'" in result.stderr
    assert "  train.epochs (train.epochs=-3): Input should be greater than 0 (got -3)" in lines
    # A check over a section (feature_dim against global_dim) names the section's line.
    assert f"  pointnet ({config}, line 4): Value error, pointnet.feature_dim 256" in result.stderr
    assert lines[-1] == (
        f"Fix these keys in {config}, and train.epochs=-3 on the command line (written as "
        "section.key=value)."
    )
    # A setting that takes part in a section's check is named beside the file's line.
    result = runner.invoke(app, ["train", str(config), "pointnet.feature_dim=128"])
    assert result.exit_code == 2
    assert f"  pointnet ({config}, line 4; pointnet.feature_dim=128): " in result.stderr

    # The file alone: fix it there, or override.
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(f"Error: Invalid config in {config} (2 ")
    assert result.stderr.splitlines()[-1] == (
        f"Fix these keys in {config}, or override them with section.key=value."
    )


def test_a_check_across_sections_names_both_places(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    result = runner.invoke(
        app, ["train", str(config), "model.hn_type=W", "train.classes_per_task=3"]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: Invalid config in {config} and on the command line (1 error):"
    assert lines[1].startswith("  (top level): Value error, model.hn_type W fixes the number")
    assert lines[-1] == (
        f"Fix these keys in {config}, and the settings on the command line (written as "
        "section.key=value)."
    )


# The CLI flags travel as typed values.

TINY = ["text.model=hashing", "train.epochs=1", "train.tasks_per_epoch=5", "model.hidden=8"]


def _train(tiny_root: Path, tmp_path: Path, *flags: str):
    return runner.invoke(
        app,
        [
            "train",
            f"dataset.root={tiny_root}",
            *TINY,
            *flags,
            "--cache-dir",
            str(tmp_path / "cache"),
            "-q",
        ],
    )


@pytest.mark.parametrize("name", ["007", "2024-01-01", "true", "1e3"])
def test_train_name_flag_is_the_folder_name_as_typed(tiny_root, tmp_path, name):
    result = _train(tiny_root, tmp_path, "--name", name, "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / name / "config.yaml").is_file()
    assert load_config(tmp_path / "runs" / name / "config.yaml").run.name == name


def test_train_runs_dir_flag_keeps_a_hash(tiny_root, tmp_path):
    runs = tmp_path / "data" / "runs #2"
    result = _train(tiny_root, tmp_path, "--name", "r", "--runs-dir", str(runs))
    assert result.exit_code == 0, result.output
    assert (runs / "r" / "config.yaml").is_file()
    assert not (tmp_path / "data" / "runs").exists()


# The example configs.

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(path):
    load_config(path)


def test_the_modelnet40_example_is_the_originals_extractor_without_a_time_budget():
    config = load_config(EXAMPLES / "modelnet40.yaml")
    assert config.dataset.name == "modelnet40"
    pointnet = config.pointnet
    assert (pointnet.n_points, pointnet.global_dim, pointnet.feature_dim) == (2500, 1024, 256)
    assert pointnet.max_seconds is None  # null: the epochs alone end training


def test_the_paper_supersets_example_is_the_originals_superset_model():
    config = load_config(EXAMPLES / "paper-supersets.yaml")
    assert (config.model.hn_type, config.train.task) == ("W", "supersets")
    assert config.train.superset_balance == "subsample"


@pytest.mark.parametrize("hn_type", ["W", "WW"])
def test_fixed_k_hypernetworks_may_train_supersets_but_pairs_only_among_class_tasks(hn_type):
    config = load_config(None, ["train.task=supersets", f"model.hn_type={hn_type}"])
    assert config.train.superset_balance == "none"  # today's tasks unless asked
    with pytest.raises(ConfigError, match=r"train\.classes_per_task=2"):
        load_config(None, ["train.classes_per_task=3", f"model.hn_type={hn_type}"])
