"""Nothing chooses anything by looking at unseen classes: scramble them, and every choice stays."""

from __future__ import annotations

import json

import torch
from test_pairs import _Oracle

from t2m_cli.config import load_config
from t2m_cli.data.dataset import load_dataset, save_features
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.evaluation.baselines import fit_eszsl, fit_ridge_baseline
from t2m_cli.evaluation.classwise import gzsl
from t2m_cli.training.run import train_run


def _scramble_unseen(ds):
    g = torch.Generator().manual_seed(123)
    features = ds.features.clone()
    for c in ds.split.unseen:
        rows = ds.class_rows(c)
        features[rows] = 50 * torch.randn(len(rows), features.shape[1], generator=g)
    return features


def test_model_selection_and_tuning_ignore_unseen_classes(tiny_root, tmp_path):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    scrambled_root = tmp_path / "scrambled"
    for name in ("split.json", "descriptions.json", "attributes.json"):
        (scrambled_root / name).parent.mkdir(parents=True, exist_ok=True)
        (scrambled_root / name).write_bytes((tiny_root / name).read_bytes())
    save_features(
        scrambled_root / "features" / "pointnet.safetensors",
        _scramble_unseen(ds),
        ds.labels,
        ds.is_test,
        ds.classes,
        ds.meta,
    )

    def run(root, name):
        config = load_config(
            None,
            [
                f"dataset.root={root}",
                "text.model=hashing",
                "train.epochs=4",
                "train.tasks_per_epoch=20",
                "model.hidden=8",
                f"run.dir={tmp_path / 'runs'}",
                f"run.name={name}",
            ],
        )
        folder = train_run(config)
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines], (
            json.loads((folder / "run.json").read_text())["best"]
        )

    assert run(tiny_root, "a") == run(scrambled_root, "b")

    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(64))
    other = load_dataset(scrambled_root, "tiny", "pointnet")
    assert fit_ridge_baseline(ds, bank)[1] == fit_ridge_baseline(other, bank)[1]
    assert fit_eszsl(ds, bank)[1:] == fit_eszsl(other, bank)[1:]

    names = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(64))
    means = torch.stack([ds.features[ds.labels == c].mean(0) for c in range(len(ds.classes))])
    oracle = _Oracle(means, names)
    a = gzsl(oracle, names, ds, torch.Generator())
    b = gzsl(oracle, names, other, torch.Generator())
    assert a.calibration == b.calibration
    assert torch.equal(a.seen, b.seen) and torch.equal(a.seen_calibrated, b.seen_calibrated)
    # The scrambled classes were scored, only never used to choose.
    assert not torch.equal(a.unseen, b.unseen)
