"""Shared fixtures: offline by default, and a tiny generated dataset that trains in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A hub name must fail at once instead of after a long network timeout.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"

# Words that describe the tiny dataset's classes; each class is three of them.
WORDS = ["red", "blue", "round", "square", "large", "small", "striped", "spotted"]


def make_tiny_dataset(root: Path, seed: int = 0, n_classes: int = 14, dim: int = 16) -> Path:
    """Write a dataset folder whose features follow its descriptions.

    Each class is described by three attribute words; its features are a fixed random linear map
    of the attribute indicator vector plus noise, so a hypernetwork that reads the words can
    classify classes it never saw. Split: half seen, a quarter validation, a quarter unseen.
    """
    import itertools

    import torch

    from t2m_cli.data.dataset import save_features, write_json

    g = torch.Generator().manual_seed(seed)
    combos = list(itertools.combinations(range(len(WORDS)), 3))
    order = torch.randperm(len(combos), generator=g)[:n_classes].tolist()
    classes = [f"class_{i:02d}" for i in range(n_classes)]
    attrs = torch.zeros(n_classes, len(WORDS))
    descriptions, attributes = {}, {}
    for c, combo_idx in enumerate(order):
        words = [WORDS[w] for w in combos[combo_idx]]
        attrs[c, list(combos[combo_idx])] = 1.0
        attributes[classes[c]] = words
        descriptions[classes[c]] = [
            f"a {' '.join(words)} thing",
            f"something {words[2]}, {words[0]} and {words[1]}",
        ]
    projection = torch.randn(len(WORDS), dim, generator=g)
    feats, labels, is_test = [], [], []
    for c in range(n_classes):
        n = 30
        x = attrs[c] @ projection + 0.3 * torch.randn(n, dim, generator=g)
        feats.append(x)
        labels.append(torch.full((n,), c))
        is_test.append(torch.arange(n) >= 20)
    n_seen, n_val = n_classes // 2, n_classes // 4
    split = {
        "seen": classes[:n_seen],
        "val": classes[n_seen : n_seen + n_val],
        "unseen": classes[n_seen + n_val :],
    }
    write_json(root / "split.json", split)
    write_json(root / "descriptions.json", descriptions)
    write_json(root / "attributes.json", attributes)
    save_features(
        root / "features" / "pointnet.safetensors",
        torch.cat(feats),
        torch.cat(labels),
        torch.cat(is_test),
        classes,
        {"extractor": "tiny synthetic"},
    )
    return root


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "tiny")


@pytest.fixture
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is absent (a user's clone has no shared folder)")
    return data


def fig(doc: dict, protocol: str, metric: str, method: str = "T2M-HN") -> dict:
    """The one figure of a ``t2m-eval/1`` document with this method, protocol and metric."""
    found = [
        f
        for f in doc["results"]
        if (f["method"], f["protocol"], f["metric"]) == (method, protocol, metric)
    ]
    assert len(found) == 1, (method, protocol, metric, found)
    return found[0]


def invoke_train(tiny_root: Path, tmp_path: Path, name: str, *overrides: str):
    """``t2m train`` on ``tiny_root`` with these overrides (and flags), quietly, through
    CliRunner: the run is ``tmp_path/runs/<name>``, the cache ``tmp_path/cache``."""
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    return CliRunner().invoke(
        app,
        [
            "train",
            f"dataset.root={tiny_root}",
            *overrides,
            "--name",
            name,
            "--runs-dir",
            str(tmp_path / "runs"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-q",
        ],
    )


def interrupted_run(tiny_root: Path, tmp_path: Path, text_model: str = "hashing") -> Path:
    """A run ``tmp_path/runs/cut`` that saved epoch 1 of 2 and was interrupted: it has best
    and last checkpoints and can be resumed (cache ``tmp_path/cache``)."""
    from t2m_cli.config import load_config
    from t2m_cli.training.run import train_run

    config = load_config(
        None,
        [
            "dataset.name=tiny",
            f"dataset.root={tiny_root}",
            f"text.model={text_model}",
            "train.epochs=2",
            "train.tasks_per_epoch=10",
            "model.hidden=16",
            f"run.dir={tmp_path / 'runs'}",
            "run.name=cut",
        ],
    )

    def interrupt(result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "cache", on_epoch=interrupt)
    return tmp_path / "runs" / "cut"
