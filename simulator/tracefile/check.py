"""The one validation layer of the trace reader: distrust every number in a file.

Every header field's type and range is checked against the rows the file actually holds *before*
anything is allocated from it (a 6.7 KB file whose header says ``nranks: 4e8`` must not cost
12 GB): ``n_ops`` against the op rows present, ``nranks`` against what those ops can touch
(``2 n_ops + 64``, at most :data:`MAX_RANKS`), every table's entries as flat lists of numbers in
range, byte counts at most :data:`MAX_BYTES` (so no sum of them wraps int64), times finite. Each
failure is a :class:`~rankscope.simulator.errors.TraceFormatError` naming the field and the value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import TraceFormatError
from ..limits import MAX_BYTES, MAX_RANKS
from ..program import CollKind, Init

MAX_TOTAL_BYTES = 1 << 53  # the bytes all ops move together: float64 sums of them stay exact
MAX_SECONDS = 1e12       # |time| in a trace: 31,000 years; x 1e6 (microseconds) is still exact-ish
_INIT = {i.value for i in Init}


def short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TraceFormatError(f"{what} must be an integer, got {type(v).__name__} {short(v)}")
    if not lo <= v <= hi:
        raise TraceFormatError(f"{what} = {short(v)} is out of range {lo}..{hi}")
    return v


def int_array(v: Any, what: str, lo: int, hi: int, dtype: Any) -> np.ndarray:
    """A flat JSON list of integers in ``lo..hi`` as a numpy array of ``dtype``."""
    if not isinstance(v, list):
        raise TraceFormatError(f"{what} must be a list of integers, got {type(v).__name__}")
    if not v:
        return np.zeros(0, dtype)
    try:
        a = np.array(v)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise TraceFormatError(f"{what} must be a flat list of integers") from None
    if a.ndim != 1 or a.dtype.kind not in "iu":
        bad = next((x for x in v if isinstance(x, bool) or not isinstance(x, int)), None)
        raise TraceFormatError(f"{what} must be a flat list of integers"
                               + (f", it holds {short(bad)}" if bad is not None else " (one is out of int64)"))
    if a.min() < lo or a.max() > hi:
        x = int(a[(a < lo) | (a > hi)][0])
        raise TraceFormatError(f"{what} holds {x}, out of range {lo}..{hi}")
    return a.astype(dtype)


def float_array(v: Any, what: str, lo: float, hi: float) -> np.ndarray:
    """A flat JSON list of numbers in ``lo..hi`` (NaN allowed: "not given") as float64."""
    if not isinstance(v, list):
        raise TraceFormatError(f"{what} must be a list of numbers, got {type(v).__name__}")
    if not v:
        return np.zeros(0, np.float64)
    try:
        a = np.array(v)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise TraceFormatError(f"{what} must be a flat list of numbers") from None
    if a.ndim != 1 or a.dtype.kind not in "iuf":
        raise TraceFormatError(f"{what} must be a flat list of numbers")
    a = a.astype(np.float64)
    bad = ~np.isnan(a) & ((a < lo) | (a > hi))
    if bad.any():
        raise TraceFormatError(f"{what} holds {float(a[bad][0])!r}, out of range {lo:g}..{hi:g}")
    return a


def _str_list(v: Any, what: str, n: int | None = None) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise TraceFormatError(f"{what} must be a list of strings")
    if n is not None and len(v) != n:
        raise TraceFormatError(f"{what} has {len(v)} entries, expected {n}")
    return tuple(v)


def _obj(v: Any, what: str) -> dict:
    if not isinstance(v, dict):
        raise TraceFormatError(f"{what} must be an object, got {type(v).__name__} {short(v)}")
    return v


def check_counts(h: dict, op_rows: int) -> tuple[int, int]:
    """``n_ops`` and ``nranks`` of the header, checked against ``op_rows``, the rows present."""
    m = _int(h.get("n_ops"), "header n_ops", 0, 1 << 62)
    if m < op_rows:
        raise TraceFormatError(f"header n_ops = {m}, but the file holds {op_rows} op rows")
    n = _int(h.get("nranks"), "header nranks", 1, MAX_RANKS)
    if n > 2 * m + 64:
        raise TraceFormatError(f"header nranks = {n}, but {m} ops can touch at most {2 * m + 64} ranks")
    return m, n


def check_tables(h: dict, nranks: int, m: int) -> dict[str, Any]:
    """The program's small tables, typed and in range (the Program's own validate does the rest:
    chunks inside their buffers, ids in range, no cycle)."""
    bufs = h.get("buffers")
    if not isinstance(bufs, list):
        raise TraceFormatError(f"header buffers must be a list, got {type(bufs).__name__}")
    out_bufs = []
    for i, b in enumerate(bufs):
        w = f"header buffers[{i}]"
        _obj(b, w)
        if not isinstance(b.get("name"), str) or not isinstance(b.get("category"), str):
            raise TraceFormatError(f"{w}: name and category must be strings")
        if not isinstance(b.get("init"), str) or b["init"] not in _INIT:
            raise TraceFormatError(f"{w}: init {short(b.get('init'))} is not one of {sorted(_INIT)}")
        if not isinstance(b.get("alive"), bool):
            raise TraceFormatError(f"{w}: alive must be true or false, got {short(b.get('alive'))}")
        out_bufs.append((b["name"], _int(b.get("nbytes"), f"{w}.nbytes", 0, MAX_BYTES), Init(b["init"]),
                         _int(b.get("root"), f"{w}.root", 0, nranks - 1), b["alive"], b["category"]))
    nb = len(out_bufs)
    ch = _obj(h.get("chunks"), "header chunks")
    chunks = (int_array(ch.get("buffer"), "header chunks.buffer", 0, nb - 1, np.int32),
              int_array(ch.get("offset"), "header chunks.offset", 0, MAX_BYTES, np.int64),
              int_array(ch.get("nbytes"), "header chunks.nbytes", 0, MAX_BYTES, np.int64))
    if not chunks[0].size == chunks[1].size == chunks[2].size:
        raise TraceFormatError("header chunks: buffer, offset and nbytes differ in length")
    co = _obj(h.get("compute"), "header compute")
    secs = float_array(co.get("seconds"), "header compute.seconds", 0.0, MAX_SECONDS)
    flops = float_array(co.get("flops"), "header compute.flops", 0.0, 1e30)
    labels = _str_list(co.get("labels"), "header compute.labels", secs.size)
    if flops.size != secs.size:
        raise TraceFormatError("header compute: seconds and flops differ in length")
    cl = h.get("collectives", {"kind": [], "nbytes": [], "buffer": []})
    _obj(cl, "header collectives")
    colls = (int_array(cl.get("kind"), "header collectives.kind", 0, max(CollKind), np.uint8),
             int_array(cl.get("nbytes"), "header collectives.nbytes", 0, MAX_BYTES, np.int64),
             int_array(cl.get("buffer"), "header collectives.buffer", -1, nb - 1, np.int32))
    if not colls[0].size == colls[1].size == colls[2].size:
        raise TraceFormatError("header collectives: kind, nbytes and buffer differ in length")
    phases = h.get("phases")
    if not isinstance(phases, list):
        raise TraceFormatError("header phases must be a list")
    out_ph = []
    for i, p in enumerate(phases):
        w = f"header phases[{i}]"
        _obj(p, w)
        if not isinstance(p.get("name"), str):
            raise TraceFormatError(f"{w}: name must be a string")
        first = _int(p.get("first_step"), f"{w}.first_step", 0, m)
        out_ph.append((p["name"], first, _int(p.get("nsteps"), f"{w}.nsteps", 0, m - first + 1)))
    pm = h.get("program_meta")
    if not isinstance(pm, dict):
        raise TraceFormatError(f"header program_meta must be an object, got {type(pm).__name__}")
    check_program_meta(pm, nranks, out_bufs)
    return {"buffers": out_bufs, "chunks": chunks, "compute": (secs, flops, labels), "collectives": colls,
            "phases": out_ph, "program_meta": pm}


def check_program_meta(pm: dict, nranks: int, bufs: list) -> None:
    """The program meta keys that the simulator computes with: ``nbytes`` (the message size, what
    algbw divides) and ``shard_bounds`` (per buffer, None or its N+1 shard offsets, rising from 0
    to the buffer's size: the initial layout of a sharded buffer reads them)."""
    if "nbytes" in pm:
        _int(pm["nbytes"], "header program_meta.nbytes", 0, MAX_BYTES)
    sb = pm.get("shard_bounds")
    if sb is None:
        return
    if not isinstance(sb, list) or len(sb) > len(bufs):
        raise TraceFormatError(f"header program_meta.shard_bounds must be a list of at most {len(bufs)} "
                               "(one per buffer)")
    for b, bounds in enumerate(sb):
        if bounds is None:
            continue
        w = f"header program_meta.shard_bounds[{b}]"
        size = bufs[b][1]
        a = int_array(bounds, w, 0, size, np.int64)
        if a.size != nranks + 1 or a[0] != 0 or a[-1] != size or np.any(np.diff(a) < 0):
            raise TraceFormatError(f"{w} must be {nranks + 1} offsets rising from 0 to the buffer's {size} bytes")


def check_times(start: np.ndarray, end: np.ndarray) -> None:
    """Op times: NaN (never ran) or finite within :data:`MAX_SECONDS`; an op that never started has
    no end (an op that started may lack one: a hang). An end before its start is data, not
    corruption: a measured run's checks (benchmarks/gpu_check.py) report it; readers clamp the duration."""
    for name, t in (("start", start), ("end", end)):
        bad = np.isinf(t) | (np.abs(np.nan_to_num(t)) > MAX_SECONDS)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TraceFormatError(f"corrupt {name} column: op {i} has {name} {float(t[i])!r} "
                                   f"(times are finite, |t| <= {MAX_SECONDS:g} s)")
    bad = np.isnan(start) & ~np.isnan(end)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceFormatError(f"corrupt times: op {i} runs from {float(start[i])!r} to {float(end[i])!r}")


def check_peers(kind: np.ndarray, peer: np.ndarray) -> None:
    """Only transfers have a peer (the Program contract: -1 otherwise); views index the chunk
    table by ``arg`` for every op with a peer."""
    bad = (kind > 1) & (peer != -1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceFormatError(f"corrupt peer column: op {i} is no transfer but has peer {int(peer[i])}")


def check_steps(step: np.ndarray, m: int) -> None:
    if step.size and (step.min() < -1 or step.max() > m):
        i = int(np.flatnonzero((step < -1) | (step > m))[0])
        raise TraceFormatError(f"corrupt step column: op {i} has step {int(step[i])}, out of range -1..{m}")


def check_links(link: np.ndarray, t0: np.ndarray, t1: np.ndarray, nbytes: np.ndarray, nlinks: int | None) -> None:
    if not link.size:
        return
    hi = (nlinks - 1) if nlinks is not None else (1 << 31) - 1
    if link.min() < 0 or link.max() > hi:
        x = int(link[(link < 0) | (link > hi)][0])
        raise TraceFormatError(f"corrupt link column: link id {x} on a link row"
                               + (f" (the topology has {nlinks} links)" if nlinks is not None else ""))
    for name, t in (("start", t0), ("end", t1)):
        if not np.all(np.isfinite(t)) or np.abs(t).max() > MAX_SECONDS:
            raise TraceFormatError(f"corrupt link rows: a {name} time is not finite or beyond {MAX_SECONDS:g} s")
    if nbytes.min() < 0 or nbytes.max() > MAX_BYTES:
        raise TraceFormatError(f"corrupt link rows: a byte count out of range 0..{MAX_BYTES}")


def check_total_bytes(op_bytes_sum: float) -> None:
    if not op_bytes_sum <= MAX_TOTAL_BYTES:
        raise TraceFormatError(f"the ops move {op_bytes_sum:.3g} bytes in all, more than 2^53: "
                               "the byte counts are corrupt")


def check_known_meta(meta: dict, nranks: int) -> None:
    """The keys of a measured trace's meta that the exporters and summaries read."""
    others = meta.get("other_collectives", [])
    if not isinstance(others, list):
        raise TraceFormatError(f"trace meta other_collectives must be a list, got {type(others).__name__}")
    for i, c in enumerate(others):
        w = f"trace meta other_collectives[{i}]"
        _obj(c, w)
        _int(c.get("rank"), f"{w}.rank", 0, nranks - 1)
        _int(c.get("nbytes"), f"{w}.nbytes", 0, MAX_BYTES)
        if not isinstance(c.get("kind"), str):
            raise TraceFormatError(f"{w}.kind must be a string")
        for k in ("start", "end"):
            v = c.get(k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (math.isfinite(v) and abs(v) > MAX_SECONDS) \
                    or math.isinf(v):
                raise TraceFormatError(f"{w}.{k} = {short(v)} must be a finite time or NaN")
        for k in ("name", "dtype", "impl"):
            if k in c and not isinstance(c[k], str):
                raise TraceFormatError(f"{w}.{k} must be a string")
        gr = c.get("group_ranks")
        if gr is not None:
            int_array(gr, f"{w}.group_ranks", 0, MAX_RANKS, np.int64)  # the group's ranks, imported or not
    colls = meta.get("collectives")
    if colls is not None:
        if not isinstance(colls, list):
            raise TraceFormatError(f"trace meta collectives must be a list, got {type(colls).__name__}")
        for i, c in enumerate(colls):
            w = f"trace meta collectives[{i}]"
            _obj(c, w)
            for k in ("name", "impl", "dtype"):
                if k in c and not isinstance(c[k], str):
                    raise TraceFormatError(f"{w}.{k} must be a string, got {short(c[k])}")
            if c.get("group_ranks") is not None:
                int_array(c["group_ranks"], f"{w}.group_ranks", 0, MAX_RANKS, np.int64)
    steps = meta.get("steps")
    if steps is not None:
        _obj(steps, "trace meta steps")
        for r, w in steps.items():
            if not isinstance(w, list) or not all(
                    isinstance(p, list) and len(p) == 2 and all(
                        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                        and abs(x) <= MAX_SECONDS for x in p) for p in w):
                raise TraceFormatError(f"trace meta steps[{r!r}] must be a list of [start, end] finite times")
    ranks = meta.get("ranks")
    if ranks is not None:
        _obj(ranks, "trace meta ranks")
        for r, v in ranks.items():
            if not (r.isdigit() and int(r) < nranks) or not isinstance(v, dict):
                raise TraceFormatError(f"trace meta ranks: key {short(r)} must be a rank 0..{nranks - 1} "
                                       "with an object")
            if not isinstance(v.get("memory", {}), dict):
                raise TraceFormatError(f"trace meta ranks[{r!r}].memory must be an object")
    for k, lo, hi in (("epoch_ns", -(1 << 63), (1 << 63) - 1), ("t0", -MAX_SECONDS, MAX_SECONDS)):
        v = meta.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi):
            raise TraceFormatError(f"trace meta {k} = {short(v)} must be a number in {lo:g}..{hi:g}")
    src = meta.get("source")
    if src is not None and not isinstance(src, dict):
        raise TraceFormatError("trace meta source must be an object")


def check_layout(nranks: int, buffers: list, chunk_buf: np.ndarray, chunk_off: np.ndarray,
                 chunk_len: np.ndarray, budget: int) -> None:
    """The provenance layout a replay builds (rankscope.simulator.provenance: per buffer, N ranks x
    segments x ceil(N/64) words of 8 bytes) must fit the memory budget: a header of 10^4 buffers on
    2 x 10^4 ranks costs a few hundred kB of JSON and would ask for a terabyte."""
    words = -(-nranks // 64)
    segs = len(buffers)  # one segment per buffer at least
    if chunk_buf.size:
        ends = np.unique(np.concatenate([chunk_buf.astype(np.int64) * 2**51 + chunk_off,
                                         chunk_buf.astype(np.int64) * 2**51 + chunk_off + chunk_len]))
        segs += int(ends.size)
    segs += nranks * sum(1 for b in buffers if b[2] is Init.SHARD)
    need = nranks * words * 8 * segs
    if need > budget:
        raise TraceFormatError(f"replaying it needs about {need:.3g} bytes of provenance layout ({nranks} ranks x "
                               f"{segs} segments), over the memory budget of {budget:.3g} "
                               "(raise it with RANKSCOPE_MEMORY=<bytes>)")
