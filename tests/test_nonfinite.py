"""Non-finite numbers anywhere: settings, features, training, weight files and JSON output.

A NaN or infinity is refused where it enters (config, feature files, converters, PointNet
output), a diverging run stops at the first non-finite loss, update or weight, no weight file
holding one is used, and every JSON file t2m writes parses with a strict parser.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke_train
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from t2m_cli.atomic import dumps_json, save_safetensors
from t2m_cli.cli import app
from t2m_cli.data.dataset import load_features, nonfinite_rows, save_features
from t2m_cli.errors import DataError, TrainingDiverged, UserInputError

runner = CliRunner()

TINY = ["text.model=hashing", "train.epochs=2", "train.tasks_per_epoch=20", "model.hidden=16"]


def _train(tiny_root: Path, tmp_path: Path, name: str, *extra: str):
    return invoke_train(tiny_root, tmp_path, name, *TINY, *extra)


def _strict(text: str) -> object:
    """Parse JSON as RFC 8259 does: no NaN, Infinity or -Infinity."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _poison(path: Path, skip: str = "") -> str:
    """Set the first value of the first float tensor (not starting with `skip`) to NaN."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        metadata = f.metadata()
    name = next(
        k for k, v in tensors.items() if v.is_floating_point() and not (skip and k.startswith(skip))
    )
    tensors[name].view(-1)[0] = math.nan
    save_file(tensors, str(path), metadata=metadata)
    return name


# --- settings ---------------------------------------------------------------------------------


def test_nonfinite_settings_are_refused_on_the_command_line_and_in_a_file(tmp_path):
    result = runner.invoke(app, ["train", "train.lr=.inf"])
    assert result.exit_code == 2
    assert "train.lr (train.lr=.inf): Input should be a finite number (got inf)" in result.stderr
    assert "Traceback" not in result.output

    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epochs: 2\n  lr: .nan\npointnet:\n  max_seconds: .inf\n")
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2
    assert f"train.lr ({config}, line 3): Input should be a finite number (got nan)" in " ".join(
        result.stderr.split()
    )
    assert f"pointnet.max_seconds ({config}, line 5)" in " ".join(result.stderr.split())
    assert not (tmp_path / "runs").exists()


# --- training ---------------------------------------------------------------------------------


def test_a_diverging_run_stops_saves_nothing_and_frees_its_name(tiny_root, tmp_path):
    result = _train(tiny_root, tmp_path, "x", "train.lr=1e6")
    assert result.exit_code == 2, result.output
    message = result.stderr
    assert "Training diverged" in message and "epoch 1, task" in message
    # The default objective runs no inner loop, so only train.lr is offered.
    assert "lower train.lr (now 1e+06; the default is 0.005)" in message
    assert "inner_lr" not in message
    assert "Traceback" not in result.output
    # It failed in its first epoch: nothing of it is left, certainly no NaN checkpoint.
    assert not (tmp_path / "runs" / "x").exists()

    result = _train(tiny_root, tmp_path, "x")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "x" / "best.safetensors").is_file()


def _trainer(tiny_root: Path, **train: object):
    from t2m_cli.config import TrainConfig
    from t2m_cli.data.dataset import load_dataset
    from t2m_cli.data.texts import TextBank
    from t2m_cli.encoders.text import HashingEncoder
    from t2m_cli.models.hypernet import build_hypernet
    from t2m_cli.training.inner import InnerSettings
    from t2m_cli.training.loop import OuterSettings, Trainer

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(32))
    torch.manual_seed(0)
    hn = build_hypernet("EV", text_dim=32, feature_dim=ds.feature_dim, hidden=8)
    section = TrainConfig.model_validate({"epochs": 3, "tasks_per_epoch": 6, **train})
    inner, outer = InnerSettings.from_config(section), OuterSettings.from_config(section, 0)
    return Trainer(hn, bank, ds, inner, outer, torch.device("cpu"))


@pytest.mark.parametrize("objective", ["update", "induced"])
def test_a_nan_loss_stops_the_step_before_the_weights_move(tiny_root, objective):
    trainer = _trainer(tiny_root, objective=objective)
    epochs = trainer.epochs()
    assert math.isfinite(next(epochs).inner_loss)
    before = {k: v.clone() for k, v in trainer.hypernet.state_dict().items()}
    # One NaN feature reaches every task's inner loss in epoch 2.
    trainer.features[:] = math.nan
    loss = "inner loss" if objective == "update" else "induced classifier's loss"
    with pytest.raises(TrainingDiverged, match=rf"{loss} .* at epoch 2, task 1 of 6") as error:
        next(epochs)
    # Only the paper's rule has an inner loop whose learning rate could be lowered.
    assert ("train.inner_lr" in str(error.value)) == (objective == "update")
    after = trainer.hypernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_weights_that_overflow_in_an_epoch_stop_it_before_it_is_yielded(tiny_root, monkeypatch):
    trainer = _trainer(tiny_root, tasks_per_epoch=4)
    step = trainer.optimizer.step
    calls = []

    def overflowing_step() -> None:
        step()
        calls.append(1)
        if len(calls) == 8:  # the last step of epoch 2: no later loss would show it
            next(trainer.hypernet.parameters()).data.view(-1)[0] = math.inf

    monkeypatch.setattr(trainer.optimizer, "step", overflowing_step)
    epochs = trainer.epochs()
    assert next(epochs).epoch == 1
    with pytest.raises(TrainingDiverged, match=r"hypernetwork weights .* in epoch 2"):
        next(epochs)


def test_a_validation_score_that_is_not_a_number_never_selects_an_epoch(tiny_root, monkeypatch):
    from t2m_cli.scoring.metrics import Summary

    trainer = _trainer(tiny_root, epochs=1)
    monkeypatch.setattr(trainer, "validate", lambda: Summary(math.nan, math.nan, 1))
    (result,) = trainer.epochs()
    assert not result.is_best and trainer.best_val == -1.0
    assert _strict(dumps_json(result.to_json()))["val_acc"] is None


# --- weight files -----------------------------------------------------------------------------


def test_a_checkpoint_with_a_nan_weight_is_refused_by_induce_and_evaluate(tiny_root, tmp_path):
    assert _train(tiny_root, tmp_path, "r").exit_code == 0
    run = tmp_path / "runs" / "r"
    best = run / "best.safetensors"
    name = _poison(best, skip="input_norm")
    descriptions = tmp_path / "d.txt"
    descriptions.write_text("a: a red round thing\nb: a blue square thing\n")
    cache = ["--cache-dir", str(tmp_path / "cache")]

    result = runner.invoke(app, ["induce", str(descriptions), "--run", str(run), *cache])
    assert result.exit_code == 2
    assert f"Checkpoint {best} holds NaN or infinite values (in '{name}')" in result.stderr
    assert not (tmp_path / "d.t2m.safetensors").exists()

    result = runner.invoke(app, ["evaluate", str(run), "--json", *cache])
    assert result.exit_code == 2
    assert f"Checkpoint {best} holds NaN or infinite values" in result.stderr
    assert result.stdout == ""


def test_a_classifier_file_with_a_nan_weight_is_refused(tmp_path):
    from t2m_cli.induction import InducedClassifier

    params = {"weight": torch.ones(2, 3), "bias": torch.tensor([0.0, math.inf])}
    path = tmp_path / "c.safetensors"
    InducedClassifier(["a", "b"], ["a", "b"], params).save(path)
    with pytest.raises(DataError, match=r"holds NaN or infinite values \(in 'bias'\)"):
        InducedClassifier.load(path)


def test_a_training_state_with_a_nan_cannot_be_resumed(tmp_path):
    from t2m_cli.runs import load_state, save_state

    save_state(tmp_path, {"model.w": torch.tensor([math.nan])}, {"epoch": 1})
    with pytest.raises(DataError, match=r"holds NaN .* cannot be resumed"):
        load_state(tmp_path)


def test_text_cache_with_nan_is_re_encoded_and_nan_embeddings_are_refused(tmp_path):
    from t2m_cli.encoders.text import SentenceEncoder

    class Model:
        def __init__(self, value: float) -> None:
            self.value = value

        def encode(self, texts: list[str], **kwargs: object) -> torch.Tensor:
            return torch.full((len(texts), 4), self.value)

    folder = tmp_path / "model"  # a local model is cached under its folder's fingerprint
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    encoder = SentenceEncoder(str(folder), cache_dir=tmp_path / "cache")
    encoder._model = Model(1.0)
    encoder.encode(["a cat"])
    assert encoder.cache_file is not None
    _poison(encoder.cache_file)
    again = SentenceEncoder(str(folder), cache_dir=tmp_path / "cache")
    again._model = Model(2.0)
    assert again.encode(["a cat"]).tolist() == [[2.0] * 4]  # encoded anew, not the NaN

    broken = SentenceEncoder(str(folder), cache_dir=None)
    broken._model = Model(math.nan)
    with pytest.raises(UserInputError, match="NaN or infinite embeddings for 1 texts"):
        broken.encode(["a dog"])


# --- features ---------------------------------------------------------------------------------


def test_nonfinite_rows_names_rows_in_the_file_or_within_their_class():
    x = np.zeros((6, 2), dtype=np.float32)
    x[4, 1], x[5, 0] = np.nan, -np.inf
    labels = np.array([0, 0, 1, 1, 1, 0])
    assert nonfinite_rows(x[:4]) is None
    assert nonfinite_rows(x, labels, ["cat", "dog"]) == (
        "NaN or infinite values in 2 rows: row 4 (class 'dog'), row 5 (class 'cat')"
    )
    assert nonfinite_rows(torch.from_numpy(x), labels, ["cat", "dog"], within_class=True) == (
        "NaN or infinite values in 2 rows: row 2 of class 'dog', row 2 of class 'cat'"
    )
    assert nonfinite_rows(x, labels[:3], ["cat", "dog"], shown=1) == (
        "NaN or infinite values in 2 rows: row 4, ..."
    )


def test_save_features_refuses_nonfinite_rows_and_writes_nothing(tmp_path):
    features = torch.zeros(3, 2, dtype=torch.float64)
    features[1, 0] = 1e300  # finite in float64, infinite once stored as float32
    path = tmp_path / "f.safetensors"
    with pytest.raises(DataError, match=r"row 1 \(class 'b'\)\. Nothing was written"):
        save_features(path, features, torch.tensor([0, 1, 1]), torch.zeros(3), ["a", "b"], {})
    assert list(tmp_path.iterdir()) == []


def test_a_feature_file_with_a_nan_row_is_refused_when_training(tiny_root, tmp_path):
    path = tiny_root / "features" / "pointnet.safetensors"
    features, labels, is_test, classes, meta = load_features(path)
    features[45, 3] = math.nan  # class 1, its 16th row
    save_safetensors(
        path,
        {"features": features, "labels": labels, "is_test": is_test.to(torch.uint8)},
        {"classes": json.dumps(classes), "meta": json.dumps(meta)},
    )
    result = _train(tiny_root, tmp_path, "r")
    assert result.exit_code == 2
    assert f"Feature file {path} has NaN or infinite values in 1 row: row 45" in result.stderr
    assert "(class 'class_01')" in result.stderr and "t2m encode --force" in result.stderr
    assert not (tmp_path / "runs" / "r").exists()


def _custom_folder(root: Path) -> Path:
    """Eight classes of six 4-d rows (two held out), a usable split, one NaN value."""
    classes = [f"c{i}" for i in range(8)]
    root.mkdir()
    features = np.random.default_rng(0).standard_normal((48, 4)).astype(np.float32)
    features[15, 2] = np.nan  # class c2 (rows 12..17), its row 3
    np.save(root / "features.npy", features)
    np.save(root / "labels.npy", np.repeat(np.arange(8), 6))
    np.save(root / "is_test.npy", np.tile(np.arange(6) >= 4, 8))
    (root / "classes.json").write_text(json.dumps(classes))
    (root / "descriptions.yaml").write_text("".join(f"{c}: a thing called {c}\n" for c in classes))
    split = {"seen": classes[:4], "val": classes[4:6], "unseen": classes[6:]}
    (root / "split.json").write_text(json.dumps(split))
    return root


def test_custom_import_refuses_a_nan_row_naming_its_class(tmp_path):
    folder = _custom_folder(tmp_path / "mine")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, ["data", "import", str(folder), "--name", "mine", *cache])
    assert result.exit_code == 2
    assert (
        "features.npy has NaN or infinite values in 1 row: row 15 (class 'c2'); fix or drop "
        "those samples and their labels."
    ) in result.stderr
    assert not (tmp_path / "cache" / "datasets" / "mine").exists()
    result = runner.invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 2 and "row 15 (class 'c2')" in result.stderr

    features = np.load(folder / "features.npy").astype(np.float64)
    features[15, 2], features[20, 0] = 0.0, 1e39  # beyond float32's range
    np.save(folder / "features.npy", features)
    result = runner.invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 2
    assert "row 20 (class 'c3') (beyond float32's range)" in result.stderr

    features[20, 0] = 0.0
    np.save(folder / "features.npy", features)
    result = runner.invoke(app, ["data", "import", str(folder), "--name", "mine", *cache])
    assert result.exit_code == 0, result.output


def test_an_original_pickle_with_a_nan_row_is_refused(tmp_path):
    import pickle

    from test_original import write_original

    from t2m_cli.data.original import convert_original_dataset

    data = write_original(tmp_path / "src")
    part = tmp_path / "src" / "awa" / "features" / "zs_classes.pkl"
    matrix = data["zs_classes"]["blue+whale"].copy()
    matrix[2, 0] = np.inf
    with part.open("rb") as f:
        x, class2idx = pickle.load(f)  # the test's own file
    x[class2idx["blue+whale"]] = torch.from_numpy(matrix)
    with part.open("wb") as f:
        pickle.dump((x, class2idx), f)
    with pytest.raises(DataError) as info:
        convert_original_dataset(tmp_path / "src", tmp_path / "out", "awa")
    expected = f"{part} has NaN or infinite values in 1 row: row 2 of class 'blue+whale'"
    assert expected in str(info.value)
    assert not (tmp_path / "out").exists()


def test_xlsa17_features_with_a_nan_are_refused(tmp_path):
    from test_xlsa17 import small_files

    from t2m_cli.data.xlsa17 import read_xlsa17

    features = np.arange(12, dtype=np.float32).reshape(2, 6)
    features[1, 4] = np.nan  # D x N: image 4 (from 0), class c
    res101, splits = small_files(tmp_path, features=features)
    with pytest.raises(DataError, match=r"'features' .* 1 row: row 4 \(class 'c'\)"):
        read_xlsa17(res101, splits)


def test_pointnet_features_that_diverged_are_not_written(tmp_path, monkeypatch):
    from t2m_cli.data import modelnet
    from t2m_cli.data.dataset import Split
    from t2m_cli.encoders import pointnet

    classes = ["a", "b", "c", "d", "e", "f"]
    labels = torch.arange(6).repeat_interleave(2)
    is_test = torch.tensor([False, True] * 6)

    def clouds(root, n_points, seed, progress, **reading):
        return torch.rand(12, n_points, 3), labels, is_test, classes

    monkeypatch.setattr(modelnet, "load_point_clouds", clouds)
    monkeypatch.setattr(modelnet, "mesh_fingerprint", lambda root: "no meshes")
    monkeypatch.setattr(
        pointnet,
        "extract_features",
        lambda model, points, *a: torch.full((len(points), 256), math.nan),
    )
    split = Split(seen=("a", "b"), val=("c", "d"), unseen=("e", "f"))
    with pytest.raises(DataError, match=r"lower pointnet.lr \(now 0.001\)"):
        pointnet.encode_point_features(tmp_path, split, n_points=8, epochs=1, max_seconds=None)
    assert not (tmp_path / "features").exists()


# --- strict JSON ------------------------------------------------------------------------------


def test_dumps_json_is_strict_and_writes_undefined_numbers_as_null():
    text = dumps_json({"a": math.nan, "b": [1.5, -math.inf, (math.inf, 2)], "c": None})
    assert _strict(text) == {"a": None, "b": [1.5, None, [None, 2]], "c": None}


def test_every_json_file_and_output_of_train_evaluate_induce_is_strict(tiny_root, tmp_path):
    assert _train(tiny_root, tmp_path, "r").exit_code == 0
    run = tmp_path / "runs" / "r"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(run),
            "--protocol",
            "pairs",
            "--protocol",
            "gzsl",
            "--baseline",
            "ridge",
            "--output",
            str(out),
            "--json",
            *cache,
        ],
    )
    assert result.exit_code == 0, result.output
    _strict(result.stdout)
    descriptions = tmp_path / "d.txt"
    descriptions.write_text("a: a red round thing\nb: a blue square thing\n")
    result = runner.invoke(app, ["induce", str(descriptions), "--run", str(run), "--json", *cache])
    assert result.exit_code == 0, result.output
    _strict(result.stdout)

    files = [*run.rglob("*.json"), *out.rglob("*.json"), *(tmp_path / "cache").rglob("*.json")]
    assert {p.name for p in files} >= {"run.json", "eval.json"}
    for path in files:
        _strict(path.read_text())
    for line in (run / "metrics.jsonl").read_text().splitlines():
        _strict(line)
    headers = [*run.glob("*.safetensors"), tmp_path / "d.t2m.safetensors"]
    for path in headers:
        with safe_open(str(path), framework="pt") as f:
            for value in f.metadata().values():
                _strict(value)
