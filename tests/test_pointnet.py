"""PointNet: the network's laws, training on given rows only, and the feature file it writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from t2m_cli.data.dataset import FEATURES_DIR, load_features
from t2m_cli.data.shapes import SHAPES_SPLIT, generate_shapes
from t2m_cli.encoders import pointnet
from t2m_cli.encoders.pointnet import (
    FEATURE_DIM,
    MODEL_FILE,
    PointNet,
    encode_point_features,
    extract_features,
    train_pointnet,
)
from t2m_cli.errors import DataError


def toy_clouds(n_per_class: int = 8, n_points: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two easy classes: points on a sphere and points on a flat disc, labelled 3 and 7."""
    g = torch.Generator().manual_seed(0)
    ball = torch.randn(n_per_class, n_points, 3, generator=g)
    ball = ball / ball.norm(dim=2, keepdim=True)
    disc = torch.rand(n_per_class, n_points, 3, generator=g) * 2 - 1
    disc[..., 2] *= 0.05
    points = torch.cat([ball, disc])
    labels = torch.tensor([3] * n_per_class + [7] * n_per_class)
    return points, labels


def test_shapes_of_features_and_logits() -> None:
    model = PointNet(5).eval()
    points = torch.randn(4, 100, 3)
    assert model.features(points).shape == (4, FEATURE_DIM)
    assert model(points).shape == (4, 5)


def test_the_original_widths_give_256_d_features_from_a_1024_d_global_feature() -> None:
    # The original's PointNet: 2,500 points, a 1024-d global feature reduced to 256.
    torch.manual_seed(0)
    model = PointNet(4, global_dim=1024, feature_dim=256).eval()
    points = torch.randn(2, 2500, 3)
    with torch.no_grad():
        features = model.features(points)
        assert model.point_mlp(points.reshape(-1, 3)).shape == (2 * 2500, 1024)
    assert features.shape == (2, 256) and bool((features >= 0).all())
    assert model(points).shape == (2, 4)
    assert extract_features(model, torch.empty(0, 2500, 3)).shape == (0, 256)
    shuffled = points[:, torch.randperm(2500)]
    torch.testing.assert_close(extract_features(model, shuffled), features)


def test_training_with_a_reduction_layer_emits_its_width() -> None:
    points, labels = toy_clouds(4, 32)
    model = train_pointnet(
        points, labels, epochs=1, max_seconds=None, batch_size=4, global_dim=64, feature_dim=16
    )
    assert extract_features(model, points).shape == (8, 16)
    assert model.state_dict()["reduce.0.weight"].shape == (16, 64)


def test_default_widths_add_no_reduction_layer() -> None:
    # The `shapes` demo's network (and so its features for a seed) stays what it was.
    model = PointNet(3)
    assert (model.global_dim, model.feature_dim) == (FEATURE_DIM, FEATURE_DIM)
    assert not any(key.startswith("reduce.") for key in model.state_dict())
    with pytest.raises(ValueError, match="feature_dim"):
        PointNet(3, global_dim=64, feature_dim=128)


def test_features_do_not_depend_on_point_order() -> None:
    torch.manual_seed(0)
    model = PointNet(3).eval()
    points = torch.randn(6, 200, 3)
    shuffled = points[:, torch.randperm(200)]
    with torch.no_grad():
        torch.testing.assert_close(model.features(points), model.features(shuffled))


def test_extract_features_is_deterministic_and_leaves_no_graph() -> None:
    model = PointNet(2)
    model.train()
    points = torch.randn(10, 50, 3)
    a = extract_features(model, points, batch_size=3)
    b = extract_features(model, points, batch_size=7)
    assert a.shape == (10, FEATURE_DIM) and a.dtype == torch.float32
    assert not a.requires_grad and not model.training
    torch.testing.assert_close(a, b)
    assert extract_features(model, torch.empty(0, 50, 3)).shape == (0, FEATURE_DIM)


def test_training_returns_a_pointnet_in_eval_mode() -> None:
    points, labels = toy_clouds(4, 16)
    model = train_pointnet(points, labels, epochs=1, max_seconds=None, batch_size=4)
    assert isinstance(model, PointNet) and not model.training


def test_training_learns_the_given_classes_only() -> None:
    points, labels = toy_clouds()
    model = train_pointnet(points, labels, epochs=15, max_seconds=None, batch_size=8, seed=0)
    assert model.n_classes == 2  # labels 3 and 7 are renumbered 0 and 1
    with torch.no_grad():
        predicted = model(points).argmax(dim=1)
    accuracy = (predicted == (labels == 7).long()).float().mean().item()
    assert accuracy >= 0.9
    assert model.steps_trained == 15 * 2 and model.epochs_trained == 15


def test_training_is_reproducible_without_a_time_budget() -> None:
    points, labels = toy_clouds(4, 32)
    kwargs = {"epochs": 2, "max_seconds": None, "batch_size": 4, "seed": 3, "train_points": 16}
    a = train_pointnet(points, labels, **kwargs).state_dict()
    b = train_pointnet(points, labels, **kwargs).state_dict()
    c = train_pointnet(points, labels, **{**kwargs, "seed": 4}).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert not torch.equal(a["point_mlp.0.weight"], c["point_mlp.0.weight"])


def test_training_stops_at_the_time_budget() -> None:
    points, labels = toy_clouds(16, 128)
    seen: list[tuple[int, int]] = []
    start = time.perf_counter()
    model = train_pointnet(
        points,
        labels,
        epochs=100_000,
        max_seconds=0.5,
        batch_size=8,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert time.perf_counter() - start < 5
    assert 0 < model.epochs_trained < 100_000
    assert model.seconds_trained >= 0.5
    done = [d for d, _ in seen]
    assert done == sorted(done) and all(t == 100_000 * 4 for _, t in seen)


def test_training_needs_two_classes() -> None:
    points, _ = toy_clouds(4, 16)
    with pytest.raises(DataError, match="two classes"):
        train_pointnet(points, torch.zeros(8, dtype=torch.long), epochs=1, max_seconds=None)
    with pytest.raises(DataError, match=r"\(N, P, 3\)"):
        train_pointnet(points[..., :2], torch.arange(8), epochs=1, max_seconds=None)


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", seed=0, n_train=2, n_test=1)


def test_encode_trains_on_seen_training_rows_only(
    tiny_shapes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: dict[str, torch.Tensor] = {}
    real_train = pointnet.train_pointnet

    def spy(points: torch.Tensor, labels: torch.Tensor, **kwargs: object) -> torch.nn.Module:
        given["labels"] = labels.clone()
        given["points"] = points.clone()
        return real_train(points, labels, **kwargs)

    monkeypatch.setattr(pointnet, "train_pointnet", spy)
    progress: list[int] = []
    path = encode_point_features(
        tiny_shapes,
        SHAPES_SPLIT,
        n_points=64,
        train_points=32,
        epochs=1,
        max_seconds=None,
        seed=0,
        progress=lambda d, t: progress.append(d),
    )
    assert path == tiny_shapes / FEATURES_DIR / "pointnet.safetensors"
    features, labels, is_test, classes, meta = load_features(path)

    # The rows it learnt from: two training meshes of each seen class, nothing else.
    seen_ids = {classes.index(c) for c in SHAPES_SPLIT.seen}
    assert set(given["labels"].tolist()) == seen_ids
    assert len(given["labels"]) == 2 * len(SHAPES_SPLIT.seen)
    train_rows = torch.isin(labels, torch.tensor(sorted(seen_ids))) & ~is_test
    assert torch.equal(given["labels"], labels[train_rows])

    assert meta["extractor"] == "pointnet"
    assert meta["trained_on"] == sorted(SHAPES_SPLIT.seen)
    assert not set(meta["trained_on"]) & (set(SHAPES_SPLIT.val) | set(SHAPES_SPLIT.unseen))
    assert (meta["n_points"], meta["epochs"], meta["seed"]) == (64, 1, 0)
    assert features.shape == (40 * 3, FEATURE_DIM) and torch.isfinite(features).all()
    assert int(is_test.sum()) == 40
    assert progress[-1] == 100 and progress == sorted(progress)

    from safetensors import safe_open

    with safe_open(str(tiny_shapes / FEATURES_DIR / MODEL_FILE), framework="pt") as f:
        head = f.get_tensor("head.4.weight")
        assert json.loads(f.metadata()["meta"])["trained_on"] == meta["trained_on"]
    assert head.shape[0] == len(SHAPES_SPLIT.seen)


def test_encode_rejects_a_split_that_does_not_fit(tiny_shapes: Path) -> None:
    from t2m_cli.data.dataset import Split

    split = Split(seen=("pole", "coin"), val=("ball",), unseen=("nonexistent",))
    with pytest.raises(DataError, match="nonexistent"):
        encode_point_features(tiny_shapes, split, n_points=16, epochs=1, max_seconds=None)


def _encode_shapes(cache: Path, *settings: str):
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    fast = ["pointnet.epochs=1", "pointnet.n_points=32", "pointnet.train_points=16"]
    args = ["encode", *fast, *settings, "text.model=hashing", "--cache-dir", str(cache)]
    return CliRunner().invoke(app, args)


def test_encode_builds_features_again_when_their_pointnet_settings_change(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "datasets" / "shapes", seed=0, n_train=1, n_test=1)
    feature_file = root / FEATURES_DIR / "pointnet.safetensors"
    result = _encode_shapes(tmp_path)
    assert result.exit_code == 0, result.output
    assert "(built)" in result.stdout
    result = _encode_shapes(tmp_path)
    assert result.exit_code == 0, result.output
    assert "(already there)" in result.stdout and "again" not in result.stderr

    result = _encode_shapes(tmp_path, "pointnet.epochs=2")
    assert result.exit_code == 0, result.output
    assert "(built)" in result.stdout
    message = " ".join(result.stderr.split())
    assert f"Building {feature_file} again: it was built with pointnet.epochs=1, now 2." in message
    assert load_features(feature_file)[4]["epochs"] == 2
    result = _encode_shapes(tmp_path, "pointnet.epochs=2")
    assert result.exit_code == 0 and "(already there)" in result.stdout

    result = _encode_shapes(tmp_path, "pointnet.epochs=2", "pointnet.seed=7")
    assert result.exit_code == 0, result.output
    assert "(built)" in result.stdout and "pointnet.seed=0, now 7" in result.stderr
    assert load_features(feature_file)[4]["seed"] == 7

    # --force rebuilds what matches, and needs no reason.
    result = _encode_shapes(tmp_path, "pointnet.epochs=2", "pointnet.seed=7", "--force")
    assert result.exit_code == 0, result.output
    assert "(built)" in result.stdout and "again" not in result.stderr


def test_encode_records_the_widths_and_builds_again_when_they_change(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "datasets" / "shapes", seed=0, n_train=1, n_test=1)
    feature_file = root / FEATURES_DIR / "pointnet.safetensors"
    assert _encode_shapes(tmp_path).exit_code == 0
    features, *_, meta = load_features(feature_file)
    assert (meta["global_dim"], meta["feature_dim"]) == (256, 256)
    assert features.shape[1] == 256

    widths = ("pointnet.global_dim=64", "pointnet.feature_dim=16")
    result = _encode_shapes(tmp_path, *widths)
    assert result.exit_code == 0, result.output
    assert "(built)" in result.stdout
    message = " ".join(result.stderr.split())
    assert "pointnet.global_dim=256, now 64; pointnet.feature_dim=256, now 16" in message
    features, *_, meta = load_features(feature_file)
    assert features.shape[1] == 16 and (meta["global_dim"], meta["feature_dim"]) == (64, 16)
    assert "(already there)" in _encode_shapes(tmp_path, *widths).stdout


def test_features_from_before_the_widths_were_settings_are_kept(tmp_path: Path) -> None:
    from t2m_cli.data.dataset import save_features

    root = generate_shapes(tmp_path / "datasets" / "shapes", seed=0, n_train=1, n_test=1)
    feature_file = root / FEATURES_DIR / "pointnet.safetensors"
    assert _encode_shapes(tmp_path).exit_code == 0
    *data, meta = load_features(feature_file)
    del meta["global_dim"]  # as written then: the pooled 256-d feature, recorded as feature_dim
    save_features(feature_file, *data, meta)
    result = _encode_shapes(tmp_path)
    assert result.exit_code == 0, result.output
    assert "(already there)" in result.stdout and "again" not in result.stderr
    result = _encode_shapes(tmp_path, "pointnet.global_dim=512")
    assert "pointnet.global_dim=256, now 512" in " ".join(result.stderr.split())


def test_encode_refuses_features_wider_than_the_global_feature(tmp_path: Path) -> None:
    result = _encode_shapes(tmp_path, "pointnet.global_dim=64", "pointnet.feature_dim=128")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "pointnet.feature_dim 128 is above pointnet.global_dim 64" in message
    assert "Traceback" not in result.output


def test_encode_builds_features_again_when_the_meshes_or_the_seen_classes_change(
    tmp_path: Path,
) -> None:
    import os

    from t2m_cli.atomic import read_json, write_json
    from t2m_cli.data.dataset import SPLIT_FILE

    root = generate_shapes(tmp_path / "datasets" / "shapes", seed=0, n_train=1, n_test=1)
    assert _encode_shapes(tmp_path).exit_code == 0
    mesh = next(root.glob("*/train/*.off"))
    stamp = mesh.stat().st_mtime_ns + 10**9
    os.utime(mesh, ns=(stamp, stamp))
    result = _encode_shapes(tmp_path)
    assert result.exit_code == 0, result.output
    assert "(built)" in result.stdout and "the meshes changed" in result.stderr
    assert _encode_shapes(tmp_path).stdout.count("(already there)") == 1

    # A class moved from seen to unseen: the PointNet learnt it, so its features would leak it.
    split = read_json(root / SPLIT_FILE, "split")
    moved = split["seen"].pop()
    split["unseen"].append(moved)
    write_json(root / SPLIT_FILE, split)
    result = _encode_shapes(tmp_path)
    assert result.exit_code == 0, result.output
    assert "(built)" in result.stdout and "seen classes" in result.stderr
    assert moved not in load_features(root / FEATURES_DIR / "pointnet.safetensors")[4]["trained_on"]


def test_encode_keeps_features_it_does_not_build_whatever_the_pointnet_settings(
    tiny_root: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    args = ["encode", "dataset.name=tiny", f"dataset.root={tiny_root}", "text.model=hashing"]
    result = CliRunner().invoke(app, [*args, "pointnet.epochs=3", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "(already there)" in result.stdout and "again" not in result.stderr
