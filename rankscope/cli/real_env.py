"""What a real run needs before any rank starts: torch that imports, and outputs that can be
written. Both fail in one line (a RankscopeError), not in a traceback or after the run."""

from __future__ import annotations

import os
import tempfile

from rankscope.simulator.errors import RankscopeError, UsageError, check_output


class TorchMissingError(RankscopeError):
    """A real run asked of an installation without torch."""


def need_torch(verb: str) -> None:
    """Raise one line, not an ImportError's traceback, when torch cannot be imported."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TorchMissingError(f"rankscope {verb} runs real ranks and needs torch, which cannot be imported "
                                f"here ({first}); install it with pip install 'rankscope[real]'") from None


def check_writable(path: str | None, *, folder: bool = False) -> None:
    """:func:`check_output`, then a real probe: create and remove a file where the output goes, so
    that a place the permission bits do not tell about (``/proc``, a read-only mount, a full
    quota) is refused before any rank starts, not after the run. Under torchrun only rank 0
    writes, so only rank 0 checks."""
    if not path or os.environ.get("RANK", "0") != "0":
        return
    check_output(path, folder=folder)
    where = path if folder and os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=".rankscope-probe-", dir=where)
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror or e} in {where!r}") from None
    os.close(fd)
    os.unlink(probe)
