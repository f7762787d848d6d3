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
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .errors import ProgramError, TraceFormatError
from .program import Buffer, Init, OpKind, Phase, Program
from .traffic import traffic

MAGIC = "rankscope-trace"
VERSION = 1
LINK = 255          # the ``kind`` of a link-usage row
META_KEY = b"rankscope"
END_KEY = b"rankscope-end"
BATCH_ROWS = 1 << 20
# Arrow's own buffer compression, which every Arrow reader undoes: the ring all-reduce on 1024
# ranks takes 10 MB instead of 500 MB, and writing it (with fsync) is 4x faster.
COMPRESSION = "zstd" if pa.Codec.is_available("zstd") else None

SCHEMA = pa.schema([
    ("op", pa.int64()), ("kind", pa.uint8()), ("rank", pa.int32()), ("peer", pa.int32()),
    ("step", pa.int32()), ("chunk", pa.int32()), ("buffer", pa.int32()), ("offset", pa.int64()),
    ("nbytes", pa.int64()), ("compute", pa.int32()), ("deps", pa.list_(pa.int64())),
    ("start", pa.float64()), ("end", pa.float64()), ("lane", pa.int32()), ("link", pa.int32()),
])
_COL = {name: i for i, name in enumerate(SCHEMA.names)}
_NUMPY = {f.name: np.dtype(f.type.to_pandas_dtype()) for f in SCHEMA if f.name != "deps"}


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("rankscope")
    except Exception:  # not installed (running from a checkout): still write a trace
        return "unknown"


def machine() -> dict[str, Any]:
    """Where a trace was made: host name, OS, CPU architecture, CPU count, Python."""
    return {"hostname": platform.node(), "platform": platform.platform(),
            "arch": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, numpy scalars Python numbers)."""
    def default(o: Any) -> Any:
        if isinstance(o, (np.generic, np.ndarray)):
            return o.tolist()
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        raise TypeError(f"{type(o).__name__} {o!r} is not JSON-able")
    try:
        return json.loads(json.dumps(obj, default=default))
    except (TypeError, ValueError) as e:
        raise TraceFormatError(f"trace metadata must be JSON-able: {e}") from None


def _complete_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    base = {"executor": "unknown", "clock": "unknown", "topology": None, "lanes": [],
            "rankscope": _version(), "machine": machine(), "complete": True}
    return _jsonable({**base, **(meta or {})})


def _frozen(a: Any, dtype: Any) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    a.setflags(write=False)
    return a


_EMPTY_I = np.zeros(0, np.int32)
_EMPTY_F = np.zeros(0, np.float64)


@dataclass(frozen=True, eq=False)
class Trace:
    """An immutable trace (see the module's [Note: trace]).

    ``meta`` is JSON-able; missing keys get defaults: executor and clock ``"unknown"``, topology
    None, lanes [], the rankscope version, this machine, complete True.
    """

    program: Program
    start: np.ndarray                  # (M,) float64 seconds; NaN = never ran
    end: np.ndarray                    # (M,) float64
    lane: np.ndarray                   # (M,) int32 index into meta["lanes"]; -1 unknown
    link_id: np.ndarray = field(default_factory=lambda: _EMPTY_I)     # (K,) int32
    link_t0: np.ndarray = field(default_factory=lambda: _EMPTY_F)     # (K,) float64
    link_t1: np.ndarray = field(default_factory=lambda: _EMPTY_F)     # (K,) float64
    link_bytes: np.ndarray = field(default_factory=lambda: _EMPTY_F)  # (K,) float64
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m, k = self.program.n_ops, np.shape(self.link_id)[0]
        for name, dtype, n in (("start", np.float64, m), ("end", np.float64, m),
                               ("lane", np.int32, m), ("link_id", np.int32, k),
                               ("link_t0", np.float64, k), ("link_t1", np.float64, k),
                               ("link_bytes", np.float64, k)):
            a = _frozen(getattr(self, name), dtype)
            if a.shape != (n,):
                raise TraceFormatError(f"trace column {name} has shape {a.shape}, expected ({n},)")
            object.__setattr__(self, name, a)
        object.__setattr__(self, "meta", _complete_meta(self.meta))

    @property
    def n_ops(self) -> int:
        return self.program.n_ops

    @property
    def n_links(self) -> int:
        return int(self.link_id.shape[0])

    @property
    def ran(self) -> np.ndarray:
        """Mask of the ops that ran (have a start time)."""
        return ~np.isnan(self.start)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (program_equal(self.program, other.program)
                and all(np.array_equal(getattr(self, n), getattr(other, n), equal_nan=True)
                        for n in ("start", "end", "link_t0", "link_t1", "link_bytes"))
                and np.array_equal(self.lane, other.lane)
                and np.array_equal(self.link_id, other.link_id)
                and self.meta == other.meta)

    __hash__ = None  # type: ignore[assignment]


def program_equal(a: Program, b: Program, *, meta: bool = True) -> bool:
    """True iff two programs agree column for column, table for table, and (with ``meta``) in meta,
    compared as JSON. ``meta=False`` is "the same schedule": what joining two traces on op id needs
    (a measured run's program notes the size it was asked for, a simulated one does not)."""
    if a.nranks != b.nranks:
        return False
    for name in ("kind", "rank", "peer", "arg", "step", "dep_ptr", "dep_idx", "chunk_buf",
                 "chunk_off", "chunk_len", "coll_kind", "coll_bytes", "coll_buf"):
        if not np.array_equal(getattr(a, name), getattr(b, name)):
            return False
    for name in ("compute_seconds", "compute_flops"):
        if not np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True):
            return False
    return (a.buffers == b.buffers and a.compute_label == b.compute_label and a.phases == b.phases
            and (not meta or _jsonable(a.meta) == _jsonable(b.meta)))


# -- writing -------------------------------------------------------------------------------------

def _header(program: Program, meta: dict[str, Any]) -> bytes:
    return json.dumps({
        "magic": MAGIC, "version": VERSION, "n_ops": program.n_ops, "nranks": program.nranks,
        "buffers": [{"name": b.name, "nbytes": int(b.nbytes), "init": b.init.value,
                     "root": int(b.root), "alive": bool(b.alive), "category": b.category}
                    for b in program.buffers],
        "chunks": {"buffer": program.chunk_buf.tolist(), "offset": program.chunk_off.tolist(),
                   "nbytes": program.chunk_len.tolist()},
        "compute": {"seconds": program.compute_seconds.tolist(),
                    "flops": program.compute_flops.tolist(), "labels": list(program.compute_label)},
        "collectives": {"kind": program.coll_kind.tolist(), "nbytes": program.coll_bytes.tolist(),
                        "buffer": program.coll_buf.tolist()},
        "phases": [{"name": p.name, "first_step": int(p.first_step), "nsteps": int(p.nsteps)}
                   for p in program.phases],
        "program_meta": _jsonable(program.meta),
        "meta": meta,
    }).encode()


def _list_array(offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    """A list<int64> array from int32 offsets and int64 values, without copying or validating."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int32)
    vals = pa.array(np.ascontiguousarray(values, dtype=np.int64))
    return pa.Array.from_buffers(SCHEMA.field("deps").type, offsets.size - 1,
                                 [None, pa.py_buffer(offsets)], children=[vals])


def _batch(cols: dict[str, Any]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [cols[n] if n == "deps" else pa.array(np.ascontiguousarray(cols[n], dtype=_NUMPY[n]))
         for n in SCHEMA.names], schema=SCHEMA)


def _op_batch(p: Program, ids: np.ndarray, start: np.ndarray, end: np.ndarray,
              lane: np.ndarray) -> pa.RecordBatch:
    """Op rows for ``ids``: everything the program says about each op, then its timing."""
    n = ids.size
    contiguous = n > 0 and ids[-1] - ids[0] == n - 1 and bool(np.all(np.diff(ids) == 1))
    sel = slice(int(ids[0]), int(ids[0]) + n) if contiguous else ids
    kind, arg = p.kind[sel], p.arg[sel]
    tr = kind <= OpKind.COPY
    if tr.all():  # collectives: every op a transfer, no masking
        chunk, buffer = arg, p.chunk_buf[arg]
        offset, nbytes, compute = p.chunk_off[arg], p.chunk_len[arg], np.full(n, -1, np.int32)
    else:
        mem = (kind == OpKind.ALLOC) | (kind == OpKind.FREE)
        coll = kind == OpKind.COLLECTIVE
        comp = (kind == OpKind.COMPUTE) | coll
        sizes = np.array([b.nbytes for b in p.buffers] or [0], dtype=np.int64)
        chunk, buffer = np.where(tr, arg, -1), np.where(mem, arg, -1)
        offset, nbytes = np.zeros(n, np.int64), np.zeros(n, np.int64)
        compute = np.where(comp, arg, -1)
        ta = arg[tr]
        buffer[tr], offset[tr], nbytes[tr] = p.chunk_buf[ta], p.chunk_off[ta], p.chunk_len[ta]
        nbytes[mem] = sizes[arg[mem]]
        buffer[coll], nbytes[coll] = p.coll_buf[arg[coll]], p.coll_bytes[arg[coll]]
    if contiguous:
        a, b = p.dep_ptr[sel.start], p.dep_ptr[sel.stop]
        offsets, values = p.dep_ptr[sel.start:sel.stop + 1] - a, p.dep_idx[a:b]
    else:
        counts = p.dep_ptr[ids + 1] - p.dep_ptr[ids]
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        gather = np.repeat(p.dep_ptr[ids] - offsets[:-1], counts) + np.arange(offsets[-1])
        values = p.dep_idx[gather]
    return _batch({"op": ids, "kind": kind, "rank": p.rank[sel], "peer": p.peer[sel],
                   "step": p.step[sel], "chunk": chunk, "buffer": buffer, "offset": offset,
                   "nbytes": nbytes, "compute": compute, "deps": _list_array(offsets, values),
                   "start": start, "end": end, "lane": lane, "link": np.full(n, -1, np.int32)})


def _link_batch(link_id: np.ndarray, t0: np.ndarray, t1: np.ndarray,
                nbytes: np.ndarray) -> pa.RecordBatch:
    n = link_id.size
    neg = np.full(n, -1, np.int32)
    return _batch({"op": np.full(n, -1, np.int64), "kind": np.full(n, LINK, np.uint8),
                   "rank": neg, "peer": neg, "step": neg, "chunk": neg, "buffer": neg,
                   "offset": np.zeros(n, np.int64), "nbytes": np.rint(nbytes).astype(np.int64),
                   "compute": neg, "deps": _list_array(np.zeros(n + 1, np.int32), _EMPTY_I),
                   "start": t0, "end": t1, "lane": neg, "link": link_id})


class _Stream:
    """Writes the header, op and link batches, and the end batch of one trace to an open file."""

    def __init__(self, sink: pa.NativeFile, program: Program, meta: dict[str, Any]):
        self.program = program
        self.seen = np.zeros(program.n_ops, dtype=bool)
        self.n_rows = self.n_links = self.n_batches = 0
        self.sink = sink
        self.writer = ipc.new_stream(sink, SCHEMA.with_metadata({META_KEY: _header(program, meta)}),
                                     options=ipc.IpcWriteOptions(compression=COMPRESSION))

    def ops(self, ids: Any, start: Any, end: Any, lane: Any = None) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        m, n = self.program.n_ops, ids.size
        start, end = np.asarray(start, np.float64).ravel(), np.asarray(end, np.float64).ravel()
        lane = np.full(n, -1, np.int32) if lane is None else np.asarray(lane, np.int32).ravel()
        if not start.size == end.size == lane.size == n:
            raise TraceFormatError(f"append got {n} op ids but {start.size} starts, {end.size} ends "
                                   f"and {lane.size} lanes")
        if n == 0:
            return
        bad = (ids < 0) | (ids >= m)
        if bad.any():
            raise TraceFormatError(f"op id {int(ids[bad][0])} is out of range 0..{m - 1}")
        twice = self.seen[ids] | (np.bincount(ids - ids.min()) > 1)[ids - ids.min()]
        if twice.any():
            raise TraceFormatError(f"op {int(ids[twice][0])} is recorded twice")
        self.seen[ids] = True
        for a in range(0, n, BATCH_ROWS):
            s = slice(a, a + BATCH_ROWS)
            self._write(_op_batch(self.program, ids[s], start[s], end[s], lane[s]))

    def links(self, link_id: Any, t0: Any, t1: Any, nbytes: Any) -> None:
        cols = [np.asarray(link_id, np.int32).ravel(), np.asarray(t0, np.float64).ravel(),
                np.asarray(t1, np.float64).ravel(), np.asarray(nbytes, np.float64).ravel()]
        n = cols[0].size
        if any(c.size != n for c in cols):
            raise TraceFormatError("link columns differ in length: "
                                   + ", ".join(str(c.size) for c in cols))
        if n and cols[0].min() < 0:
            raise TraceFormatError(f"link id {int(cols[0].min())} is negative")
        for a in range(0, n, BATCH_ROWS):
            self._write(_link_batch(*(c[a:a + BATCH_ROWS] for c in cols)))
            self.n_links += min(BATCH_ROWS, n - a)

    def _write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.n_rows += batch.num_rows
        self.n_batches += 1

    def finish(self, complete: bool, error: str | None = None) -> None:
        """Rows (NaN times) for the ops never recorded, then the end batch; closes the stream."""
        missing = np.flatnonzero(~self.seen)
        nan = np.full(missing.size, np.nan)
        self.ops(missing, nan, nan)
        end = {"complete": bool(complete), "n_rows": self.n_rows, "n_ops": self.program.n_ops,
               "n_links": self.n_links, "n_batches": self.n_batches}
        if error is not None:
            end["error"] = error
        empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in SCHEMA], schema=SCHEMA)
        self.writer.write_batch(empty, custom_metadata={END_KEY: json.dumps(end).encode()})
        self.writer.close()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: str | os.PathLike, fill: Any) -> None:
    """``fill(tmp)`` writes a temp file beside ``path`` (as readable as any file the user writes:
    mkstemp makes 0600), which is fsynced and renamed over ``path``; on any failure the temp file
    goes and ``path`` is untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    os.close(fd)
    try:
        fill(tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_path(folder)


def write_text_atomic(path: str | os.PathLike, write: Any) -> None:
    """Write a text file atomically (``write(f)`` fills it): every JSON and TOML file rankscope writes."""
    def fill(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)

    _write_atomic(path, fill)


def write_trace(path: str | os.PathLike, trace: Trace) -> None:
    """Write ``trace`` to ``path`` atomically: a temp file in the same folder, fsync, rename."""
    def fill(tmp: str) -> None:
        with pa.OSFile(tmp, "wb") as sink:
            s = _Stream(sink, trace.program, trace.meta)
            m = trace.n_ops
            for a in range(0, m, BATCH_ROWS):
                ids = np.arange(a, min(a + BATCH_ROWS, m), dtype=np.int64)
                s.seen[ids] = True
                s._write(_op_batch(trace.program, ids, trace.start[a:a + BATCH_ROWS],
                                   trace.end[a:a + BATCH_ROWS], trace.lane[a:a + BATCH_ROWS]))
            s.links(trace.link_id, trace.link_t0, trace.link_t1, trace.link_bytes)
            s.finish(bool(trace.meta.get("complete", True)))

    _write_atomic(path, fill)


class TraceWriter:
    """Record a trace while a run goes: ``append`` op timings and ``append_links`` link usage as
    they come, in any order and batches, then ``close``.

    Rows go to ``f"{path}.partial"`` as they arrive, so a crash leaves a readable prefix there
    (``read_trace(..., salvage=True)``). ``close()`` adds rows with NaN times for the ops never
    recorded and the end batch, then renames the file to ``path``. Leaving a ``with`` block by an
    exception closes it as incomplete (``meta["complete"] = False``, the error in the end batch)
    and keeps it at ``path.partial``, so a good trace already at ``path`` is not replaced.
    """

    def __init__(self, path: str | os.PathLike, program: Program, meta: dict[str, Any] | None = None):
        self.path = os.fspath(path)
        self.partial = self.path + ".partial"
        self.meta = {**_complete_meta(meta), "complete": False}  # the end batch says the truth
        self._sink = pa.OSFile(self.partial, "wb")
        try:
            self._stream: _Stream | None = _Stream(self._sink, program, self.meta)
        except BaseException:
            self._sink.close()
            os.unlink(self.partial)
            raise

    def append(self, op_ids: Any, start: Any, end: Any, lane: Any = None) -> None:
        """Record ops ``op_ids`` as run over ``[start, end)`` on lanes ``lane`` (default -1)."""
        self._open().ops(op_ids, start, end, lane)

    def append_links(self, link_id: Any, t0: Any, t1: Any, nbytes: Any) -> None:
        """Record that link ``link_id[i]`` carried ``nbytes[i]`` bytes over ``[t0[i], t1[i])``."""
        self._open().links(link_id, t0, t1, nbytes)

    def close(self, complete: bool = True) -> None:
        """Finish the file and rename it to ``path``. Idempotent."""
        if self._finish(complete, None):
            os.replace(self.partial, self.path)
            _fsync_path(os.path.dirname(os.path.abspath(self.path)))

    def _open(self) -> _Stream:
        if self._stream is None:
            raise TraceFormatError(f"trace writer for {self.path!r} is already closed")
        return self._stream

    def _finish(self, complete: bool, error: str | None) -> bool:
        if self._stream is None:
            return False
        stream, self._stream = self._stream, None
        try:
            stream.finish(complete, error)
        finally:
            self._sink.close()
        _fsync_path(self.partial)
        return True

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._finish(False, f"{exc_type.__name__}: {exc}")


# -- reading -------------------------------------------------------------------------------------

def _fail(path: str, what: str) -> TraceFormatError:
    return TraceFormatError(f"{path}: {what}")


def _open_stream(path: str) -> ipc.RecordBatchStreamReader:
    if not os.path.exists(path):
        raise TraceFormatError(f"no trace file at {path!r}")
    try:
        with open(path, "rb") as f:  # into memory: a later overwrite of the file cannot bite us
            data = f.read()
    except OSError as e:
        raise _fail(path, f"cannot read the file ({e.strerror or e})") from None
    if not data:
        raise _fail(path, "the file is empty, not a rankscope trace")
    try:
        return ipc.open_stream(pa.py_buffer(data))
    except Exception:  # pyarrow raises several kinds on foreign bytes
        if data[:6] == b"ARROW1":
            raise _fail(path, "an Arrow IPC *file*, not a stream; rankscope traces are Arrow IPC "
                              "streams") from None
        raise _fail(path, "not a rankscope trace (not an Arrow IPC stream, or cut short inside "
                          "its schema)") from None


def _read_header(path: str, schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise _fail(path, "an Arrow stream without rankscope metadata, not a rankscope trace")
    try:
        h = json.loads(raw)
    except ValueError:
        raise _fail(path, "the rankscope metadata is not valid JSON") from None
    if not isinstance(h, dict) or h.get("magic") != MAGIC:
        raise _fail(path, f"wrong magic {h.get('magic') if isinstance(h, dict) else None!r}, "
                          f"expected {MAGIC!r}; not a rankscope trace")
    v = h.get("version")
    if v != VERSION:
        hint = "upgrade rankscope" if isinstance(v, int) and v > VERSION else "convert it"
        raise _fail(path, f"written by rankscope trace format v{v}; this rankscope reads "
                          f"v{VERSION} ({hint})")
    if not schema.remove_metadata().equals(SCHEMA):
        for f in SCHEMA:
            i = schema.get_field_index(f.name)
            if i < 0:
                raise _fail(path, f"column {f.name!r} is missing")
            if schema.field(i).type != f.type:
                raise _fail(path, f"column {f.name!r} has type {schema.field(i).type}, "
                                  f"expected {f.type}")
        raise _fail(path, f"columns are {schema.names}, expected {SCHEMA.names}")
    return h


def _read_batches(path: str, reader: ipc.RecordBatchStreamReader
                  ) -> tuple[list[pa.RecordBatch], dict[str, Any] | None, str | None]:
    """The record batches up to the end batch, the end batch's JSON (None if the stream stops
    first), and why it stopped early."""
    batches: list[pa.RecordBatch] = []
    while True:
        try:
            batch, custom = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            return batches, None, "no end marker"
        except Exception as e:  # a cut inside a message: pyarrow says so in its own words
            return batches, None, str(e).split("\n")[0]
        if custom is not None and END_KEY in custom:
            try:
                end = json.loads(custom[END_KEY])
            except ValueError:
                raise _fail(path, "the end marker is not valid JSON") from None
            if not isinstance(end, dict):
                raise _fail(path, "the end marker is not a JSON object")
            return batches, end, None
        batches.append(batch)


def _np(arr: pa.Array) -> np.ndarray:
    """A null-free fixed-width numeric Arrow array as a numpy view of its buffer. (``to_numpy``
    does the same but first imports pandas where it is installed: 0.3 s, a sixth of opening a
    1024-rank trace in the TUI.)"""
    t = arr.type
    if pa.types.is_integer(t):
        dtype = np.dtype(f"{'u' if pa.types.is_unsigned_integer(t) else ''}int{t.bit_width}")
    elif pa.types.is_floating(t):
        dtype = np.dtype(f"float{t.bit_width}")
    else:
        return arr.to_numpy()
    if arr.null_count:
        return arr.to_numpy(zero_copy_only=False)
    return np.frombuffer(arr.buffers()[1], dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


class _Rows:
    """Columns of op rows (or link rows) gathered from many batches, deps as CSR."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {n: [] for n in _NUMPY}
        self.ptr: list[np.ndarray] = []
        self.idx: list[np.ndarray] = []
        self.base = 0

    def add(self, batch: pa.RecordBatch, mask: np.ndarray | None) -> None:
        if mask is not None:
            batch = batch.filter(pa.array(mask))
        for n in _NUMPY:
            self.cols[n].append(_np(batch.column(_COL[n])))
        deps = batch.column(_COL["deps"])
        off = _np(deps.offsets).astype(np.int64)
        self.idx.append(_np(deps.values)[off[0]:off[-1]])
        self.ptr.append(off[1:] - off[0] + self.base if self.ptr else off - off[0])
        self.base += int(off[-1] - off[0])

    def get(self, name: str) -> np.ndarray:
        return _cat(self.cols[name], _NUMPY[name])

    def deps(self) -> tuple[np.ndarray, np.ndarray]:
        return _cat(self.ptr, np.int64) if self.ptr else np.zeros(1, np.int64), \
            _cat(self.idx, np.int64)


def _program(h: dict[str, Any], r: _Rows, path: str, salvage: bool) -> tuple[Program, dict, dict]:
    """The program from the header and the op rows, ops in id order; with ``salvage``, only the
    longest prefix of ops 0..k-1 that are all present and depend on nothing later."""
    m = int(h["n_ops"])
    ids = r.get("op")
    cols = {n: r.get(n) for n in ("kind", "rank", "peer", "step", "chunk", "buffer", "offset",
                                  "nbytes", "compute", "start", "end", "lane")}
    ptr, idx = r.deps()
    n = ids.size
    info = {"op_rows": n}
    if not (n == m and np.array_equal(ids, np.arange(m))):
        bad = (ids < 0) | (ids >= m)
        if bad.any():
            raise _fail(path, f"corrupt op column: op id {int(ids[bad][0])} out of range 0..{m - 1}")
        count = np.bincount(ids, minlength=m)
        if (count > 1).any():
            raise _fail(path, f"corrupt op column: op {int(np.flatnonzero(count > 1)[0])} has "
                              f"{int(count.max())} rows")
        k = int(np.argmin(count)) if (count == 0).any() else m
        if k < m and not salvage:
            raise _fail(path, f"{int((count == 0).sum())} of {m} ops have no row (first: op {k}); "
                              f"pass salvage=True / --salvage to load the ops before it")
        pos = np.empty(m, np.int64)
        pos[ids] = np.arange(n)
        pos = pos[:k]
        counts = ptr[pos + 1] - ptr[pos]
        new_ptr = np.zeros(k + 1, np.int64)
        np.cumsum(counts, out=new_ptr[1:])
        idx = idx[np.repeat(ptr[pos] - new_ptr[:-1], counts) + np.arange(new_ptr[-1])]
        ptr, cols = new_ptr, {c: v[pos] for c, v in cols.items()}
        if k < m:  # the kept ops may not wait for a dropped one
            owner = np.repeat(np.arange(k), np.diff(ptr))
            while k and (late := idx >= k).any():
                k = int(owner[late].min())
                idx, owner = idx[:ptr[k]], owner[:ptr[k]]
            ptr, cols = ptr[:k + 1], {c: v[:k] for c, v in cols.items()}
            info["ops_kept"] = k
    kind, chunk, buffer, compute = cols["kind"], cols["chunk"], cols["buffer"], cols["compute"]
    tr = kind <= OpKind.COPY
    uses_compute = (kind == OpKind.COMPUTE) | (kind == OpKind.COLLECTIVE)
    arg = chunk if tr.all() else np.where(tr, chunk, np.where(uses_compute, compute, buffer))
    try:
        ch, co = h["chunks"], h["compute"]
        prog = Program(
            int(h["nranks"]), kind, cols["rank"], cols["peer"], arg, cols["step"], ptr, idx,
            tuple(Buffer(b["name"], int(b["nbytes"]), Init(b["init"]), int(b["root"]),
                         bool(b["alive"]), b["category"]) for b in h["buffers"]),
            np.asarray(ch["buffer"], np.int32), np.asarray(ch["offset"], np.int64),
            np.asarray(ch["nbytes"], np.int64), np.asarray(co["seconds"], np.float64),
            np.asarray(co["flops"], np.float64), tuple(co["labels"]),
            tuple(Phase(p["name"], int(p["first_step"]), int(p["nsteps"])) for p in h["phases"]),
            h["program_meta"], *_collectives(h)).validate()
    except ProgramError as e:
        raise _fail(path, f"the program in this trace is invalid: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _fail(path, f"corrupt rankscope metadata ({type(e).__name__}: {e})") from None
    if prog.chunk_len.size and tr.any():
        c = np.where(tr, arg, 0)
        wrong = tr & ((buffer != prog.chunk_buf[c]) | (cols["offset"] != prog.chunk_off[c])
                      | (cols["nbytes"] != prog.chunk_len[c]))
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise _fail(path, f"corrupt row for op {i}: its buffer/offset/nbytes disagree with "
                              f"chunk {int(arg[i])} of the chunk table")
    return prog, cols, info


def _collectives(h: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = h.get("collectives", {"kind": [], "nbytes": [], "buffer": []})
    return (np.asarray(c["kind"], np.uint8), np.asarray(c["nbytes"], np.int64),
            np.asarray(c["buffer"], np.int32))


def read_trace(path: str | os.PathLike, *, salvage: bool = False) -> Trace:
    """Read a trace file. Any problem is a :class:`TraceFormatError` with one clear message.

    A file cut short (no end batch: the recorder crashed) is refused unless ``salvage``; then the
    readable prefix comes back with ``meta["complete"] = False`` and ``meta["salvaged"] = True``.
    """
    path = os.fspath(path)
    reader = _open_stream(path)
    h = _read_header(path, reader.schema)
    batches, end, why = _read_batches(path, reader)
    if end is None and not salvage:
        raise _fail(path, f"truncated after {len(batches)} record batches ({why}); pass "
                          f"salvage=True / --salvage to load the readable prefix")
    ops, links = _Rows(), _Rows()
    n_rows = 0
    for b in batches:
        if not b.num_rows:
            continue
        n_rows += b.num_rows
        try:
            b.validate(full=True)  # bad offsets would otherwise read out of bounds
            if b.column(_COL["deps"]).values.null_count or any(c.null_count for c in b.columns):
                raise _fail(path, "corrupt columns: null values in a rankscope trace")
            is_link = _np(b.column(_COL["kind"])) == LINK
            nl = int(is_link.sum())
            if nl < b.num_rows:
                ops.add(b, ~is_link if nl else None)
            if nl:
                links.add(b, is_link if nl < b.num_rows else None)
        except pa.ArrowException as e:
            raise _fail(path, f"corrupt columns ({str(e).splitlines()[0]})") from None
    if end is not None and end.get("n_rows", n_rows) != n_rows:
        raise _fail(path, f"corrupt: the end marker counts {end.get('n_rows')} rows, the file "
                          f"holds {n_rows}")
    try:
        prog, cols, info = _program(h, ops, path, salvage)
    except TraceFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise _fail(path, f"corrupt rankscope metadata ({type(e).__name__}: {e})") from None
    meta = h.get("meta")
    if not isinstance(meta, dict):
        raise _fail(path, "corrupt rankscope metadata: trace meta is not an object")
    meta["complete"] = bool(end.get("complete", False)) if end is not None else False
    if end is not None and end.get("error"):
        meta["error"] = end["error"]
    if salvage and (end is None or info.get("ops_kept") is not None):
        meta["salvaged"] = True
        meta["salvage"] = {"batches": len(batches), "stopped": why or "end marker",
                           "ops_kept": prog.n_ops, **info}
    lane = cols["lane"]
    nlanes = len(meta.get("lanes") or [])
    bad_lane = (lane < -1) | ((lane >= nlanes) if nlanes else False)
    if np.any(bad_lane):
        i = int(np.flatnonzero(bad_lane)[0])
        raise _fail(path, f"corrupt lane column: op {i} has lane {int(lane[i])}, "
                          f"meta lists {nlanes} lanes")
    link = links.get("link")
    if link.size and link.min() < 0:
        raise _fail(path, f"corrupt link column: link id {int(link.min())} on a link row")
    try:
        return Trace(prog, cols["start"], cols["end"], lane, link, links.get("start"),
                     links.get("end"), links.get("nbytes").astype(np.float64), meta)
    except TraceFormatError as e:
        raise _fail(path, str(e)) from None


# -- summary -------------------------------------------------------------------------------------

def trace_summary(trace: Trace) -> dict[str, Any]:
    """What ``rankscope info`` prints: shape, provenance, timing and traffic of a trace.

    Bytes count the transfers and collectives that ran (:func:`simulator.traffic.traffic`).
    """
    p, ran = trace.program, trace.ran
    moved = traffic(p, ran)
    sent, received = moved.sent, moved.received
    makespan = float(np.nanmax(trace.end[ran]) - np.nanmin(trace.start[ran])) if ran.any() else 0.0
    return {
        "nranks": p.nranks, "n_ops": p.n_ops,
        "collective": p.meta.get("collective"), "algo": p.meta.get("algo"),
        "executor": trace.meta.get("executor"), "clock": trace.meta.get("clock"),
        "complete": bool(trace.meta.get("complete", True)),
        "makespan": makespan,
        "bytes_moved": moved.total,
        "bytes_sent": [int(x) for x in sent], "bytes_received": [int(x) for x in received],
        "n_link_rows": trace.n_links,
        "ops_never_ran": int((~ran).sum()),
    }
