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
