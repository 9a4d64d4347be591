"""Pickles written by Python 2, and the strings that come out of any pickle."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from test_original import LAYOUT as ORIGINAL_LAYOUT
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.data.original import read_descriptors, read_feature_pickle
from t2m_cli.data.safe_pickle import safe_load
from t2m_cli.errors import DataError

runner = CliRunner()

# test_original's layout with a seen class that is not ASCII: Python 2 code wrote "café" as
# UTF-8 bytes.
LAYOUT = {
    **ORIGINAL_LAYOUT,
    "train_visual_feature_extractor": {"antelope": 3, "café": 2},
    "eval_visual_feature_extractor": {"antelope": 2, "café": 1},
}


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes every str and bytes as Python 2 did its `str`: a byte string (SHORT_BINSTRING).

    Text goes in as UTF-8 bytes, an array's raw data as it is: the two Python 3 cannot tell
    apart, which is what makes these files hard to read.
    """

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_byte_string(self, obj: str | bytes) -> None:
        raw = obj.encode("utf-8") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_byte_string
    dispatch[bytes] = _save_byte_string


def python2_dumps(obj: object) -> bytes:
    """A protocol 2 pickle as Python 2 with numpy 1 wrote it."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"numpy._core.", b"numpy.core.")


def _write_python2_original(root: Path, layout: dict = LAYOUT) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    written = {}
    for part, counts in layout.items():
        class2idx = {c: i for i, c in enumerate(counts)}
        data = {c: rng.standard_normal((n, 8)).astype(np.float32) for c, n in counts.items()}
        path = root / "awa" / "features" / f"{part}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(python2_dumps(([data[c] for c in counts], class2idx)))
        written[part] = data
    return written


def _zip(src: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(src.rglob("*.pkl")):
            z.write(f, f.relative_to(src))
    return archive


def test_the_python2_pickle_is_what_python3_cannot_read_plainly() -> None:
    # The situation the reader handles: plain pickle fails, as for a published Python 2 file.
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(python2_dumps([np.arange(3.0) + 0.5]))


def test_python2_feature_pickles_convert_through_download(tmp_path: Path) -> None:
    written = _write_python2_original(tmp_path / "src")
    archive = _zip(tmp_path / "src", tmp_path / "awa.zip")
    cache = tmp_path / "cache"
    args = ["download", "awa", "--from", str(archive), "--cache-dir", str(cache)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    root = cache / "datasets" / "awa"
    split = json.loads((root / "split.json").read_text(encoding="utf-8"))
    assert split["seen"] == ["antelope", "café"] and split["unseen"] == ["zebra", "blue+whale"]
    from t2m_cli.data.dataset import load_dataset

    ds = load_dataset(root, "awa", "original")
    rows = ds.features[ds.class_rows("café", "train")].numpy()
    np.testing.assert_array_equal(rows, written["train_visual_feature_extractor"]["café"])


def test_python2_arrays_scalars_and_latin1_text() -> None:
    array = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    out = safe_load(
        python2_dumps({"x": array, "n": np.float32(2.5), "name": "Zoë", "raw": b"Zo\xeb"})
    )
    assert isinstance(out, dict)
    np.testing.assert_array_equal(out["x"], array)
    assert out["n"] == np.float32(2.5)
    # UTF-8 bytes are read as UTF-8; other bytes as Latin-1, as numpy's loader reads them.
    assert out["name"] == "Zoë" and out["raw"] == "Zoë"


def test_python2_descriptors_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "gpt_label2descriptors.pkl"
    path.write_bytes(python2_dumps({"café": ["a small café", "ein Café"], "zebra": "striped"}))
    assert read_descriptors(path) == {"café": ["a small café", "ein Café"], "zebra": ["striped"]}


def test_a_python2_pickle_that_asks_for_code_says_what_it_is(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "zs_classes.pkl"
    path.write_bytes(python2_dumps([b"\xff", Payload()]))
    with pytest.raises(DataError) as info:
        read_feature_pickle(path)
    message = str(info.value)
    assert "(a Python 2 pickle)" in message and "system" in message
    assert "download it again" not in message


def test_a_damaged_python3_pickle_is_not_called_python2() -> None:
    data = pickle.dumps({"zebra": "é"}, protocol=2).replace("é".encode(), b"\xff\xfe")
    with pytest.raises(DataError, match="not a readable pickle") as info:
        safe_load(data, source="x.pkl")
    assert "Python 2" not in str(info.value)


@pytest.mark.parametrize("python2", [False, True])
def test_a_control_character_in_a_pickled_name_is_refused(tmp_path: Path, python2: bool) -> None:
    obj = ([np.zeros((2, 8), np.float32)] * 2, {"zebra": 0, "blue\x1b[2Jwhale": 1})
    path = tmp_path / "zs_classes.pkl"
    path.write_bytes(python2_dumps(obj) if python2 else pickle.dumps(obj))
    with pytest.raises(DataError) as info:
        read_feature_pickle(path)
    message = str(info.value)
    assert message.startswith(f"{path}, the key 'blue\\x1b[2Jwhale' in [1], character 5")
    assert "U+001B" in message


def test_a_control_character_in_a_download_exits_2_then_a_fixed_file_works(tmp_path: Path) -> None:
    layout = {**LAYOUT, "zs_classes": {"zebra": 2, "blue\x07whale": 3}}
    _write_python2_original(tmp_path / "bad", layout)
    (tmp_path / "b").mkdir()
    archive = _zip(tmp_path / "bad", tmp_path / "b" / "awa.zip")
    cache = tmp_path / "cache"
    args = ["download", "awa", "--from", str(archive), "--cache-dir", str(cache)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "zs_classes.pkl" in message and "'blue\\x07whale'" in message
    assert "U+0007" in message and "Traceback" not in result.output
    assert not (cache / "datasets" / "awa").exists()

    _write_python2_original(tmp_path / "good")
    (tmp_path / "g").mkdir()
    fixed = _zip(tmp_path / "good", tmp_path / "g" / "awa.zip")
    result = runner.invoke(
        app, ["download", "awa", "--from", str(fixed), "--cache-dir", str(cache)]
    )
    assert result.exit_code == 0, result.output
    assert (cache / "datasets" / "awa" / "split.json").is_file()
