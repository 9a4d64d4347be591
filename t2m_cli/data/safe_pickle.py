"""A restricted unpickler for the pickles the original project published.

Unpickling is running code: every global a pickle names is imported and may be called. The
original feature files are pickled tuples of torch tensors (or numpy arrays), so `safe_load`
admits only the globals that rebuild containers, numbers, strings, numpy arrays and torch
tensors, and refuses anything else before it is called.

A torch tensor pickled with plain `pickle` rebuilds its storage through
``torch.storage._load_from_bytes(b)``, which runs a second, *unrestricted* ``torch.load`` on the
inner byte stream. That name is therefore never resolved to the real function: it maps to
`_storage_from_bytes`, which reads the inner stream with ``weights_only=True``, so a payload
hidden there is refused too.
"""

from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from t2m_cli.errors import DataError
from t2m_cli.textio import check_strings

_HOW_TO_FIX = "t2m reads only plain data from pickles"


class _Refused(Exception):
    """A pickle asked for a global outside the allow-list (raised inside the unpickler)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol 0-2 pickles spell a `bytes` object as _codecs.encode(str, "latin1"); other
    # codecs are never needed for that and are refused.
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise _Refused(f"_codecs.encode with codec {encoding!r}")
    if not isinstance(text, str):
        raise _Refused("_codecs.encode of a non-string")
    return text.encode("latin-1")


def _storage_from_bytes(data: bytes) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes`` that never unpickles freely."""
    import torch

    if not isinstance(data, bytes | bytearray):
        raise _Refused("torch.storage._load_from_bytes of a non-bytes value")
    try:
        storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        match = re.search(r"GLOBAL (\S+)", str(exc))
        raise _Refused(
            f"{match.group(1) if match else 'a forbidden global'} (inside a tensor's storage)"
        ) from None
    if not isinstance(storage, torch.TypedStorage):
        raise _Refused(f"a tensor storage that is a {type(storage).__name__}")
    return storage


def _rebuild_tensor(
    storage: Any,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> Any:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: data only, hooks and metadata dropped."""
    import torch

    if not isinstance(storage, torch.TypedStorage):
        raise _Refused(f"a tensor built on a {type(storage).__name__}")
    ints = (storage_offset, *size, *stride)
    if not all(type(i) is int for i in ints):
        raise _Refused("a tensor with non-integer size or stride")
    return torch._utils._rebuild_tensor(storage, storage_offset, tuple(size), tuple(stride))


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    import numpy as np

    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    found: dict[tuple[str, str], Callable[..., Any]] = {
        # Protocol 0-2 containers and bytes (protocol 4 has opcodes for sets and bytes).
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("_codecs", "encode"): _latin1_bytes,
        # The empty backward-hooks dict of every pickled tensor.
        ("collections", "OrderedDict"): OrderedDict,
        # numpy arrays and scalars; numpy 1 pickles name numpy.core, numpy 2 numpy._core.
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # torch tensors rebuild through our stand-ins, never through torch's own functions.
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    }
    # Python 2 named the builtins module __builtin__; protocol 2 pickles still do.
    for name in ("set", "frozenset", "bytearray"):
        found[("__builtin__", name)] = found[("builtins", name)]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = multiarray._reconstruct
        found[(module, "scalar")] = multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        # Protocol 5 pickles an array as _frombuffer(bytes, dtype, shape, order).
        found[(module, "_frombuffer")] = numeric._frombuffer  # type: ignore[attr-defined]
    return found


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, allowed: dict, encoding: str = "ASCII") -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id (an external object)")


def safe_load(path_or_bytes: Path | str | bytes, *, source: str | None = None) -> object:
    """Unpickle plain data (containers, numbers, strings, numpy arrays, torch tensors).

    Pickles written by Python 2 are read too. Python 2 stored text and an array's raw data
    alike as byte strings, which Python 3 cannot tell apart; as numpy's own loader does, they
    are read as Latin-1 (so an array gets its bytes back unchanged), and then every string
    whose bytes are UTF-8, as Python 2 code wrote names, is decoded as UTF-8.

    Args:
        path_or_bytes: a pickle file, or its bytes.
        source: how to name the pickle in error messages (default: the path).

    Returns:
        The unpickled object; tensors are rebuilt on the CPU without grad or hooks.

    Raises:
        DataError: the file is missing, is not a readable pickle, names any global outside
            the allow-list (nothing it names is called), or a string in it (a class name, a
            text) holds a control character (`t2m_cli.textio.check_strings`, naming the key).
    """
    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
        what = source or "the pickle"
    else:
        what = source or str(path_or_bytes)
        try:
            data = Path(path_or_bytes).read_bytes()
        except FileNotFoundError:
            raise DataError(f"{what} does not exist; download or unpack it first.") from None
        except OSError as exc:
            raise DataError(f"{what} cannot be read ({exc.strerror or exc}).") from None
    try:
        value = _unpickle(data, what, "ASCII")
    except UnicodeDecodeError:
        value = _from_python2(_unpickle(data, f"{what} (a Python 2 pickle)", "latin1"), what)
    check_strings(value, what)
    return value


def _unpickle(data: bytes, what: str, encoding: str) -> object:
    """Run the restricted unpickler; a refusal or damage becomes a `DataError` naming `what`.

    With ``encoding="ASCII"`` a Python 2 byte string that is not ASCII raises its
    `UnicodeDecodeError`, for `safe_load` to read the pickle again as Python 2's.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), _allowed(), encoding).load()
    except _Refused as exc:
        raise DataError(f"Refused to load {what}: it asks for {exc.name}; {_HOW_TO_FIX}.") from None
    except UnicodeDecodeError as exc:
        # Only Python 2's byte strings are decoded with `encoding`; Python 3 writes UTF-8.
        if encoding == "ASCII" and exc.encoding.lower() == "ascii":
            raise
        raise _damaged(what, exc) from None
    except Exception as exc:  # a damaged pickle raises many types; nothing outside ran
        raise _damaged(what, exc) from None


def _damaged(what: str, exc: Exception) -> DataError:
    return DataError(
        f"{what} is not a readable pickle ({type(exc).__name__}: {exc}); download it again."
    )


def _from_python2(value: Any, what: str) -> Any:
    """`value` with every string whose Latin-1 bytes are UTF-8 decoded as UTF-8."""
    try:
        return _utf8_strings(value)
    except RecursionError:
        raise DataError(f"{what} nests containers too deeply to be plain data.") from None


def _utf8_strings(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return value.encode("latin-1").decode("utf-8")
        except UnicodeError:  # Latin-1 text, or a Python 2 unicode string beyond Latin-1
            return value
    if isinstance(value, dict):
        return type(value)((_utf8_strings(k), _utf8_strings(v)) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_utf8_strings(item) for item in value)
    return value
