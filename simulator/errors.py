"""The exception hierarchy. Every message says what was wrong, with the offending value.

The CLI turns any :class:`RankscopeError` into one line on stderr and exit code 2.
"""


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


def check_output(path: str | None, *, folder: bool = False) -> None:
    """Fail early, before any work, when ``path`` cannot be written: the folder a file goes into
    (or, with ``folder``, the folder itself or its parent, which is created later) must exist and
    be writable. A long run must not end in a traceback about its output."""
    import os

    if not path:
        return
    path = os.fspath(path)
    if folder and os.path.isdir(path):
        parent = path
    else:
        if os.path.isdir(path):
            raise UsageError(f"{path!r} is a folder; give a file name")
        parent = os.path.dirname(os.path.abspath(path))
        if folder and not os.path.isdir(parent):
            raise UsageError(f"cannot create the folder {path!r}: {parent!r} does not exist")
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {path!r}: the folder {parent!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {path!r}: the folder {parent!r} is not writable")
