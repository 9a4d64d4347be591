"""The bring-your-own-data folder: checking reports every problem, conversion loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from t2m_cli.data.custom import check_custom, convert_custom
from t2m_cli.data.dataset import load_dataset
from t2m_cli.errors import DataError

CLASSES = ["zebra", "tiger", "horse", "lion", "whale", "seal"]


def make_folder(root: Path, *, split: bool = True, yaml_text: str | None = None) -> Path:
    """Six classes of ten 4-d rows each, described in YAML (one text or a list)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(root / "features.npy", rng.standard_normal((60, 4)).astype(np.float32))
    np.save(root / "labels.npy", np.repeat(np.arange(6), 10))
    (root / "classes.json").write_text(json.dumps(CLASSES))
    if yaml_text is None:
        yaml_text = "\n".join(f"{c}:\n  - a {c}\n  - an animal called {c}" for c in CLASSES[:-1])
        yaml_text += "\nseal: a grey sea animal\n"
    (root / "descriptions.yaml").write_text(yaml_text)
    if split:
        parts = {"seen": CLASSES[:2], "val": ["horse", "lion"], "unseen": ["whale", "seal"]}
        (root / "split.json").write_text(json.dumps(parts))
    (root / "attributes.json").write_text(json.dumps({"zebra": ["striped"], "tiger": ["striped"]}))
    return root


def test_valid_folder_converts_and_loads(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "mine")
    np.save(src / "is_test.npy", np.tile(np.arange(10) >= 7, 6))
    assert check_custom(src) == []
    dst = convert_custom(src, tmp_path / "t2m")
    ds = load_dataset(dst, "mine", "custom")
    assert ds.classes == CLASSES
    assert ds.split.seen == ("zebra", "tiger") and ds.split.unseen == ("whale", "seal")
    assert ds.features.shape == (60, 4)
    assert int(ds.is_test.sum()) == 18
    assert ds.descriptions["seal"] == ["a grey sea animal"]
    assert ds.descriptions["zebra"] == ["a zebra", "an animal called zebra"]
    assert ds.attributes["zebra"] == ["striped"]
    assert ds.meta["split"] == "split.json"


def test_without_split_and_is_test_draws_them(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "mine", split=False)
    first = convert_custom(src, tmp_path / "a", seed=1, feature_name="x")
    second = convert_custom(src, tmp_path / "b", seed=1, feature_name="x")
    ds = load_dataset(first, "mine", "x")
    again = load_dataset(second, "mine", "x")
    assert ds.split == again.split
    assert (len(ds.split.seen), len(ds.split.val), len(ds.split.unseen)) == (2, 2, 2)
    assert int(ds.is_test.sum()) == 12  # 2 of each class's 10 rows
    assert ds.meta["split"].startswith("drawn")


def test_five_problems_reported_at_once(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "bad")
    features = np.load(src / "features.npy")
    features[3, 1] = np.nan
    np.save(src / "features.npy", features)
    labels = np.repeat(np.arange(6), 10)
    labels[labels == 5] = 4  # seal loses its rows: an empty class
    labels[0] = 9  # out of range
    np.save(src / "labels.npy", labels)
    (src / "descriptions.yaml").write_text("zebra: a zebra\ntiger: a tiger\nhorse: a horse\n")
    parts = {"seen": ["zebra", "tiger"], "val": ["tiger"], "unseen": ["unicorn"]}
    (src / "split.json").write_text(json.dumps(parts))
    problems = check_custom(src)
    text = "\n".join(problems)
    assert "NaN" in text
    assert "outside 0..5" in text
    assert "['seal'] have no rows" in text
    assert "no description for classes ['lion', 'whale', 'seal']" in text
    assert "['tiger'] in both 'seen' and 'val'" in text
    assert "['unicorn'], which are not in classes.json" in text
    assert len(problems) == 6
    with pytest.raises(DataError) as info:
        convert_custom(src, tmp_path / "out")
    assert "6 problems" in str(info.value)
    assert all(p in str(info.value) for p in problems)
    assert not (tmp_path / "out").exists()


def test_missing_files_and_bad_yaml(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "bad", yaml_text="zebra: [a zebra\ntiger: :\n")
    (src / "labels.npy").unlink()
    np.save(src / "is_test.npy", np.zeros((60, 2)))
    problems = check_custom(src)
    text = "\n".join(problems)
    assert "labels.npy is missing" in text
    assert "descriptions.yaml is not valid YAML" in text
    assert "is_test.npy must be a 1-D bool" in text
    assert len(problems) == 3


def test_counts_and_shapes(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "bad")
    np.save(src / "labels.npy", np.repeat(np.arange(6), 9))
    np.save(src / "is_test.npy", np.ones(60, dtype=bool))
    (src / "features.safetensors").write_bytes(b"")
    problems = check_custom(src)
    text = "\n".join(problems)
    assert "both features.npy and features.safetensors" in text
    assert "is_test.npy has 60 entries but labels.npy has 54" in text
    assert check_custom(tmp_path / "nowhere")[0].endswith(
        "is not a folder; give the folder that holds features and labels."
    )


def test_safetensors_features_and_pickle_refused(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    src = make_folder(tmp_path / "mine")
    features = torch.from_numpy(np.load(src / "features.npy"))
    (src / "features.npy").unlink()
    save_file({"features": features}, str(src / "features.safetensors"))
    assert check_custom(src) == []
    ds = load_dataset(convert_custom(src, tmp_path / "t2m"), "mine", "custom")
    assert torch.equal(ds.features, features)
    np.save(src / "labels.npy", np.array([object()] * 60, dtype=object), allow_pickle=True)
    assert any("without pickle" in p for p in check_custom(src))


@pytest.mark.parametrize("name", ["mine", "007", "1e3"])
def test_import_hint_names_the_dataset_as_train_will_read_it(tmp_path: Path, name: str) -> None:
    # The printed `t2m train` token must give back the name exactly: 007 and 1e3 would be read
    # as numbers unless quoted.
    import shlex

    from typer.testing import CliRunner

    from t2m_cli.cli import app
    from t2m_cli.config import load_config

    folder = make_folder(tmp_path / "src")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, ["data", "import", str(folder), "--name", name, *cache])
    assert result.exit_code == 0, result.output
    hint = next(line for line in result.stdout.splitlines() if line.startswith("train with:"))
    tokens = shlex.split(hint.removeprefix("train with: t2m train "))
    assert load_config(None, tokens).dataset.name == name
