"""Reading the original project's pickles safely and converting them to a t2m dataset folder."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from t2m_cli.data.dataset import load_dataset
from t2m_cli.data.original import (
    ORIGINAL_PARTS,
    convert_original_dataset,
    read_attributes,
    read_descriptors,
    read_feature_pickle,
    sun_class_text,
)
from t2m_cli.data.safe_pickle import safe_load
from t2m_cli.errors import DataError

DIM = 8
# part -> {class: number of images}
LAYOUT = {
    "train_visual_feature_extractor": {"antelope": 3, "killer+whale": 4},
    "eval_visual_feature_extractor": {"antelope": 2, "killer+whale": 1},
    "train_hn": {"bat": 2, "cow": 2},
    "eval_hn": {"bat": 1, "cow": 1},
    "zs_classes": {"zebra": 2, "blue+whale": 3},
}


def _dump(path: Path, obj: object, protocol: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_original(
    root: Path, name: str = "awa", layout: dict = LAYOUT, kind: str = "torch"
) -> dict[str, dict[str, np.ndarray]]:
    """Write ``root/<name>/features/<part>.pkl`` as the original code did; return the data."""
    rng = np.random.default_rng(0)
    written = {}
    for part, counts in layout.items():
        class2idx = {c: i for i, c in enumerate(reversed(list(counts)))}
        x: list = [None] * len(counts)
        data = {}
        for c, i in class2idx.items():
            data[c] = rng.standard_normal((counts[c], DIM)).astype(np.float32)
            x[i] = torch.from_numpy(data[c].copy()) if kind == "torch" else data[c]
        _dump(root / name / "features" / f"{part}.pkl", (x, class2idx))
        written[part] = data
    return written


class _Marker:
    """Pickles as a call that would create a marker file, were it ever run."""

    def __init__(self, marker: Path, how: str = "system") -> None:
        self.marker = marker
        self.how = how

    def __reduce__(self):
        if self.how == "exec":
            return (exec, (f"open({str(self.marker)!r}, 'w').close()",))
        return (os.system, (f"touch {self.marker}",))


class _HiddenInStorage:
    """Pickles as torch.storage._load_from_bytes(inner), the way a tensor's storage does."""

    def __init__(self, inner: bytes) -> None:
        self.inner = inner

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.inner,))


def _legacy_with_payload(payload: bytes) -> bytes:
    """A genuine inner torch stream whose main pickle is swapped for ``payload``."""
    genuine = pickle.dumps(torch.arange(3.0))
    ops = list(pickletools.genops(genuine))
    inner = next(arg for op, arg, _ in ops if op.name == "BINBYTES")
    stream = io.BytesIO(inner)
    for _ in range(3):  # magic number, protocol version, system info
        for op, _, _ in pickletools.genops(stream):
            if op.name == "STOP":
                break
    return inner[: stream.tell()] + payload


def test_safe_load_round_trips_tensors_arrays_and_containers() -> None:
    t = torch.randn(4, 5)
    obj = ([t, np.ones((2, 5))], {"a": 0}, {1, 2}, b"xy", np.float32(2.0), OrderedDict(k=1))
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        out = safe_load(pickle.dumps(obj, protocol=protocol), source="x")
        assert torch.equal(out[0][0], t)
        assert np.array_equal(out[0][1], np.ones((2, 5)))
        assert out[1:] == obj[1:]


def test_safe_load_never_calls_the_real_load_from_bytes(monkeypatch) -> None:
    def unsafe(b):
        raise AssertionError("the unrestricted torch.storage._load_from_bytes ran")

    data = pickle.dumps(torch.arange(4.0))
    monkeypatch.setattr(torch.storage, "_load_from_bytes", unsafe)
    assert torch.equal(safe_load(data, source="x"), torch.arange(4.0))


@pytest.mark.parametrize("how", ["system", "exec"])
def test_outer_payload_is_refused_and_never_runs(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "features.pkl"
    _dump(path, ([torch.zeros(1, 2)], {"a": 0}, _Marker(marker, how)))
    with pytest.raises(DataError) as err:
        safe_load(path, source=str(path))
    assert str(path) in str(err.value)
    assert ("system" if how == "system" else "builtins.exec") in str(err.value)
    assert "plain data" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("legacy_framing", [False, True])
def test_payload_inside_a_storage_stream_is_refused(tmp_path: Path, legacy_framing: bool) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Marker(marker), protocol=2)
    inner = _legacy_with_payload(payload) if legacy_framing else payload
    path = tmp_path / "train_hn.pkl"
    _dump(path, ([_HiddenInStorage(inner)], {"bat": 0}))
    with pytest.raises(DataError, match=r"system.*inside a tensor's storage"):
        read_feature_pickle(path)
    assert not marker.exists()


def test_damaged_pickle_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(([torch.zeros(2, 2)], {"a": 0}))[:-20])
    with pytest.raises(DataError, match="not a readable pickle"):
        safe_load(path)
    with pytest.raises(DataError, match="does not exist"):
        safe_load(tmp_path / "missing.pkl")


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_read_feature_pickle(tmp_path: Path, kind: str) -> None:
    written = write_original(tmp_path, kind=kind)
    got = read_feature_pickle(tmp_path / "awa" / "features" / "zs_classes.pkl")
    assert list(got) == ["blue+whale", "zebra"]  # class2idx order
    for c, m in got.items():
        assert m.dtype == np.float32
        np.testing.assert_array_equal(m, written["zs_classes"][c])


def test_read_feature_pickle_accepts_a_3d_tensor(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    _dump(path, (torch.ones(2, 3, DIM, dtype=torch.float64), {"a": 1, "b": 0}))
    got = read_feature_pickle(path)
    assert {k: v.shape for k, v in got.items()} == {"b": (3, DIM), "a": (3, DIM)}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"a": torch.zeros(2, 2)}, "pair"),
        (([torch.zeros(2, 2)], {"a": 3}), "row 3"),
        (([torch.zeros(4)], {"a": 0}), r"\(n_images, dim\)"),
        (([torch.zeros(2, 4), torch.zeros(2, 5)], {"a": 0, "b": 1}), "different sizes"),
        ((["text"], {"a": 0}), "numeric"),
    ],
)
def test_read_feature_pickle_rejects_wrong_structure(
    tmp_path: Path, obj: object, message: str
) -> None:
    path = tmp_path / "x.pkl"
    _dump(path, obj)
    with pytest.raises(DataError, match=message):
        read_feature_pickle(path)


def test_convert_awa_with_class_names(tmp_path: Path) -> None:
    written = write_original(tmp_path / "src")
    dst = convert_original_dataset(tmp_path / "src", tmp_path / "awa", "awa", None, None)
    ds = load_dataset(dst, "awa", "original")
    # Within a part, classes keep the order of class2idx (written reversed above).
    assert ds.split.seen == ("killer+whale", "antelope")
    assert ds.split.val == ("cow", "bat")
    assert ds.split.unseen == ("blue+whale", "zebra")
    assert ds.features.shape == (sum(sum(c.values()) for c in LAYOUT.values()), DIM)
    assert ds.descriptions["killer+whale"] == ["killer whale"]
    assert ds.attributes == {}
    for cls, train, test in [
        ("antelope", 3, 2),
        ("killer+whale", 4, 1),
        ("bat", 2, 1),
        ("cow", 2, 1),
        ("zebra", 0, 2),
        ("blue+whale", 0, 3),
    ]:
        assert len(ds.class_rows(cls, "train")) == train
        assert len(ds.class_rows(cls, "test")) == test
    held_out = ds.features[ds.class_rows("killer+whale", "test")].numpy()
    np.testing.assert_array_equal(
        held_out, written["eval_visual_feature_extractor"]["killer+whale"]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_convert_with_descriptors_and_attributes_files(tmp_path: Path) -> None:
    write_original(tmp_path / "src", kind="numpy")
    classes = [c for counts in LAYOUT.values() for c in counts]
    _dump(tmp_path / "gpt.pkl", {c: [f"a {c}", f"the {c} animal"] for c in classes})
    _dump(tmp_path / "attrs.pkl", {c: {"furry", "big"} for c in classes})
    descriptions = read_descriptors(tmp_path / "gpt.pkl")
    attributes = read_attributes(tmp_path / "attrs.pkl")
    assert attributes["bat"] == ["big", "furry"]
    dst = convert_original_dataset(
        tmp_path / "src", tmp_path / "out", "awa", descriptions, attributes
    )
    ds = load_dataset(dst, "awa", "original")
    assert ds.descriptions["zebra"] == ["a zebra", "the zebra animal"]
    assert ds.attributes["killer+whale"] == ["big", "furry"]


def test_cub_descriptors_keyed_by_id_match_class_names(tmp_path: Path) -> None:
    seen = {"001.Black_footed_Albatross": 2, "003.Sooty_Albatross": 2}
    val = {"002.Laysan_Albatross": 2, "004.Groove_billed_Ani": 2}
    layout = {
        "train_visual_feature_extractor": seen,
        "eval_visual_feature_extractor": {c: 1 for c in seen},
        "train_hn": val,
        "eval_hn": {c: 1 for c in val},
        "zs_classes": {"010.Red_winged_Blackbird": 2, "011.Rusty_Blackbird": 2},
    }
    write_original(tmp_path / "src", "cub", layout)
    texts = {1: ["dark albatross"], "002": ["pale albatross"], 10: ["red"], 3: ["sooty"]}
    _dump(tmp_path / "cub.pkl", {**texts, "004": ["ani"], 11: ["rusty"]})
    descriptions = read_descriptors(tmp_path / "cub.pkl")
    assert set(descriptions) == {"001", "002", "003", "004", "010", "011"}
    dst = convert_original_dataset(tmp_path / "src", tmp_path / "cub", "cub", descriptions, None)
    ds = load_dataset(dst, "cub", "original")
    assert ds.descriptions["002.Laysan_Albatross"] == ["pale albatross"]
    assert ds.descriptions["010.Red_winged_Blackbird"] == ["red"]


def test_sun_class_text() -> None:
    assert sun_class_text("/a/apartment_building/outdoor") == "apartment building outdoor"
    assert sun_class_text("/b/bus_interior") == "bus interior"


def test_convert_failures_leave_no_folder(tmp_path: Path) -> None:
    write_original(tmp_path / "src")
    with pytest.raises(DataError, match="no description"):
        convert_original_dataset(tmp_path / "src", tmp_path / "out", "awa", {"bat": ["x"]}, None)
    with pytest.raises(DataError, match="none of the classes"):
        convert_original_dataset(tmp_path / "src", tmp_path / "out", "awa", None, {"cat": ["x"]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    with pytest.raises(DataError, match="lacks"):
        convert_original_dataset(tmp_path / "src", tmp_path / "out", "cub", None, None)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists"):
        convert_original_dataset(tmp_path / "src", tmp_path / "out", "awa", None, None)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_convert_refuses_a_poisoned_part(tmp_path: Path) -> None:
    write_original(tmp_path / "src")
    marker = tmp_path / "pwned"
    part = tmp_path / "src" / "awa" / "features" / f"{ORIGINAL_PARTS[3]}.pkl"
    _dump(part, ([torch.zeros(1, DIM)], {"bat": 0}, _Marker(marker)))
    with pytest.raises(DataError, match="Refused to load"):
        convert_original_dataset(tmp_path / "src", tmp_path / "out", "awa", None, None)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
