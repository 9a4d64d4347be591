"""Every YAML t2m reads or writes: configs, overrides, a data folder's descriptions, run configs.

Reading is PyYAML's `SafeLoader` (plain data only, no Python tags) with refusals on top, so a
file copied from elsewhere can neither run code nor grow into a huge object:

- a file over `MAX_BYTES`, refused before parsing;
- anchors and aliases (``&name``, ``*name``): neither a config nor a descriptions file needs
  them, and without them no "billion laughs" document (aliases of aliases) can exist;
- a key twice in one mapping (PyYAML would silently keep the last one);
- nesting deeper than `MAX_DEPTH`;
- text that `t2m_cli.textio.decode_text` refuses (not UTF-8, UTF-16, a control character; a
  leading BOM is skipped), with the same messages as every other text file, and a control
  character written as an escape in a quoted string.

The caller picks the error class (`ConfigError` for configs, `DataError` for data files); each
message names the file and the line. The loader records the line of every key, so that a
validation error can point at the line of the bad key.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.events import AliasEvent

from t2m_cli.atomic import write_text
from t2m_cli.errors import ConfigError, UserInputError
from t2m_cli.textio import check_strings, decode_text, read_bytes

MAX_BYTES = 1 << 20
MAX_DEPTH = 20
# YAML 1.2 reads an exponent without a dot or sign (3e-4) as a float; PyYAML's 1.1 rules do not.
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_COMMENT = re.compile(r"(?:^|\s)#")


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document and the line of every mapping key in it.

    Attributes:
        data: the value, as plain Python data (a dict for `load_yaml`; None if empty).
        lines: the 1-based line of each key, by its path from the top: ``("train", "lr")``,
            list items as ints.
    """

    data: Any
    lines: dict[tuple[Any, ...], int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases, deep nesting and duplicate keys."""

    def __init__(self, text: str, source: str, error: type[UserInputError]) -> None:
        super().__init__(text)
        self.source, self.error = source, error
        self.depth = 0
        self.path: list[Any] = []
        self.lines: dict[tuple[Any, ...], int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node, refusing an anchor or alias and nesting past `MAX_DEPTH`."""
        event = self.peek_event()
        if event.anchor is not None:
            name = ("*" if isinstance(event, AliasEvent) else "&") + event.anchor[:40]
            self.fail(
                event.start_mark, f"anchors and aliases ({name}) are not allowed; write it out"
            )
        if self.depth >= MAX_DEPTH:
            self.fail(event.start_mark, f"the document nests deeper than {MAX_DEPTH} levels")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        """Construct a value; Python's ValueError (a 13th month, a huge int) names the line."""
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:
            # What follows a ';' in Python's message is advice for programmers.
            reason = str(exc).partition(";")[0]
            self.fail(node.start_mark, f"cannot read {str(node.value)[:40]!r} ({reason})")

    def construct_undefined(self, node: Any) -> NoReturn:
        """Refuse a tag SafeLoader does not know, such as ``!!python/object/apply``."""
        tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")[:60]
        self.fail(node.start_mark, f"the tag {tag} is not allowed; only plain data is read")

    def construct_sequence(self, node: Any, deep: bool = False) -> list[Any]:
        """Construct a list depth first, so that `path` is on the item being built."""
        items = []
        for index, child in enumerate(node.value):
            self.path.append(index)
            items.append(self.construct_object(child, deep=True))
            self.path.pop()
        return items

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        """Construct a mapping depth first, refusing a key twice and recording key lines."""
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                self.fail(key_node.start_mark, "found an unhashable key (a list or mapping)")
            path = (*self.path, key)
            if key in mapping:
                twice = f"the key {'.'.join(map(str, path))!r} appears twice"
                self.fail(key_node.start_mark, f"{twice} (first on line {self.lines[path]})")
            self.lines[path] = key_node.start_mark.line + 1
            self.path.append(key)
            mapping[key] = self.construct_object(value_node, deep=True)
            self.path.pop()
        return mapping

    def fail(self, mark: Any, problem: str) -> NoReturn:
        """Raise the caller's error class, naming the file, line and column of `mark`."""
        where = f"{self.source}, line {mark.line + 1}, column {mark.column + 1}"
        raise self.error(f"{where}: {problem}.\n{mark.get_snippet() or ''}".rstrip())


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes what `_Loader` would read as a float, such as ``'1e-3'``."""


# SafeLoader registered its own construct_undefined by value; point the registry at ours.
_Loader.add_constructor(None, _Loader.construct_undefined)
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load_yaml(path: Path, error: type[UserInputError] = ConfigError) -> YamlDocument:
    """Read a YAML file whose top level is a mapping, safely and within `MAX_BYTES`.

    Args:
        path: the file, UTF-8 (read by `t2m_cli.textio.decode_text`).
        error: the error class to raise: `ConfigError` for a config, `DataError` for data.

    Returns:
        The mapping (``{}`` for an empty file) and the line of each key.

    Raises:
        UserInputError: of class `error`, naming the file (and the line where there is one):
            the file is missing, unreadable or over `MAX_BYTES`, its text is refused by
            `decode_text`, or as for `parse_yaml`, or its top level is not a mapping.
    """
    raw = read_bytes(
        path, str(path), error, MAX_BYTES, kind="YAML file", limit=f"{MAX_BYTES >> 20} MiB"
    )
    document = parse_yaml(decode_text(raw, str(path), error), str(path), error)
    if document.data is None:
        return YamlDocument({}, {})
    if not isinstance(document.data, dict):
        raise error(
            f"{path} must hold a mapping (key: value lines) at the top level, not "
            f"{str(document.data)[:40]!r}."
        )
    # An escape in a quoted scalar ("\a") makes a control character the raw text did not have.
    check_strings(document.data, str(path), error, lines=document.lines)
    return document


def parse_yaml(text: str, source: str, error: type[UserInputError] = ConfigError) -> YamlDocument:
    """Parse one YAML document of any kind (a mapping, a list, a number, ...) safely.

    Args:
        text: the document.
        source: where it came from, for error messages.
        error: the error class to raise.

    Returns:
        The value (None for an empty document) and the line of each mapping key.

    Raises:
        UserInputError: of class `error`, naming `source`, the line and column: the text is not
            valid YAML (or holds several documents), uses an anchor, an alias or a tag
            SafeLoader does not know, repeats a key, or nests deeper than `MAX_DEPTH`.
    """
    try:
        loader = _Loader(text, source, error)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise error(
            f"{source}, line {line}, column {column}: the character "
            f"#x{exc.character:04x} is not allowed in YAML; remove it."
        ) from None
    try:
        return YamlDocument(loader.get_single_data(), loader.lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = "; ".join(part for part in (exc.context, exc.problem) if part)[:200]
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        snippet = f"\n{mark.get_snippet()}" if mark and mark.get_snippet() else ""
        raise error(f"{source} is not valid YAML{where}: {problem}.{snippet}") from None
    finally:
        loader.dispose()


def has_comment(text: str) -> bool:
    """Whether YAML would read part of ``text`` as a comment and drop it.

    A ``#`` starts a comment at the start of the text or after whitespace, unless it is inside
    a quoted string (``"my #1"`` keeps it). Text that is not valid YAML around such a ``#`` (an
    unclosed quote) counts as commented too.
    """
    marks = [found.end() - 1 for found in _COMMENT.finditer(text)]
    if not marks:
        return False
    try:
        spans = [(t.start_mark.index, t.end_mark.index) for t in yaml.scan(text, yaml.SafeLoader)]
    except yaml.YAMLError:
        return True
    # The scanner skips comments: a '#' that no token covers starts one.
    return any(not any(start <= mark < end for start, end in spans) for mark in marks)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Render plain data as block-style YAML, keeping key order.

    Args:
        data: dicts, lists, strings, numbers, booleans and None, e.g. ``model_dump(mode="json")``.

    Returns:
        YAML text that `load_yaml` reads back to equal data (non-ASCII text escaped).
    """
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False)


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as YAML atomically: a temporary file in the same folder, then `os.replace`.

    Args:
        path: the target file.
        data: as for `dump_yaml`.

    Raises:
        RunFailure: the file could not be written.
    """
    # Render first, so a value YAML cannot represent fails before anything touches the disk.
    write_text(Path(path), dump_yaml(data))
