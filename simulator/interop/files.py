"""The files an import reads: files named as such, and the matching files of folders named."""

from __future__ import annotations

import os
from typing import Callable

from .errors import ImportFormatError


def input_files(items: list[str], keep: Callable[[str], bool], what: str) -> list[str]:
    """Each item that is a file, and of each folder the files whose names ``keep`` accepts
    (sorted); ``what`` names them in the error for a folder with none ("profiler traces")."""
    out: list[str] = []
    for it in items:
        if os.path.isdir(it):
            found = sorted(os.path.join(it, f) for f in os.listdir(it)
                           if keep(f) and os.path.isfile(os.path.join(it, f)))
            if not found:
                raise ImportFormatError(f"{it}: no {what} in this folder")
            out += found
        elif os.path.exists(it):
            out.append(it)
        else:
            raise ImportFormatError(f"{it}: no such file or folder")
    if not out:
        raise ImportFormatError(f"no {what} given")
    return out
