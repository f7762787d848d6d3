"""The exception hierarchy. Every message says what was wrong, with the offending value.

The CLI turns any :class:`RankscopeError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import stat
import tempfile


class RankscopeError(Exception):
    """Base of every error rankscope raises on purpose (bad input, bad file, broken invariant)."""


class UsageError(RankscopeError):
    """A command-line value that cannot be used (a size that does not parse, N < 1, ...)."""


class ProgramError(RankscopeError):
    """A program that violates the Program contract (cycle, missing dependency, chunk out of range)."""


class ProvenanceError(RankscopeError):
    """A schedule that computes the wrong thing: a contribution counted twice, a value read too early."""


class TopologyError(RankscopeError):
    """A topology that cannot be used: unknown rank, unreachable pair, non-positive bandwidth."""


class TraceFormatError(RankscopeError):
    """A trace file that cannot be read: wrong magic, unknown version, truncated or corrupt."""


# -- outputs: checked before any work ------------------------------------------------------------
# check_output probes the folder by creating and removing a file there, the only check that is true
# for /proc, read-only mounts and root (os.access says yes to root everywhere).

def output_kind(path: str) -> str:
    """"new", "file", "dir", "fifo", "chr", "blk", "socket" (following symlinks)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "new"
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise UsageError(f"cannot write {path!r}: {getattr(e, 'strerror', None) or e}") from None
    m = st.st_mode
    return ("file" if stat.S_ISREG(m) else "dir" if stat.S_ISDIR(m) else "fifo" if stat.S_ISFIFO(m)
            else "chr" if stat.S_ISCHR(m) else "blk" if stat.S_ISBLK(m) else "socket")


def check_output(path: str | os.PathLike | None, *, folder: bool = False) -> None:
    """Fail early, before any work, when ``path`` cannot be written: an empty name, ``-``, a folder
    where a file goes (or a file where a folder goes), a block device or socket, a folder that does
    not exist or where no file can be created. A FIFO or character device is fine (streamed to).
    With ``folder``, the folder itself (or its parent, when it is created later) is probed."""
    if path is None:
        return
    path = os.fspath(path)
    if path == "":
        raise UsageError("the output path is empty; give a file name")
    if path == "-":
        raise UsageError("cannot write to '-' (stdout carries the report); give a file name, a FIFO or a device")
    kind = output_kind(path)
    if folder:
        if kind not in ("new", "dir"):
            raise UsageError(f"cannot write into {path!r}: it is not a folder")
        probe = path if kind == "dir" else os.path.dirname(os.path.abspath(path))
        if kind == "new" and not os.path.isdir(probe):
            raise UsageError(f"cannot create the folder {path!r}: {probe!r} does not exist")
        _probe(probe, path)
        return
    if kind == "dir":
        raise UsageError(f"{path!r} is a folder; give a file name")
    if kind in ("blk", "socket"):
        raise UsageError(f"refusing to write to {path!r}: a {'block device' if kind == 'blk' else 'socket'}, "
                         "not a regular file, FIFO or character device")
    if kind in ("fifo", "chr"):
        if not os.access(path, os.W_OK):
            raise UsageError(f"cannot write {path!r}: permission denied")
        return
    parent = os.path.dirname(os.path.abspath(os.path.realpath(path)))
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {path!r}: the folder {parent!r} does not exist")
    _probe(parent, path)


def _probe(folder: str, path: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rankscope-probe.", suffix=".tmp")
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror or e} in the folder {folder!r}") from None
    os.close(fd)
    os.unlink(tmp)
