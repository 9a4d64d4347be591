"""The `t2m` command line, driven through CliRunner: exit code first, then the output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fig, invoke_train
from typer.testing import CliRunner

from t2m_cli.cli import app

runner = CliRunner()

TINY = ["text.model=hashing", "train.epochs=3", "train.tasks_per_epoch=30", "model.hidden=16"]


def _train(tiny_root: Path, tmp_path: Path, name: str = "r1", *extra: str):
    return invoke_train(tiny_root, tmp_path, name, *TINY, *extra)


@pytest.mark.parametrize("cmd", [[], ["download"], ["encode"], ["train"], ["evaluate"], ["induce"]])
def test_help_does_not_import_torch(cmd):
    code = (
        "import sys\n"
        "from t2m_cli.cli import app\n"
        f"sys.argv = ['t2m', *{cmd!r}, '--help']\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'trimesh') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "t2m_cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "induce" in proc.stdout


def test_train_evaluate_induce_end_to_end(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _train(tiny_root, tmp_path)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "r1"
    assert "runs" in result.stdout
    for name in (
        "config.yaml",
        "run.json",
        "metrics.jsonl",
        "best.safetensors",
        "last.safetensors",
    ):
        assert (run / name).is_file(), name
    info = json.loads((run / "run.json").read_text())
    assert info["seed"] == 0 and "torch" in info["versions"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3

    result = runner.invoke(app, ["evaluate", str(run), "--json", "--cache-dir", "cache"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["schema"] == "t2m-eval/1"
    assert fig(report, "pairs", "seen")["n"] == 7 * 6
    unseen = fig(report, "pairs", "unseen")
    assert unseen["n"] == 4 * 3 and unseen["over"] == "pairs"
    assert 0 <= unseen["mean"] <= 1 and report["runs"][0]["hn_type"] == "EV"
    assert report["runs"][0]["run"] == "r1" and report["runs"][0]["draws"] == 1

    result = runner.invoke(app, ["evaluate", "--runs-dir", "runs", "--cache-dir", "cache"])
    assert result.exit_code == 0, result.output
    assert "unseen" in result.stdout and "T2M-HN (EV)" in result.stdout

    (tmp_path / "mine.txt").write_text("a: a red round thing\nb: a blue square thing\nc\n")
    result = runner.invoke(
        app, ["induce", "mine.txt", "--runs-dir", "runs", "--json", "--cache-dir", "cache"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["classes"] == ["a", "b", "c"] and out["feature_dim"] == 16
    from t2m_cli.induction import InducedClassifier

    clf = InducedClassifier.load(tmp_path / "mine.t2m.safetensors")
    assert clf.weight.shape == (3, 16) and clf.info["run"] == "r1"

    result = runner.invoke(
        app,
        ["induce", "-", "--run", str(run), "-o", "stdin.safetensors", "--cache-dir", "cache"],
        input="x: red\ny: blue\n",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "stdin.safetensors").is_file()


def test_same_run_name_twice_is_refused(tiny_root, tmp_path):
    assert _train(tiny_root, tmp_path).exit_code == 0
    result = _train(tiny_root, tmp_path)
    assert result.exit_code == 2
    assert "already holds a run" in result.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no class"),
        ("cat: a small furry animal\n", "only one class"),
        ("cat: furry\ndog: barks\ncat: meows\n", "already defined on line 1"),
    ],
)
def test_bad_descriptions_exit_2_and_write_nothing(tmp_path, monkeypatch, text, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.txt").write_text(text)
    result = runner.invoke(app, ["induce", "bad.txt", "--runs-dir", "runs"])
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


def test_missing_descriptions_file(tmp_path):
    result = runner.invoke(app, ["induce", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_config_error_names_the_dotted_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lrr: 0.1\n")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert "train.lrr" in result.stderr and "train.lr" in result.stderr
    result = runner.invoke(app, ["train", "train.epochs=-3"])
    assert result.exit_code == 2
    assert "train.epochs" in result.stderr
    result = runner.invoke(app, ["train", "--hn-type", "XX"])
    assert result.exit_code == 2
    assert "model.hn_type" in result.stderr


def test_billion_laughs_config_fails_fast(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert len(result.stderr) < 1000


def test_stray_argument_and_missing_config(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["train", "train.epochs=3", "oops"])
    assert result.exit_code == 2
    assert "section.key=value" in result.stderr


def test_dataset_not_downloaded_says_what_to_run(tmp_path):
    result = runner.invoke(app, ["train", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "t2m download shapes" in result.stderr
    # A download never writes to a dataset.root: one that is not there is to be fixed.
    result = runner.invoke(
        app, ["train", f"dataset.root={tmp_path / 'absent'}", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "Fix dataset.root" in result.stderr and "t2m download" not in result.stderr


def test_unknown_dataset_and_unavailable_device(tiny_root, tmp_path):
    result = runner.invoke(app, ["download", "imagenet", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "shapes" in result.stderr
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = _train(tiny_root, tmp_path, "r2", "train.device=cuda")
    assert result.exit_code == 2
    assert "--device cpu" in result.stderr


def test_evaluate_a_folder_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a t2m run folder" in result.stderr
    result = runner.invoke(app, ["evaluate", "--runs-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "t2m train" in result.stderr


def test_error_text_with_brackets_is_printed_verbatim(tmp_path):
    (tmp_path / "bad.txt").write_text("[bold]x[/bold]: y\n")
    result = runner.invoke(app, ["induce", str(tmp_path / "bad.txt")])
    assert result.exit_code == 2
    assert "'[bold]x[/bold]'" in result.stderr


@pytest.mark.parametrize("hn_type", ["IVEV", "W", "WW"])
def test_train_and_induce_other_hypernetwork_types(tiny_root, tmp_path, hn_type):
    result = _train(tiny_root, tmp_path, hn_type, "--hn-type", hn_type)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / hn_type
    result = runner.invoke(app, ["evaluate", str(run), "--json", "--cache-dir", "cache"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"][0]["hn_type"] == hn_type
    three = tmp_path / "three.txt"
    three.write_text("a: red\nb: blue\nc: round\n")
    result = runner.invoke(app, ["induce", str(three), "--run", str(run), "--json"])
    if hn_type in ("W", "WW"):
        assert result.exit_code == 2
        assert "exactly 2 classes" in result.stderr
        assert not (tmp_path / "three.t2m.safetensors").exists()
    else:
        assert result.exit_code == 0, result.output
        from t2m_cli.induction import InducedClassifier

        clf = InducedClassifier.load(tmp_path / "three.t2m.safetensors")
        assert clf.kind == "mlp" and clf.logits(torch.randn(4, 16)).shape == (4, 3)


def test_tasks_of_three_classes(tiny_root, tmp_path):
    result = _train(tiny_root, tmp_path, "k3", "train.classes_per_task=3", "--hn-type", "IVEV")
    assert result.exit_code == 0, result.output
    result = _train(tiny_root, tmp_path, "w3", "train.classes_per_task=3", "--hn-type", "W")
    assert result.exit_code == 2
    assert "train.classes_per_task=2" in result.stderr


def test_evaluate_zsl_and_gzsl(tiny_root, tmp_path):
    assert _train(tiny_root, tmp_path, "ev").exit_code == 0
    run = tmp_path / "runs" / "ev"
    result = runner.invoke(
        app,
        ["evaluate", str(run), "--protocol", "zsl,gzsl", "--json", "--cache-dir", "cache"],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {f["protocol"] for f in doc["results"]} == {"zsl", "gzsl"}
    top1 = fig(doc, "zsl", "top1")
    assert 0 <= top1["mean"] <= 1 and top1["n"] == 4 and top1["over"] == "classes"
    assert 0 <= fig(doc, "gzsl", "AUSUC")["mean"] <= 1
    assert 0 <= fig(doc, "gzsl", "H_calibrated")["mean"] <= 1
    assert fig(doc, "gzsl", "H")["sem"] is None
    result = runner.invoke(app, ["evaluate", str(run), "--protocol", "nope"])
    assert result.exit_code == 2 and "pairs" in result.stderr

    assert _train(tiny_root, tmp_path, "w", "--hn-type", "W").exit_code == 0
    result = runner.invoke(app, ["evaluate", str(tmp_path / "runs" / "w"), "--protocol", "zsl"])
    assert result.exit_code == 2
    assert "EV or IVEV" in result.stderr


def test_evaluate_with_baselines_side_by_side(tiny_root, tmp_path):
    assert _train(tiny_root, tmp_path, "ev").exit_code == 0
    run = str(tmp_path / "runs" / "ev")
    args = ["evaluate", run, "--protocol", "pairs,zsl", "--baseline", "ridge,eszsl"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {f["method"] for f in out["results"]} == {"T2M-HN", "ridge", "eszsl"}
    assert fig(out, "pairs", "unseen", "ridge")["n"] == 12
    assert fig(out, "zsl", "top1", "eszsl")["n"] == 4
    assert "alpha" in out["runs"][0]["hyperparameters"]["ridge"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "T2M-HN (EV)" in result.stdout and "eszsl" in result.stdout
    result = runner.invoke(app, ["evaluate", run, "--baseline", "devise"])
    assert result.exit_code == 2 and "ridge" in result.stderr
