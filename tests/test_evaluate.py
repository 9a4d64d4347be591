"""`t2m evaluate` beyond one protocol: draws, description sources, supersets, the W baseline,
several runs aggregated, and --output with eval.json and PNG figures."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from conftest import fig, make_tiny_dataset
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
    # Draws are the 'draw' policy's: with class means there is one text per class to score.
    names = ["--set", "eval.source=names", "--set", "eval.descriptions=draw"]
    doc = _evaluate_json(tmp_path, str(run), *names, "--draws", "2")
    info = doc["runs"][0]
    assert info["text_source"] == "names" and info["draws"] == 2
    assert info["descriptions"] == "draw"
    # With one text per class every draw is the same, so two draws equal one.
    one = _evaluate_json(tmp_path, str(run), *names)
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
    # Drawn descriptions (the paper's policy): on this easy data class means score every
    # seed's validation pairs 100%, a figure the same in every run, which the hypernetwork's
    # cells below must not be.
    args = ["--protocol", "pairs,zsl", "--baseline", "ridge", "--set", "eval.descriptions=draw"]
    singles = [_evaluate_json(tmp_path, str(run), *args) for run in runs]
    doc = _evaluate_json(tmp_path, *map(str, runs), *args)
    assert doc["over"] == "runs" and [r["seed"] for r in doc["runs"]] == [0, 1, 2]
    for protocol, metric in (("pairs", "unseen"), ("pairs", "H"), ("zsl", "top1")):
        values = [fig(s, protocol, metric)["mean"] for s in singles]
        agg = fig(doc, protocol, metric)
        assert len(set(values)) > 1  # the hypernetwork depends on the training seed
        assert agg["n"] == 3 and agg["over"] == "runs" and agg["sem_over"] == "runs"
        assert agg["mean"] == pytest.approx(statistics.fmean(values))
        assert agg["sem"] == pytest.approx(statistics.stdev(values) / 3**0.5)
    # Ridge is fitted in closed form on the same data: the same figures whatever the seed, so
    # their SEM is the one within a run (over pairs, classes), never a 0.0 over runs.
    for protocol, metric, within in (
        ("pairs", "unseen", "pairs"),
        ("pairs", "seen", "pairs"),
        ("zsl", "top1", "classes"),
        ("pairs", "H", None),
    ):
        one = [fig(s, protocol, metric, "ridge") for s in singles]
        agg = fig(doc, protocol, metric, "ridge")
        assert len({f["mean"] for f in one}) == 1
        assert agg["n"] == 3 and agg["over"] == "runs" and agg["std"] == 0.0
        assert agg["mean"] == pytest.approx(one[0]["mean"]) and agg["sem"] == one[0]["sem"]
        assert agg["sem_over"] == within
    assert fig(doc, "pairs", "unseen", "ridge")["sem"] > 0
    assert set(doc["per_run"]) == {"s0", "s1", "s2"}
    table = _evaluate(tmp_path, *map(str, runs), *args)
    assert table.exit_code == 0 and "over 3 runs" in table.stdout
    ridge = fig(doc, "pairs", "unseen", "ridge")
    assert f"{100 * ridge['mean']:.1f} +- {100 * ridge['sem']:.1f}*" in table.stdout
    hypernet = [line for line in table.stdout.splitlines() if "T2M-HN" in line]
    assert len(hypernet) == 2 and not any("*" in line for line in hypernet)
    lines = " ".join(table.stdout.split())
    assert (
        "* the same in all 3 runs: +- is the SEM over ordered pairs within a run; "
        "no SEM available for H" in lines
    )
    assert "* the same in all 3 runs: +- is the SEM over classes within a run" in lines

    other = _train(tiny_root, tmp_path, "iv", "--hn-type", "IVEV")
    result = _evaluate(tmp_path, str(runs[0]), str(other))
    assert result.exit_code == 2 and "hn_type" in result.stderr
    result = _evaluate(tmp_path, str(runs[0]), str(runs[0]))
    assert result.exit_code == 2 and "twice" in result.stderr


def test_an_aggregate_says_what_its_sem_is_over(tmp_path):
    """Over runs where the figure varied; within a run where every run gave the same value."""
    from t2m_cli.evaluation.report import Figure, RunEvaluation, aggregate, report_json

    def run(seed: int, hypernet: float) -> RunEvaluation:
        return RunEvaluation(
            tmp_path / f"s{seed}",
            {"seed": seed},
            [
                Figure("T2M-HN", "pairs", "unseen", hypernet, 0.05, 42, "pairs"),
                Figure("ridge", "pairs", "unseen", 0.8, 0.03, 42, "pairs"),
                Figure("ridge", "pairs", "H", 0.85, None, 2, "means"),
                Figure("ridge", "zsl", "top1", 0.5, 0.1, 7, "classes"),
                Figure("ridge", "supersets", "unseen", 0.7, 0.02, 16, "attributes"),
                Figure("ridge", "gzsl", "AUSUC", 0.3, 0.01, 5, "draws"),
                Figure("ridge", "gzsl", "calibration", 0.2, None, 1, "draws"),
                Figure("eszsl", "zsl", "top1", math.nan, None, 7, "classes"),
            ],
        )

    evaluations = [run(0, 0.6), run(1, 0.7), run(2, 0.65)]
    got = {f.key: f for f in aggregate(evaluations)}
    varied = got[("T2M-HN", "pairs", "unseen")]
    assert (varied.over, varied.sem_over, varied.n) == ("runs", "runs", 3)
    assert varied.sem == pytest.approx(statistics.stdev([0.6, 0.7, 0.65]) / 3**0.5)
    assert not varied.same_in_every_run
    expected = {
        ("ridge", "pairs", "unseen"): (0.03, "pairs"),
        ("ridge", "pairs", "H"): (None, None),
        ("ridge", "zsl", "top1"): (0.1, "classes"),
        ("ridge", "supersets", "unseen"): (0.02, "attributes"),
        ("ridge", "gzsl", "AUSUC"): (0.01, "draws"),
        ("ridge", "gzsl", "calibration"): (None, None),
    }
    for key, (sem, sem_over) in expected.items():
        same = got[key]
        assert (same.sem, same.sem_over, same.over, same.n, same.std) == (
            sem,
            sem_over,
            "runs",
            3,
            0.0,
        ), key
        assert same.same_in_every_run
    undefined = got[("eszsl", "zsl", "top1")]
    assert undefined.sem_over is None and not undefined.same_in_every_run
    results = {
        (f["method"], f["protocol"], f["metric"]): f for f in report_json(evaluations)["results"]
    }
    assert results[("ridge", "pairs", "unseen")]["sem_over"] == "pairs"
    assert results[("T2M-HN", "pairs", "unseen")]["sem_over"] == "runs"
    assert results[("ridge", "pairs", "H")]["sem_over"] is None
    # One run: its own figures, SEM over its items as before.
    single = aggregate(evaluations[:1])
    assert single == evaluations[0].figures
    assert [f.sem_over for f in single[:4]] == ["pairs", "pairs", None, "classes"]
    assert not any(f.same_in_every_run for f in single)


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
        "label",
        "dataset",
        "encoder",
        "hn_type",
        "task",
        "seed",
        "eval_seed",
        "draws",
        "descriptions",
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
    required = {"method", "protocol", "metric", "mean", "sem", "n", "over", "sem_over"}
    for f in doc["results"]:
        assert required <= set(f) <= required | {"median", "std"}
        assert isinstance(f["n"], int) and f["n"] >= 1
        assert f["over"] in {"pairs", "classes", "attributes", "draws", "means"}
        assert f["sem"] is None or f["sem"] >= 0
        # One run: the SEM is over what the mean is over.
        assert f["sem_over"] == (None if f["sem"] is None else f["over"])


# One trained run shared by the tests below, which only read it (or copy it).


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("base")
    _train(make_tiny_dataset(where / "tiny"), where, "base")
    return where / "runs" / "base"


def _evaluate_base(base_run: Path, *args: str):
    return _evaluate(base_run.parents[1], *args)


@pytest.mark.parametrize(
    ("args", "error", "fix"),
    [
        (
            ["--set", "eval.foo=1"],
            "  eval.foo (--set eval.foo=1): unknown key 'eval.foo'; allowed keys here: seed,",
            "Fix --set eval.foo=1 on the command line (written as --set eval.key=value).",
        ),
        (
            ["--set", "eval.max_pairs=0"],
            "  eval.max_pairs (--set eval.max_pairs=0): Input should be greater than 0 (got 0)",
            "Fix --set eval.max_pairs=0 on the command line (written as --set eval.key=value).",
        ),
        (
            ["--draws", "0"],
            "  eval.draws (--draws): Input should be greater than or equal to 1 (got 0)",
            "Fix --draws on the command line.",
        ),
        (
            ["--set", "eval.superset_template=7"],
            "where 7 is a number: to keep it text, write --set 'eval.superset_template=\"7\"'",
            "Fix --set eval.superset_template=7 on the command line",
        ),
    ],
)
def test_a_bad_eval_setting_is_blamed_on_the_flag_not_the_runs_config(
    base_run, tmp_path, args, error, fix
):
    out = tmp_path / "out"
    result = _evaluate_base(base_run, str(base_run), *args, "--output", str(out))
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: Invalid settings on the command line (1 error):"
    assert error in lines[1] and lines[1].startswith("  "), lines[1]
    assert lines[-1].startswith(fix), lines[-1]
    assert "config.yaml" not in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_a_broken_run_config_is_to_be_fixed_in_it_not_overridden(base_run, tmp_path):
    run = tmp_path / "base"
    shutil.copytree(base_run, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("hidden: 16", "hidden: -1"))
    result = _evaluate_base(base_run, str(run))
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: Invalid config in {config} (1 error):"
    assert lines[1].startswith(f"  model.hidden ({config}, line ")
    # A run keeps the config it was trained with: nothing on the command line overrides it.
    assert lines[-1] == f"Fix these keys in {config}."


def test_a_mean_of_one_pair_has_no_sem(base_run):
    doc = _evaluate_json(base_run.parents[1], str(base_run), "--set", "eval.max_pairs=1")
    for part in ("seen", "val", "unseen"):
        figure = fig(doc, "pairs", part)
        assert figure["n"] == 1 and figure["sem"] is None and "std" not in figure
        assert figure["sem_over"] is None
    result = _evaluate_base(base_run, str(base_run), "--set", "eval.max_pairs=1")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "T2M-HN" in line)
    assert "+-" not in row and "nan" not in row.lower()


def _png_and_json(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"epoch": 4, "val_acc": \n', "line 4, is not valid JSON"),
        ('{"epoch": 4, "val_acc": "high"}\n', "record 4, has no number for val_acc"),
        ('{"val_acc": 0.5}\n', "record 4, has no number for epoch"),
    ],
)
def test_a_failed_output_writes_nothing_and_the_rerun_works(base_run, tmp_path, line, words):
    run = tmp_path / "base"
    shutil.copytree(base_run, run)
    metrics = run / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + line)
    new, kept = tmp_path / "new", tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    (kept / "eval.json").write_text("{}")
    for out in (new, kept):
        args = [str(run), "--protocol", "pairs,gzsl", "--output", str(out)]
        result = _evaluate_base(base_run, *args)
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        assert f"Metrics file {metrics}, {words}" in message
        assert f"Nothing was written to {out}" in message and "Traceback" not in result.output
    assert not new.exists()
    assert _png_and_json(kept) == ["eval.json", "notes.txt"]
    assert (kept / "eval.json").read_text() == "{}"

    metrics.write_text(good)
    for out in (new, kept):
        args = [str(run), "--protocol", "pairs,gzsl", "--output", str(out), "--json"]
        result = _evaluate_base(base_run, *args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["schema"] == "t2m-eval/1"
        figures = ["gzsl_curve.png", "training_curves.png", "unseen_pairs_t2m-hn.png"]
        assert set(_png_and_json(out)) - {"notes.txt"} == {"eval.json", *figures}
        assert json.loads((out / "eval.json").read_text())["schema"] == "t2m-eval/1"
    assert (kept / "notes.txt").read_text() == "mine"


def test_runs_of_the_same_folder_name_get_their_own_figures(base_run, tmp_path):
    other = tmp_path / "other" / "base"
    shutil.copytree(base_run, other)
    # A figure that differs between the two runs tells their folders apart.
    metrics = other / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
    two = tmp_path / "two"
    result = _evaluate_base(base_run, str(base_run), str(other), "-o", str(two), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(r["run"], r["label"]) for r in doc["runs"]] == [("base", "base"), ("base", "base-2")]
    assert list(doc["per_run"]) == ["base", "base-2"]
    # One checkpoint scored twice: the same figures, so the SEM shown is the one over pairs.
    unseen = fig(doc, "pairs", "unseen")
    assert unseen["over"] == "runs" and unseen["sem_over"] == "pairs"
    assert unseen["sem"] == fig({"results": doc["per_run"]["base"]}, "pairs", "unseen")["sem"]
    saved = json.loads((two / "eval.json").read_text())
    assert [r["label"] for r in saved["runs"]] == ["base", "base-2"]
    assert list(saved["details"]) == ["base", "base-2"]
    for label in ("base", "base-2"):
        assert (two / label / "unseen_pairs_t2m-hn.png").read_bytes()[:8] == PNG
    curves = [(two / label / "training_curves.png").read_bytes() for label in ("base", "base-2")]
    assert curves[0] != curves[1]


def test_output_refuses_a_path_taken_by_the_other_kind_before_writing(tmp_path):
    from t2m_cli.errors import UserInputError
    from t2m_cli.evaluation.output import write_output
    from t2m_cli.evaluation.report import RunEvaluation

    evaluations = []
    for name in ("a", "b"):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.jsonl").write_text('{"epoch": 1, "val_acc": 0.6}\n')
        evaluations.append(RunEvaluation(run, {"hn_type": "EV"}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "b").write_text("mine")
    with pytest.raises(UserInputError, match=f"{out / 'b'} is a file, where --output puts"):
        write_output(evaluations, out)
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    (out / "b").unlink()
    (out / "eval.json").mkdir()
    with pytest.raises(UserInputError, match="is a folder, where --output writes a file"):
        write_output(evaluations, out)
    (out / "eval.json").rmdir()
    written = write_output(evaluations, out)
    assert [p.relative_to(out).as_posix() for p in written] == [
        "eval.json",
        "a/training_curves.png",
        "b/training_curves.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "eval.json"]
