"""Config text: ``section.key=value`` overrides applied to a config mapping, and pydantic's
validation errors turned into messages that name the dotted key, its line and a suggestion.

`t2m_cli.config` holds the config's models and uses these to load one.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from t2m_cli.errors import ConfigError
from t2m_cli.textio import check_text
from t2m_cli.yamlio import parse_yaml

_MAX_ERRORS = 20
# Input values in messages: a few levels, a few dozen characters.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60


def apply_overrides(
    data: Mapping[str, Any],
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply ``section.key=value`` tokens, then typed values, to a config dict; a new dict.

    A token's value is read as YAML, as a user typing it means: ``3`` an int, ``0.5`` a float,
    ``true`` a bool, ``[a, b]`` a list, an empty value the empty string. `values` are set as
    they are, with no YAML in between. Missing mappings along a key are created, later settings
    win, and `data` is left untouched.

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
        value = parse_yaml(text, f"The value of override {key!r}").data if text.strip() else ""
        _set(result, key, value)
    for key, value in (values or {}).items():
        if isinstance(value, str):
            check_text(value, f"The value of {key}", ConfigError)
        _set(result, key, value)
    return result


def format_validation_error(
    exc: ValidationError,
    source: str,
    model: type[BaseModel] | None = None,
    lines: Mapping[tuple[Any, ...], int | None] | None = None,
) -> str:
    """Describe a pydantic validation error, a line per error naming the dotted key.

    An unknown key suggests the closest allowed key of `model` at its level (or lists them).
    With `lines`, an error names the line of its key, or else of the closest enclosing key
    listed (a missing key: its section's line). Input values are shown truncated.

    Args:
        exc: the error from validating the config.
        source: where the config came from, for the first and last lines.
        model: the model that was validated, to suggest allowed keys.
        lines: the line of each key path in the file (from `load_yaml`); None for a key set
            elsewhere (an override), which then shows no line.

    Returns:
        The message, ready for a `ConfigError`.
    """
    errors = exc.errors(include_url=False)
    known = lines or {}
    out = [f"Invalid config in {source} ({len(errors)} error{'s' * (len(errors) != 1)}):"]
    for error in errors[:_MAX_ERRORS]:
        loc = tuple(error["loc"])
        where = _dotted(loc) or "(top level)"
        found = [known[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in known]
        if found and found[0] is not None:
            where += f" (line {found[0]})"
        if error["type"] == "extra_forbidden":
            message = f"unknown key {_dotted(loc)!r}" + (_suggest(model, loc) if model else "")
        else:
            message = error["msg"][:300]
            if error["type"] != "missing" and loc:
                message += f" (got {_REPR.repr(error['input'])[:80]})"
        out.append(f"  {where}: {message}")
    if len(errors) > _MAX_ERRORS:
        out.append(f"  ... and {len(errors) - _MAX_ERRORS} more")
    out.append(f"Fix these keys in {source} or override them with section.key=value.")
    return "\n".join(out)


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
