"""The text files of a dataset folder, described once: split, descriptions, attributes.

`t2m data check` / `t2m data import` (`t2m_cli.data.custom`) and every reader of a t2m dataset
folder (`load_dataset`, `t2m encode`) validate these files with the models here, so a file gets
the same messages wherever it is read, and every problem in it is reported at once:

- ``split.json``: ``{"seen": [...], "val": [...], "unseen": [...]}``, lists of class names, a
  class at most once in at most one part, at least one seen and one unseen class. What the
  parts need beyond the file's shape (classes with rows, enough of them for training and the
  protocols) is `t2m_cli.data.requirements`, which needs the data as well.
- ``descriptions.json`` (an import folder may use ``descriptions.yaml``): class name -> a text
  or a list of texts, none blank; texts are kept stripped.
- ``attributes.json``: class name -> list of attribute names.
- ``classes.json`` (an import folder only): the class names, each once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    RootModel,
    StrictStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from t2m_cli.atomic import read_json
from t2m_cli.errors import DataError

PARTS = ("seen", "val", "unseen")
# The type of our own errors, whose message is a finished sentence; pydantic's own errors (a
# wrong type, a missing or unknown key) are summed up by `check_file` in the file's words.
_OURS = "t2m_folder_file"
# How `check_file` words pydantic's errors about a key (or the whole file, at the top level).
_WHAT = {
    "missing": "is missing",
    "extra_forbidden": "is not allowed",
    "list_type": "is not a list",
    "string_type": "is not a text",
    "dict_type": "is not a mapping",
    "model_type": "is not a mapping",
}


def split_problems(parts: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Classes listed twice in a part, or in two parts.

    Args:
        parts: ``"seen"``, ``"val"`` and ``"unseen"`` -> class names.

    Returns:
        ``(part, problem)`` pairs; a problem is a sentence to follow the split's name.
    """
    problems = []
    for part in PARTS:
        twice = sorted(c for c, n in Counter(parts[part]).items() if n > 1)
        if twice:
            problems.append((part, f"lists {twice} more than once in '{part}'; list each once."))
    for i, a in enumerate(PARTS):
        for b in PARTS[i + 1 :]:
            both = sorted(set(parts[a]) & set(parts[b]))
            if both:
                problems.append(
                    (b, f"puts {both} in both '{a}' and '{b}'; a class belongs to one part.")
                )
    return problems


def _unknown(names: Iterable[str], info: ValidationInfo) -> list[tuple[str, str]]:
    """Names that are not among the classes `check_file` was given, if it was given any."""
    classes = (info.context or {}).get("classes")
    unknown = [] if classes is None else sorted(set(names) - set(classes))
    if not unknown:
        return []
    return [
        (
            "root",
            f"names {unknown}, which are not in classes.json; fix the names or add the classes.",
        )
    ]


def _ours(problems: list[tuple[str, str]], model: BaseModel) -> ValidationError:
    """All of a model's own problems as one error, so none waits for another to be fixed."""
    return ValidationError.from_exception_data(
        type(model).__name__,
        [
            InitErrorDetails(
                # The text goes in as context: a class name with braces is not a placeholder.
                type=PydanticCustomError(_OURS, "{text}", {"text": text}),
                loc=(where,),
                input=getattr(model, where, None),
            )
            for where, text in problems
        ],
    )


class SplitFile(BaseModel):
    """``split.json``: the seen / validation / unseen class names."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shape: ClassVar[str] = (
        'must be {"seen": [...], "val": [...], "unseen": [...]} with lists of class names'
    )
    # Empty: a wrong part is told apart by its key (`check_file`), not summed up per class.
    entry: ClassVar[str] = ""

    seen: list[StrictStr]
    val: list[StrictStr]
    unseen: list[StrictStr]

    @model_validator(mode="after")
    def _parts(self, info: ValidationInfo) -> SplitFile:
        problems = split_problems(self.model_dump())
        problems += [
            (part, f"needs at least one '{part}' class.")
            for part in ("seen", "unseen")
            if not getattr(self, part)
        ]
        problems += _unknown([*self.seen, *self.val, *self.unseen], info)
        if problems:
            raise _ours(problems, self)
        return self


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _stripped(texts: list[str]) -> list[str]:
    stripped = [t.strip() for t in texts]
    if not stripped or not all(stripped):
        raise ValueError("blank, or no text")
    return stripped


_Texts = Annotated[list[StrictStr], BeforeValidator(_one_or_many), AfterValidator(_stripped)]


class DescriptionsFile(RootModel[dict[StrictStr, _Texts]]):
    """``descriptions.json`` / ``.yaml``: class name -> one or more texts."""

    shape: ClassVar[str] = "must map each class name to a text or a list of texts"
    entry: ClassVar[str] = "a non-empty text or list of non-empty texts"

    @model_validator(mode="after")
    def _classes(self, info: ValidationInfo) -> DescriptionsFile:
        classes = (info.context or {}).get("classes")
        undescribed = None if classes is None else self.undescribed(classes)
        problems = [("root", undescribed)] if undescribed else []
        problems += _unknown(self.root, info)
        if problems:
            raise _ours(problems, self)
        return self

    def undescribed(self, classes: Sequence[str]) -> str | None:
        """What to do about ``classes`` with no description here (to follow the file's name).

        Returns:
            None when every class has a description.
        """
        missing = [c for c in classes if c not in self.root]
        return (
            f"has no description for classes {missing}; add a text for each." if missing else None
        )


class AttributesFile(RootModel[dict[StrictStr, list[StrictStr]]]):
    """``attributes.json``: class name -> names of the attributes it has."""

    shape: ClassVar[str] = "must map each class name to a list of attribute names"
    entry: ClassVar[str] = "lists of attribute names"

    @model_validator(mode="after")
    def _classes(self, info: ValidationInfo) -> AttributesFile:
        problems = _unknown(self.root, info)
        if problems:
            raise _ours(problems, self)
        return self


def _named(name: str) -> str:
    if not name.strip():
        raise ValueError("blank")
    return name


class ClassesFile(RootModel[list[Annotated[StrictStr, AfterValidator(_named)]]]):
    """``classes.json`` of an import folder: class names; a label is an index into them."""

    shape: ClassVar[str] = 'must be a JSON list of non-empty class names ["cat", ...]'
    entry: ClassVar[str] = ""

    @model_validator(mode="after")
    def _once(self) -> ClassesFile:
        twice = sorted(c for c, n in Counter(self.root).items() if n > 1)
        problems = (
            [("root", f"lists {twice} more than once; list each class once.")] if twice else []
        )
        if not self.root:
            problems.append(("root", "lists no classes; add at least one."))
        if problems:
            raise _ours(problems, self)
        return self


FileT = TypeVar("FileT", SplitFile, DescriptionsFile, AttributesFile, ClassesFile)


def check_file(
    model: type[FileT], data: Any, source: str, classes: Sequence[str] | None = None
) -> tuple[FileT | None, list[str]]:
    """Validate what was read from a folder file, collecting every problem.

    Args:
        model: `SplitFile`, `DescriptionsFile`, `AttributesFile` or `ClassesFile`.
        data: the parsed JSON or YAML.
        source: the file as messages should name it (its name, or its path).
        classes: an import folder's ``classes.json``; with them a class name outside them, or
            (descriptions) a class without a description, is a problem too.

    Returns:
        The validated file, or None; and its problems, each a sentence naming ``source`` and
        saying what to fix (empty when valid).
    """
    try:
        return model.model_validate(data, context={"classes": classes}), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    shape, entries, ours = [], [], []
    for error in errors:
        loc = error["loc"]
        if error["type"] == _OURS:
            ours.append(f"{source} {error['msg']}")
        elif loc and model.entry:
            # One sentence naming every bad class beats one line per nested error.
            if str(loc[0]) not in entries:
                entries.append(str(loc[0]))
        else:
            where = "".join(f"[{p}]" if isinstance(p, int) else f"'{p}'" for p in loc)
            if where.startswith("["):
                where = f"entry {where}"
            if error["type"] == "value_error":  # our validators' ValueError says what it is
                what = f"is {error['ctx']['error']}"
            else:
                what = _WHAT.get(error["type"], f"is wrong ({error['msg']})")
            shape.append(f"{where or 'the file'} {what}")
    problems = [f"{source} {model.shape} ({'; '.join(shape)})."] if shape else []
    if entries:
        problems.append(f"{source}: the entries for {entries} are not {model.entry}.")
    return None, problems + ours


def parse_file(model: type[FileT], data: Any, source: str) -> FileT:
    """`check_file`, raising instead of returning problems.

    Args:
        model: one of the file models here.
        data: the parsed JSON or YAML.
        source: the file as messages should name it.

    Returns:
        The validated file.

    Raises:
        DataError: the file is invalid; the message lists every problem.
    """
    value, problems = check_file(model, data, source)
    if value is None:
        if len(problems) == 1:
            raise DataError(problems[0])
        listing = "\n".join(f"  - {p}" for p in problems)
        raise DataError(f"{source} has {len(problems)} problems; fix them:\n{listing}")
    return value


def read_file(model: type[FileT], path: Path, what: str) -> FileT:
    """Read and validate a JSON folder file.

    Args:
        model: one of the file models here.
        path: the file.
        what: what it is, for the message about a missing or malformed file (``"split"``).

    Returns:
        The validated file.

    Raises:
        DataError: the file is missing, not JSON, or invalid (every problem listed).
    """
    return parse_file(model, read_json(path, what), str(path))
