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


MAX_OBJECTS = 20_000_000
"""Objects the dump may hold counted as a tree (what a walk over it visits): a flight recorder's
default 2,000 entries take about 50 each."""
MAX_DEPTH = 100


def _check(root: Any) -> int:
    """The tree size of ``root`` (each container counted as often as it is reachable), visiting
    each distinct container once; RefusedPickle on a class that is not plain data, a cycle, more
    than :data:`MAX_DEPTH` levels or more than :data:`MAX_OBJECTS` objects."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(obj: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise RefusedPickle(f"it nests deeper than {MAX_DEPTH} levels")
        if not isinstance(obj, PLAIN):
            raise RefusedPickle(f"it holds a {type(obj).__name__}")
        if not isinstance(obj, (dict, list, tuple, set, frozenset)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise RefusedPickle("it holds a container that contains itself (a cycle)")
        active.add(key)
        items = (x for kv in obj.items() for x in kv) if isinstance(obj, dict) else iter(obj)
        total = 1
        for v in items:
            total += size(v, depth + 1)
            if total > MAX_OBJECTS:
                raise RefusedPickle(f"it expands to more than {MAX_OBJECTS:,} objects (one container reused "
                                    "many times)")
        active.discard(key)
        sizes[key] = total
        return total

    return size(root, 0)


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
