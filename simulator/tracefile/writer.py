"""Writing trace files: :func:`write_trace` (a whole trace at once) and :class:`TraceWriter` (rows as a
run records them, a readable prefix if it crashes). The layout is :mod:`.schema`'s."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from ..errors import TraceFormatError, output_kind
from ..program import OpKind, Program
from .atomic import fsync_path, write_atomic
from .meta import complete_meta
from .model import Trace
from .schema import BATCH_ROWS, COMPRESSION, END_KEY, LINK, MAGIC, META_KEY, NUMPY, SCHEMA, VERSION, jsonable

_EMPTY_I = np.zeros(0, np.int32)


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
        "program_meta": jsonable(program.meta),
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
        [cols[n] if n == "deps" else pa.array(np.ascontiguousarray(cols[n], dtype=NUMPY[n]))
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


def write_trace(path: str | os.PathLike, trace: Trace) -> None:
    """Write ``trace`` to ``path``: atomically (a temp file in the same folder, fsync, rename) for a
    regular file, streamed for a FIFO or character device (:func:`~.atomic.write_atomic`)."""
    def fill(f: Any) -> None:
        with pa.PythonFile(f, mode="w") as sink:
            s = _Stream(sink, trace.program, trace.meta)
            m = trace.n_ops
            for a in range(0, m, BATCH_ROWS):
                ids = np.arange(a, min(a + BATCH_ROWS, m), dtype=np.int64)
                s.seen[ids] = True
                s._write(_op_batch(trace.program, ids, trace.start[a:a + BATCH_ROWS],
                                   trace.end[a:a + BATCH_ROWS], trace.lane[a:a + BATCH_ROWS]))
            s.links(trace.link_id, trace.link_t0, trace.link_t1, trace.link_bytes)
            s.finish(bool(trace.meta.get("complete", True)))

    write_atomic(path, fill)


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
        self.meta = {**complete_meta(meta), "complete": False}  # the end batch says the truth
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
        """Finish the file and rename it to ``path`` (a FIFO or character device at ``path`` is
        written to instead, never replaced: :func:`~.atomic.write_atomic`). Idempotent."""
        if self._finish(complete, None):
            if output_kind(self.path) in ("fifo", "chr"):
                import shutil

                def fill(f: Any) -> None:
                    with open(self.partial, "rb") as src:
                        shutil.copyfileobj(src, f, 1 << 20)
                write_atomic(self.path, fill)
                os.unlink(self.partial)
                return
            os.replace(self.partial, self.path)
            fsync_path(os.path.dirname(os.path.abspath(self.path)))

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
        fsync_path(self.partial)
        return True

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._finish(False, f"{exc_type.__name__}: {exc}")
