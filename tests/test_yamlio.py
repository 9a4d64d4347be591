"""Safe YAML loading (refusals, limits, lines), and atomic writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from t2m_cli.errors import ConfigError, DataError, RunFailure, UserInputError
from t2m_cli.yamlio import MAX_BYTES, MAX_DEPTH, dump_yaml, load_yaml, parse_yaml, write_yaml


def _write(tmp_path: Path, text: str | bytes, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _rejects(text: str) -> str:
    """The ConfigError message `parse_yaml` gives for `text` (it must give one)."""
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "c.yaml")
    return str(info.value)


# Loading.


def test_load_reads_a_config_file_and_the_line_of_each_key(tmp_path):
    path = _write(
        tmp_path,
        "model:\n  hn_type: IVEV  # a comment\ntrain:\n  lr: 3e-4\n  epochs: 10\n"
        "  tags: [a, b]\n  note: null\n  shuffle: true\n  date: 2024-05-01\n"
        "  heads:\n    - width: 3\n",
    )
    document = load_yaml(path)
    assert document.data["model"] == {"hn_type": "IVEV"}
    train = document.data["train"]
    assert train["lr"] == pytest.approx(3e-4) and isinstance(train["lr"], float)
    assert train["epochs"] == 10
    assert train["tags"] == ["a", "b"]
    assert train["note"] is None
    assert train["shuffle"] is True
    assert str(train["date"]) == "2024-05-01"
    assert list(document.data) == ["model", "train"]
    assert document.lines[("model",)] == 1
    assert document.lines[("train", "lr")] == 4
    assert document.lines[("train", "date")] == 9
    assert document.lines[("train", "heads", 0, "width")] == 11


@pytest.mark.parametrize("text", ["1e-3", "1E3", "-2.5e+4", ".5e-3", "1_0e2", "1.0e-3", "5e-324"])
def test_an_exponent_without_a_dot_is_a_float_as_in_yaml_1_2(text):
    assert parse_yaml(f"x: {text}", "c.yaml").data["x"] == float(text.replace("_", ""))


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "~\n", "null\n", "---\n"])
def test_an_empty_document_is_an_empty_mapping(tmp_path, text):
    document = load_yaml(_write(tmp_path, text))
    assert document.data == {} and document.lines == {}


def test_a_utf8_bom_is_skipped(tmp_path):
    assert load_yaml(_write(tmp_path, "\ufeffa: 1\n".encode())).data == {"a": 1}


@pytest.mark.parametrize("text", ["- a\n- b\n", "just words\n", "3\n"])
def test_the_top_level_of_a_file_must_be_a_mapping(tmp_path, text):
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(_write(tmp_path, text))


def test_parse_yaml_reads_any_value():
    assert parse_yaml("[1, a, {b: 2.5}]", "x").data == [1, "a", {"b": 2.5}]
    assert parse_yaml("", "x").data is None


def test_a_duplicate_key_is_an_error_naming_it_and_both_lines():
    message = _rejects("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n")
    assert "'train.lr'" in message and "twice" in message
    assert "line 4" in message and "first on line 2" in message


def test_a_duplicate_top_level_key_is_an_error():
    assert "'train'" in _rejects("train: {}\nmodel: {}\ntrain: {}\n")


def test_keys_equal_after_reading_are_duplicates():
    assert "twice" in _rejects("1: a\n0x1: b\n")


@pytest.mark.parametrize(
    ("text", "shown", "line"),
    [
        ("a: &a 1\nb: *a\n", "&a", 1),
        ("a: 1\nb: *a\n", "*a", 2),
        ("a: 1\nb: &x {c: 1}\n", "&x", 2),
        ("a: 1\nb: {<<: *x, c: 2}\n", "*x", 2),
    ],
)
def test_anchors_and_aliases_are_refused_with_their_line(text, shown, line):
    message = _rejects(text)
    assert "anchors and aliases" in message and f"({shown})" in message
    assert f"c.yaml, line {line}," in message


def test_billion_laughs_is_refused_at_its_first_anchor(tmp_path):
    text = 'a: &a ["lol", "lol", "lol"]\n' + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    start = time.perf_counter()
    message = _rejects(text)
    assert time.perf_counter() - start < 1.0
    assert "line 1" in message and "&a" in message and len(message) < 500


def test_a_merge_key_is_refused():
    assert "the tag !!merge is not allowed" in _rejects("a: {<<: {x: 1}, y: 2}\n")


def test_a_syntax_error_gives_the_file_line_and_column(tmp_path):
    path = _write(tmp_path, "train:\n  lr: 0.1\n  tags: [a, b\nmodel: {}\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    message = str(info.value)
    assert f"{path} is not valid YAML" in message
    assert "line 4, column" in message
    assert "^" in message  # the excerpt points at the spot


def test_a_bad_indent_is_a_syntax_error():
    assert "line 3" in _rejects("a:\n  b: 1\n c: 2\n")


def test_the_caller_chooses_the_error_class(tmp_path):
    path = _write(tmp_path, "zebra: a\nzebra: b\n", "descriptions.yaml")
    with pytest.raises(DataError) as info:
        load_yaml(path, error=DataError)
    assert f"{path}, line 2, column 1: the key 'zebra' appears twice" in str(info.value)


def test_non_utf8_gives_line_and_column(tmp_path):
    path = _write(tmp_path, b"a: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    message = str(info.value)
    assert f"{path}, line 2, column 10" in message and "0xe9" in message and "UTF-8" in message


def test_utf16_is_refused_as_not_utf8(tmp_path):
    with pytest.raises(ConfigError, match="UTF-8"):
        load_yaml(_write(tmp_path, "a: 1\n".encode("utf-16")))


def test_a_control_character_is_refused_with_its_place():
    message = _rejects("a: 1\nb: x\x07y\n")
    assert "line 2, column 5" in message and "#x0007" in message


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")


def test_a_folder_is_not_a_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="folder"):
        load_yaml(tmp_path)


def test_a_file_over_the_size_limit_is_refused_unparsed(tmp_path):
    path = _write(tmp_path, "a: " + "x" * MAX_BYTES + "\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_yaml(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!!python/object/new:os.system",
        "!!python/name:os.system",
        "!!python/module:os",
        "!custom",
    ],
)
def test_python_and_unknown_tags_are_refused_and_never_run(tmp_path, tag):
    marker = tmp_path / "ran"
    message = _rejects(f'a: {tag} ["touch {marker}"]\n')
    assert "is not allowed" in message and "line 1" in message
    assert not marker.exists()


def test_two_documents_are_an_error():
    assert "single document" in _rejects("a: 1\n---\nb: 2\n")


def test_an_integer_past_pythons_digit_limit_is_an_error_with_its_line():
    message = _rejects("a: 1\nb: " + "1" * 5000 + "\n")
    assert "line 2" in message and "4300 digits" in message and len(message) < 500


def test_an_impossible_date_is_an_error():
    assert "month must be in 1..12" in _rejects("a: 2024-13-01\n")


def test_an_unhashable_key_is_an_error():
    assert "unhashable key" in _rejects("? [a, b]\n: 1\n")


def test_deep_nesting_is_refused_before_the_stack_overflows():
    message = _rejects("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert f"deeper than {MAX_DEPTH}" in message and len(message) < 500


# Dumping and writing.


def test_dump_keeps_order_and_block_style():
    text = dump_yaml({"train": {"lr": 0.1, "tags": ["b", "a"]}, "desc": "plain"})
    assert text == "train:\n  lr: 0.1\n  tags:\n  - b\n  - a\ndesc: plain\n"


_KEYS = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
_PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(_KEYS, _PLAIN, max_size=6))
@example({"lr": "1e-3", "x": 1e-20, "y": "2024-01-01", "z": "\x85\u2028", "u": "ünïcode"})
@example({"a": "1e-3", "b": "true", "c": "null", "d": "3", "e": "<<", "f": "007", "g": 5e-324})
def test_dump_then_parse_gives_the_data_back(data):
    assert parse_yaml(dump_yaml(data), "dump").data == data


def test_write_yaml_round_trips_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "resolved.yaml"
    write_yaml(path, {"train": {"lr": 0.1}})
    write_yaml(path, {"train": {"lr": 0.2}, "model": {"hn_type": "EV"}})
    assert load_yaml(path).data == {"train": {"lr": 0.2}, "model": {"hn_type": "EV"}}
    assert [p.name for p in tmp_path.iterdir()] == ["resolved.yaml"]


def test_write_yaml_below_a_file_is_refused_naming_the_file(tmp_path):
    # Not "check that its folder is writable": no permission would make a file a folder.
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserInputError, match="file is a file, not a folder"):
        write_yaml(tmp_path / "file" / "resolved.yaml", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "resolved.yaml"
    write_yaml(path, {"a": 1})

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(RunFailure, match="No space left"):
        write_yaml(path, {"a": 2})
    assert load_yaml(path).data == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["resolved.yaml"]


def test_a_value_yaml_cannot_represent_fails_before_touching_the_disk(tmp_path):
    with pytest.raises(Exception, match="cannot represent"):
        write_yaml(tmp_path / "resolved.yaml", {"a": object()})
    assert list(tmp_path.iterdir()) == []


EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_validates(path):
    from t2m_cli.config import load_config

    assert len(EXAMPLES) >= 3
    load_config(path)
