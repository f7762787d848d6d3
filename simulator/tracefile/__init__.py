"""The trace file, one concept per module (the public names are re-exported by
:mod:`rankscope.simulator.trace`; see its [Note: trace]):

- :mod:`.schema`: the Arrow schema, the format's constants, JSON helpers;
- :mod:`.meta`: :class:`~.meta.TraceMeta`, the typed view of a trace's metadata, and its one reader;
- :mod:`.model`: the :class:`~.model.Trace` dataclass;
- :mod:`.atomic`: output files: atomic replace of regular files, streaming to FIFOs, devices and
  stdout, temp files removed on SIGINT and SIGTERM;
- :mod:`.writer`: :func:`~.writer.write_trace` and :class:`~.writer.TraceWriter`;
- :mod:`.check`: the one validation layer: every header field's type and range against the rows
  actually present, before anything is allocated;
- :mod:`.reader`: :func:`~.reader.read_trace`, with salvage in linear time;
- :mod:`.summary`: :func:`~.summary.trace_summary` (what ``rankscope info`` prints).
"""
