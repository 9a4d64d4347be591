"""`t2m download` for remote datasets and `--list`, driven offline with local files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.data.meshes import write_off
from t2m_cli.data.modelnet import MODELNET40_SPLIT

runner = CliRunner()


def _fake_modelnet_zip(path):
    """A ModelNet40.zip in the real layout: ModelNet40/<class>/{train,test}/<class>_0001.off."""
    g = np.random.default_rng(0)
    classes = (*MODELNET40_SPLIT.seen, *MODELNET40_SPLIT.val, *MODELNET40_SPLIT.unseen)
    with zipfile.ZipFile(path, "w") as z:
        for i, c in enumerate(classes):
            for part, n in (("train", 3), ("test", 1)):
                for j in range(n):
                    v = g.normal(size=(4, 3)) * (1 + i / 10)
                    f = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
                    mesh = path.parent / "m.off"
                    write_off(mesh, v, f)
                    z.write(mesh, f"ModelNet40/{c}/{part}/{c}_{j + 1:04d}.off")
    return path


def test_modelnet40_from_a_local_zip_then_encode_and_train(tmp_path):
    archive = _fake_modelnet_zip(tmp_path / "ModelNet40.zip")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, ["download", "modelnet40", "--from", str(archive), "-q", *cache])
    assert result.exit_code == 0, result.output
    root = tmp_path / "cache" / "datasets" / "modelnet40"
    split = json.loads((root / "split.json").read_text())
    assert len(split["seen"]) == 26 and "toilet" in split["unseen"]
    assert (root / "airplane" / "train" / "airplane_0001.off").is_file()
    # Built in a hidden sibling and renamed: no staging or unpacked archive is left behind.
    assert [p.name for p in root.parent.iterdir()] == ["modelnet40"]
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]

    result = runner.invoke(app, ["download", "--list", "--json", *cache])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["modelnet40"]["ready"] and rows["modelnet40"]["files"][0]["cached"]
    assert rows["modelnet40"]["files"][0]["state"] == "verified"

    fast = [
        "dataset.name=modelnet40",
        "pointnet.epochs=1",
        "pointnet.n_points=32",
        "pointnet.train_points=16",
        "pointnet.batch_size=8",
        "text.model=hashing",
    ]
    result = runner.invoke(app, ["encode", *fast, "-q", *cache])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "train",
            *fast,
            "train.epochs=1",
            "train.tasks_per_epoch=5",
            "--runs-dir",
            str(tmp_path / "runs"),
            "-q",
            *cache,
        ],
    )
    assert result.exit_code == 0, result.output


def test_download_needs_a_name_and_knows_its_datasets(tmp_path):
    result = runner.invoke(app, ["download", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--list" in result.stderr
    result = runner.invoke(app, ["download", "shapes", "--from", str(tmp_path)])
    assert result.exit_code == 2
    assert "generated" in result.stderr
    result = runner.invoke(app, ["train", "dataset.name=imagenet", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "t2m data import" in result.stderr
    result = runner.invoke(app, ["train", "dataset.name=not a name!"])
    assert result.exit_code == 2
    assert "dataset.name" in result.stderr
