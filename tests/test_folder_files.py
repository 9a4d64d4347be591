"""The dataset-folder files: one set of models, every problem at once, the same words anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2m_cli.data.dataset import Split, load_dataset
from t2m_cli.data.folder_files import (
    AttributesFile,
    ClassesFile,
    DescriptionsFile,
    SplitFile,
    check_file,
)
from t2m_cli.errors import DataError


def test_split_file_reports_every_problem_at_once() -> None:
    data = {"seen": ["a", "a", "b"], "val": ["b"], "unseen": ["x"]}
    value, problems = check_file(SplitFile, data, "split.json", classes=["a", "b"])
    assert value is None
    assert problems == [
        "split.json lists ['a'] more than once in 'seen'; list each once.",
        "split.json puts ['b'] in both 'seen' and 'val'; a class belongs to one part.",
        "split.json names ['x'], which are not in classes.json; fix the names or add the classes.",
    ]


def test_wrong_shapes_are_summed_up_per_file() -> None:
    _, problems = check_file(SplitFile, {"seen": ["a", 1], "unseen": "b"}, "split.json")
    assert problems == [
        'split.json must be {"seen": [...], "val": [...], "unseen": [...]} with lists of class '
        "names ('seen'[1] is not a text; 'val' is missing; 'unseen' is not a list)."
    ]
    raw = {"a": "  one  ", "b": [], "c": [" "], "d": ["x", 2]}
    _, problems = check_file(DescriptionsFile, raw, "descriptions.yaml")
    assert problems == [
        "descriptions.yaml: the entries for ['b', 'c', 'd'] are not a non-empty text or list of "
        "non-empty texts."
    ]
    assert check_file(DescriptionsFile, {"a": " one "}, "d")[0] == DescriptionsFile({"a": ["one"]})
    _, problems = check_file(AttributesFile, ["x"], "attributes.json")
    assert problems == [
        "attributes.json must map each class name to a list of attribute names (the file is not "
        "a mapping)."
    ]
    _, problems = check_file(ClassesFile, ["a", "a"], "classes.json")
    assert problems == ["classes.json lists ['a'] more than once; list each class once."]


def test_split_in_code_speaks_like_the_file() -> None:
    with pytest.raises(DataError, match=r"^The split puts \['b'\] in both 'seen' and 'unseen'"):
        Split(("a", "b"), (), ("b",))


def test_load_dataset_lists_every_split_problem(tiny_root: Path) -> None:
    path = tiny_root / "split.json"
    split = json.loads(path.read_text())
    split["seen"].append(split["seen"][0])
    split["unseen"] = []
    path.write_text(json.dumps(split))
    with pytest.raises(DataError) as info:
        load_dataset(tiny_root, "tiny", "pointnet")
    message = str(info.value)
    assert message.startswith(f"{path} has 2 problems; fix them:")
    assert "more than once in 'seen'" in message and "at least one 'unseen' class" in message
