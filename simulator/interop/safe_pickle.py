"""A restricted unpickler: plain containers and scalars, nothing that can run code.

A pickle is a program: its GLOBAL/STACK_GLOBAL opcodes import any callable (``os.system``) and
REDUCE calls it while loading. Flight-recorder dumps are pickles of dicts, lists, tuples, strings,
numbers, booleans and None, none of which needs an import, so :class:`PlainUnpickler` refuses every
import (``find_class``) and every persistent id, and :func:`plain_loads` checks what came back.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from .errors import ImportFormatError

PLAIN = (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, complex, bool, type(None))


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asked for something other than plain data."""


class PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise RefusedPickle(f"it asks for {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("it asks for a persistent object")


def _check(obj: Any, depth: int = 0) -> None:
    if depth > 100:
        raise RefusedPickle("it nests deeper than 100 levels")
    if not isinstance(obj, PLAIN):
        raise RefusedPickle(f"it holds a {type(obj).__name__}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check(k, depth + 1)
            _check(v, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check(v, depth + 1)


def plain_loads(data: bytes, where: str) -> Any:
    """Unpickle ``data`` if it holds only plain containers and scalars; else a clear error."""
    try:
        obj = PlainUnpickler(io.BytesIO(data)).load()
        _check(obj)
    except RefusedPickle as e:
        raise ImportFormatError(f"{where}: refused to unpickle: {e} (a pickle can run code; rankscope "
                                f"accepts only plain containers and scalars)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, RecursionError, UnicodeDecodeError) as e:
        raise ImportFormatError(f"{where}: not a readable pickle ({type(e).__name__}: {e})") from None
    return obj
