"""Feature standardisation: fitted on seen training rows only, folded into induced classifiers."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.normalize import FeatureNorm
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.induction import InducedClassifier, induce_from_run
from t2m_cli.models.checkpoint import load_checkpoint


def test_statistics_ignore_everything_but_seen_training_rows(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    norm = FeatureNorm.fit(ds)
    changed = ds.features.clone()
    for c in (*ds.split.val, *ds.split.unseen):
        changed[ds.class_rows(c)] += 100.0
    for c in ds.split.seen:
        changed[ds.class_rows(c, "test")] -= 50.0
    ds.features = changed
    again = FeatureNorm.fit(ds)
    assert torch.equal(norm.mean, again.mean) and torch.equal(norm.std, again.std)
    z = norm.apply(ds).features[torch.cat([ds.class_rows(c, "train") for c in ds.split.seen])]
    assert torch.allclose(z.mean(0), torch.zeros(z.shape[1]), atol=1e-4)
    assert torch.allclose(z.std(0), torch.ones(z.shape[1]), atol=1e-4)


def test_fold_gives_the_same_logits_on_raw_features():
    g = torch.Generator().manual_seed(0)
    norm = FeatureNorm(torch.randn(5, generator=g), torch.rand(5, generator=g) + 0.5)
    w, b, x = torch.randn(3, 5, generator=g), torch.randn(3, generator=g), torch.randn(8, 5)
    w_raw, b_raw = norm.fold(w, b)
    assert torch.allclose(x @ w_raw.T + b_raw, ((x - norm.mean) / norm.std) @ w.T + b, atol=1e-5)


@pytest.mark.parametrize("hn_type", ["EV", "IVEV"])
def test_induced_classifier_reads_raw_features(tiny_root, tmp_path, hn_type):
    result = CliRunner().invoke(
        app,
        [
            "train",
            f"dataset.root={tiny_root}",
            "text.model=hashing",
            "train.epochs=2",
            "train.tasks_per_epoch=20",
            f"model.hn_type={hn_type}",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--name",
            "r",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "r"
    hypernet, _, norm = load_checkpoint(run / "best.safetensors")
    assert norm is not None
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    a, b = ds.split.unseen[:2]
    clf = induce_from_run(run, [(a, ds.descriptions[a][0]), (b, ds.descriptions[b][0])])
    raw = ds.features[torch.cat([ds.class_rows(a), ds.class_rows(b)])]
    bank = TextBank.build(
        [a, b],
        {a: ds.descriptions[a][:1], b: ds.descriptions[b][:1]},
        "descriptions",
        HashingEncoder(384),
    )
    with torch.no_grad():
        params = hypernet(bank.embeddings.unsqueeze(0))
        expected = hypernet.target(params, ((raw - norm.mean) / norm.std).unsqueeze(0))[0]
    assert torch.allclose(clf.logits(raw), expected, atol=1e-4)
    clf.save(tmp_path / "c.safetensors")
    assert torch.allclose(
        InducedClassifier.load(tmp_path / "c.safetensors").logits(raw), expected, atol=1e-4
    )
