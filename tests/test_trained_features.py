"""A run is used only with the features it was trained on: evaluate, induce, resume and
`train --baseline W` refuse a feature file that now holds other features."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from conftest import interrupted_run
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.data.dataset import FEATURES_DIR, load_features, save_features
from t2m_cli.induction import InducedClassifier
from t2m_cli.models.checkpoint import load_checkpoint, save_checkpoint

runner = CliRunner()


def _rewrite(feature_file: Path, scale: float) -> None:
    """Write the feature file again with its features scaled (as `t2m encode` rewrites it)."""
    features, labels, is_test, classes, meta = load_features(feature_file)
    save_features(feature_file, features * scale, labels, is_test, classes, meta)


def _commands(run: Path, tmp_path: Path) -> dict[str, list[str]]:
    descriptions = tmp_path / "d.txt"
    descriptions.write_text("a: a red round thing\nb: a blue square thing\n")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    return {
        "evaluate": ["evaluate", str(run), "-q", *cache],
        "induce": [
            "induce",
            str(descriptions),
            "--run",
            str(run),
            "-o",
            str(tmp_path / "c.safetensors"),
            *cache,
        ],
        "baseline": ["train", "--baseline", "W", str(run), "-q", *cache],
        "resume": ["train", "--resume", str(run), "-q", *cache],
    }


def test_a_run_refuses_features_rewritten_after_training(tiny_root, tmp_path):
    run = interrupted_run(tiny_root, tmp_path)
    feature_file = tiny_root / FEATURES_DIR / "pointnet.safetensors"
    info = json.loads((run / "run.json").read_text())["dataset"]
    assert info["feature_file"] == str(feature_file)
    assert info["features_built_with"] == {"extractor": "tiny synthetic"}
    assert len(info["features_sha256"]) == 64
    _, meta, _ = load_checkpoint(run / "best.safetensors")
    assert meta["features_sha256"] == info["features_sha256"]

    original = feature_file.read_bytes()
    _rewrite(feature_file, 2.0)
    commands = _commands(run, tmp_path)
    for name, command in commands.items():
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (name, result.output)
        message = " ".join(result.stderr.split())
        assert (
            f"Run {run} was trained on other features than {feature_file} holds now: the "
            "SHA-256 of its features is" in message
        ), name
        assert "Put back the feature file the run was trained on" in message
        assert "or train the run again on the features as they are now (`t2m train`)" in message
        assert "Traceback" not in result.output
    assert not (tmp_path / "c.safetensors").exists()
    assert not (run / "baselines").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1

    # The file the run was trained on, put back: every command works again.
    feature_file.write_bytes(original)
    for name, command in commands.items():
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (name, result.output)
    result = runner.invoke(app, [*commands["evaluate"], "--baseline", "W"])
    assert result.exit_code == 0, result.output
    classifier = InducedClassifier.load(tmp_path / "c.safetensors")
    assert classifier.info["features_sha256"] == info["features_sha256"]


def test_induce_without_the_dataset_feature_file_induces_as_before(tiny_root, tmp_path):
    run = interrupted_run(tiny_root, tmp_path)
    (tiny_root / FEATURES_DIR / "pointnet.safetensors").unlink()
    result = runner.invoke(app, _commands(run, tmp_path)["induce"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.safetensors").is_file()


def test_the_w_baseline_is_checked_against_the_features_it_was_trained_on(tiny_root, tmp_path):
    run = interrupted_run(tiny_root, tmp_path)
    commands = _commands(run, tmp_path)
    assert runner.invoke(app, commands["baseline"]).exit_code == 0
    # A W baseline trained on other features than its run (written by hand here: the run's
    # own check refuses to train one so).
    best = run / "baselines" / "W" / "best.safetensors"
    model, meta, norm = load_checkpoint(best)
    save_checkpoint(best, model, {**meta, "features_sha256": "0" * 64}, norm)
    result = runner.invoke(app, [*commands["evaluate"], "--baseline", "W"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"The W baseline of run {run} was trained on other features than" in message


def test_checkpoints_without_a_feature_digest_are_accepted(tiny_root, tmp_path):
    run = interrupted_run(tiny_root, tmp_path)
    for name in ("best.safetensors", "last.safetensors"):
        model, meta, norm = load_checkpoint(run / name)
        older = {k: v for k, v in meta.items() if not k.startswith(("feature_", "features_"))}
        save_checkpoint(run / name, model, older, norm)
    _rewrite(tiny_root / FEATURES_DIR / "pointnet.safetensors", 2.0)
    for name, command in _commands(run, tmp_path).items():
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (name, result.output)


def test_pointnet_features_built_again_name_the_setting_and_the_command_that_restores_them(
    tmp_path,
):
    from t2m_cli.data.shapes import generate_shapes

    root = generate_shapes(tmp_path / "cache" / "datasets" / "shapes", seed=0, n_train=1, n_test=1)
    feature_file = root / FEATURES_DIR / "pointnet.safetensors"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    fast = ["pointnet.epochs=1", "pointnet.n_points=32", "pointnet.train_points=16"]
    encode = ["encode", *fast, "text.model=hashing", *cache]
    assert runner.invoke(app, encode).exit_code == 0

    # Trained with the default pointnet section on features built with other settings: it
    # trains, says so in one line, and run.json records what built the features.
    settings = ["text.model=hashing", "train.epochs=1", "train.tasks_per_epoch=10"]
    runs = ["--runs-dir", str(tmp_path / "runs"), "--name", "base"]
    result = runner.invoke(app, ["train", *settings, "model.hidden=16", *runs, *cache])
    assert result.exit_code == 0, result.output
    message = " ".join(result.stderr.split())
    assert (
        f"{feature_file} was built with pointnet.n_points=32, pointnet.train_points=16, "
        "pointnet.epochs=1, not the config's pointnet.n_points=1024, "
        "pointnet.train_points=256, pointnet.epochs=20: training reads the features as built"
    ) in message
    run = tmp_path / "runs" / "base"
    info = json.loads((run / "run.json").read_text())["dataset"]
    assert (info["features_built_with"]["n_points"], info["features_built_with"]["seed"]) == (32, 0)
    assert "pointnet.n_points=32" in info["features_note"]
    evaluate = ["evaluate", str(run), "-q", *cache]
    assert runner.invoke(app, evaluate).exit_code == 0

    result = runner.invoke(app, [*encode, "pointnet.seed=1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, evaluate)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"Run {run} was trained on other features than {feature_file} holds now" in message
    assert "the file was built again since (pointnet.seed=1 now, 0 for the run)" in message
    command = (
        f"t2m encode {run / 'config.yaml'} pointnet.n_points=32 pointnet.train_points=16 "
        "pointnet.epochs=1 --force"
    )
    assert f"`{command}`" in message

    # The command the message gives builds the run's features again, as they were.
    result = runner.invoke(app, [*shlex.split(command)[1:], *cache])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, evaluate)
    assert result.exit_code == 0, result.output


def test_the_digest_covers_the_tensors_and_class_names_not_the_file_meta(tmp_path):
    from t2m_cli.data.dataset import features_digest, read_feature_source

    x, y = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    t = torch.tensor([False, True] * 3)
    digest = features_digest(x, y, t, ["a", "b", "c"])
    path = tmp_path / "f.safetensors"
    save_features(path, x, y, t, ["a", "b", "c"], {"seconds": 1.0})
    assert read_feature_source(path).sha256 == digest
    save_features(path, x, y, t, ["a", "b", "c"], {"seconds": 2.0})
    assert read_feature_source(path).sha256 == digest
    for changed in (
        features_digest(x + 1e-6, y, t, ["a", "b", "c"]),
        features_digest(x, y.flip(0), t, ["a", "b", "c"]),
        features_digest(x, y, ~t, ["a", "b", "c"]),
        features_digest(x, y, t, ["a", "b", "d"]),
        features_digest(x.reshape(4, 6), y, t, ["a", "b", "c"]),
    ):
        assert changed != digest


@pytest.mark.parametrize(("done", "said"), [(3.0, True), (20.0, False)])
def test_encode_says_when_pointnet_stopped_at_its_time_budget(tmp_path, done, said):
    from t2m_cli.encoders.dataset import _log_time_budget

    path = tmp_path / "pointnet.safetensors"
    meta = {"epochs_trained": done, "epochs": 20, "max_seconds": 90.0}
    save_features(
        path, torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([False, True]), ["a", "b"], meta
    )
    lines: list[str] = []
    _log_time_budget(path, lines.append)
    assert bool(lines) == said
    if said:
        assert "after 3.0 of 20 epochs" in lines[0] and "pointnet.max_seconds=null" in lines[0]
