"""`t2m evaluate` beyond one protocol: draws, description sources, supersets, the W baseline,
several runs aggregated, and --output with eval.json and PNG figures."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from conftest import fig
from test_cli import _train as train_cli
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.config import load_config
from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.evaluation.protocol import score_method
from t2m_cli.models.hypernet import build_hypernet
from t2m_cli.scoring.pairs import pair_accuracies

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def _train(tiny_root: Path, tmp_path: Path, name: str, *extra: str) -> Path:
    result = train_cli(tiny_root, tmp_path, name, *extra)
    assert result.exit_code == 0, result.output
    return tmp_path / "runs" / name


def _evaluate(tmp_path: Path, *args: str):
    return runner.invoke(app, ["evaluate", *args, "--cache-dir", str(tmp_path / "cache"), "-q"])


def _evaluate_json(tmp_path: Path, *args: str) -> dict:
    result = _evaluate(tmp_path, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_draws_average_per_pair_accuracies_over_successive_draws(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(32))
    torch.manual_seed(0)
    model = build_hypernet("EV", text_dim=32, feature_dim=ds.feature_dim, hidden=8, k=2)
    settings = load_config(None, ["eval.draws=3"]).eval
    figures, details = score_method(
        model, "T2M-HN", bank, ds, ["pairs"], settings, 5, HashingEncoder(32)
    )
    generator = torch.Generator().manual_seed(5)
    draws = [
        pair_accuracies(model, bank, ds, ds.split.unseen, "all", generator)[1].double()
        for _ in range(3)
    ]
    assert not torch.equal(draws[0], draws[1])  # the draws really differ
    expected = torch.stack(draws).mean(0)
    unseen = next(f for f in figures if f.metric == "unseen")
    assert unseen.mean == pytest.approx(float(expected.mean()), abs=1e-9)
    assert unseen.n == len(expected) and unseen.over == "pairs"
    matrix = details["unseen_pairs"]["matrix"]
    assert matrix[0][0] is None and matrix[0][1] == pytest.approx(float(expected[0]))


def test_description_source_and_draws_come_from_eval_settings(tiny_root, tmp_path):
    run = _train(tiny_root, tmp_path, "ev")
    doc = _evaluate_json(tmp_path, str(run), "--set", "eval.source=names", "--draws", "2")
    info = doc["runs"][0]
    assert info["text_source"] == "names" and info["draws"] == 2
    # With one text per class every draw is the same, so two draws equal one.
    one = _evaluate_json(tmp_path, str(run), "--set", "eval.source=names")
    assert fig(doc, "pairs", "unseen")["mean"] == pytest.approx(fig(one, "pairs", "unseen")["mean"])

    neg = _evaluate_json(tmp_path, str(run), "--set", "eval.p_negative=1")
    assert neg["runs"][0]["p_negative"] == 1.0
    assert fig(neg, "pairs", "unseen")["mean"] != fig(one, "pairs", "unseen")["mean"]

    sampled_doc = _evaluate_json(tmp_path, str(run), "--set", "eval.max_pairs=5")
    assert (
        fig(sampled_doc, "pairs", "seen")["n"] == 5
        and fig(sampled_doc, "pairs", "unseen")["n"] == 5
    )

    for bad, words in (
        (["--set", "train.epochs=3"], "Only eval.*"),
        (["--set", "eval.draws=0"], "eval.draws"),
        (["--draws", "0"], "eval.draws"),
        (["--set", "eval.sauce=names"], "eval.sauce"),
    ):
        result = _evaluate(tmp_path, str(run), *bad)
        assert result.exit_code == 2, (bad, result.output)
        assert words in result.stderr and "Traceback" not in result.output


def test_supersets_protocol_through_the_cli(tiny_root, tmp_path):
    run = _train(tiny_root, tmp_path, "ev")
    doc = _evaluate_json(tmp_path, str(run), "--protocol", "supersets", "--baseline", "ridge")
    for method in ("T2M-HN", "ridge"):
        unseen = fig(doc, "supersets", "unseen", method)
        assert 0 <= unseen["mean"] <= 1 and unseen["over"] == "attributes" and unseen["n"] >= 1
        assert fig(doc, "supersets", "H", method)["sem"] is None
    result = _evaluate(
        tmp_path, str(run), "--protocol", "supersets", "--set", "eval.superset_template=x"
    )
    assert result.exit_code == 2 and "superset_template" in result.stderr


def _train_baseline(tmp_path: Path, *args: str):
    cache = ["--cache-dir", str(tmp_path / "cache"), "-q"]
    return runner.invoke(app, ["train", "--baseline", *args, *cache])


def test_w_baseline_is_trained_by_train_and_only_read_by_evaluate(tiny_root, tmp_path):
    run = _train(tiny_root, tmp_path, "ev")
    args = [str(run), "--protocol", "pairs,zsl", "--baseline", "W"]
    # Evaluation never trains: it says which command makes the baseline, and writes nothing.
    missing = _evaluate(tmp_path, *args)
    assert missing.exit_code == 2
    assert f"t2m train --baseline W {run}" in " ".join(missing.stderr.split())
    assert not (run / "baselines").exists()

    trained = _train_baseline(tmp_path, "W", str(run))
    assert trained.exit_code == 0, trained.output
    folder = run / "baselines" / "W"
    assert trained.stdout.strip() == f"run: {folder}"
    best = folder / "best.safetensors"
    config = (folder / "config.yaml").read_text()
    assert "hn_type: W" in config and "classes_per_task: 2" in config

    doc = _evaluate_json(tmp_path, *args)
    assert fig(doc, "pairs", "unseen", "W")["n"] == 12
    assert not [f for f in doc["results"] if f["method"] == "W" and f["protocol"] == "zsl"]
    assert fig(doc, "zsl", "top1")["n"] == 4
    assert best.is_file() and doc["runs"][0]["hyperparameters"]["W"]["epochs"] == 3
    stamp = best.stat().st_mtime_ns
    again = _evaluate_json(tmp_path, *args)
    assert best.stat().st_mtime_ns == stamp  # read, not retrained
    assert again["results"] == doc["results"]

    # A finished baseline is not trained twice.
    twice = _train_baseline(tmp_path, "W", str(run))
    assert twice.exit_code == 2 and "already trained" in twice.stderr
    assert best.stat().st_mtime_ns == stamp

    # The table says W is pairs only.
    table = _evaluate(tmp_path, *args)
    assert table.exit_code == 0 and "n/a" in table.stdout

    w_run = _train(tiny_root, tmp_path, "w", "--hn-type", "W")
    result = _evaluate(tmp_path, str(w_run), "--baseline", "W")
    assert result.exit_code == 2 and "itself a W" in result.stderr
    result = _train_baseline(tmp_path, "W", str(w_run))
    assert result.exit_code == 2 and "itself a W" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["ridge", "RUN"], "not a baseline that needs training"),
        (["W"], "t2m train --baseline W RUN_FOLDER"),
        (["W", "RUN", "--seed", "3"], "drop --seed"),
    ],
)
def test_train_baseline_refuses_what_it_cannot_do(tiny_root, tmp_path, args, message):
    run = _train(tiny_root, tmp_path, "ev")
    result = _train_baseline(tmp_path, *[str(run) if a == "RUN" else a for a in args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert not (run / "baselines").exists()


def test_several_runs_are_averaged_across_seeds(tiny_root, tmp_path):
    runs = [_train(tiny_root, tmp_path, f"s{seed}", "--seed", str(seed)) for seed in (0, 1, 2)]
    singles = []
    for run in runs:
        singles.append(_evaluate_json(tmp_path, str(run), "--protocol", "pairs,zsl"))
    doc = _evaluate_json(tmp_path, *map(str, runs), "--protocol", "pairs,zsl")
    assert doc["over"] == "runs" and [r["seed"] for r in doc["runs"]] == [0, 1, 2]
    for protocol, metric in (("pairs", "unseen"), ("pairs", "H"), ("zsl", "top1")):
        values = [fig(s, protocol, metric)["mean"] for s in singles]
        agg = fig(doc, protocol, metric)
        assert agg["n"] == 3 and agg["over"] == "runs"
        assert agg["mean"] == pytest.approx(statistics.fmean(values))
        assert agg["sem"] == pytest.approx(statistics.stdev(values) / 3**0.5)
    assert set(doc["per_run"]) == {"s0", "s1", "s2"}
    table = _evaluate(tmp_path, *map(str, runs))
    assert table.exit_code == 0 and "over 3 runs" in table.stdout

    other = _train(tiny_root, tmp_path, "iv", "--hn-type", "IVEV")
    result = _evaluate(tmp_path, str(runs[0]), str(other))
    assert result.exit_code == 2 and "hn_type" in result.stderr
    result = _evaluate(tmp_path, str(runs[0]), str(runs[0]))
    assert result.exit_code == 2 and "twice" in result.stderr


def test_output_writes_eval_json_and_readable_pngs(tiny_root, tmp_path):
    run = _train(tiny_root, tmp_path, "ev")
    out = tmp_path / "report"
    args = [str(run), "--protocol", "pairs,gzsl", "--baseline", "ridge", "--output", str(out)]
    result = _evaluate(tmp_path, *args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "eval.json").read_text())
    assert doc["schema"] == "t2m-eval/1"
    details = doc["details"]["ev"]
    assert len(details["T2M-HN"]["unseen_pairs"]["classes"]) == 4
    assert len(details["ridge"]["gzsl_curve"]["S"]) == len(details["ridge"]["gzsl_curve"]["U"])
    for name in (
        "unseen_pairs_t2m-hn.png",
        "unseen_pairs_ridge.png",
        "training_curves.png",
        "gzsl_curve.png",
    ):
        assert (out / name).read_bytes()[:8] == PNG, name
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".png")) == ["eval.json"]

    # Several runs: one folder of figures per run, the aggregate in eval.json.
    second = _train(tiny_root, tmp_path, "ev2", "--seed", "1")
    many = tmp_path / "many"
    result = _evaluate(tmp_path, str(run), str(second), "--output", str(many))
    assert result.exit_code == 0, result.output
    assert json.loads((many / "eval.json").read_text())["over"] == "runs"
    assert (many / "ev" / "unseen_pairs_t2m-hn.png").is_file()
    assert (many / "ev2" / "training_curves.png").is_file()

    a_file = tmp_path / "file.txt"
    a_file.write_text("keep")
    result = _evaluate(tmp_path, str(run), "--output", str(a_file))
    assert result.exit_code == 2 and "folder" in result.stderr
    assert a_file.read_text() == "keep"


def test_json_follows_the_documented_schema(tiny_root, tmp_path):
    """Every key the report.py docstring documents, and no others."""
    run = _train(tiny_root, tmp_path, "ev")
    args = [str(run), "--protocol", "pairs,zsl,gzsl,supersets", "--baseline", "ridge"]
    doc = _evaluate_json(tmp_path, *args)
    assert set(doc) == {"schema", "runs", "over", "results"}
    assert doc["schema"] == "t2m-eval/1" and doc["over"] == "pairs/classes/attributes"
    assert set(doc["runs"][0]) == {
        "run",
        "dataset",
        "encoder",
        "hn_type",
        "task",
        "seed",
        "eval_seed",
        "draws",
        "text_source",
        "p_negative",
        "checkpoint",
        "epoch",
        "hyperparameters",
    }
    documented = {
        "pairs": {"seen", "unseen", "val", "H"},
        "zsl": {"top1"},
        "gzsl": {
            "S",
            "U",
            "H",
            "S_calibrated",
            "U_calibrated",
            "H_calibrated",
            "calibration",
            "AUSUC",
        },
        "supersets": {"seen", "unseen", "val", "H"},
    }
    for method in ("T2M-HN", "ridge"):
        for protocol, metrics in documented.items():
            got = {
                f["metric"]
                for f in doc["results"]
                if f["method"] == method and f["protocol"] == protocol
            }
            assert got == metrics, (method, protocol)
    required = {"method", "protocol", "metric", "mean", "sem", "n", "over"}
    for f in doc["results"]:
        assert required <= set(f) <= required | {"median", "std"}
        assert isinstance(f["n"], int) and f["n"] >= 1
        assert f["over"] in {"pairs", "classes", "attributes", "draws", "means"}
        assert f["sem"] is None or f["sem"] >= 0
