"""benchmarks/validation_sweep.py: settings scored on validation classes, never unseen ones."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_dataset
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from t2m_cli.data.dataset import load_dataset

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module():
    spec = importlib.util.spec_from_file_location(
        "validation_sweep", BENCHMARKS / "validation_sweep.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["validation_sweep"] = module
    spec.loader.exec_module(module)
    return module


sweep = _module()


def safe_open_metadata(path: Path) -> dict[str, str] | None:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def test_folds_swap_the_validation_halves_and_drop_the_unseen_classes(tmp_path: Path) -> None:
    dataset = load_dataset(make_tiny_dataset(tmp_path / "d", n_classes=20), "tiny", "pointnet")
    val = dataset.split.val
    first, second = sweep.validation_fold(dataset, 0), sweep.validation_fold(dataset, 1)
    assert first.split.seen == second.split.seen == dataset.split.seen
    assert set(first.split.val) | set(first.split.unseen) == set(val)
    assert first.split.val == second.split.unseen and first.split.unseen == second.split.val
    for fold in (first, second):
        assert not set(fold.split.unseen) & set(dataset.split.unseen)


@pytest.mark.slow
def test_a_sweep_never_reads_unseen_classes(tmp_path: Path) -> None:
    """Scrambling the unseen classes' features and descriptions changes no figure."""
    root = make_tiny_dataset(tmp_path / "d", n_classes=20)
    args = ["--seeds", "0", "--set", "text.model=hashing", "--set", "train.epochs=2"]
    args += ["--set", "model.hidden=16", "--set", "train.tasks_per_epoch=10"]
    log = tmp_path / "log.jsonl"
    sweep.main(["--root", str(root), "--work", str(tmp_path / "a"), "--log", str(log), *args])
    dataset = load_dataset(root, "tiny", "pointnet")
    features_file = root / "features" / "pointnet.safetensors"
    tensors = load_file(features_file)
    unseen = torch.tensor([dataset.classes.index(c) for c in dataset.split.unseen])
    rows = torch.isin(dataset.labels, unseen)
    assert rows.any()
    tensors["features"][rows] = torch.randn_like(tensors["features"][rows]) * 100
    save_file(tensors, features_file, metadata=safe_open_metadata(features_file))
    descriptions = json.loads((root / "descriptions.json").read_text())
    for c in dataset.split.unseen:
        descriptions[c] = ["zzz qqq"]
    (root / "descriptions.json").write_text(json.dumps(descriptions))
    sweep.main(["--root", str(root), "--work", str(tmp_path / "b"), "--log", str(log), *args])
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert first["mean"] == second["mean"]
    assert {"T2M-HN|pairs.unseen", "ridge|zsl.top1", "eszsl|gzsl.H_calibrated"} <= set(
        first["mean"]
    )
