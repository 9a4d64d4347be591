"""xlsa17 reading and conversion, against the real published splits files.

The splits files (``*_att_splits.mat``, CUB ``CUB_sent_splits.mat``) are the real ones from
``../shared/data/xlsa17``. Their ``res101.mat`` (hundreds of MB) is not there, so each test
generates a fake one with the real N and 8-d random features. The splits files hold no labels,
so the fake labels are built to agree with the real index fields: the unseen classes take the
``test_unseen_loc`` images, the validation classes the ``val_loc`` images and the remaining seen
classes the ``train_loc`` images, round-robin inside each of ``trainval_loc`` and
``test_seen_loc`` so every seen class has images in both. Which classes are unseen / validation
is a seeded choice with the published counts (below); what is real is the class list, N, every
index field and how they partition the images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.xlsa17 import read_xlsa17, to_t2m, xlsa17_text
from t2m_cli.errors import DataError

XLSA17 = Path(__file__).resolve().parents[2] / "shared" / "data" / "xlsa17"

# file, classes, seen, unseen, validation (of the seen), images
REAL = {
    "AWA1": ("AWA1_att_splits.mat", 50, 40, 10, 13, 30475),
    "AWA2": ("AWA2_att_splits.mat", 50, 40, 10, 13, 37322),
    "CUB": ("CUB_sent_splits.mat", 200, 150, 50, 50, 11788),
    "SUN": ("SUN_att_splits.mat", 717, 645, 72, 65, 14340),
}
DIM = 8


def real_splits(name: str) -> Path:
    path = XLSA17 / REAL[name][0]
    if not path.is_file():
        pytest.skip(f"{path.name} is absent (../shared/data/xlsa17 comes with the project's")
    return path


def fake_res101(splits: Path, dst: Path, n_unseen: int, n_val: int, seed: int = 0) -> Path:
    """Write a res101.mat whose labels agree with the splits file (see the module docstring)."""
    mat = scipy.io.loadmat(str(splits))
    locs = {k: np.asarray(mat[k]).ravel().astype(np.int64) - 1 for k in mat if k.endswith("_loc")}
    n_classes = len(mat["allclasses_names"])
    n = int(max(v.max() for v in locs.values())) + 1
    order = np.random.default_rng(seed).permutation(n_classes)
    unseen, val, train = (
        order[:n_unseen],
        order[n_unseen : n_unseen + n_val],
        order[n_unseen + n_val :],
    )
    labels = np.full(n, -1, dtype=np.int64)
    labels[locs["test_unseen_loc"]] = unseen[np.arange(len(locs["test_unseen_loc"])) % n_unseen]
    for part in ("trainval_loc", "test_seen_loc"):
        for group, classes in (("val_loc", val), ("train_loc", train)):
            rows = np.intersect1d(locs[part], locs[group])
            labels[rows] = classes[np.arange(rows.size) % classes.size]
    assert (labels >= 0).all(), "every image is in test_unseen or in train/val"
    features = np.random.default_rng(seed).standard_normal((DIM, n)).astype(np.float32)
    scipy.io.savemat(str(dst), {"features": features, "labels": (labels + 1)[:, None]})
    return dst


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_splits_read(name: str, tmp_path: Path) -> None:
    _, n_classes, n_seen, n_unseen, n_val, n_images = REAL[name]
    splits = real_splits(name)
    res101 = fake_res101(splits, tmp_path / "res101.mat", n_unseen, n_val)
    data = read_xlsa17(res101, splits)
    assert len(data.classes) == n_classes
    assert (len(data.seen), len(data.unseen)) == (n_seen, n_unseen)
    assert data.val is not None and len(data.val) == n_val
    assert data.features.shape == (n_images, DIM)
    assert data.labels.shape == (n_images,)
    # The real files partition every image into trainval / test_seen / test_unseen ...
    sizes = [data.locs[k].size for k in ("trainval", "test_seen", "test_unseen")]
    assert sum(sizes) == n_images
    # ... and train / val cover exactly the seen classes' images (trainval + test_seen).
    assert set(data.version) == {
        "trainval_loc",
        "test_seen_loc",
        "test_unseen_loc",
        "train_loc",
        "val_loc",
    }
    seen_images = np.union1d(data.locs["trainval"], data.locs["test_seen"])
    np.testing.assert_array_equal(np.union1d(data.locs["train"], data.locs["val"]), seen_images)


def test_real_cub_converts_and_loads(tmp_path: Path) -> None:
    splits = real_splits("CUB")
    data = read_xlsa17(fake_res101(splits, tmp_path / "res101.mat", 50, 50), splits)
    root = to_t2m(data, tmp_path / "cub")
    ds = load_dataset(root, "cub", "res101")
    assert (len(ds.split.seen), len(ds.split.val), len(ds.split.unseen)) == (100, 50, 50)
    assert ds.features.shape == (11788, DIM)
    assert int(ds.is_test.sum()) == 1764 + 2967
    assert ds.descriptions["002.Laysan_Albatross"] == ["Laysan Albatross"]
    assert ds.meta["version"] == list(data.version)
    assert ds.meta["val"] == "val_loc"
    assert len(ds.meta["xlsa17_seen"]) == 150
    assert ds.attributes == {}
    assert not (root / "attributes.json").exists()


def test_names_become_texts() -> None:
    assert xlsa17_text("001.Black_footed_Albatross") == "Black footed Albatross"
    assert xlsa17_text("grizzly+bear") == "grizzly bear"
    assert xlsa17_text("access_road") == "access road"
    assert xlsa17_text("lean-to") == "lean-to"


def small_files(
    tmp_path: Path, *, with_val: bool = True, **change: np.ndarray
) -> tuple[Path, Path]:
    """Six images of four classes: a, b seen (b validation), c, d unseen."""
    names = np.empty((4, 1), dtype=object)
    for i, c in enumerate(["a", "b", "c", "d"]):
        names[i, 0] = np.array([c])
    fields = {
        "allclasses_names": names,
        "att": np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]]),
        "trainval_loc": np.array([[1], [3]], dtype=np.uint16),
        "test_seen_loc": np.array([[2], [4]], dtype=np.uint16),
        "test_unseen_loc": np.array([[5], [6]], dtype=np.uint16),
        "train_loc": np.array([[1], [2]], dtype=np.uint16),
        "val_loc": np.array([[3], [4]], dtype=np.uint16),
    }
    if not with_val:
        del fields["train_loc"], fields["val_loc"]
    res = {
        "features": np.arange(12, dtype=np.float32).reshape(2, 6),
        "labels": np.array([[1, 1, 2, 2, 3, 4]]).T,
    }
    for key, value in change.items():
        (fields if key in fields else res)[key] = value
    scipy.io.savemat(str(tmp_path / "res101.mat"), res)
    scipy.io.savemat(str(tmp_path / "att_splits.mat"), fields)
    return tmp_path / "res101.mat", tmp_path / "att_splits.mat"


def usable_files(tmp_path: Path, *, with_val: bool = True) -> tuple[Path, Path]:
    """Ten images of six classes: a, b, e, f seen (b, f validation), c, d unseen; every seen
    class has a training and a held-out image, so the split converts."""
    names = np.empty((6, 1), dtype=object)
    for i, c in enumerate(["a", "b", "c", "d", "e", "f"]):
        names[i, 0] = np.array([c])

    def loc(*images: int) -> np.ndarray:
        return np.array([[i] for i in images], dtype=np.uint16)

    change = {
        "allclasses_names": names,
        "att": np.array([[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]]),
        "trainval_loc": loc(1, 3, 7, 9),
        "test_seen_loc": loc(2, 4, 8, 10),
        "test_unseen_loc": loc(5, 6),
        "train_loc": loc(1, 2, 7, 8),
        "val_loc": loc(3, 4, 9, 10),
        "features": np.arange(20, dtype=np.float32).reshape(2, 10),
        "labels": np.array([[1, 1, 2, 2, 3, 4, 5, 5, 6, 6]]).T,
    }
    return small_files(tmp_path, with_val=with_val, **change)


def test_small_file_reads(tmp_path: Path) -> None:
    data = read_xlsa17(*small_files(tmp_path))
    assert data.seen == ("a", "b") and data.unseen == ("c", "d") and data.val == ("b",)
    np.testing.assert_array_equal(data.features[0], [0, 6])
    np.testing.assert_array_equal(data.locs["trainval"], [0, 2])
    # One seen and one validation class: nothing could train on it, so nothing is written.
    with pytest.raises(DataError, match=r"1 class in 'val' \(b\).*at least 2"):
        to_t2m(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_usable_file_converts(tmp_path: Path) -> None:
    data = read_xlsa17(*usable_files(tmp_path))
    assert data.seen == ("a", "b", "e", "f") and data.val == ("b", "f")
    root = to_t2m(data, tmp_path / "out", attribute_names=["x", "y"], threshold=0.5)
    ds = load_dataset(root, "small", "res101")
    assert ds.split.seen == ("a", "e") and ds.split.val == ("b", "f")
    assert ds.split.unseen == ("c", "d")
    assert ds.is_test.tolist() == [False, True] * 2 + [True] * 2 + [False, True] * 2
    assert ds.attributes == {
        "a": ["x"],
        "b": ["y"],
        "c": ["x", "y"],
        "d": [],
        "e": ["x"],
        "f": ["y"],
    }


def test_no_val_loc_needs_n_val(tmp_path: Path) -> None:
    data = read_xlsa17(*usable_files(tmp_path, with_val=False))
    assert data.val is None
    assert data.version == ("trainval_loc", "test_seen_loc", "test_unseen_loc")
    assert any("val_loc" in note for note in data.notes)
    with pytest.raises(DataError, match="n_val"):
        to_t2m(data, tmp_path / "out")
    first = to_t2m(data, tmp_path / "one", n_val=2, seed=3)
    second = to_t2m(data, tmp_path / "two", n_val=2, seed=3)
    assert (first / "split.json").read_text() == (second / "split.json").read_text()
    ds = load_dataset(first, "small", "res101")
    assert len(ds.split.val) == 2 and len(ds.split.seen) == 2
    assert ds.meta["val"].startswith("carved")
    # One validation class cannot choose an epoch; three would leave one seen class.
    for n_val in (1, 3):
        with pytest.raises(DataError, match="give n_val from 2 to 2"):
            to_t2m(data, tmp_path / "three", n_val=n_val)
    assert not (tmp_path / "three").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"labels": np.array([[1, 1, 2, 2, 3, 9]]).T}, "labels"),
        ({"labels": np.array([[1, 1, 2, 2, 3]]).T}, "features"),
        ({"test_unseen_loc": np.array([[5], [7]], dtype=np.uint16)}, "test_unseen_loc"),
        ({"trainval_loc": np.array([[0], [3]], dtype=np.uint16)}, "trainval_loc"),
        ({"test_seen_loc": np.array([[2], [3]], dtype=np.uint16)}, "test_seen_loc"),
        ({"labels": np.array([[1, 1, 2, 2, 1, 4]]).T}, "test_unseen_loc"),
        ({"val_loc": np.array([[3], [5]], dtype=np.uint16)}, "val_loc"),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, change: dict, field: str) -> None:
    with pytest.raises(DataError, match=field):
        read_xlsa17(*small_files(tmp_path, **change))


def test_missing_file_and_field(tmp_path: Path) -> None:
    res101, splits = small_files(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_xlsa17(tmp_path / "nope.mat", splits)
    fields = scipy.io.loadmat(str(splits))
    del fields["test_unseen_loc"]
    scipy.io.savemat(str(splits), {k: v for k, v in fields.items() if not k.startswith("__")})
    with pytest.raises(DataError, match="test_unseen_loc"):
        read_xlsa17(res101, splits)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        read_xlsa17(res101, tmp_path / "junk.mat")
