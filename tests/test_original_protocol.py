"""The original code's choices as settings: refused where the data cannot give them, selected
by examples/paper.yaml, and listed in the README's table "t2m and the original code"."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import torch
from test_splits import SPLIT, _held_out_last, _import, _train, write_folder
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.config import Config, load_config
from t2m_cli.data.dataset import load_dataset, save_features
from t2m_cli.data.texts import TextBank
from t2m_cli.training.run import train_run

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = [
    "train.objective=update",
    "train.classes_per_task_max=null",
    "train.patience=null",
    "train.weight_decay=0.0001",
    "model.linear_skip=false",
    "eval.descriptions=draw",
    "train.val_classes=train",
    "train.task_sampling=once",
    "train.inner_order=fixed",
    "text.negative_style=original",
    "text.p_negative=0.5",
]


def _val_rows(is_test: np.ndarray, held_out: bool) -> np.ndarray:
    """``is_test`` with every row of the validation classes (class_6, class_7) set."""
    out = is_test.copy()
    labels = np.repeat(np.arange(10), 6)
    out[np.isin(labels, [6, 7])] = held_out
    return out


def test_train_mode_refuses_validation_classes_without_held_out_rows(tmp_path):
    folder = write_folder(
        tmp_path / "mine", split=SPLIT, is_test=_val_rows(_held_out_last(), False)
    )
    assert _import(folder, tmp_path).exit_code == 0  # holdout needs no held-out rows there
    result = _train(tmp_path, "train.val_classes=train")
    assert result.exit_code == 2
    split_file = tmp_path / "cache" / "datasets" / "mine" / "split.json"
    assert f"{split_file}, with train.classes_per_task=2, train.val_classes=train," in (
        result.stderr
    )
    assert "validation classes ['class_6', 'class_7'] with no held-out rows" in result.stderr
    assert "set train.val_classes=holdout" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
    result = _train(tmp_path)
    assert result.exit_code == 0, result.output


def test_train_mode_refuses_validation_classes_without_training_rows(tmp_path):
    folder = write_folder(tmp_path / "mine", split=SPLIT, is_test=_val_rows(_held_out_last(), True))
    assert _import(folder, tmp_path).exit_code == 0
    result = _train(tmp_path, "train.val_classes=train")
    assert result.exit_code == 2
    assert "validation classes ['class_6', 'class_7'] with no training rows" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_train_mode_refuses_fewer_validation_classes_than_a_task_has(tmp_path):
    folder = write_folder(tmp_path / "mine", split=SPLIT, is_test=_held_out_last())
    assert _import(folder, tmp_path).exit_code == 0
    result = _train(tmp_path, "train.val_classes=train", "train.classes_per_task=3")
    assert result.exit_code == 2
    assert "2 classes in 'val' (class_6, class_7)" in result.stderr
    assert "a task of validation classes draws 3 of them" in result.stderr
    assert not (tmp_path / "runs").exists()
    result = _train(tmp_path, "train.val_classes=train")
    assert result.exit_code == 0, result.output


def test_train_mode_is_refused_for_superset_tasks():
    result = CliRunner().invoke(
        app, ["train", "train.task=supersets", "train.val_classes=train", "text.model=hashing"]
    )
    assert result.exit_code == 2
    assert "train.val_classes" in result.stderr and "train.task" in result.stderr
    assert "Traceback" not in result.output


def test_the_original_settings_train_and_never_read_unseen_classes(tiny_root, tmp_path):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    scrambled = tmp_path / "scrambled"
    for name in ("split.json", "descriptions.json", "attributes.json"):
        (scrambled / name).parent.mkdir(parents=True, exist_ok=True)
        (scrambled / name).write_bytes((tiny_root / name).read_bytes())
    features = ds.features.clone()
    g = torch.Generator().manual_seed(5)
    for c in ds.split.unseen:
        rows = ds.class_rows(c)
        features[rows] = 50 * torch.randn(len(rows), ds.feature_dim, generator=g)
    save_features(
        scrambled / "features" / "pointnet.safetensors",
        features,
        ds.labels,
        ds.is_test,
        ds.classes,
        ds.meta,
    )

    def metrics(root: Path, name: str) -> list[dict]:
        fast = ["text.model=hashing", "train.epochs=3", "train.tasks_per_epoch=60"]
        where = [f"dataset.root={root}", f"run.dir={tmp_path / 'runs'}", f"run.name={name}"]
        config = load_config(None, [*ORIGINAL, *fast, "model.hidden=8", *where])
        lines = (train_run(config) / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]

    first = metrics(tiny_root, "a")
    # 42 seen and 6 validation ordered pairs: each once, so an epoch of 48 tasks.
    assert [m["tasks"] for m in first] == [48, 48, 48]
    assert first == metrics(scrambled, "b")


def test_the_original_settings_resume_like_an_unbroken_run(tiny_root, tmp_path):
    from test_resume import assert_resumes_like_unbroken

    def config_for(name: str) -> Config:
        fast = ["text.model=hashing", "train.epochs=4", "train.tasks_per_epoch=20"]
        where = [f"dataset.root={tiny_root}", f"run.dir={tmp_path / 'runs'}", f"run.name={name}"]
        return load_config(None, [*ORIGINAL, *fast, "model.hidden=8", *where])

    assert_resumes_like_unbroken(config_for, tmp_path / "runs")


def test_paper_yaml_selects_every_choice_of_the_original():
    config = load_config(ROOT / "examples" / "paper.yaml")
    assert config.train.val_classes == "train"
    assert config.train.task_sampling == "once"
    assert config.train.inner_order == "fixed"
    assert config.text.negative_style == "original"
    assert config.text.model == "paraphrase-MiniLM-L6-v2"
    assert config.dataset.standardize is False
    assert (config.train.objective, config.train.classes_per_task_max) == ("update", None)
    assert (config.model.hidden, config.model.linear_skip) == (120, False)
    assert (config.train.epochs, config.train.patience) == (100, None)
    assert config.train.weight_decay == 1e-4
    assert config.eval.descriptions == "draw"
    # Every key ORIGINAL sets, paper.yaml sets alike; but text.p_negative, which ORIGINAL
    # turns on so that the original's negative descriptions are written.
    rule = [o for o in ORIGINAL if not o.startswith("text.p_negative=")]
    assert load_config(ROOT / "examples" / "paper.yaml", rule) == config


def _yaml_value(value: object) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _reads_as(cell: str, value: object) -> bool:
    """``cell`` is how the README writes ``value``: a float in any notation a config takes
    (``1e-4`` for 0.0001), anything else as YAML writes it."""
    if isinstance(value, float):
        return float(cell) == value
    return cell == _yaml_value(value)


def test_the_readme_table_names_each_setting_its_default_and_the_original_value():
    """Every row with one setting: its t2m column is the config default, and its original
    column the value of examples/paper.yaml (ModelNet40 rows: examples/modelnet40.yaml)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## t2m and the original code", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", section, re.M)
    checked = set()
    examples = {
        "paper": load_config(ROOT / "examples" / "paper.yaml"),
        "modelnet40": load_config(ROOT / "examples" / "modelnet40.yaml"),
    }
    for difference, setting, original, default in rows[1:]:  # after the header
        key = re.fullmatch(r"`(\w+)\.(\w+)`", setting.strip())
        if key is None:
            continue
        section_name, name = key.groups()
        first = re.match(r"`([^`]+)`", default.strip())
        assert first is not None, difference
        assert _reads_as(first.group(1), getattr(getattr(Config(), section_name), name))
        if difference.startswith("Super-set"):
            continue
        example = examples["modelnet40" if section_name == "pointnet" else "paper"]
        first = re.match(r"`([^`]+)`", original.strip())
        assert first is not None, difference
        assert _reads_as(first.group(1), getattr(getattr(example, section_name), name))
        checked.add(f"{section_name}.{name}")
    assert {
        "train.objective",
        "train.classes_per_task_max",
        "eval.descriptions",
        "model.linear_skip",
        "model.hidden",
        "train.weight_decay",
        "train.val_classes",
        "train.task_sampling",
        "train.inner_order",
        "text.negative_style",
        "text.model",
        "dataset.standardize",
    } <= checked


def test_evaluation_scores_trained_validation_classes_on_held_out_rows_only(
    tiny_root, tmp_path, monkeypatch
):
    # A run that trained on its validation classes' training rows must not report them: the
    # validation pair figure reads held-out rows only.
    from t2m_cli.encoders.text import HashingEncoder
    from t2m_cli.evaluation import protocol
    from t2m_cli.models.hypernet import build_hypernet

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(32))
    torch.manual_seed(0)
    model = build_hypernet("EV", text_dim=32, feature_dim=ds.feature_dim, hidden=8, k=2)
    settings = load_config(None).eval

    def val_figure(dataset, parts) -> float:
        figures, _ = protocol.score_method(
            model, "T2M-HN", bank, dataset, ["pairs"], settings, 0, HashingEncoder(32), parts
        )
        return next(f.mean for f in figures if f.metric == "val")

    scrambled = copy.copy(ds)
    scrambled.features = ds.features.clone()
    g = torch.Generator().manual_seed(3)
    for c in ds.split.val:
        rows = ds.class_rows(c, "train")
        scrambled.features[rows] = 50 * torch.randn(len(rows), ds.feature_dim, generator=g)
    trained = protocol.TRAINED_VAL_PAIR_PARTS
    assert val_figure(scrambled, trained) == val_figure(ds, trained)
    assert val_figure(scrambled, protocol.PAIR_PARTS) != val_figure(ds, protocol.PAIR_PARTS)

    # evaluate_run picks those rows for a run trained with train.val_classes=train, and only then.
    chosen = []
    real = protocol.score_method

    def spy(*args, **kwargs):
        chosen.append(kwargs["pair_parts"])
        return real(*args, **kwargs)

    monkeypatch.setattr(protocol, "score_method", spy)
    fast = ["text.model=hashing", "train.epochs=1", "train.tasks_per_epoch=5", "model.hidden=8"]
    where = [f"dataset.root={tiny_root}", f"run.dir={tmp_path / 'runs'}"]
    for name, extra in (("orig", ORIGINAL), ("t2m", [])):
        run = train_run(load_config(None, [*extra, *fast, *where, f"run.name={name}"]))
        protocol.evaluate_run(run, protocols=["pairs"])
    assert chosen == [protocol.TRAINED_VAL_PAIR_PARTS, protocol.PAIR_PARTS]
