"""One decoding rule for every text t2m reads: descriptions (file and stdin), YAML, JSON, OFF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_dataset
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.data.meshes import read_off, write_off
from t2m_cli.errors import ConfigError, DataError
from t2m_cli.textio import check_strings, decode_text, read_text

runner = CliRunner()

BOM = b"\xef\xbb\xbf"
DESCRIPTIONS = "# my classes\nred: a red round thing\nblue: a blue square thing\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run, shared: induction only reads it. Its config is saved with a BOM."""
    base = tmp_path_factory.mktemp("textio")
    config = base / "config.yaml"
    config.write_bytes(BOM + b"# a config saved as UTF-8 with BOM\ntrain:\n  epochs: 1\n")
    result = runner.invoke(
        app,
        [
            "train",
            str(config),
            f"dataset.root={make_tiny_dataset(base / 'tiny')}",
            "text.model=hashing",
            "train.tasks_per_epoch=5",
            "model.hidden=16",
            "--name",
            "r",
            "--runs-dir",
            str(base / "runs"),
            "--cache-dir",
            str(base / "cache"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    return base / "runs" / "r"


def _induce(run: Path, tmp_path: Path, raw: bytes, via: str):
    """`t2m induce` on `raw`, given as a file or on stdin; the output goes to tmp_path."""
    out = tmp_path / "out.t2m.safetensors"
    args = ["--run", str(run), "-o", str(out), "--json", "--cache-dir", str(tmp_path / "cache")]
    if via == "file":
        path = tmp_path / "classes.txt"
        path.write_bytes(raw)
        return runner.invoke(app, ["induce", str(path), *args])
    return runner.invoke(app, ["induce", "-", *args], input=raw)


def test_bom_and_comment_first_line_read_alike_from_a_file_and_stdin(run, tmp_path):
    for via in ("file", "stdin"):
        result = _induce(run, tmp_path, BOM + DESCRIPTIONS.encode(), via)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["classes"] == ["red", "blue"], via


@pytest.mark.parametrize("via", ["file", "stdin"])
@pytest.mark.parametrize(
    ("raw", "needles"),
    [
        (b"red: a red thing\nbl\xe9u: a blue thing\n", ["line 2, column 3", "0xe9 is not UTF-8"]),
        (DESCRIPTIONS.encode("utf-16"), ["is UTF-16 text", "Save it as UTF-8"]),
        (DESCRIPTIONS.encode("utf-16-le"), ["is UTF-16 text", "Save it as UTF-8"]),
        (DESCRIPTIONS.encode("utf-32"), ["is UTF-32 text"]),
        (b"red: a red thing\nblue: a \x1b[31mblue thing\n", ["line 2, column 9", "U+001B"]),
        (b"red: a red thing\r\n\x00blue\r\n", ["line 2, column 1", "U+0000"]),
        # Two files joined with `cat`, each saved with a BOM.
        (BOM + b"red: a red thing\n" + BOM + b"blue\n", ["line 2, column 1", "byte order mark"]),
    ],
    ids=["latin-1", "utf-16", "utf-16-no-bom", "utf-32", "escape", "nul", "joined-boms"],
)
def test_bad_text_is_refused_naming_the_line_on_both_paths(run, tmp_path, via, raw, needles):
    result = _induce(run, tmp_path, raw, via)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert ("stdin" if via == "stdin" else "classes.txt") in message
    for needle in needles:
        assert needle in message
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.t2m.safetensors").exists()


def test_a_fixed_file_then_induces(run, tmp_path):
    assert _induce(run, tmp_path, DESCRIPTIONS.encode("utf-16"), "file").exit_code == 2
    result = _induce(run, tmp_path, DESCRIPTIONS.encode(), "file")
    assert result.exit_code == 0, result.output


def test_a_missing_or_folder_descriptions_file(tmp_path):
    for path in (tmp_path / "absent.txt", tmp_path):
        result = runner.invoke(app, ["induce", str(path), "--runs-dir", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert str(path) in " ".join(result.stderr.split())


def _train_with(tmp_path: Path, config: bytes):
    path = tmp_path / "config.yaml"
    path.write_bytes(config)
    return runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), "-q"])


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        (b"train:\n  epochs: 1\n  lr: 0.01\x07\n", ["config.yaml, line 3, column 11", "U+0007"]),
        (b'run:\n  name: "a\\x1bb"\n', ["config.yaml, line 2", "run.name", "U+001B"]),
        ("train:\n  epochs: 1\n".encode("utf-16"), ["config.yaml is UTF-16 text"]),
        (b"train:\n  epochs: \xff\n", ["config.yaml, line 2, column 11", "0xff"]),
    ],
    ids=["raw-bell", "escaped-escape", "utf-16", "bad-byte"],
)
def test_a_yaml_config_with_bad_text_is_refused(tmp_path, config, needles):
    result = _train_with(tmp_path, config)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in message
    assert not (tmp_path / "runs").exists()


def _mesh_dataset(root: Path) -> Path:
    """A six-class mesh dataset folder (the shapes layout) of tetrahedra."""
    classes = ["cone", "cube", "disc", "ring", "rod", "star"]
    rng = np.random.default_rng(0)
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    for name in classes:
        for part, count in (("train", 2), ("test", 1)):
            for i in range(count):
                path = root / name / part / f"{name}_{i + 1:04d}.off"
                write_off(path, rng.normal(size=(4, 3)), faces)
    split = {"seen": classes[:2], "val": classes[2:4], "unseen": classes[4:]}
    (root / "split.json").write_text(json.dumps(split))
    (root / "descriptions.json").write_text(json.dumps({c: [f"a {c}"] for c in classes}))
    return root


def _encode(root: Path, tmp_path: Path):
    fast = ["pointnet.epochs=1", "pointnet.n_points=16", "pointnet.train_points=8"]
    args = ["dataset.name=shapes", f"dataset.root={root}", "text.model=hashing", *fast]
    return runner.invoke(app, ["encode", *args, "-q", "--cache-dir", str(tmp_path / "cache")])


def test_encode_reads_an_off_mesh_saved_with_a_bom(tmp_path):
    root = _mesh_dataset(tmp_path / "meshes")
    mesh = root / "cube" / "train" / "cube_0001.off"
    mesh.write_bytes(BOM + b"# saved by an editor\n" + mesh.read_bytes())
    result = _encode(root, tmp_path)
    assert result.exit_code == 0, result.output
    assert (root / "features" / "pointnet.safetensors").is_file()


def test_encode_refuses_a_utf16_mesh_then_works_once_it_is_fixed(tmp_path):
    root = _mesh_dataset(tmp_path / "meshes")
    mesh = root / "cube" / "train" / "cube_0001.off"
    good = mesh.read_bytes()
    mesh.write_bytes(good.decode().encode("utf-16"))
    result = _encode(root, tmp_path)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "cube_0001.off is UTF-16 text" in message and "Save it as UTF-8" in message
    assert not (root / "features").exists()
    mesh.write_bytes(good)
    assert _encode(root, tmp_path).exit_code == 0


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"OFF\n3 1 0\n0 0 0\n1 \xb5 0\n0 1 0\n3 0 1 2\n", "line 4, column 3: byte 0xb5"),
        (b"OFF\n3 1 0\n0 0 0\n1 0 0\f\n0 1 0\n3 0 1 2\n", "line 4, column 6: the control"),
        ("OFF\n3 1 0\n".encode("utf-16-be"), "is UTF-16 text"),
    ],
)
def test_off_text_follows_the_rule(tmp_path, raw, needle):
    path = tmp_path / "m.off"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=needle) as info:
        read_off(path)
    assert str(info.value).startswith(f"Mesh {path}")


def test_binary_off_is_still_named_binary(tmp_path):
    path = tmp_path / "b.off"
    path.write_bytes(BOM + b"OFF BINARY\n" + bytes(range(256)))
    with pytest.raises(DataError, match="binary OFF"):
        read_off(path)


def test_data_check_names_bad_text_in_json_and_yaml(tmp_path):
    from test_custom import make_folder

    folder = make_folder(tmp_path / "mine", yaml_text="zebra: a striped\x07 horse\n")
    (folder / "classes.json").write_bytes(BOM + b'["zebra", "ti\\u001bger"]')
    (folder / "attributes.json").write_bytes('{"zebra": ["striped"]}'.encode("utf-16"))
    result = runner.invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "descriptions.yaml, line 1, column 17" in message and "U+0007" in message
    assert "classes.json, the text at [1], character 3" in message and "U+001B" in message
    assert "attributes.json is UTF-16 text" in message


def test_a_dataset_json_saved_with_a_bom_loads(tmp_path):
    root = make_tiny_dataset(tmp_path / "tiny")
    for name in ("split.json", "descriptions.json"):
        (root / name).write_bytes(BOM + (root / name).read_bytes())
    from t2m_cli.data.dataset import load_dataset

    assert len(load_dataset(root, "tiny", "pointnet").classes) == 14


def test_decode_text_rules():
    assert decode_text(BOM + b"a\r\n\tb", "x") == "a\r\n\tb"
    assert decode_text("é ü 中".encode(), "x") == "é ü 中"
    # A stray NUL in UTF-8 text is a control character, not a sign of UTF-16.
    with pytest.raises(DataError, match=r"line 1, column 6: the control character U\+0000"):
        decode_text(b"hello\x00world " * 3, "x")
    # A binary file given by mistake is not UTF-8, not UTF-16.
    with pytest.raises(DataError, match="is not UTF-8"):
        decode_text(bytes(range(128, 256)) * 8, "x")
    with pytest.raises(ConfigError, match=r"U\+0085"):
        decode_text("a\u0085b".encode(), "x", ConfigError)


def test_read_text_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"Mesh .*absent\.off does not exist"):
        read_text(tmp_path / "absent.off", "Mesh")
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 11)
    with pytest.raises(DataError, match="larger than 10 bytes"):
        read_text(big, max_bytes=10)


def test_check_strings_walks_deep_data_without_recursion():
    deep: list = ["ok"]
    for _ in range(100_000):
        deep = [deep]
    check_strings(deep, "x")
    deep[0][0] = "b\x07"
    with pytest.raises(DataError, match=r"x, the text at \[0\]\[0\], character 2"):
        check_strings(deep, "x")


def test_a_control_character_in_a_safetensors_header_is_refused(tmp_path):
    import torch

    from t2m_cli.atomic import load_safetensors, save_safetensors

    path = tmp_path / "f.safetensors"
    header = {"classes": ["zebra", "ti\u001bger"]}
    save_safetensors(path, {"x": torch.zeros(2)}, {"t2m": json.dumps(header)})
    with pytest.raises(DataError, match=r"\(its header\), the text at classes\[1\], character 3"):
        load_safetensors(path, "Feature file")


def test_a_metrics_file_that_is_not_utf8_names_the_line(tmp_path):
    from t2m_cli.runs import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 1}\n{"epoch": 2, "note": "\xff"}\n')
    with pytest.raises(DataError, match=r"Metrics file .*, line 2, column 23: byte 0xff"):
        read_metrics(path)


def test_command_line_text_follows_the_same_rule(tmp_path):
    # An override token and a flag value are text inputs too: a control character is refused.
    from t2m_cli.config import load_config
    from t2m_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"override .*control character U\+0007"):
        load_config(None, ["run.name=a\x07b"])
    with pytest.raises(ConfigError, match=r"value of run\.name, character 2"):
        load_config(None, values={"run.name": "a\x1bb"})


def test_a_line_separator_inside_a_description_is_refused():
    # An editor shows U+2028 as a line break, yet t2m's lines end at newlines only.
    from t2m_cli.induction import parse_descriptions

    with pytest.raises(DataError, match=r"d\.txt, line 1, column 15: the line separator U\+2028"):
        parse_descriptions("zebra: striped\u2028horse\nlion: a big cat\n", "d.txt")
