"""Errors of the importers and exporters (the CLI prints them as one line and exits 2)."""

from ..errors import RankscopeError


class ImportFormatError(RankscopeError):
    """A file to import that cannot be read: not JSON, cut short, a key missing, an unknown dtype,
    a pickle that asks for anything but plain containers and scalars."""


class SequenceMismatchError(ImportFormatError):
    """Ranks that disagree on the collective sequence: a different kind or size at the same
    position, or one rank issuing more collectives than another (the signature of a hang)."""


class ExportError(RankscopeError):
    """A trace that cannot be written in the requested format."""
