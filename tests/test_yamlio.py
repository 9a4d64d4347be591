"""Safe YAML loading, its limits, dotted overrides, validation messages and atomic writes."""

from __future__ import annotations

import copy
import json
import os
import time
import tracemalloc
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from t2m_cli.errors import ConfigError, RunFailure
from t2m_cli.yamlio import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_INPUT_BYTES,
    apply_overrides,
    dump_yaml,
    format_validation_error,
    load_yaml,
    loads_yaml,
    write_yaml,
)


def _write(tmp_path: Path, text: str | bytes, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _rejects(text: str) -> str:
    """The ConfigError message `loads_yaml` gives for `text` (it must give one)."""
    with pytest.raises(ConfigError) as info:
        loads_yaml(text, "c.yaml")
    return str(info.value)


def _bounded_rejection(text: str) -> tuple[str, float, int]:
    """Reject `text` and return the message, the seconds taken and the peak traced bytes."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = _rejects(text)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return message, seconds, peak


# Loading.


def test_load_reads_a_config_file(tmp_path):
    path = _write(
        tmp_path,
        "model:\n  hn_type: IVEV  # a comment\ntrain:\n  lr: 3e-4\n  epochs: 10\n"
        "  tags: [a, b]\n  note: null\n  shuffle: true\n  date: 2024-05-01\n",
    )
    data = load_yaml(path)
    assert data["model"] == {"hn_type": "IVEV"}
    train = data["train"]
    assert train["lr"] == pytest.approx(3e-4) and isinstance(train["lr"], float)
    assert train["epochs"] == 10
    assert train["tags"] == ["a", "b"]
    assert train["note"] is None
    assert train["shuffle"] is True
    assert str(train["date"]) == "2024-05-01"
    assert list(data) == ["model", "train"]


@pytest.mark.parametrize("text", ["1e-3", "1E3", "-2.5e+4", ".5e-3", "1_0e2", "1.0e-3"])
def test_exponent_without_a_dot_is_a_float(text):
    assert loads_yaml(f"x: {text}")["x"] == float(text.replace("_", ""))


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "~\n", "null\n", "---\n"])
def test_an_empty_document_is_an_empty_mapping(tmp_path, text):
    assert load_yaml(_write(tmp_path, text)) == {}


def test_a_utf8_bom_is_accepted(tmp_path):
    assert load_yaml(_write(tmp_path, "\ufeffa: 1\n".encode())) == {"a": 1}


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just words\n", "a string"), ("3\n", "a number")],
)
def test_the_top_level_must_be_a_mapping(text, kind):
    message = _rejects(text)
    assert "mapping" in message and kind in message


def test_a_duplicate_key_is_an_error_naming_it():
    message = _rejects("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n")
    assert "'train.lr'" in message and "twice" in message
    assert "line 4" in message and "first on line 2" in message


def test_a_duplicate_top_level_key_is_an_error():
    assert "'train'" in _rejects("train: {}\nmodel: {}\ntrain: {}\n")


def test_keys_equal_after_reading_are_duplicates():
    assert "twice" in _rejects("1: a\n0x1: b\n")


def test_merge_keys_may_be_overridden_without_a_duplicate_error():
    text = (
        "root: &root {x: 0, y: 0}\n"
        "base: &base {<<: *root, x: 1}\n"
        "train: {<<: *base, x: 2}\n"
        "again: {<<: [*root, {z: 1}], y: 3}\n"
    )
    data = loads_yaml(text)
    assert data["base"] == {"x": 1, "y": 0}
    assert data["train"] == {"x": 2, "y": 0}
    assert data["again"] == {"x": 0, "y": 3, "z": 1}


def test_a_syntax_error_gives_the_file_line_and_column(tmp_path):
    path = _write(tmp_path, "train:\n  lr: 0.1\n  tags: [a, b\nmodel: {}\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 4, column" in message
    assert "^" in message  # the excerpt points at the spot


def test_a_bad_indent_is_a_syntax_error():
    assert "line 3" in _rejects("a:\n  b: 1\n c: 2\n")


def test_non_utf8_gives_line_and_column(tmp_path):
    path = _write(tmp_path, b"a: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    message = str(info.value)
    assert "line 2, column 10" in message and "0xe9" in message and "UTF-8" in message


def test_utf16_is_refused_as_not_utf8(tmp_path):
    with pytest.raises(ConfigError, match="UTF-8"):
        load_yaml(_write(tmp_path, "a: 1\n".encode("utf-16")))


def test_a_control_character_is_refused_with_its_place():
    message = _rejects("a: 1\nb: x\x07y\n")
    assert "line 2, column 5" in message and "#x0007" in message


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")


def test_a_folder_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="folder"):
        load_yaml(tmp_path)


def test_a_file_over_the_size_limit_is_refused_unparsed(tmp_path):
    path = _write(tmp_path, "a: " + "x" * MAX_INPUT_BYTES + "\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_yaml(path)
    assert time.perf_counter() - start < 1.0


def test_text_over_the_size_limit_is_refused():
    with pytest.raises(ConfigError, match="larger than"):
        loads_yaml("a: '" + "é" * (MAX_INPUT_BYTES // 2) + "'")  # few characters, many bytes


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


def test_an_undefined_alias_is_an_error():
    assert "undefined alias" in _rejects("a: *nope\n")


def test_two_documents_are_an_error():
    assert "single document" in _rejects("a: 1\n---\nb: 2\n")


def test_an_integer_past_pythons_digit_limit_is_a_config_error():
    message = _rejects("a: " + "1" * 5000 + "\n")
    assert "!!int" in message and len(message) < 500


def test_an_impossible_date_is_a_config_error():
    assert "month must be in 1..12" in _rejects("a: 2024-13-01\n")


def test_an_unhashable_key_is_a_config_error():
    assert "unhashable key" in _rejects("? [a, b]\n: 1\n")


# Limits against documents that expand.

BILLION_LAUGHS = (
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def test_billion_laughs_fails_fast_in_bounded_memory():
    # 9**9 "lol"s written out; PyYAML alone builds a small shared structure that explodes once
    # anything (pydantic, repr, a dump) walks it.
    message, seconds, peak = _bounded_rejection(BILLION_LAUGHS)
    assert "billion laughs" in message
    assert "line 6" in message  # stopped at f, the first level past the node limit
    assert seconds < 2.0
    assert peak < 5 * 2**20
    assert len(message) < 500


def test_doubling_aliases_fail_fast_in_bounded_memory():
    # Two aliases a level keep well under the alias limit yet double the size each time.
    levels = MAX_ALIASES // 2 - 1
    text = "l0: &l0 [x, x]\n" + "".join(
        f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]\n" for i in range(1, levels)
    )
    message, seconds, peak = _bounded_rejection(text)
    assert "billion laughs" in message
    assert seconds < 2.0 and peak < 5 * 2**20 and len(message) < 500


def test_billion_laughs_with_mappings_fails_too():
    text = (
        "a: &a {k0: lol, k1: lol, k2: lol, k3: lol, k4: lol, k5: lol, k6: lol, k7: lol}\n"
        + "".join(
            f"{name}: &{name} {{{', '.join(f'k{i}: *{prev}' for i in range(8))}}}\n"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        )
    )
    assert "billion laughs" in _rejects(text)


def test_quadratic_blowup_fails_fast_in_bounded_memory():
    # One large value aliased a few dozen times: few nodes, but megabytes once written out.
    text = "big: &big " + "x" * 50_000 + "\n" + "".join(f"k{i}: *big\n" for i in range(99))
    message, seconds, peak = _bounded_rejection(text)
    assert "MiB of text" in message
    assert seconds < 2.0 and peak < 20 * 2**20 and len(message) < 500


def test_too_many_aliases_are_refused():
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    message = _rejects(text)
    assert f"more than {MAX_ALIASES} aliases" in message and "*a" in message


def test_a_few_aliases_are_fine():
    data = loads_yaml("defaults: &d {lr: 0.1}\ntrain: *d\neval: {<<: *d, lr: 0.2}\n")
    assert data == {"defaults": {"lr": 0.1}, "train": {"lr": 0.1}, "eval": {"lr": 0.2}}


def test_a_recursive_alias_is_refused():
    assert "contains it" in _rejects("a: &a [1, *a]\n")
    assert "contains it" in _rejects("a: &a {b: *a}\n")


def test_deep_nesting_is_refused_before_the_stack_overflows():
    message = _rejects("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert f"deeper than {MAX_DEPTH}" in message and len(message) < 500


def test_a_limit_error_names_the_key_it_stopped_under():
    text = "a: &a 1\ntrain:\n  tags: [" + "*a, " * (MAX_ALIASES + 1) + "]\n"
    assert f"(under 'train.tags[{MAX_ALIASES}]')" in _rejects(text)


# Overrides.


@pytest.mark.parametrize(
    ("token", "key", "value"),
    [
        ("train.epochs=3", "epochs", 3),
        ("train.lr=0.5", "lr", 0.5),
        ("train.lr=1e-4", "lr", 1e-4),
        ("train.shuffle=true", "shuffle", True),
        ("train.shuffle=false", "shuffle", False),
        ("train.note=null", "note", None),
        ("train.note=abc", "note", "abc"),
        ("train.note='3'", "note", "3"),
        ('train.note="a: b"', "note", "a: b"),
        ("train.note=", "note", ""),
        ("train.note=x=y", "note", "x=y"),
        ("train.tags=[1,2]", "tags", [1, 2]),
        ("train.tags=[a, b]", "tags", ["a", "b"]),
        ("train.tags=[]", "tags", []),
        (
            "train.opt={name: adam, betas: [0.9, 0.99]}",
            "opt",
            {"name": "adam", "betas": [0.9, 0.99]},
        ),
    ],
)
def test_an_override_reads_its_value_as_yaml(token, key, value):
    result = apply_overrides({"train": {"lr": 0.1}}, [token])
    assert result["train"][key] == value
    assert type(result["train"][key]) is type(value)


def test_overrides_create_missing_sections_and_apply_in_order():
    result = apply_overrides(
        {"train": {"lr": 0.1}}, ["model.hn_type=IVEV", "a.b.c=1", "train.lr=0.2", "train.lr=0.3"]
    )
    assert result == {"train": {"lr": 0.3}, "model": {"hn_type": "IVEV"}, "a": {"b": {"c": 1}}}


def test_an_override_may_replace_a_whole_section():
    assert apply_overrides({"train": {"lr": 0.1}}, ["train={lr: 1}"]) == {"train": {"lr": 1}}


def test_overrides_leave_the_input_untouched():
    data = {"train": {"lr": 0.1, "tags": ["a"]}, "model": {"hn_type": "EV"}}
    before = copy.deepcopy(data)
    result = apply_overrides(data, ["train.lr=0.2", "model.x.y=1"])
    assert data == before
    assert result["train"] == {"lr": 0.2, "tags": ["a"]}


def test_an_override_does_not_travel_through_a_yaml_alias():
    data = loads_yaml("defaults: &d {lr: 0.1}\ntrain: *d\n")
    result = apply_overrides(data, ["train.lr=0.5"])
    assert result["train"]["lr"] == 0.5
    assert result["defaults"]["lr"] == 0.1


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("train.lr", "no '='"),
        ("=3", "empty key"),
        ("train.=3", "empty key"),
        (".lr=3", "empty key"),
        ("train..lr=3", "empty key"),
        ("train.lr.x=1", "'train.lr' is a number (0.1), not a mapping"),
        ("train.tags.0=x", "'train.tags' is a list (['a']), not a mapping"),
        ("train.tags=[a, b", "The value of override 'train.tags', line 1"),
        ("train.note=a: b", "block-style YAML mapping"),
        ("train.note=- a", "block-style YAML list"),
        ("train.x=!!python/name:os.system ''", "is not allowed"),
    ],
)
def test_a_bad_override_is_a_config_error(token, expected):
    data = {"train": {"lr": 0.1, "tags": ["a"]}}
    with pytest.raises(ConfigError) as info:
        apply_overrides(data, [token])
    assert expected in str(info.value)


def test_an_override_value_may_use_an_alias():
    result = apply_overrides({}, ["x=[&a [1, 1], *a]"])
    assert result == {"x": [[1, 1], [1, 1]]}


def test_an_override_value_has_the_same_limits_as_a_file():
    levels = ", ".join(f"&l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 40))
    with pytest.raises(ConfigError, match="billion laughs"):
        apply_overrides({}, [f"x=[&l0 [a, a], {levels}]"])


_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
# Control characters and raw line separators are not text YAML keeps inside a quoted scalar.
_JSON_CHARS = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_JSON_CHARS, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(_JSON_CHARS, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_START = {"train": {"lr": 0.1, "tags": ["a"], "opt": {"name": "adam"}}, "seed": 0}


@given(
    segments=st.lists(
        st.sampled_from(["train", "lr", "opt", "seed", "name"]) | _NAMES, min_size=1, max_size=4
    ),
    value=_JSON,
)
@example(segments=["train", "lr"], value=1e-5)
@example(segments=["train", "lr", "x"], value=1)
def test_an_override_reads_back_as_written(segments, value):
    # JSON is YAML flow syntax, so a JSON value must come back unchanged from `key=json`. Raw,
    # not escaped: YAML reads the escape of a surrogate pair as two lone surrogates.
    before = copy.deepcopy(_START)
    node, blocked = _START, False
    for segment in segments[:-1]:
        node = node.get(segment, {}) if isinstance(node, dict) else None
        blocked = blocked or not isinstance(node, dict)
    token = f"{'.'.join(segments)}={json.dumps(value, ensure_ascii=False)}"
    if blocked:
        with pytest.raises(ConfigError, match="not a mapping"):
            apply_overrides(_START, [token])
    else:
        result = apply_overrides(_START, [token])
        for segment in segments:
            result = result[segment]
        assert result == value
    assert before == _START


# Validation messages.


class _Head(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = 8


class _Train(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 0.01
    epochs: int = 1
    tags: list[str] = []
    heads: list[_Head] = []
    extra_head: _Head | None = None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hn_type: Literal["EV", "IVEV", "W", "WW"] = "EV"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train: _Train = _Train()
    model: _Model = _Model()


def _validation_message(data: object, model: type[BaseModel] | None = _Config) -> str:
    with pytest.raises(ValidationError) as info:
        _Config.model_validate(data)
    return format_validation_error(info.value, "run.yaml", model=model)


def test_a_misspelt_key_is_unknown_with_a_suggestion():
    message = _validation_message({"train": {"lrr": 0.1}})
    assert "train.lrr: unknown key 'train.lrr'; did you mean 'train.lr'?" in message
    assert message.startswith("Invalid config in run.yaml (1 error):")


def test_a_misspelt_section_gets_a_suggestion():
    assert "did you mean 'train'?" in _validation_message({"trian": {}})


def test_nested_models_and_list_items_are_named_by_their_path():
    message = _validation_message(
        {
            "train": {
                "epochs": "many",
                "tags": ["a", 3],
                "heads": [{"width": 1}, {"widht": 2}],
                "extra_head": {"wdth": 3},
            },
            "model": {"hn_type": "IVEVX"},
        }
    )
    assert "(5 errors)" in message
    assert "train.epochs: Input should be a valid integer" in message and "(got 'many')" in message
    assert "train.tags[1]: Input should be a valid string (got 3)" in message
    assert "did you mean 'train.heads[1].width'?" in message
    assert "did you mean 'train.extra_head.width'?" in message
    assert "model.hn_type: Input should be 'EV', 'IVEV', 'W' or 'WW' (got 'IVEVX')" in message


def test_without_a_close_match_the_allowed_keys_are_listed():
    message = _validation_message({"model": {"zzz": 1}})
    assert "model.zzz: unknown key 'model.zzz'; allowed keys here: hn_type" in message


def test_without_a_model_there_is_no_suggestion():
    message = _validation_message({"train": {"lrr": 0.1}}, model=None)
    assert "train.lrr: unknown key 'train.lrr'\n" in message


def test_a_missing_key_does_not_show_its_parent_as_input():
    class Needs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str

    with pytest.raises(ValidationError) as info:
        Needs.model_validate({"other": "x" * 1000})
    message = format_validation_error(info.value, "run.yaml", model=Needs)
    assert "name: Field required\n" in message and "xxxx" not in message


def test_huge_inputs_are_truncated():
    nested: list[object] = ["x" * 10_000]
    for _ in range(50):
        nested = [nested, nested]  # 2**50 leaves if anything walked it in full
    message = _validation_message(
        {"train": {"epochs": "9" * 100_000, "lr": nested, "tags": 10**5000}}
    )
    for line in message.splitlines():
        assert len(line) < 200
    assert len(message) < 1000


def test_many_errors_are_capped():
    message = _validation_message({"train": {f"k{i}": i for i in range(50)}})
    assert "(50 errors)" in message and "... and 30 more" in message


# Dumping and writing.


def test_dump_keeps_order_block_style_and_unicode():
    text = dump_yaml({"train": {"lr": 0.1, "tags": ["b", "a"]}, "desc": "ünïcode"})
    assert text == "train:\n  lr: 0.1\n  tags:\n  - b\n  - a\ndesc: ünïcode\n"


def test_dump_quotes_strings_that_would_read_back_as_other_types():
    data = {"a": "1e-3", "b": "true", "c": "null", "d": "3", "e": "<<"}
    assert loads_yaml(dump_yaml(data)) == data


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
@example({"lr": "1e-3", "x": 1e-20, "y": "2024-01-01", "z": "\x85\u2028"})
def test_dump_then_load_gives_the_data_back(data):
    assert loads_yaml(dump_yaml(data)) == data


def test_write_yaml_round_trips_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "resolved.yaml"
    write_yaml(path, {"train": {"lr": 0.1}})
    write_yaml(path, {"train": {"lr": 0.2}, "model": {"hn_type": "EV"}})
    assert load_yaml(path) == {"train": {"lr": 0.2}, "model": {"hn_type": "EV"}}
    assert [p.name for p in tmp_path.iterdir()] == ["resolved.yaml"]


def test_write_yaml_gives_a_file_the_mode_of_any_new_file(tmp_path):
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    write_yaml(tmp_path / "resolved.yaml", {"a": 1})
    assert (tmp_path / "resolved.yaml").stat().st_mode == reference.stat().st_mode


def test_write_yaml_where_no_folder_can_be_made_is_a_run_failure(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RunFailure, match="Could not write"):
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
    assert load_yaml(path) == {"a": 1}
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
