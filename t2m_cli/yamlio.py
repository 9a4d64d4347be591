"""YAML in and out for configs: safe, bounded loading, dotted overrides, readable errors.

Configs are user input and are often copied from elsewhere, so reading one must neither run code
nor let a small file grow into a huge object. The loader is a `yaml.SafeLoader` (no Python tags)
with limits checked while the document is composed, before any Python object exists:

- at most `MAX_INPUT_BYTES` of text;
- at most `MAX_ALIASES` alias uses (``*name``);
- at most `MAX_NODES` values and `MAX_EXPANDED_CHARS` characters of scalar text *as if every
  alias were written out*, which stops a "billion laughs" (aliases of aliases, exponential) and
  a "quadratic blowup" (one big value aliased many times) after a handful of aliases;
- at most `MAX_DEPTH` levels of nesting, so composing never overflows Python's stack.

PyYAML itself shares aliased objects rather than copying them, so loading such a document would
be cheap; the danger is whatever walks it next (pydantic, `repr`, dumping the resolved config).

The loader also rejects duplicate keys (PyYAML keeps the last one silently) and reads exponents
without a dot (``lr: 3e-4``) as floats, as YAML 1.2 does; PyYAML alone reads them as strings.
"""

from __future__ import annotations

import datetime
import difflib
import re
import reprlib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pydantic
import yaml
from yaml.events import AliasEvent
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode

from t2m_cli.atomic import write_text
from t2m_cli.errors import ConfigError

MAX_INPUT_BYTES = 1 << 20
MAX_ALIASES = 100
MAX_NODES = 100_000
MAX_EXPANDED_CHARS = 4 * MAX_INPUT_BYTES
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2 floats that PyYAML's 1.1 resolver misses: an exponent without a dot or a sign.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_EXPONENT_FLOAT_FIRST = list("-+0123456789.")

_MAX_LISTED_ERRORS = 20
_MAX_LISTED_KEYS = 12
_REPR_CHARS = 80


class _Loader(yaml.SafeLoader):
    """SafeLoader that enforces the module's limits and rejects duplicate keys while composing."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self._source = source
        self._aliases = 0
        self._nodes = 0
        self._chars = 0
        self._depth = 0
        self._path: list[str] = []
        # (values, scalar characters) of each node with its aliases written out.
        self._weights: dict[Node, tuple[int, int]] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        """Compose one node, charging its expanded size against the limits."""
        segment = _segment(index)
        if segment is not None:
            self._path.append(segment)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                self._fail(
                    self.peek_event().start_mark,
                    f"the document nests deeper than {MAX_DEPTH} levels. "
                    "Flatten the structure; a config needs a few levels.",
                )
            if self.check_event(AliasEvent):
                self._charge_alias()
                return super().compose_node(parent, index)
            node = super().compose_node(parent, index)
            self._charge_new(node)
            return node
        finally:
            self._depth -= 1
            if segment is not None:
                self._path.pop()

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        """Compose a mapping and refuse a key that appears twice in it."""
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, ScalarNode] = {}
        for key_node, _ in node.value:
            # Merge keys (<<) may repeat and may be overridden by design; keys with an unknown tag
            # fail with a clearer message when they are constructed.
            if (
                not isinstance(key_node, ScalarNode)
                or key_node.tag == _MERGE_TAG
                or key_node.tag not in self.yaml_constructors
            ):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                first = seen[key].start_mark.line + 1
                self._fail(
                    key_node.start_mark,
                    f"the key {_dotted([*self._path, _shorten(str(key), 40)])!r} appears twice "
                    f"in one mapping (first on line {first}); YAML would silently keep the last "
                    "value. Remove one of them.",
                    under_key=False,
                )
            seen[key] = key_node
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """Construct a value, turning Python's own ValueErrors into located config errors."""
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:
            # Out-of-range dates and integers past Python's 4300-digit limit land here; what
            # follows a ';' in Python's message is advice for programmers.
            text = node.value if isinstance(node, ScalarNode) else ""
            reason = _shorten(str(exc).partition(";")[0], 100)
            self._fail(
                node.start_mark,
                f"cannot read {_shorten(text, 40)!r} as {_tag_name(node.tag)} ({reason}). "
                "Fix the value",
            )

    def construct_undefined(self, node: Node) -> Any:
        """Refuse any tag SafeLoader does not know, e.g. ``!!python/object/apply``."""
        self._fail(
            node.start_mark,
            f"the tag {_shorten(_tag_name(node.tag), 80)!r} is not allowed; a config holds only "
            "plain data (mappings, lists, strings, numbers, booleans, null). Remove the tag",
        )

    def _charge_alias(self) -> None:
        event = self.peek_event()
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # PyYAML reports the undefined alias itself.
        self._aliases += 1
        name = _shorten(event.anchor, 40)
        if self._aliases > MAX_ALIASES:
            self._fail(
                event.start_mark,
                f"the document uses more than {MAX_ALIASES} aliases (here *{name}). "
                "Write the values out; a config needs few anchors.",
            )
        weight = self._weights.get(target)
        if weight is None:
            self._fail(
                event.start_mark,
                f"the alias *{name} refers to a value that contains it; "
                "a config cannot be recursive. Remove the alias.",
            )
        self._add(weight, event.start_mark)

    def _charge_new(self, node: Node) -> None:
        if isinstance(node, ScalarNode):
            weight = (1, len(node.value))
            self._add(weight, node.start_mark)
        else:
            children: Iterable[Node] = (
                (item for pair in node.value for item in pair)
                if isinstance(node, MappingNode)
                else node.value
            )
            values, chars = 1, 0
            for child in children:
                child_values, child_chars = self._weights[child]
                values += child_values
                chars += child_chars
            weight = (values, chars)
            # The children were charged as they were composed; only the node itself is new.
            self._add((1, 0), node.start_mark)
        self._weights[node] = weight

    def _add(self, weight: tuple[int, int], mark: yaml.Mark) -> None:
        self._nodes += weight[0]
        self._chars += weight[1]
        if self._nodes > MAX_NODES:
            self._fail(
                mark,
                f"the document expands to more than {MAX_NODES} values when its aliases are "
                "written out (aliases of aliases multiply, as in a 'billion laughs' attack). "
                "Write the values out instead of nesting aliases.",
            )
        if self._chars > MAX_EXPANDED_CHARS:
            self._fail(
                mark,
                f"the document expands to more than {MAX_EXPANDED_CHARS >> 20} MiB of text when "
                "its aliases are written out. Alias a large value at most a few times.",
            )

    def _fail(self, mark: yaml.Mark, problem: str, under_key: bool = True) -> typing.NoReturn:
        key = _dotted(self._path) if under_key else ""
        raise ConfigError(_located(self._source, mark, problem, key))


# SafeLoader registered its own construct_undefined by value; point the registry at ours.
_Loader.add_constructor(None, _Loader.construct_undefined)


class _Dumper(yaml.SafeDumper):
    """SafeDumper whose resolver matches `_Loader`, so it quotes strings such as ``'1e-3'``."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        """Double-quote strings holding a Unicode line break, so they read back unchanged."""
        # With allow_unicode PyYAML writes NEL, LS and PS raw, as line breaks of a plain or
        # single-quoted scalar, and reading folds or drops them; double quotes escape them.
        style = '"' if any(ch in data for ch in "\x85\u2028\u2029") else None
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _Dumper.represent_str)
_Loader.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, _EXPONENT_FLOAT_FIRST)
_Dumper.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, _EXPONENT_FLOAT_FIRST)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, safely and within the module's limits.

    Args:
        path: the YAML file (UTF-8, an optional BOM is accepted).

    Returns:
        The top-level mapping; an empty file (or one holding only comments or ``null``) gives
        ``{}``.

    Raises:
        ConfigError: the file is missing or unreadable, too large, not UTF-8, not valid YAML,
            over a limit, has a duplicate key or an unsafe tag, or is not a mapping at the top.
    """
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"Config file {source} does not exist; check the path.") from None
    except IsADirectoryError:
        raise ConfigError(f"{source} is a folder; give the path of a YAML config file.") from None
    except OSError as exc:
        raise ConfigError(
            f"Config file {source} cannot be read ({exc.strerror or exc}); check its permissions."
        ) from exc
    if len(raw) > MAX_INPUT_BYTES:
        raise ConfigError(_too_large(source))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{source}, line {line}, column {column}: the file is not UTF-8 (byte "
            f"0x{raw[exc.start]:02x}). Save it as UTF-8."
        ) from None
    return loads_yaml(text, source)


def loads_yaml(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse YAML text into a dict, safely and within the module's limits.

    Args:
        text: the YAML document.
        source: name of where the text came from, used in error messages.

    Returns:
        The top-level mapping; an empty document gives ``{}``.

    Raises:
        ConfigError: as for `load_yaml`, less the file errors.
    """
    data = _parse(text, source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source} must hold a mapping of sections at the top level (like 'train:' with "
            f"'lr: 0.01' indented below it), but it holds {_kind(data)}."
        )
    return data


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a config dict, returning a new dict.

    The value is read as a YAML scalar or flow value with the same safe loader as the file:
    ``3`` is an int, ``0.5`` and ``3e-4`` floats, ``true`` a bool, ``null`` None, ``[a, b]`` a
    list, ``{a: 1}`` a mapping, anything else a string. An empty value (``train.name=``) is the
    empty string. Missing mappings along the key are created; later overrides win.

    The input is not modified: every mapping along an overridden key is copied (which also keeps
    a YAML alias from carrying the change elsewhere); untouched branches are shared with `data`.

    Args:
        data: the config as loaded, e.g. by `load_yaml`.
        overrides: tokens such as ``train.lr=0.01`` or ``train.tags=[a,b]``.

    Returns:
        The config with the overrides applied.

    Raises:
        ConfigError: a token has no ``=``, an empty key segment, a value that is not valid YAML,
            or a key that descends into a value that is not a mapping.
    """
    result = dict(data)
    for token in overrides:
        key, sep, text = token.partition("=")
        key = key.strip()
        shown = _shorten(token, 80)
        if not sep:
            raise ConfigError(
                f"Override {shown!r} has no '='; write it as section.key=value, "
                "for example train.lr=0.01."
            )
        segments = key.split(".")
        if not all(segments):
            raise ConfigError(
                f"Override {shown!r} has an empty key or key segment; write it as "
                "section.key=value with names between single dots, for example train.lr=0.01."
            )
        source = f"The value of override {_shorten(key, 80)!r}"
        value = _parse(text, source, flow_only=True) if text.strip() else ""
        node = result
        for depth, segment in enumerate(segments[:-1], start=1):
            child = node.get(segment, {})
            if not isinstance(child, Mapping):
                prefix = ".".join(segments[:depth])
                raise ConfigError(
                    f"Override {shown!r} cannot set {key!r}: {prefix!r} is {_kind(child)} "
                    f"({_short_repr(child)}), not a mapping. Override {prefix} itself or fix the "
                    "key."
                )
            child = dict(child)
            node[segment] = child
            node = child
        node[segments[-1]] = value
    return result


def format_validation_error(
    exc: pydantic.ValidationError,
    source: str,
    model: type[pydantic.BaseModel] | None = None,
) -> str:
    """Describe a pydantic validation error as one paragraph naming each dotted key.

    Each error becomes a line ``dotted.key: message``, list items shown as ``key[i]``. An unknown
    key (``extra_forbidden``) reads ``unknown key 'train.lrr'`` and, given `model`, suggests the
    closest allowed key at that level or lists them. Input values are shown truncated, so a huge
    input cannot make a huge message.

    Args:
        exc: the error from validating the config.
        source: where the config came from (a file name), for the first line.
        model: the model that was validated, to look up allowed keys for suggestions.

    Returns:
        The message, ready for a `ConfigError`.
    """
    errors = exc.errors(include_url=False)
    count = len(errors)
    lines = [f"Invalid config in {source} ({count} error{'' if count == 1 else 's'}):"]
    for error in errors[:_MAX_LISTED_ERRORS]:
        loc = tuple(error["loc"])
        key = _dotted(_segment(part) for part in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = f"unknown key {key!r}"
            if model is not None and loc and isinstance(loc[-1], str):
                message += _key_hint(model, loc)
        else:
            message = _shorten(error["msg"], 300)
            if error["type"] != "missing" and "input" in error:
                message += f" (got {_short_repr(error['input'])})"
        lines.append(f"  {key}: {message}")
    if count > _MAX_LISTED_ERRORS:
        lines.append(f"  ... and {count - _MAX_LISTED_ERRORS} more")
    lines.append(f"Fix these keys in {source} or override them with section.key=value.")
    return "\n".join(lines)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Render plain data as block-style YAML, keeping key order.

    Args:
        data: dicts, lists, strings, numbers, booleans and None, e.g. from
            ``model_dump(mode="json")``.

    Returns:
        YAML text that `loads_yaml` reads back to equal data.
    """
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as YAML atomically: a temporary file in the same folder, then `os.replace`.

    Readers see the old file or the new one, never a half-written one, and a failed write leaves
    no temporary file behind.

    Args:
        path: the target file; its folder must exist.
        data: as for `dump_yaml`.

    Raises:
        RunFailure: the file could not be written.
    """
    # Render first, so a value YAML cannot represent fails before anything touches the disk.
    write_text(Path(path), dump_yaml(data))


def _parse(text: str, source: str, flow_only: bool = False) -> Any:
    """Compose and construct one YAML document with `_Loader`; None for an empty document.

    Args:
        text: the document.
        source: name for error messages.
        flow_only: refuse a block mapping or list at the top (for override values, where
            ``a: b`` is far more likely a string the user forgot to quote).
    """
    # Characters never outnumber UTF-8 bytes, so the cheap check settles most cases.
    if len(text) > MAX_INPUT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise ConfigError(_too_large(source))
    try:
        loader = _Loader(text, source)
    except yaml.reader.ReaderError as exc:
        raise ConfigError(_reader_message(exc, text, source)) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if flow_only and isinstance(node, CollectionNode) and not node.flow_style:
            kind = "mapping" if isinstance(node, MappingNode) else "list"
            raise ConfigError(
                f"{source} is a block-style YAML {kind}. Quote it to pass a string (in a shell: "
                "'train.note=\"a: b\"'), or write it in flow style: [a, b] or {a: 1}."
            )
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        problem = "; ".join(part for part in (exc.context, exc.problem) if part)
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            _located(source, mark, _shorten(problem, 200) + ". Fix the YAML there")
        ) from exc
    finally:
        loader.dispose()


def _located(source: str, mark: yaml.Mark | None, problem: str, key: str = "") -> str:
    """An error message with the place, the problem and an excerpt of the offending line."""
    if mark is None:
        return f"{source}: {problem}."
    where = f"{source}, line {mark.line + 1}, column {mark.column + 1}"
    if key:
        where += f" (under {_shorten(key, 80)!r})"
    message = f"{where}: {problem.rstrip('.')}."
    # get_snippet shows at most ~75 characters around the mark, however long the line.
    snippet = mark.get_snippet()
    return f"{message}\n{snippet}" if snippet else message


def _reader_message(exc: yaml.reader.ReaderError, text: str, source: str) -> str:
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    return (
        f"{source}, line {line}, column {column}: the character #x{exc.character:04x} is not "
        "allowed in YAML. Remove it or write it as an escape in a double-quoted string."
    )


def _too_large(source: str) -> str:
    return (
        f"{source} is larger than {MAX_INPUT_BYTES >> 20} MiB, too large for a config; keep big "
        "data (descriptions, embeddings) in files of their own and give their paths."
    )


def _segment(index: Any) -> str | None:
    """A path segment from a YAML key node, a list index or a pydantic ``loc`` entry."""
    if index is None:
        return None
    if isinstance(index, int):
        return f"[{index}]"
    if isinstance(index, ScalarNode):
        return _shorten(index.value, 40)
    if isinstance(index, Node):
        return "<complex key>"
    return _shorten(str(index), 40)


def _dotted(segments: Iterable[str | None]) -> str:
    """Join path segments as ``train.tags[0]``: dots between names, none before an index."""
    out = ""
    for segment in segments:
        if segment is None:
            continue
        out += segment if not out or segment.startswith("[") else f".{segment}"
    return out


def _key_hint(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> str:
    """``; did you mean 'train.lr'?`` or the allowed keys at `loc`'s level, or nothing."""
    allowed = sorted(_allowed_keys(model, loc[:-1]))
    if not allowed:
        return ""
    match = difflib.get_close_matches(loc[-1], allowed, n=1)
    if match:
        return f"; did you mean {_dotted([*(_segment(p) for p in loc[:-1]), match[0]])!r}?"
    if len(allowed) <= _MAX_LISTED_KEYS:
        return f"; allowed keys here: {', '.join(allowed)}"
    return ""


def _allowed_keys(model: type[pydantic.BaseModel], prefix: Sequence[Any]) -> set[str]:
    """Field names (or aliases) of the model(s) reached by following `prefix` from `model`.

    A segment that leads nowhere is skipped rather than ending the walk: pydantic puts union
    member names and discriminator tags into ``loc``, and the fields after them still apply.
    """
    types_here: list[Any] = [model]
    for segment in prefix:
        following = [t for ann in types_here for t in _step(ann, segment)]
        types_here = following or types_here
    return {
        field.alias or name
        for ann in types_here
        for member in _union_members(ann)
        if _is_model(member)
        for name, field in member.model_fields.items()
    }


def _step(annotation: Any, segment: Any) -> list[Any]:
    """The annotations one ``loc`` segment leads to from `annotation`."""
    out: list[Any] = []
    for member in _union_members(annotation):
        origin = typing.get_origin(member)
        args = typing.get_args(member)
        if _is_model(member) and isinstance(segment, str):
            out += [
                field.annotation
                for name, field in member.model_fields.items()
                if segment in (name, field.alias)
            ]
        elif (
            isinstance(segment, int) and args and origin in (list, tuple, set, frozenset, Sequence)
        ):
            out.append(args[0])
        elif isinstance(segment, str) and len(args) == 2 and origin in (dict, Mapping):
            out.append(args[1])
    return out


def _union_members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _union_members(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(annotation) for m in _union_members(arg)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    # Python 3.10 calls list[int] a type, and issubclass then raises; rule generics out first.
    return (
        typing.get_origin(annotation) is None
        and isinstance(annotation, type)
        and issubclass(annotation, pydantic.BaseModel)
    )


class _BoundedRepr(reprlib.Repr):
    """`reprlib.Repr` that never calls `repr` on an object whose size it cannot bound."""

    _SMALL = (float, bool, type(None), complex, datetime.date, datetime.time, datetime.timedelta)

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 60

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # Python refuses to print ints over 4300 digits.
            return "<int with thousands of digits>"

    def repr_instance(self, x: object, level: int) -> str:
        return repr(x) if isinstance(x, self._SMALL) else f"<{type(x).__name__}>"


_BOUNDED_REPR = _BoundedRepr()


def _short_repr(value: Any) -> str:
    return _shorten(_BOUNDED_REPR.repr(value), _REPR_CHARS)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """How a value reads in YAML terms: 'a list', 'a number', ..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _tag_name(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!", 1)
