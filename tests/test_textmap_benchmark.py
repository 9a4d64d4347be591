"""The textmap benchmark generator (benchmarks/textmap.py) and the zero-shot runner on it.

Both are scripts, not a package, so they are imported by path. The hashing text encoder keeps
the generator offline and fast; the features depend on the text model, not on these tests.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from t2m_cli.data.dataset import load_dataset
from t2m_cli.runs import load_run

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


textmap = _module("textmap")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("textmap") / "seed0"
    return textmap.make_textmap(root, seed=0, cache_dir=root.parent, text_model="hashing")


def test_fifty_classes_with_five_distinct_descriptions(made) -> None:
    dataset = load_dataset(made.root, "textmap", textmap.FEATURE_NAME)
    assert dataset.classes == made.classes and len(made.classes) == 50
    for c in made.classes:
        texts = dataset.descriptions[c]
        assert len(texts) == 5 and len(set(texts)) == 5
    groups = list(textmap.VOCABULARY.values())
    combos = {tuple(dataset.attributes[c]) for c in made.classes}
    assert len(combos) == 50, "two classes share every attribute"
    for values in combos:
        assert len(values) == len(groups)
        assert all(v in group for v, group in zip(values, groups))
    words = [v for group in groups for v in group]
    assert not [c for c in made.classes if any(w in c for w in words)]


def test_rows_and_split(made) -> None:
    dataset = load_dataset(made.root, "textmap", textmap.FEATURE_NAME)
    assert dataset.features.shape == (50 * 80, 512)
    assert torch.isfinite(dataset.features).all()
    for c in range(50):
        rows = dataset.labels == c
        assert int(rows.sum()) == 80 and int((rows & dataset.is_test).sum()) == 20
    split = dataset.split
    parts = [set(split.seen), set(split.val), set(split.unseen)]
    assert [len(p) for p in parts] == [30, 10, 10]
    assert set.union(*parts) == set(made.classes)
    assert {k: sorted(v) for k, v in made.split.items()} == {
        "seen": sorted(split.seen),
        "val": sorted(split.val),
        "unseen": sorted(split.unseen),
    }
    assert 0.0 <= made.ncm_seen <= 1.0


def test_same_seed_same_data_other_seed_other_data(made, tmp_path: Path) -> None:
    again = textmap.make_textmap(tmp_path / "again", seed=0, text_model="hashing")
    other = textmap.make_textmap(tmp_path / "other", seed=1, text_model="hashing")
    first = load_dataset(made.root, "textmap", textmap.FEATURE_NAME)
    second = load_dataset(again.root, "textmap", textmap.FEATURE_NAME)
    third = load_dataset(other.root, "textmap", textmap.FEATURE_NAME)
    assert torch.equal(first.features, second.features)
    assert first.descriptions == second.descriptions and first.split == second.split
    assert again.ncm_seen == made.ncm_seen
    assert third.classes != first.classes
    assert not np.allclose(first.features.numpy(), third.features.numpy())


def test_config_overrides_open_it(made) -> None:
    from t2m_cli.config import load_config
    from t2m_cli.data.registry import open_dataset

    config = load_config(
        None,
        [
            "dataset.name=textmap",
            f"dataset.root={made.root}",
            f"dataset.features={textmap.FEATURE_NAME}",
        ],
    )
    dataset = open_dataset(config.dataset.name, config.dataset.root, config.dataset.features)
    assert dataset.attributes and len(dataset.classes) == 50


def test_runner_end_to_end_on_textmap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    zero_shot = _module("zero_shot")
    zero_shot.main(
        [
            "--dataset",
            "textmap",
            "--seeds",
            "0",
            "--work",
            str(tmp_path),
            "--baselines",
            "ridge",
            "--set",
            "text.model=hashing",
            "--set",
            "train.epochs=1",
            "--set",
            "train.tasks_per_epoch=5",
        ]
    )
    out = capsys.readouterr().out
    assert "| T2M-HN |" in out and "| ridge |" in out
    # Both modes by default, each evaluated under both description policies.
    for mode in ("recommended", "paper"):
        for policy in ("mean", "draw"):
            assert f"textmap, seed 0, {mode} mode, descriptions {policy}\n" in out
            assert f"textmap, {mode} mode, descriptions {policy}, one seed (%)" in out
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [
        "textmap-seed0-paper",
        "textmap-seed0-recommended",
    ]
    recommended, _ = load_run(runs / "textmap-seed0-recommended")
    paper, _ = load_run(runs / "textmap-seed0-paper")
    # The paper mode is examples/paper.yaml's rule, with the benchmark's settings on top.
    assert (recommended.train.objective, paper.train.objective) == ("induced", "update")
    assert (recommended.model.linear_skip, paper.model.linear_skip) == (True, False)
    assert paper.train.classes_per_task_max is None and paper.model.hidden == 120
    assert recommended.text.model == paper.text.model == "hashing"
    assert paper.train.epochs == recommended.train.epochs == 1


def test_runner_trains_and_evaluates_only_the_modes_and_policies_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    zero_shot = _module("zero_shot")
    settings = ["text.model=hashing", "train.epochs=1", "train.tasks_per_epoch=5"]
    evaluations = zero_shot.run_seed(
        "textmap",
        0,
        {"recommended": None},
        tmp_path,
        tmp_path / "cache",
        settings,
        baselines=["ridge"],
        policies=["mean"],
    )
    assert list(evaluations) == [("recommended", "mean")]
    info = evaluations["recommended", "mean"].info
    assert info["descriptions"] == "mean"
    assert "paper mode" not in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["textmap-seed0-recommended"]
