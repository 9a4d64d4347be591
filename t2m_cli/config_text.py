"""Config text: ``section.key=value`` overrides applied to a config mapping, and pydantic's
validation errors turned into messages that name the dotted key, its line and a suggestion.

`t2m_cli.config` holds the config's models and uses these to load one.
"""

from __future__ import annotations

import datetime
import difflib
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from t2m_cli.errors import ConfigError
from t2m_cli.textio import check_text
from t2m_cli.yamlio import has_comment, parse_yaml

_MAX_ERRORS = 20
# Input values in messages: a few levels, a few dozen characters.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60
# What YAML makes of an unquoted override value that a text key then refuses.
_READ_AS = {bool: "boolean", int: "number", float: "number", datetime.date: "date"}


@dataclass(frozen=True)
class Setting:
    """A config key set on the command line, so that a message names it as the user typed it.

    Attributes:
        shown: the setting as typed: ``train.lr=1``, ``--set eval.draws=0``, or a flag such as
            ``--device``.
        text: the value's text where it was read as YAML (an override token), else None.
    """

    shown: str
    text: str | None = None


def command_line_settings(
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
    option: str | None = None,
    flags: Mapping[str, str] | None = None,
) -> dict[tuple[str, ...], Setting]:
    """Where each key set by `apply_overrides` came from, keyed by its path (later ones win).

    Args:
        overrides: the ``section.key=value`` tokens, as given to `apply_overrides`.
        values: the typed values, as given to `apply_overrides`.
        option: the option each token follows (``--set``); None for positional tokens.
        flags: the option that set each key of `values` (``{"train.device": "--device"}``).

    Returns:
        A `Setting` per key path, for `format_validation_error`.
    """
    found: dict[tuple[str, ...], Setting] = {}
    for token in overrides:
        key, _, text = token.partition("=")
        found[tuple(key.strip().split("."))] = Setting(
            f"{option} {token}" if option else token, text
        )
    for key in values or {}:
        found[tuple(key.split("."))] = Setting(
            (flags or {}).get(key, f"{key}, as set by the command")
        )
    return found


def override_keys(overrides: Iterable[str]) -> set[str]:
    """The dotted keys that ``section.key=value`` tokens set, as `apply_overrides` reads them."""
    return {token.partition("=")[0].strip() for token in overrides}


def apply_overrides(
    data: Mapping[str, Any],
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply ``section.key=value`` tokens, then typed values, to a config dict; a new dict.

    A token's value is read as YAML, as a user typing it means: ``3`` an int, ``0.5`` a float,
    ``true`` a bool, ``[a, b]`` a list, an empty value the empty string. A value that YAML would
    cut at a comment (a ``#`` at its start or after whitespace, outside quotes) is taken whole
    as a string: ``run.dir=my runs #1`` is that folder. `values` are set as they are, with no
    YAML in between. Missing mappings along a key are created, later settings win, and `data`
    is left untouched.

    Args:
        data: the config as loaded.
        overrides: tokens such as ``train.lr=0.01``.
        values: dotted keys and Python values, e.g. ``{"run.name": "007"}``.

    Returns:
        The config with the settings applied.

    Raises:
        ConfigError: a token has no ``=`` or a value that is not valid YAML, or a key has an
            empty segment or descends into a value that is not a mapping.
    """
    result = dict(data)
    for token in overrides:
        # The command line follows the rule of every other text input (`t2m_cli.textio`).
        check_text(token, f"The override {token[:60]!r}", ConfigError)
        key, sep, text = token.partition("=")
        if not sep:
            raise ConfigError(
                f"Override {token!r} has no '='; write it as section.key=value, "
                "for example train.lr=0.01."
            )
        key = key.strip()
        if not text.strip():
            value: Any = ""
        elif has_comment(text):
            # A shell hands `#` on as text: a command line holds no comment to drop.
            value = text.strip()
        else:
            value = parse_yaml(text, f"The value of override {key!r}").data
        _set(result, key, value)
    for key, value in (values or {}).items():
        if isinstance(value, str):
            check_text(value, f"The value of {key}", ConfigError)
        _set(result, key, value)
    return result


def format_validation_error(
    exc: ValidationError,
    source: str | None,
    model: type[BaseModel] | None = None,
    lines: Mapping[tuple[Any, ...], int | None] | None = None,
    *,
    settings: Mapping[tuple[str, ...], Setting] | None = None,
    override_form: str | None = None,
) -> str:
    """Describe a pydantic validation error, a line per error naming the dotted key and where
    its value came from: the file and line, or the setting on the command line.

    An unknown key suggests the closest allowed key of `model` at its level (or lists them). An
    error names the origin of its key, or else of the closest enclosing key that has one (a
    missing key: its section's line). A text key given a number, a boolean or a date by an
    override token says how to quote it. Input values are shown truncated. The last line says
    where to fix them: the file (or `override_form`), the command line, or both.

    Args:
        exc: the error from validating the config.
        source: the file the config was read from (or a description of it); None for none.
        model: the model that was validated, to suggest allowed keys.
        lines: the line of each key path in `source` (from `load_yaml`); None for a key whose
            line is unknown, which then shows none.
        settings: the keys set on the command line (`command_line_settings`); they take
            precedence over `lines`.
        override_form: how the command takes settings (``section.key=value``), offered in the
            advice for keys of the file; None where it takes none.

    Returns:
        The message, ready for a `ConfigError`.
    """
    errors = exc.errors(include_url=False)
    known = lines or {}
    given = settings or {}
    in_file, on_command_line, across = False, [], False
    out = []
    for error in errors[:_MAX_ERRORS]:
        loc = tuple(error["loc"])
        origin = _origin(loc, known, given)
        here = [origin] if isinstance(origin, Setting) else []
        if loc:
            # A check over a section (feature_dim against global_dim) also answers to the keys
            # under it that the command line set.
            here += [s for k, s in given.items() if len(k) > len(loc) and k[: len(loc)] == loc]
        places = [s.shown for s in here]
        if isinstance(origin, int):
            places.insert(0, f"{source}, line {origin}" if source else f"line {origin}")
        where = _dotted(loc) or "(top level)"
        if places:
            where += f" ({'; '.join(places)})"
        across |= not loc
        in_file |= isinstance(origin, int) or (bool(loc) and not here and source is not None)
        on_command_line += [s for s in here if s not in on_command_line]
        if error["type"] == "extra_forbidden":
            message = f"unknown key {_dotted(loc)!r}" + (_suggest(model, loc) if model else "")
        else:
            message = error["msg"][:300]
            if error["type"] != "missing" and loc:
                message += f" (got {_REPR.repr(error['input'])[:80]})"
            message += _quoting_hint(error, loc, origin)
        out.append(f"  {where}: {message}")
    if len(errors) > _MAX_ERRORS:
        out.append(f"  ... and {len(errors) - _MAX_ERRORS} more")
    # A check across sections (model.hn_type against train.classes_per_task) may answer to
    # either place.
    in_file |= across and source is not None
    command_line = bool(on_command_line) or (across and bool(given))
    count = f"({len(errors)} error{'s' * (len(errors) != 1)})"
    if in_file:
        both = " and on the command line" if command_line else ""
        out.insert(0, f"Invalid config in {source}{both} {count}:")
    elif command_line:
        out.insert(0, f"Invalid settings on the command line {count}:")
    else:
        out.insert(0, f"Invalid config {count}:")
    out.append(_advice(source if in_file else None, on_command_line, command_line, override_form))
    return "\n".join(out)


def _origin(
    loc: tuple[Any, ...],
    lines: Mapping[tuple[Any, ...], int | None],
    settings: Mapping[tuple[str, ...], Setting],
) -> Setting | int | None:
    """The setting or file line of `loc`'s closest key that has one; None if none has."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in settings:
            return settings[loc[:n]]
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _quoting_hint(error: Any, loc: tuple[Any, ...], origin: Setting | int | None) -> str:
    """How to keep an override's value text, where YAML read it as something else."""
    if error["type"] != "string_type" or not isinstance(origin, Setting) or origin.text is None:
        return ""
    kind = next((k for t, k in _READ_AS.items() if isinstance(error["input"], t)), None)
    key = _dotted(loc)
    if kind is None or not origin.shown.endswith(f"{key}={origin.text}"):
        return ""
    text = origin.text.strip()
    quoted = origin.shown.removesuffix(f"{key}={origin.text}") + f"'{key}=\"{text}\"'"
    return (
        f"; an override's value is read as YAML, where {text} is a {kind}: to keep it text, "
        f"write {quoted}"
    )


def _advice(
    source: str | None,
    settings: list[Setting],
    command_line: bool,
    override_form: str | None,
) -> str:
    """The closing line: fix the keys in the file, the settings on the command line, or both."""
    parts = []
    if source is not None:
        instead = f", or override them with {override_form}" if override_form else ""
        parts.append(f"these keys in {source}" + ("" if command_line else instead))
    if command_line:
        shown = [s.shown for s in settings[:3]] + (["..."] if len(settings) > 3 else [])
        named = ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else "".join(shown)
        written = not settings or any(s.text is not None for s in settings)
        form = f" (written as {override_form})" if override_form and written else ""
        parts.append(f"{named or 'the settings'} on the command line{form}")
    return f"Fix {', and '.join(parts)}." if parts else "Fix these keys."


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted `key` in `data`, copying each mapping on the way (the input stays as is)."""
    segments = key.split(".")
    if not all(segments):
        raise ConfigError(
            f"{key!r} has an empty key or key segment; write section.key with names between "
            "single dots, for example train.lr=0.01."
        )
    node = data
    for depth, segment in enumerate(segments[:-1], start=1):
        child = node.get(segment, {})
        if not isinstance(child, Mapping):
            raise ConfigError(
                f"Cannot set {key!r}: {'.'.join(segments[:depth])!r} is {_REPR.repr(child)}, "
                "not a mapping. Set the key above it, or fix the key."
            )
        child = node[segment] = dict(child)
        node = child
    node[segments[-1]] = value


def _suggest(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """``; did you mean 'train.lr'?``, or the allowed keys at `loc`'s level, or nothing."""
    here: Any = model
    for part in loc[:-1]:
        field = here.model_fields.get(part) if isinstance(part, str) else None
        here = field.annotation if field is not None else None
        if not (isinstance(here, type) and issubclass(here, BaseModel)):
            return ""
    allowed = list(here.model_fields)
    match = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if match:
        return f"; did you mean {_dotted((*loc[:-1], match[0]))!r}?"
    return f"; allowed keys here: {', '.join(allowed)}" if len(allowed) <= 12 else ""


def _dotted(loc: Iterable[Any]) -> str:
    """``train.tags[0]``: dots between keys, list indices in brackets."""
    out = ""
    for part in loc:
        out += f"[{part}]" if type(part) is int else f".{part}" if out else str(part)
    return out
