"""The embedded `shapes` dataset: its classes, split, descriptions and generation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from t2m_cli.data.dataset import (
    ATTRIBUTES_FILE,
    DESCRIPTIONS_FILE,
    SPLIT_FILE,
    Split,
    load_dataset,
    save_features,
)
from t2m_cli.data.meshes import read_off, sample_points
from t2m_cli.data.modelnet import scan_modelnet
from t2m_cli.data.shapes import (
    CLASS_SPECS,
    DATASET_FILE,
    SHAPES_ATTRIBUTES,
    SHAPES_CLASSES,
    SHAPES_DESCRIPTIONS,
    SHAPES_SPLIT,
    generate_shapes,
    make_instance,
)
from t2m_cli.errors import DataError


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_forty_classes_split_26_7_7_disjoint() -> None:
    assert len(SHAPES_CLASSES) == len(set(SHAPES_CLASSES)) == 40
    split = SHAPES_SPLIT
    assert (len(split.seen), len(split.val), len(split.unseen)) == (26, 7, 7)
    assert set(split.seen) | set(split.val) | set(split.unseen) == set(SHAPES_CLASSES)
    assert not set(split.seen) & set(split.val)
    assert not set(split.seen) & set(split.unseen)
    assert not set(split.val) & set(split.unseen)


def test_validation_and_unseen_classes_span_every_coarse_group() -> None:
    group = {shape.name: shape.group for shape in CLASS_SPECS}
    assert set(group.values()) == {"long", "flat", "compact"}
    for part in ("val", "unseen"):
        assert {group[c] for c in SHAPES_SPLIT.part(part)} == {"long", "flat", "compact"}


def test_every_class_has_three_or_four_distinct_descriptions() -> None:
    assert set(SHAPES_DESCRIPTIONS) == set(SHAPES_CLASSES)
    for name, texts in SHAPES_DESCRIPTIONS.items():
        assert 3 <= len(texts) <= 4, name
        assert len(set(texts)) == len(texts), name
        assert all(t.strip() and len(t) < 200 for t in texts), name
    every_text = [t for texts in SHAPES_DESCRIPTIONS.values() for t in texts]
    assert len(set(every_text)) == len(every_text)


def test_every_class_builds_a_valid_upright_mesh() -> None:
    for shape in CLASS_SPECS:
        vertices, faces = make_instance(shape, np.random.default_rng(3))
        assert np.isfinite(vertices).all(), shape.name
        assert faces.min() >= 0 and faces.max() < len(vertices), shape.name
        points = sample_points(vertices, faces, 256, np.random.default_rng(0))
        assert np.ptp(points, axis=0).min() > 0, shape.name


def test_instances_vary_within_a_class() -> None:
    shape = CLASS_SPECS[0]
    a = make_instance(shape, np.random.default_rng(1))[0]
    b = make_instance(shape, np.random.default_rng(2))[0]
    assert not np.allclose(np.ptp(a, axis=0), np.ptp(b, axis=0))


def test_heading_turns_only_about_the_vertical_axis() -> None:
    # A pole's height stays along z whatever the heading; only x and y mix.
    pole = next(s for s in CLASS_SPECS if s.name == "pole")
    for seed in range(5):
        extent = np.ptp(make_instance(pole, np.random.default_rng(seed))[0], axis=0)
        assert extent[2] > 5 * max(extent[0], extent[1])


def test_generation_layout_and_files(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "shapes", seed=0, n_train=2, n_test=1)
    assert root == tmp_path / "shapes"
    found = scan_modelnet(root)
    assert len(found) == 40 * 3
    assert {c for c, _, _ in found} == set(SHAPES_CLASSES)
    names = [(c, p, f.name) for c, p, f in found if c == "pole"]
    # Numbering continues from train into test, as in ModelNet40.
    assert names == [
        ("pole", "train", "pole_0001.off"),
        ("pole", "train", "pole_0002.off"),
        ("pole", "test", "pole_0003.off"),
    ]
    vertices, faces = read_off(found[0][2])
    assert len(vertices) and len(faces)
    split = Split.from_json(json.loads((root / SPLIT_FILE).read_text()))
    assert split == SHAPES_SPLIT
    assert json.loads((root / DESCRIPTIONS_FILE).read_text()) == SHAPES_DESCRIPTIONS
    info = json.loads((root / DATASET_FILE).read_text())
    assert info["name"] == "shapes" and info["seed"] == 0
    assert (info["n_train"], info["n_test"], info["n_classes"]) == (2, 1, 40)
    assert "generator_version" in info
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]  # no temporary folder left


def test_generation_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = files_of(generate_shapes(tmp_path / "a", seed=5, n_train=1, n_test=1))
    b = files_of(generate_shapes(tmp_path / "b", seed=5, n_train=1, n_test=1))
    c = files_of(generate_shapes(tmp_path / "c", seed=6, n_train=1, n_test=1))
    assert a == b
    meshes = [k for k in a if k.endswith(".off")]
    assert len(meshes) == 80
    assert all(a[k] != c[k] for k in meshes)


def test_generation_is_idempotent(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "shapes", seed=0, n_train=1, n_test=1)
    marker = root / "pole" / "train" / "pole_0001.off"
    stamp = marker.stat().st_mtime_ns
    calls: list[int] = []
    start = time.perf_counter()
    generate_shapes(root, seed=0, n_train=1, n_test=1, progress=lambda d, t: calls.append(d))
    assert time.perf_counter() - start < 0.5
    assert calls == [] and marker.stat().st_mtime_ns == stamp


def test_other_settings_replace_an_earlier_dataset(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "shapes", seed=0, n_train=1, n_test=1)
    (root / "features").mkdir()
    (root / "features" / "stale.safetensors").write_bytes(b"old")
    generate_shapes(root, seed=1, n_train=2, n_test=1)
    assert json.loads((root / DATASET_FILE).read_text())["seed"] == 1
    assert len(scan_modelnet(root)) == 40 * 3
    assert not (root / "features").exists()  # features of the old meshes would be wrong
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]


def test_interrupted_generation_leaves_no_dataset(tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_shapes(tmp_path / "shapes", seed=0, n_train=1, n_test=1, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_regeneration_keeps_the_old_dataset(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "shapes", seed=0, n_train=1, n_test=1)
    before = files_of(root)

    def interrupt(done: int, total: int) -> None:
        if done == 10:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        generate_shapes(root, seed=1, n_train=1, n_test=1, progress=interrupt)
    assert files_of(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing to overwrite"):
        generate_shapes(root, n_train=1, n_test=1)
    assert (root / "notes.txt").read_text() == "keep me"


def test_an_empty_folder_is_filled(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    root.mkdir()
    generate_shapes(root, n_train=1, n_test=1)
    assert (root / DATASET_FILE).is_file()


@pytest.mark.parametrize(("n_train", "n_test"), [(0, 1), (1, 0), (9000, 1000)])
def test_bad_counts(tmp_path: Path, n_train: int, n_test: int) -> None:
    with pytest.raises(DataError, match="at least 1 training"):
        generate_shapes(tmp_path / "shapes", n_train=n_train, n_test=n_test)


@pytest.mark.slow
def test_default_generation_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_shapes(tmp_path / "shapes")
    assert time.perf_counter() - start < 30


# ----------------------------------------------------------------------------------------------
# Attributes (the super-set protocol's labels).


def _holders() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, attrs in SHAPES_ATTRIBUTES.items():
        for a in attrs:
            out.setdefault(a, set()).add(name)
    return out


def test_every_class_has_sorted_distinct_attributes() -> None:
    assert set(SHAPES_ATTRIBUTES) == set(SHAPES_CLASSES)
    for name, attrs in SHAPES_ATTRIBUTES.items():
        assert attrs, name
        assert attrs == sorted(set(attrs)), name
        assert all(a.strip() == a and a for a in attrs), name


def test_every_attribute_is_held_and_lacked_by_several_classes() -> None:
    holders = _holders()
    assert 12 <= len(holders) <= 20
    for a, classes in holders.items():
        assert len(classes) >= 2, a
        assert len(SHAPES_CLASSES) - len(classes) >= 2, a


@pytest.mark.parametrize("part", ["seen", "val", "unseen"])
def test_every_split_part_can_score_several_attributes(part: str) -> None:
    classes = set(SHAPES_SPLIT.part(part))
    scorable = [a for a, held in _holders().items() if 0 < len(held & classes) < len(classes)]
    assert len(scorable) >= 8, (part, scorable)


def test_attributes_follow_the_geometry_spot_checks() -> None:
    assert "legs" in SHAPES_ATTRIBUTES["bench"] and "legs" not in SHAPES_ATTRIBUTES["bed"]
    assert "hole" in SHAPES_ATTRIBUTES["donut"] and "hole" not in SHAPES_ATTRIBUTES["coin"]
    assert {"cone part", "cylinder part", "pointed"} <= set(SHAPES_ATTRIBUTES["rocket"])
    assert "round" not in SHAPES_ATTRIBUTES["cube"] and "round" in SHAPES_ATTRIBUTES["ball"]


def _fake_features(root: Path) -> None:
    import torch

    n = len(SHAPES_CLASSES)
    save_features(
        root / "features" / "fake.safetensors",
        torch.randn(2 * n, 3),
        torch.arange(n).repeat(2),
        torch.arange(2 * n) >= n,
        list(SHAPES_CLASSES),
        {"extractor": "test"},
    )


def test_generation_writes_attributes_that_the_loader_reads(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "shapes", seed=0, n_train=1, n_test=1)
    assert json.loads((root / ATTRIBUTES_FILE).read_text()) == SHAPES_ATTRIBUTES
    _fake_features(root)
    ds = load_dataset(root, "shapes", "fake")
    assert ds.attributes == SHAPES_ATTRIBUTES


@pytest.mark.parametrize("damage", ["missing", "stale", "malformed"])
def test_a_cached_dataset_gets_its_attributes_in_place(tmp_path: Path, damage: str) -> None:
    root = generate_shapes(tmp_path / "shapes", seed=0, n_train=1, n_test=1)
    _fake_features(root)
    path = root / ATTRIBUTES_FILE
    if damage == "missing":
        path.unlink()
    elif damage == "stale":
        path.write_text(json.dumps({"pole": ["old"]}))
    else:
        path.write_text("{not json")
    marker = root / "pole" / "train" / "pole_0001.off"
    stamp = marker.stat().st_mtime_ns
    calls: list[int] = []
    generate_shapes(root, seed=0, n_train=1, n_test=1, progress=lambda d, t: calls.append(d))
    assert calls == [] and marker.stat().st_mtime_ns == stamp  # reused, not regenerated
    assert json.loads(path.read_text()) == SHAPES_ATTRIBUTES
    assert (root / "features" / "fake.safetensors").is_file()  # features stay valid
    assert load_dataset(root, "shapes", "fake").attributes == SHAPES_ATTRIBUTES
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_current_attributes_are_not_rewritten(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "shapes", seed=0, n_train=1, n_test=1)
    path = root / ATTRIBUTES_FILE
    stamp = path.stat().st_mtime_ns
    inode = path.stat().st_ino
    generate_shapes(root, seed=0, n_train=1, n_test=1)
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == (stamp, inode)
