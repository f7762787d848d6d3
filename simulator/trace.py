"""Trace format v1: a program, when each op ran, and what each link carried, in one Arrow stream.

[Note: trace]
A *trace* is a :class:`~simulator.program.Program` plus, per op, when it ran (``start``/``end``,
seconds on the trace's clock, NaN if it never ran) and on which *lane* (an index into
``meta["lanes"]``, -1 if unknown), plus *link rows*: link ``link_id`` carried ``link_bytes`` over
``[link_t0, link_t1)``. Comparing two traces of one program is a join on op id.

On disk it is one Arrow IPC *stream* (``pyarrow.ipc.open_stream(path).read_all()`` gives a table that
pandas, polars and DuckDB take as is): one row per op, then link rows (``kind == LINK``); the
program's small tables and the trace's metadata are JSON in the schema metadata under
``b"rankscope"``; an empty last batch carries ``b"rankscope-end"``. A stream without it was cut
short (a crash): :func:`read_trace` refuses it unless ``salvage=True``. traces/README.md is the
exact description; keep the two in step.

Why a stream and not the Arrow file format: a stream can be appended to while a run records
(:class:`TraceWriter`) and a crash leaves a readable prefix; the file format needs its footer.
Why not pickle: a trace is data, readable without rankscope and safe to open.

This module is the public face of :mod:`rankscope.simulator.tracefile`, where each concept has its
module (schema, typed meta, dataclass, atomic output, writer, validation, reader, summary).
"""

from __future__ import annotations

from .tracefile.atomic import check_output, write_atomic, write_text_atomic
from .tracefile.meta import TraceMeta, complete_meta, trace_meta
from .tracefile.model import Trace, program_equal
from .tracefile.reader import check_trace, read_trace
from .tracefile.schema import BATCH_ROWS, COMPRESSION, END_KEY, LINK, MAGIC, META_KEY, SCHEMA, VERSION, jsonable, machine
from .tracefile.summary import trace_summary
from .tracefile.writer import TraceWriter, write_trace

__all__ = ["BATCH_ROWS", "COMPRESSION", "END_KEY", "LINK", "MAGIC", "META_KEY", "SCHEMA", "VERSION", "Trace",
           "TraceMeta", "TraceWriter", "check_output", "check_trace", "complete_meta", "jsonable", "machine", "program_equal",
           "read_trace", "trace_meta", "trace_summary", "write_atomic", "write_text_atomic", "write_trace"]
