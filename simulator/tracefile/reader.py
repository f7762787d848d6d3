"""Reading trace files: :func:`read_trace`, the one reader every verb uses (info, replay, export,
compare, import's checks). Any problem is a :class:`~rankscope.simulator.errors.TraceFormatError`
with one clear message; the numbers of the file are checked by :mod:`.check` before they size
anything, and salvage of a file cut short is linear in its rows.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .. import limits
from ..errors import ProgramError, TraceFormatError
from ..program import Buffer, OpKind, Phase, Program
from . import check
from .meta import trace_meta
from .model import Trace
from .schema import COL, END_KEY, LINK, MAGIC, META_KEY, NUMPY, SCHEMA, VERSION

_CONTINUATION = b"\xff\xff\xff\xff"   # every Arrow IPC stream message since format 0.15 starts so


def _fail(path: str, what: str) -> TraceFormatError:
    return TraceFormatError(f"{path}: {what}")


def _read_bytes(path: str) -> bytes:
    """The file's bytes: a regular file at once; a FIFO or device in pieces, stopping at the first
    bytes that cannot start an Arrow stream (``/dev/zero``) or at the memory budget."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TraceFormatError(f"no trace file at {path!r}") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise _fail(path, f"cannot read the file ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "is a directory, not a trace file")
    budget = limits.memory_budget()
    if stat.S_ISREG(st.st_mode) and st.st_size > budget:
        raise _fail(path, f"{st.st_size} bytes, more than the memory budget of {budget} bytes "
                          f"({limits.BUDGET_HINT})")
    try:
        with open(path, "rb") as f:  # into memory: a later overwrite of the file cannot bite us
            if stat.S_ISREG(st.st_mode):
                return f.read()
            head = f.read(8)
            if len(head) >= 4 and head[:4] != _CONTINUATION:
                return head
            parts, n = [head], len(head)
            while chunk := f.read(1 << 20):
                parts.append(chunk)
                n += len(chunk)
                if n > budget:
                    raise _fail(path, f"more than the memory budget of {budget} bytes and still going "
                                      f"({limits.BUDGET_HINT})")
            return b"".join(parts)
    except OSError as e:
        raise _fail(path, f"cannot read the file ({e.strerror or e})") from None


def _open_stream(path: str) -> ipc.RecordBatchStreamReader:
    data = _read_bytes(path)
    if not data:
        raise _fail(path, "the file is empty, not a rankscope trace")
    if data[:6] == b"ARROW1":
        raise _fail(path, "an Arrow IPC *file*, not a stream; rankscope traces are Arrow IPC streams")
    if data[:4] != _CONTINUATION:
        raise _fail(path, "not a rankscope trace (not an Arrow IPC stream)")
    try:
        return ipc.open_stream(pa.py_buffer(data))
    except Exception:  # pyarrow raises several kinds on foreign bytes
        raise _fail(path, "not a rankscope trace (not an Arrow IPC stream, or cut short inside "
                          "its schema)") from None


def _read_header(path: str, schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise _fail(path, "an Arrow stream without rankscope metadata, not a rankscope trace")
    try:
        h = json.loads(raw)
    except (ValueError, RecursionError):
        raise _fail(path, "the rankscope metadata is not valid JSON") from None
    if not isinstance(h, dict) or h.get("magic") != MAGIC:
        raise _fail(path, f"wrong magic {check.short(h.get('magic')) if isinstance(h, dict) else None}, "
                          f"expected {MAGIC!r}; not a rankscope trace")
    v = h.get("version")
    if isinstance(v, bool) or not isinstance(v, int) or v != VERSION:
        newer = isinstance(v, int) and not isinstance(v, bool) and v > VERSION
        raise _fail(path, f"written by rankscope trace format v{check.short(v)}; this rankscope "
                          f"reads v{VERSION} ({'upgrade rankscope' if newer else 'convert it'})")
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
            except (ValueError, RecursionError):
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
        self.cols: dict[str, list[np.ndarray]] = {n: [] for n in NUMPY}
        self.ptr: list[np.ndarray] = []
        self.idx: list[np.ndarray] = []
        self.base = 0
        self.n = 0

    def add(self, batch: pa.RecordBatch, mask: np.ndarray | None) -> None:
        if mask is not None:
            batch = batch.filter(pa.array(mask))
        self.n += batch.num_rows
        for n in NUMPY:
            self.cols[n].append(_np(batch.column(COL[n])))
        deps = batch.column(COL["deps"])
        off = _np(deps.offsets).astype(np.int64)
        self.idx.append(_np(deps.values)[off[0]:off[-1]])
        self.ptr.append(off[1:] - off[0] + self.base if self.ptr else off - off[0])
        self.base += int(off[-1] - off[0])

    def get(self, name: str) -> np.ndarray:
        return _cat(self.cols[name], NUMPY[name])

    def deps(self) -> tuple[np.ndarray, np.ndarray]:
        return _cat(self.ptr, np.int64) if self.ptr else np.zeros(1, np.int64), \
            _cat(self.idx, np.int64)


def salvage_prefix(ptr: np.ndarray, idx: np.ndarray, k: int) -> int:
    """The largest ``j <= k`` such that ops ``0..j-1`` depend only on ops before ``j``, in linear
    time: ``j`` qualifies iff the largest dependency of ops ``0..j-1`` is below ``j``."""
    if k == 0:
        return 0
    counts = np.diff(ptr[:k + 1])
    reach = np.full(k, -1, np.int64)
    if ptr[k]:
        np.maximum.at(reach, np.repeat(np.arange(k), counts), idx[:ptr[k]])
    prefix = np.empty(k + 1, np.int64)
    prefix[0] = -1
    np.maximum.accumulate(reach, out=prefix[1:])
    ok = np.flatnonzero(prefix < np.arange(k + 1))
    return int(ok[-1])


def _program(h: dict[str, Any], r: _Rows, path: str, salvage: bool) -> tuple[Program, dict, dict]:
    """The program from the header and the op rows, ops in id order; with ``salvage``, only the
    longest prefix of ops 0..k-1 that are all present and depend on nothing later."""
    ids = r.get("op")
    n = ids.size
    m, nranks = check.check_counts(h, n)
    t = check.check_tables(h, nranks, m)
    check.check_layout(nranks, t["buffers"], *t["chunks"], limits.memory_budget())
    cols = {c: r.get(c) for c in ("kind", "rank", "peer", "step", "chunk", "buffer", "offset",
                                  "nbytes", "compute", "start", "end", "lane")}
    ptr, idx = r.deps()
    info: dict[str, Any] = {"op_rows": n}
    if not (n == m and np.array_equal(ids, np.arange(m))):
        bad = (ids < 0) | (ids >= m)
        if bad.any():
            raise _fail(path, f"corrupt op column: op id {int(ids[bad][0])} out of range 0..{m - 1}")
        # only ids below n can be part of a prefix of present ops (n rows hold at most ops 0..n-1)
        low = ids < n
        count = np.bincount(ids[low], minlength=n) if n else np.zeros(0, np.int64)
        if (count > 1).any():
            raise _fail(path, f"corrupt op column: op {int(np.flatnonzero(count > 1)[0])} has "
                              f"{int(count.max())} rows")
        k = int(np.argmin(count)) if (count == 0).any() else n
        if k < m and not salvage:
            raise _fail(path, f"{m - n} of {m} ops have no row (first: op {k}); "
                              f"pass salvage=True / --salvage to load the ops before it")
        pos = np.empty(n, np.int64)
        pos[ids[low]] = np.flatnonzero(low)
        pos = pos[:k]
        counts = ptr[pos + 1] - ptr[pos]
        new_ptr = np.zeros(k + 1, np.int64)
        np.cumsum(counts, out=new_ptr[1:])
        idx = idx[np.repeat(ptr[pos] - new_ptr[:-1], counts) + np.arange(new_ptr[-1])]
        ptr, cols = new_ptr, {c: v[pos] for c, v in cols.items()}
        if k < m:  # the kept ops may not wait for a dropped one
            k = salvage_prefix(ptr, idx, k)
            idx = idx[:ptr[k]]
            ptr, cols = ptr[:k + 1], {c: v[:k] for c, v in cols.items()}
            info["ops_kept"] = k
    check.check_steps(cols["step"], m)
    check.check_peers(cols["kind"], cols["peer"])
    check.check_times(cols["start"], cols["end"])
    kind, chunk, buffer, compute = cols["kind"], cols["chunk"], cols["buffer"], cols["compute"]
    tr = kind <= OpKind.COPY
    uses_compute = (kind == OpKind.COMPUTE) | (kind == OpKind.COLLECTIVE)
    arg = chunk if tr.all() else np.where(tr, chunk, np.where(uses_compute, compute, buffer))
    secs, flops, labels = t["compute"]
    try:
        prog = Program(
            nranks, kind, cols["rank"], cols["peer"], arg, cols["step"], ptr, idx,
            tuple(Buffer(*b) for b in t["buffers"]), *t["chunks"], secs, flops, labels,
            tuple(Phase(*p) for p in t["phases"]), t["program_meta"], *t["collectives"]).validate()
    except ProgramError as e:
        raise _fail(path, f"the program in this trace is invalid: {e}") from None
    if prog.chunk_len.size and tr.any():
        c = np.where(tr, arg, 0)
        wrong = tr & ((buffer != prog.chunk_buf[c]) | (cols["offset"] != prog.chunk_off[c])
                      | (cols["nbytes"] != prog.chunk_len[c]))
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise _fail(path, f"corrupt row for op {i}: its buffer/offset/nbytes disagree with "
                              f"chunk {int(arg[i])} of the chunk table")
    check.check_total_bytes(float(prog.op_bytes.astype(np.float64).sum()))
    return prog, cols, info


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
            if b.column(COL["deps"]).values.null_count or any(c.null_count for c in b.columns):
                raise _fail(path, "corrupt columns: null values in a rankscope trace")
            is_link = _np(b.column(COL["kind"])) == LINK
            nl = int(is_link.sum())
            if nl < b.num_rows:
                ops.add(b, ~is_link if nl else None)
            if nl:
                links.add(b, is_link if nl < b.num_rows else None)
        except pa.ArrowException as e:
            raise _fail(path, f"corrupt columns ({str(e).splitlines()[0]})") from None
    if end is not None:
        counted = end.get("n_rows", n_rows)
        if isinstance(counted, bool) or not isinstance(counted, int) or counted != n_rows:
            raise _fail(path, f"corrupt: the end marker counts {check.short(end.get('n_rows'))} rows, "
                              f"the file holds {n_rows}")
        if not isinstance(end.get("complete", False), bool):
            raise _fail(path, "corrupt: the end marker's complete is not true or false")
    try:
        prog, cols, info = _program(h, ops, path, salvage)
        meta = h.get("meta")
        if not isinstance(meta, dict):
            raise TraceFormatError(f"trace meta must be an object, got {type(meta).__name__}")
        meta["complete"] = bool(end.get("complete", False)) if end is not None else False
        if end is not None and end.get("error"):
            meta["error"] = str(end["error"])
        if salvage and (end is None or info.get("ops_kept") is not None):
            meta["salvaged"] = True
            meta["salvage"] = {"batches": len(batches), "stopped": why or "end marker",
                               "ops_kept": prog.n_ops, **info}
        tm = trace_meta(meta, prog.meta, prog.nranks)
        check.check_known_meta(meta, prog.nranks)
        lane = cols["lane"]
        nlanes = len(tm.lanes)
        # lanes without names (an older writer) are indices still: at most one lane per op
        bad_lane = (lane < -1) | (lane >= (nlanes or prog.n_ops + 1))
        if np.any(bad_lane):
            i = int(np.flatnonzero(bad_lane)[0])
            raise TraceFormatError(f"corrupt lane column: op {i} has lane {int(lane[i])}, "
                                   f"meta lists {nlanes} lanes")
        link, t0, t1, lb = links.get("link"), links.get("start"), links.get("end"), links.get("nbytes")
        check.check_links(link, t0, t1, lb, len(tm.topology["links"]) if tm.topology and "links" in tm.topology else None)
        return Trace(prog, cols["start"], cols["end"], lane, link, t0, t1, lb.astype(np.float64), meta)
    except TraceFormatError as e:
        msg = str(e)
        raise (e if msg.startswith(path) else _fail(path, msg)) from None


def check_trace(trace: Trace) -> Trace:
    """The checks :func:`read_trace` makes, on a trace built in memory (an import, before it is
    written): so that what rankscope writes, it reads back. TraceFormatError naming the field."""
    p = trace.program
    if p.nranks > check.MAX_RANKS:
        raise TraceFormatError(f"{p.nranks} ranks is over the limit of {check.MAX_RANKS}")
    sizes = [b.nbytes for b in p.buffers] + p.coll_bytes.tolist() + p.chunk_len.tolist()
    if sizes and max(sizes) > check.MAX_BYTES:
        raise TraceFormatError(f"a buffer, chunk or collective of {max(sizes)} bytes is over the limit of "
                               f"{check.MAX_BYTES}")
    check.check_steps(p.step, p.n_ops)
    check.check_peers(p.kind, p.peer)
    check.check_times(trace.start, trace.end)
    tm = trace_meta(trace.meta, p.meta, p.nranks)
    check.check_known_meta(trace.meta, p.nranks)
    nlanes = len(tm.lanes)
    if trace.lane.size and (trace.lane.min() < -1 or trace.lane.max() >= (nlanes or p.n_ops + 1)):
        raise TraceFormatError(f"a lane is out of range -1..{nlanes - 1}")
    check.check_links(trace.link_id, trace.link_t0, trace.link_t1, trace.link_bytes,
                      len(tm.topology["links"]) if tm.topology and "links" in tm.topology else None)
    check.check_total_bytes(float(p.op_bytes.astype(np.float64).sum()))
    return trace
