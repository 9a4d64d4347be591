"""The one rule for decoding text t2m reads: files, stdin, and the strings inside pickles.

Descriptions files and stdin, YAML, JSON, OFF meshes and the names and texts in the original
pickles all pass through here, so the same bytes get the same answer wherever they are read:

- a leading UTF-8 byte order mark (what editors call "UTF-8 with BOM") is skipped; elsewhere
  it is refused, as it is invisible and would become part of a name (two files joined with
  ``cat`` leave one at the join);
- UTF-16 and UTF-32 (a byte order mark FF FE / FE FF, or NUL bytes between the characters) are
  refused: read as UTF-8 they would become names full of NUL characters;
- bytes that are not UTF-8 are refused, naming the line and column;
- control characters other than tab, newline and carriage return are refused, naming the line
  and column: a terminal does not show them, yet they would end up in class names and texts;
- the Unicode line and paragraph separators (U+2028, U+2029) are refused the same way: an
  editor shows a line break where t2m (which splits lines at newlines only) sees none, so two
  classes would silently become one.

Each refusal names where the text came from and says what to do; the caller picks the error
class (`DataError` for data, `ConfigError` for configs).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from t2m_cli.errors import DataError, UserInputError

_UTF8_BOM = codecs.BOM_UTF8
# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
# C0 and C1 controls and DEL, except tab, newline and carriage return; the line and paragraph
# separators; and a byte order mark, which `decode_text` has already removed from the start.
_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_SEPARATORS = {0x2028: "the line separator", 0x2029: "the paragraph separator"}
# UTF-32 first: UTF-32 text read as UTF-16 holds NUL characters, so it is never taken for it.
_WIDE_CODECS = (
    ("utf-32-le", "UTF-32"),
    ("utf-32-be", "UTF-32"),
    ("utf-16-le", "UTF-16"),
    ("utf-16-be", "UTF-16"),
)
_SNIFF_BYTES = 1024
# A key path as nested (parent, key) pairs; None is the top level.
_Link = tuple[Any, Any] | None


def decode_text(raw: bytes, source: str, error: type[UserInputError] = DataError) -> str:
    """Decode the bytes of a text file (or of stdin) by t2m's one rule (see the module).

    Args:
        raw: the bytes as read.
        source: how to name the text in messages: a path, ``"stdin"``, ``"Mesh a.off"``.
        error: the error class to raise.

    Returns:
        The text, without a leading byte order mark; line endings are left as they are.

    Raises:
        UserInputError: of class `error`, starting with `source`: the bytes are UTF-16 or
            UTF-32, are not UTF-8 (naming the line and column of the first bad byte), or hold
            a control character (naming its line and column).
    """
    wide = _wide_encoding(raw)
    if wide is not None:
        raise error(
            f"{source} is {wide} text; t2m reads UTF-8 only. Save it as UTF-8 (an editor's Save "
            f"As, or `iconv -f {wide} -t UTF-8`)."
        )
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[start : exc.start].decode("utf-8", errors="replace")) + 1
        raise error(
            f"{source}, line {line}, column {column}: byte 0x{raw[exc.start]:02x} is not UTF-8; "
            "save the file as UTF-8 (Latin-1 text: `iconv -f LATIN1 -t UTF-8`)."
        ) from None
    check_text(text, source, error, lines=True)
    return text


def check_text(
    text: str, source: str, error: type[UserInputError] = DataError, *, lines: bool = False
) -> None:
    """Refuse a control character, line or paragraph separator or byte order mark in text that
    is already decoded.

    Args:
        text: a whole text, or one string (a name, a description) taken from parsed data.
        source: how to name it in the message (``"x.pkl, the text at [1].zebra"``).
        error: the error class to raise.
        lines: name the line and column (for a whole text); otherwise the character's
            position in the string.

    Raises:
        UserInputError: of class `error`, naming `source` and where the character is.
    """
    found = _REFUSED.search(text)
    if found is None:
        return
    index = found.start()
    code = ord(found.group())
    if lines:
        line = text.count("\n", 0, index) + 1
        column = index - text.rfind("\n", 0, index)
        where = f"line {line}, column {column}"
    else:
        where = f"character {index + 1}"
    if code in _SEPARATORS:
        raise error(
            f"{source}, {where}: {_SEPARATORS[code]} U+{code:04X} is not allowed (an editor "
            "shows it as a line break, yet t2m reads it as part of the line); use a newline, "
            "or a space."
        )
    what = "a byte order mark" if code == 0xFEFF else "the control character"
    raise error(
        f"{source}, {where}: {what} U+{code:04X} is not allowed (it is invisible on screen, yet "
        "it would be read as part of the text); remove it."
    )


def check_strings(
    value: Any,
    source: str,
    error: type[UserInputError] = DataError,
    *,
    lines: Mapping[tuple[Any, ...], int] | None = None,
) -> None:
    """Apply `check_text` to every string in parsed data: keys, values, list items.

    Parsers hand back strings that were never raw text in the file: a JSON or YAML escape
    (``"\\u0007"``), or a pickled name. Only dicts, lists, tuples and sets are entered (arrays
    and tensors are not), without recursion, so deep nesting cannot overflow the stack.

    Args:
        value: the parsed data.
        source: the file, starting the message.
        error: the error class to raise.
        lines: the line of each key, by its path from the top (`YamlDocument.lines`), to name
            the line too.

    Raises:
        UserInputError: of class `error`, naming `source`, the key path (``zebra[0]``) and the
            character.
    """
    # Each entry's path is a (parent path, key) link, spelled out only for the message: copying
    # it per level would make deep nesting quadratic.
    stack: list[tuple[_Link, Any]] = [(None, value)]
    while stack:
        link, item = stack.pop()
        if isinstance(item, str):
            if _REFUSED.search(item):
                check_text(item, _where(source, link, "the text at", lines), error)
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and _REFUSED.search(key):
                    check_text(key, _where(source, link, f"the key {key!r} in", lines), error)
                stack.append(((link, key), child))
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(((link, i), child) for i, child in enumerate(item))


def _where(source: str, link: _Link, what: str, lines: Mapping[tuple[Any, ...], int] | None) -> str:
    """``"x.json, the text at zebra[0]"``, with the line of the nearest key when known."""
    parts: list[Any] = []
    while link is not None:
        link, key = link
        parts.append(key)
    path = tuple(reversed(parts))
    spelled = "".join(f"[{part}]" if type(part) is int else f".{part}" for part in path)
    spelled = spelled.removeprefix(".") or "the top level"
    line = next(
        (lines[path[:n]] for n in range(len(path), 0, -1) if lines and path[:n] in lines), None
    )
    return f"{source}{'' if line is None else f', line {line}'}, {what} {spelled}"


def read_text(
    path: Path,
    what: str = "",
    error: type[UserInputError] = DataError,
    *,
    max_bytes: int | None = None,
) -> str:
    """Read a text file by t2m's one rule (see `decode_text`).

    Args:
        path: the file.
        what: what it is, starting every message (``"Descriptions file"``); empty names the
            path alone.
        error: the error class to raise.
        max_bytes: refuse a file larger than this many bytes, before decoding it.

    Returns:
        The text, without a leading byte order mark.

    Raises:
        UserInputError: of class `error`, naming the file: it is missing, a folder, unreadable,
            larger than `max_bytes`, or refused by `decode_text`.
    """
    path = Path(path)
    source = f"{what} {path}" if what else str(path)
    return decode_text(read_bytes(path, source, error, max_bytes), source, error)


def read_bytes(
    path: Path,
    source: str,
    error: type[UserInputError],
    max_bytes: int | None = None,
    *,
    kind: str = "file",
    limit: str = "",
) -> bytes:
    """The bytes of a file, refused as `read_text` refuses it, before any decoding.

    Args:
        path: the file.
        source: how every message names it (``"Descriptions file x.json"``).
        error: the error class to raise.
        max_bytes: refuse a file larger than this many bytes.
        kind: what the message for a folder asks for instead (``"YAML file"``).
        limit: how the message for a large file spells ``max_bytes`` (``"1 MiB"``); empty
            says it in bytes.

    Raises:
        UserInputError: of class `error`, naming the file: it is missing, a folder, unreadable
            or larger than `max_bytes`.
    """
    try:
        with Path(path).open("rb") as file:
            raw = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{source} does not exist; check the path.") from None
    except IsADirectoryError:
        raise error(f"{source} is a folder; give the path of a {kind}.") from None
    except OSError as exc:
        raise error(f"{source} cannot be read ({exc.strerror or exc}).") from None
    if max_bytes is not None and len(raw) > max_bytes:
        size = limit or f"{max_bytes} bytes"
        raise error(f"{source} is larger than {size}; keep big data elsewhere.")
    return raw


def _wide_encoding(raw: bytes) -> str | None:
    """``"UTF-16"`` or ``"UTF-32"`` when `raw` has such a byte order mark or reads as such text."""
    for bom, name in _WIDE_BOMS:
        if raw.startswith(bom):
            return name
    head = raw[:_SNIFF_BYTES]
    # Text in a wide encoding has NUL bytes everywhere (half of UTF-16 Latin text is NUL); a
    # UTF-8 file with a stray NUL has few, and is refused for its control character instead.
    nuls = head.count(0)
    if nuls == 0 or 8 * nuls < len(head):
        return None
    # A binary file given by mistake does not decode to plain text, and is refused as not UTF-8.
    for codec, name in _WIDE_CODECS:
        try:
            sample = codecs.getincrementaldecoder(codec)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        if _REFUSED.search(sample) is None:
            return name
    return None


def split_lines(text: str) -> list[str]:
    """The lines of a text as t2m's messages count them: split at newlines only.

    `str.splitlines` also splits at U+2028, U+2029 and a few control characters, which would
    turn one description into two classes and shift every line number after it. A carriage
    return before a newline (Windows line ends) is dropped.
    """
    return [line.removesuffix("\r") for line in text.split("\n")]
