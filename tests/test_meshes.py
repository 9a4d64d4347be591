"""OFF reading and writing, surface sampling, normalisation, and ModelNet40-style folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from t2m_cli.data.meshes import normalize_points, read_off, sample_points, write_off
from t2m_cli.data.modelnet import (
    MODELNET40_CLASSES,
    MODELNET40_SPLIT,
    load_point_clouds,
    scan_modelnet,
)
from t2m_cli.errors import DataError, RunFailure

SHARED_MESHES = Path(__file__).resolve().parents[2] / "shared" / "data" / "meshes"
# Files that mix quads with faces of five or more vertices; trimesh 5.2 cannot read them.
MIXED_NGONS = ("P.off", "corner_poly.off", "mpi.off", "mesh_with_colors.off")

UNIT_CUBE_OFF = """OFF
8 6 0
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 1 2 6 5
4 2 3 7 6
4 3 0 4 7
"""


def shared_meshes() -> Path:
    if not SHARED_MESHES.is_dir():
        pytest.skip(f"real meshes not available ({SHARED_MESHES} is absent in a fresh clone)")
    return SHARED_MESHES


def write_text(tmp_path: Path, text: str, name: str = "mesh.off") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="ascii")
    return path


def expected_triangles(path: Path) -> int:
    """Triangles after fan triangulation, counted independently of the reader."""
    lines = [ln.split("#")[0].split() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    header = lines[0]
    counts = header[1:] if len(header) > 1 else lines[1]
    start = 1 if len(header) > 1 else 2
    n_vertices, n_faces = int(counts[0]), int(counts[1])
    faces = lines[start + n_vertices : start + n_vertices + n_faces]
    return sum(int(face[0]) - 2 for face in faces)


# ---------------------------------------------------------------------------------------------
# read_off on real files


def test_reads_every_real_mesh() -> None:
    folder = shared_meshes()
    paths = sorted(p for p in folder.glob("*.off") if p.name != "invalid.off")
    assert len(paths) >= 10
    for path in paths:
        vertices, faces = read_off(path)
        assert vertices.dtype == np.float64 and vertices.ndim == 2 and vertices.shape[1] == 3
        assert faces.dtype == np.int64 and faces.ndim == 2 and faces.shape[1] == 3
        assert np.isfinite(vertices).all()
        assert faces.min() >= 0 and faces.max() < len(vertices)
        assert len(faces) == expected_triangles(path), path.name


@pytest.mark.parametrize("name", MIXED_NGONS)
def test_fan_triangulates_mixed_polygons(name: str) -> None:
    path = shared_meshes() / name
    vertices, faces = read_off(path)
    assert len(faces) == expected_triangles(path)
    # Sampling must work on them too: the point of reading them at all.
    points = sample_points(vertices, faces, 64, np.random.default_rng(0))
    assert points.shape == (64, 3)


def test_colours_after_vertices_and_faces_are_ignored() -> None:
    vertices, faces = read_off(shared_meshes() / "mesh_with_colors.off")
    assert vertices.shape == (8, 3)
    assert vertices[0].tolist() == [-1.0, -1.0, 0.0]
    # Three triangles and one pentagon (three triangles): the colour values are not indices.
    assert faces.tolist()[:3] == [[0, 1, 7], [1, 2, 3], [5, 6, 7]]
    assert len(faces) == 6


def test_agrees_with_trimesh_where_trimesh_can_read() -> None:
    trimesh = pytest.importorskip("trimesh")
    path = shared_meshes() / "cow.off"
    vertices, faces = read_off(path)
    mesh = trimesh.load(path, process=False, force="mesh")
    np.testing.assert_allclose(vertices, mesh.vertices)
    np.testing.assert_array_equal(faces, mesh.faces)


def test_invalid_real_file_gives_a_clear_error() -> None:
    path = shared_meshes() / "invalid.off"
    with pytest.raises(DataError, match=r"invalid\.off") as info:
        read_off(path)
    assert "face" in str(info.value)


# ---------------------------------------------------------------------------------------------
# read_off on crafted files


def test_header_glued_to_counts(tmp_path: Path) -> None:
    path = write_text(tmp_path, "OFF4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    vertices, faces = read_off(path)
    assert vertices.shape == (4, 3) and faces.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_counts_on_the_header_line_comments_and_blank_lines(tmp_path: Path) -> None:
    text = (
        "# made by hand\n\nOFF 3 1\n# vertices\n0 0 0  # origin\n1 0 0\n\n0 1 0\n3 0 1 2 # face\n"
    )
    vertices, faces = read_off(write_text(tmp_path, text))
    assert vertices.shape == (3, 3) and faces.tolist() == [[0, 1, 2]]


def test_quads_and_ngons_are_fan_triangulated(tmp_path: Path) -> None:
    vertices, faces = read_off(write_text(tmp_path, UNIT_CUBE_OFF))
    assert vertices.shape == (8, 3) and faces.shape == (12, 3)
    assert faces[:2].tolist() == [[0, 3, 2], [0, 2, 1]]
    hexagon = "OFF\n6 1 0\n" + "".join(f"{np.cos(a)} {np.sin(a)} 0\n" for a in range(6))
    _, faces = read_off(write_text(tmp_path, hexagon + "6 0 1 2 3 4 5\n", "hex.off"))
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]]


def test_noff_normals_are_ignored(tmp_path: Path) -> None:
    text = "NOFF\n3 1 0\n0 0 0 0 0 1\n1 0 0 0 0 1\n0 1 0 0 0 1\n3 0 1 2\n"
    vertices, _ = read_off(write_text(tmp_path, text))
    assert vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("PLY\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "not an OFF file"),
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("OFF\n", "no vertex and face counts"),
        ("OFF BINARY\n", "binary"),
        ("4OFF\n3 1 0\n", "not an OFF file"),
        ("OFF\n3 x 0\n", "not integers"),
        ("OFF\n3\n", "counts"),
        ("OFF\n0 0 0\n", "no vertices"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n3 0 1 2\n", "only 3 vertex and face lines"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 2\n", "1 more lines"),
        ("OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n", "NaN or infinite"),
        ("OFF\n3 1 0\n0 0 0\n1 inf 0\n0 1 0\n3 0 1 2\n", "NaN or infinite"),
        ("OFF\n3 1 0\n0 0 0\n1 zero 0\n0 1 0\n3 0 1 2\n", "cannot parse vertex"),
        ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", "needs x y z"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "outside 0..2"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", "outside 0..2"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "says it has 4"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "at least 3 vertices"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1.5 2\n", "not integers"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\nthree 0 1 2\n", "start with its vertex count"),
    ],
)
def test_broken_files_raise_data_error_naming_the_file(
    tmp_path: Path, text: str, match: str
) -> None:
    path = write_text(tmp_path, text, "broken.off")
    with pytest.raises(DataError, match=match) as info:
        read_off(path)
    assert "broken.off" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Cannot read mesh"):
        read_off(tmp_path / "absent.off")


def test_binary_garbage_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.off"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"garbage\.off"):
        read_off(path)


# ---------------------------------------------------------------------------------------------
# write_off


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vertices = rng.normal(size=(20, 3))
    faces = rng.integers(0, 20, size=(30, 3))
    path = tmp_path / "sub" / "m.off"
    write_off(path, vertices, faces)
    read_vertices, read_faces = read_off(path)
    np.testing.assert_allclose(read_vertices, vertices, atol=1e-6)
    np.testing.assert_array_equal(read_faces, faces)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.off"]  # no temp file left


def test_write_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(RunFailure, match="disk full"):
        write_off(tmp_path / "m.off", np.zeros((3, 3)), np.array([[0, 1, 2]]))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# sample_points and normalize_points


def test_samples_lie_on_the_surface(tmp_path: Path) -> None:
    vertices, faces = read_off(write_text(tmp_path, UNIT_CUBE_OFF))
    points = sample_points(vertices, faces, 2000, np.random.default_rng(0))
    assert points.shape == (2000, 3) and points.dtype == np.float32
    assert (points >= -1e-6).all() and (points <= 1 + 1e-6).all()
    # On a cube's surface each point has a coordinate at 0 or 1.
    on_face = np.isclose(points, 0, atol=1e-6) | np.isclose(points, 1, atol=1e-6)
    assert on_face.any(axis=1).all()
    # Six equal faces: each gets about a sixth of the points.
    counts = [(np.isclose(points[:, a], v, atol=1e-6)).sum() for a in range(3) for v in (0, 1)]
    assert min(counts) > 2000 / 6 * 0.75


def test_triangles_are_picked_by_area() -> None:
    # Two triangles in the plane z = 0 of areas 0.5 and 4.5: 10% and 90% of the points.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 3, 0]])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    points = sample_points(vertices, faces, 20000, np.random.default_rng(0))
    small = (points[:, 0] < 5).mean()
    assert abs(small - 0.1) < 0.01
    inside = points[points[:, 0] < 5]
    assert (inside[:, 0] + inside[:, 1] <= 1 + 1e-6).all() and (inside[:, :2] >= 0).all()


def test_sampling_is_deterministic_for_a_seed() -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    faces = np.array([[0, 1, 2]])
    a = sample_points(vertices, faces, 50, np.random.default_rng(7))
    b = sample_points(vertices, faces, 50, np.random.default_rng(7))
    c = sample_points(vertices, faces, 50, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_degenerate_meshes_are_data_errors() -> None:
    line = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=float)
    with pytest.raises(DataError, match="zero surface area"):
        sample_points(line, np.array([[0, 1, 2]]), 10, np.random.default_rng(0))
    with pytest.raises(DataError, match="no faces"):
        sample_points(line, np.empty((0, 3), dtype=int), 10, np.random.default_rng(0))
    with pytest.raises(DataError, match="no extent"):
        normalize_points(np.ones((5, 3)))
    with pytest.raises(DataError, match="no extent"):
        normalize_points(np.full((7, 3), 28.0))


@settings(max_examples=50, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(2, 40), st.just(3)),
        elements=st.floats(-1e3, 1e3, allow_nan=False),
    )
)
def test_normalised_clouds_are_centred_in_the_unit_sphere(points: np.ndarray) -> None:
    assume(np.linalg.norm(points - points.mean(axis=0), axis=1).max() > 1e-3)
    out = normalize_points(points)
    assert out.dtype == np.float32 and out.shape == points.shape
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    assert abs(np.linalg.norm(out, axis=1).max() - 1) < 1e-5


# ---------------------------------------------------------------------------------------------
# ModelNet40-style folders


def make_folder(root: Path, layout: dict[str, dict[str, int]]) -> None:
    rng = np.random.default_rng(0)
    for name, parts in layout.items():
        for part, count in parts.items():
            for i in range(count):
                vertices = rng.normal(size=(4, 3))
                faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
                write_off(root / name / part / f"{name}_{i + 1:04d}.off", vertices, faces)


def test_modelnet40_split_is_the_papers() -> None:
    split = MODELNET40_SPLIT
    assert len(MODELNET40_CLASSES) == len(set(MODELNET40_CLASSES)) == 40
    assert (len(split.seen), len(split.val), len(split.unseen)) == (26, 7, 7)
    assert set(split.seen) | set(split.val) | set(split.unseen) == set(MODELNET40_CLASSES)
    assert set(split.val) == {
        "table", "xbox", "bookshelf", "cup", "glass_box", "monitor", "range_hood"
    }  # fmt: skip
    assert set(split.unseen) == {
        "tent", "bottle", "curtain", "guitar", "night_stand", "sink", "toilet"
    }  # fmt: skip


def test_scan_lists_meshes_sorted(tmp_path: Path) -> None:
    make_folder(tmp_path, {"cup": {"test": 1, "train": 2}, "bowl": {"train": 1, "test": 1}})
    (tmp_path / "features").mkdir()  # where encoders write; not a class
    (tmp_path / "split.json").write_text("{}")
    (tmp_path / ".hidden").mkdir()
    found = scan_modelnet(tmp_path)
    assert [(c, p, f.name) for c, p, f in found] == [
        ("bowl", "train", "bowl_0001.off"),
        ("bowl", "test", "bowl_0001.off"),
        ("cup", "train", "cup_0001.off"),
        ("cup", "train", "cup_0002.off"),
        ("cup", "test", "cup_0001.off"),
    ]


def test_scan_rejects_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan_modelnet(tmp_path / "absent")
    with pytest.raises(DataError, match="no class folders"):
        scan_modelnet(tmp_path)
    (tmp_path / "cup" / "training").mkdir(parents=True)
    with pytest.raises(DataError, match="no 'train' or 'test'"):
        scan_modelnet(tmp_path)
    (tmp_path / "cup" / "train").mkdir()
    with pytest.raises(DataError, match=r"no \.off meshes"):
        scan_modelnet(tmp_path)


def test_load_point_clouds(tmp_path: Path) -> None:
    make_folder(tmp_path, {"cup": {"train": 2, "test": 1}, "bowl": {"train": 1, "test": 1}})
    calls: list[tuple[int, int]] = []
    points, labels, is_test, classes = load_point_clouds(
        tmp_path, 32, seed=0, progress=lambda d, t: calls.append((d, t))
    )
    assert classes == ["bowl", "cup"]
    assert points.shape == (5, 32, 3) and str(points.dtype) == "torch.float32"
    assert labels.tolist() == [0, 0, 1, 1, 1]
    assert is_test.tolist() == [False, True, False, False, True]
    radius = points.norm(dim=2).amax(dim=1)
    assert ((radius - 1).abs() < 1e-5).all()
    assert (points.mean(dim=1).abs() < 1e-5).all()
    assert calls[-1] == (5, 5)
    again = load_point_clouds(tmp_path, 32, seed=0)[0]
    assert (again == points).all()
    assert not (load_point_clouds(tmp_path, 32, seed=1)[0] == points).all()


def test_load_point_clouds_names_a_bad_mesh(tmp_path: Path) -> None:
    make_folder(tmp_path, {"cup": {"train": 1}})
    flat = tmp_path / "cup" / "train" / "cup_0002.off"
    write_off(flat, np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]]), np.array([[0, 1, 2]]))
    with pytest.raises(DataError, match=r"cup_0002\.off.*zero surface area"):
        load_point_clouds(tmp_path, 8, seed=0)


def test_point_clouds_are_the_same_read_by_several_processes(tmp_path: Path) -> None:
    """64 meshes or more are read by worker processes; the clouds match one process's."""
    make_folder(tmp_path, {"cup": {"train": 40, "test": 10}, "bowl": {"train": 20}})
    alone = load_point_clouds(tmp_path, 16, seed=3, workers=1)[0]
    calls: list[tuple[int, int]] = []
    shared = load_point_clouds(
        tmp_path, 16, seed=3, workers=2, progress=lambda d, t: calls.append((d, t))
    )[0]
    assert torch.equal(alone, shared)
    assert calls[-1] == (70, 70)


def test_kept_point_clouds_spare_a_second_read_until_a_mesh_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import t2m_cli.data.modelnet as modelnet

    make_folder(tmp_path, {"cup": {"train": 2, "test": 1}, "bowl": {"train": 1}})
    first = load_point_clouds(tmp_path, 16, seed=0, cache=True)[0]
    assert (tmp_path / modelnet.POINT_CLOUDS_DIR / "n16-seed0.safetensors").is_file()

    def no_reading(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(modelnet, "read_off", no_reading)
    assert torch.equal(load_point_clouds(tmp_path, 16, seed=0, cache=True)[0], first)
    # Another point count or seed is another set of clouds: read (here, refused).
    with pytest.raises(AssertionError, match="was read again"):
        load_point_clouds(tmp_path, 8, seed=0, cache=True)
    monkeypatch.undo()
    # A mesh replaced: the kept clouds no longer stand for the meshes.
    mesh = tmp_path / "cup" / "train" / "cup_0001.off"
    write_off(mesh, np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0]]), np.array([[0, 1, 2]]))
    again = load_point_clouds(tmp_path, 16, seed=0, cache=True)[0]
    assert not torch.equal(again, first)
    assert torch.equal(again, load_point_clouds(tmp_path, 16, seed=0)[0])
