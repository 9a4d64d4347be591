"""The whole pipeline on the real embedded `shapes` dataset, through the CLI (slow)."""

from __future__ import annotations

import json

import pytest
from conftest import fig
from typer.testing import CliRunner

from t2m_cli.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_download_encode_train_evaluate_induce_on_shapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, ["download", "shapes", "-q", *cache])
    assert result.exit_code == 0, result.output
    fast = ["pointnet.epochs=1", "pointnet.n_points=256", "pointnet.train_points=128"]
    result = runner.invoke(app, ["encode", *fast, "-q", *cache])
    assert result.exit_code == 0, result.output
    assert "built" in result.stdout
    result = runner.invoke(app, ["encode", *fast, "-q", *cache])
    assert result.exit_code == 0 and "already there" in result.stdout

    result = runner.invoke(
        app, ["train", "train.epochs=2", "train.tasks_per_epoch=20", "--name", "r", "-q", *cache]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", "runs/r", "--json", *cache])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert fig(doc, "pairs", "seen")["n"] == 26 * 25 and fig(doc, "pairs", "unseen")["n"] == 7 * 6

    descriptions = tmp_path / "d.txt"
    descriptions.write_text("washer: a flat ring like a washer\npole: a tall thin pole\n")
    result = runner.invoke(app, ["induce", str(descriptions), "--json", *cache])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["feature_dim"] == 256 and out["text_model"] == "all-MiniLM-L6-v2"
