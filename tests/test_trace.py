"""Trace format v1 (traces/README.md): round trips, plain-Arrow readability, recording while a run
goes, crash prefixes, and one clear error for every bad file."""

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rankscope.simulator.tracefile.writer as W
from rankscope.simulator.builder import ProgramBuilder
from rankscope.simulator.collectives import build
from rankscope.simulator.errors import RankscopeError, TraceFormatError
from rankscope.simulator.program import Buffer, Init, OpKind, Phase
from rankscope.simulator.trace import LINK, Trace, TraceWriter, program_equal, read_trace, trace_summary, write_trace

META = {"executor": "sim", "clock": "simulated", "topology": {"preset": "ring:8"},
        "lanes": ["send", "recv", "compute"], "note": ("tuples", "become", "lists")}


def _mixed_program():
    """Compute, alloc and free ops, a compute table, phases and meta: every Program field used."""
    b = ProgramBuilder(2, [Buffer("grad", 64, Init.EMPTY, alive=False, category="gradients"),
                           Buffer("param", 32, Init.ROOT, root=1)], meta={"collective": "toy"})
    b.grid(0, (0, 16, 64))
    a0, a1 = b.alloc(0, 0, 0), b.alloc(1, 0, 0)
    f0 = b.compute(0, 1, seconds=1e-3, flops=2e9, label="fwd", deps=[a0])
    f1 = b.compute(1, 1, seconds=2e-3, label="bwd", deps=[a1])
    t = b.transfer(0, 1, b.chunk(0, 0), OpKind.REDUCE, 2, deps=[f0, f1])
    b.transfer(1, 0, b.chunk(0, 0, 2), OpKind.COPY, 3, deps=[t])
    b.free(0, 0, 4)
    b.phases.append(Phase("toy", 0, 5))
    return b.build()


PROGRAMS = {
    "ring4": lambda: build("all-reduce", "ring", 4, 1000),
    "ring8": lambda: build("all-reduce", "ring", 8, 4096),
    "ps": lambda: build("all-reduce", "ps", 4, 1000),
    "hd": lambda: build("all-reduce", "hd", 8, 4096),
    "hier": lambda: build("all-reduce", "hier", 8, 4096, nodes=2),
    "tree": lambda: build("broadcast", "tree", 5, 999, root=2),
    "mixed": _mixed_program,
}


def _trace(prog, *, links=True, meta=META):
    start = prog.step * 1e-3
    lane = (np.arange(prog.n_ops) % 3).astype(np.int32)
    if not links:
        return Trace(prog, start, start + 5e-4, lane, meta=meta)
    ops = np.flatnonzero(prog.is_transfer)
    link_id = np.concatenate([prog.rank[ops], prog.nranks + prog.peer[ops]])
    t0 = np.concatenate([start[ops], start[ops]])
    nbytes = np.concatenate([prog.op_bytes[ops]] * 2).astype(float)
    return Trace(prog, start, start + 5e-4, lane, link_id, t0, t0 + 4e-4, nbytes, meta)


def _dir_names(path):
    return sorted(os.listdir(path))


# -- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROGRAMS)
def test_round_trip_gives_an_equal_trace(tmp_path, name):
    tr = _trace(PROGRAMS[name]())
    write_trace(tmp_path / "t.trace", tr)
    back = read_trace(tmp_path / "t.trace")
    assert back == tr
    assert program_equal(back.program, tr.program)
    assert back.meta["complete"] is True and back.meta["note"] == ["tuples", "become", "lists"]
    assert back.meta["rankscope"] and back.meta["machine"]["cpus"] == os.cpu_count()
    assert "salvaged" not in back.meta


def test_equality_sees_every_difference_and_treats_nan_as_equal():
    prog = build("all-reduce", "ring", 4, 1000)
    tr = _trace(prog)
    start = tr.start.copy()
    start[3] = np.nan
    a = Trace(prog, start, tr.end, tr.lane, tr.link_id, tr.link_t0, tr.link_t1, tr.link_bytes, META)
    b = Trace(prog, start.copy(), tr.end, tr.lane, tr.link_id, tr.link_t0, tr.link_t1,
              tr.link_bytes, META)
    assert a == b and a != tr
    assert _trace(prog, links=False) != tr
    assert _trace(prog, meta={**META, "clock": "monotonic"}) != tr
    assert tr != _trace(build("all-reduce", "ring", 4, 1001))
    assert not program_equal(prog, build("all-reduce", "ring", 4, 1001))


def test_trace_checks_its_columns_and_meta():
    prog = build("all-reduce", "ring", 4, 1000)
    with pytest.raises(TraceFormatError, match=r"start has shape \(3,\), expected \(24,\)"):
        Trace(prog, np.zeros(3), np.zeros(24), np.zeros(24))
    with pytest.raises(TraceFormatError, match="link_t1 has shape"):
        Trace(prog, np.zeros(24), np.zeros(24), np.zeros(24), [1, 2], [0, 0], [1], [5, 5])
    with pytest.raises(TraceFormatError, match="JSON-able.*object"):
        Trace(prog, np.zeros(24), np.zeros(24), np.zeros(24), meta={"x": object()})
    tr = Trace(prog, np.zeros(24), np.zeros(24), np.zeros(24), meta={"n": np.int64(3)})
    assert tr.meta["n"] == 3 and tr.meta["executor"] == "unknown" and tr.meta["complete"] is True
    assert not tr.start.flags.writeable


def test_the_file_reads_with_plain_pyarrow(tmp_path):
    prog = build("all-reduce", "hier", 8, 4096, nodes=2)
    tr = _trace(prog)
    write_trace(tmp_path / "t.trace", tr)
    table = ipc.open_stream(str(tmp_path / "t.trace")).read_all()
    assert table.schema.names == ["op", "kind", "rank", "peer", "step", "chunk", "buffer", "offset",
                                  "nbytes", "compute", "deps", "start", "end", "lane", "link"]
    assert table.schema.field("deps").type == pa.list_(pa.int64())
    assert table.schema.field("kind").type == pa.uint8()
    assert table.num_rows == prog.n_ops + tr.n_links
    header = json.loads(table.schema.metadata[b"rankscope"])
    assert header["magic"] == "rankscope-trace" and header["version"] == 1
    assert header["nranks"] == 8 and header["meta"]["executor"] == "sim"
    kind = table.column("kind").to_numpy()
    ops = table.filter(pc.not_equal(table.column("kind"), LINK))
    assert (kind == LINK).sum() == tr.n_links
    assert ops.column("op").to_pylist() == list(range(prog.n_ops))
    assert ops.column("deps").to_pylist()[40] == prog.deps(40).tolist()
    assert np.array_equal(ops.column("nbytes").to_numpy(), prog.op_bytes)
    assert np.array_equal(ops.column("buffer").to_numpy(), prog.chunk_buf[prog.arg])
    links = table.filter(pc.equal(table.column("kind"), LINK))
    assert np.array_equal(links.column("link").to_numpy(), tr.link_id)
    assert set(links.column("op").to_pylist()) == {-1}


def test_op_rows_of_compute_alloc_and_free(tmp_path):
    prog = _mixed_program()
    write_trace(tmp_path / "t.trace", _trace(prog))
    rows = ipc.open_stream(str(tmp_path / "t.trace")).read_all().to_pylist()
    by_kind = {r["kind"]: r for r in rows if r["op"] >= 0}
    assert by_kind[OpKind.COMPUTE]["compute"] >= 0 and by_kind[OpKind.COMPUTE]["buffer"] == -1
    assert by_kind[OpKind.ALLOC]["buffer"] == 0 and by_kind[OpKind.ALLOC]["nbytes"] == 64
    assert by_kind[OpKind.COPY]["chunk"] >= 0 and by_kind[OpKind.COPY]["nbytes"] == 64


def test_summary():
    prog = build("all-reduce", "ring", 4, 1000)
    start = prog.step * 1e-3
    start[prog.n_ops - 1] = np.nan
    tr = Trace(prog, start, start + 5e-4, np.zeros(prog.n_ops), [0, 1], [0, 0], [1, 1], [5, 5],
               {"executor": "gloo", "clock": "monotonic"})
    s = trace_summary(tr)
    assert (s["nranks"], s["n_ops"], s["collective"], s["algo"]) == (4, 24, "all-reduce", "ring")
    assert (s["executor"], s["clock"], s["complete"]) == ("gloo", "monotonic", True)
    assert s["makespan"] == pytest.approx(5e-3 + 5e-4)
    last = int(prog.op_bytes[-1])
    assert s["bytes_moved"] == 2 * 3 * 1000 - last
    assert sum(s["bytes_sent"]) == sum(s["bytes_received"]) == s["bytes_moved"]
    assert s["bytes_sent"][int(prog.rank[-1])] == 2 * 3 * 250 - last
    assert s["bytes_received"][int(prog.peer[-1])] == 2 * 3 * 250 - last
    assert (s["n_link_rows"], s["ops_never_ran"]) == (2, 1)


# -- atomic writes -----------------------------------------------------------------------------

def test_atomic_write_leaves_no_temp_files(tmp_path):
    tr = _trace(build("all-reduce", "ring", 4, 1000))
    write_trace(tmp_path / "t.trace", tr)
    write_trace(tmp_path / "t.trace", _trace(build("all-reduce", "ring", 8, 1000)))
    assert _dir_names(tmp_path) == ["t.trace"]
    assert read_trace(tmp_path / "t.trace").program.nranks == 8


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    tr = _trace(build("all-reduce", "ring", 4, 1000))
    write_trace(tmp_path / "t.trace", tr)

    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr(W, "_link_batch", boom)
    with pytest.raises(OSError, match="disk full"):
        write_trace(tmp_path / "t.trace", _trace(build("all-reduce", "ring", 8, 1000)))
    assert _dir_names(tmp_path) == ["t.trace"]
    assert read_trace(tmp_path / "t.trace") == tr


# -- recording while a run goes ------------------------------------------------------------------

def _record(path, tr, parts, *, close=True):
    """Append ``tr``'s ops to a TraceWriter in ``parts`` (lists of op ids), links in two batches."""
    w = TraceWriter(path, tr.program, tr.meta)
    for ids in parts:
        ids = np.asarray(ids)
        w.append(ids, tr.start[ids], tr.end[ids], tr.lane[ids])
    k = tr.n_links // 2
    w.append_links(tr.link_id[:k], tr.link_t0[:k], tr.link_t1[:k], tr.link_bytes[:k])
    w.append_links(tr.link_id[k:], tr.link_t0[k:], tr.link_t1[k:], tr.link_bytes[k:])
    if close:
        w.close()
    return w


def _shuffled_thirds(m, seed=0):
    ids = np.random.default_rng(seed).permutation(m)
    return np.array_split(ids, 3)


@pytest.mark.parametrize("name", ["ring8", "hd", "mixed"])
def test_writer_in_out_of_order_batches_equals_write_trace(tmp_path, name):
    tr = _trace(PROGRAMS[name]())
    write_trace(tmp_path / "a.trace", tr)
    _record(tmp_path / "b.trace", tr, _shuffled_thirds(tr.n_ops))
    assert _dir_names(tmp_path) == ["a.trace", "b.trace"]
    assert read_trace(tmp_path / "b.trace") == read_trace(tmp_path / "a.trace") == tr


def test_ops_never_recorded_read_back_as_nan(tmp_path):
    tr = _trace(build("all-reduce", "ring", 4, 1000))
    with TraceWriter(tmp_path / "t.trace", tr.program, tr.meta) as w:
        w.append([5, 0, 3], [0.5, 0.0, 0.3], [0.6, 0.1, 0.4], [1, 1, 2])
    back = read_trace(tmp_path / "t.trace")
    assert back.meta["complete"] is True and program_equal(back.program, tr.program)
    assert np.flatnonzero(back.ran).tolist() == [0, 3, 5]
    assert back.start[5] == 0.5 and back.lane[3] == 2 and back.lane[1] == -1
    assert trace_summary(back)["ops_never_ran"] == tr.n_ops - 3


def test_writer_refuses_bad_appends(tmp_path):
    prog = build("all-reduce", "ring", 4, 1000)
    with TraceWriter(tmp_path / "t.trace", prog) as w:
        w.append([1, 2], [0, 0], [1, 1])
        with pytest.raises(TraceFormatError, match="op 2 is recorded twice"):
            w.append([3, 2], [0, 0], [1, 1])
        with pytest.raises(TraceFormatError, match="op 4 is recorded twice"):
            w.append([4, 4], [0, 0], [1, 1])
        with pytest.raises(TraceFormatError, match="op id 24 is out of range 0..23"):
            w.append([24], [0], [1])
        with pytest.raises(TraceFormatError, match="2 op ids but 1 starts"):
            w.append([5, 6], [0], [1, 1])
    with pytest.raises(TraceFormatError, match="already closed"):
        w.append([7], [0], [1])
    assert read_trace(tmp_path / "t.trace").ran.sum() == 2


def test_an_exception_inside_the_writer_leaves_an_incomplete_partial(tmp_path):
    tr = _trace(build("all-reduce", "ring", 8, 4096))
    thirds = _shuffled_thirds(tr.n_ops)
    with pytest.raises(RuntimeError, match="rank 3 timed out"):
        with TraceWriter(tmp_path / "t.trace", tr.program, tr.meta) as w:
            for ids in thirds[:2]:
                w.append(ids, tr.start[ids], tr.end[ids], tr.lane[ids])
            raise RuntimeError("rank 3 timed out")
    assert _dir_names(tmp_path) == ["t.trace.partial"]
    back = read_trace(tmp_path / "t.trace.partial", salvage=True)
    assert back.meta["complete"] is False and "rank 3 timed out" in back.meta["error"]
    assert program_equal(back.program, tr.program)
    ran = np.sort(np.concatenate(thirds[:2]))
    assert np.flatnonzero(back.ran).tolist() == ran.tolist()
    assert np.array_equal(back.start[ran], tr.start[ran])


def test_a_crash_leaves_a_readable_prefix(tmp_path):
    tr = _trace(build("all-reduce", "ring", 8, 4096))
    m = tr.n_ops
    w = _record(tmp_path / "t.trace", tr, [np.arange(20, 40), np.arange(0, 30)[::-1][10:],
                                           np.arange(45, m)], close=False)
    # the process dies here: copy what is on disk, as a crash would leave it
    shutil.copy(tmp_path / "t.trace.partial", tmp_path / "crash.partial")
    w.close()
    with pytest.raises(TraceFormatError, match=r"truncated after 5 record batches .*pass "
                                               r"salvage=True / --salvage"):
        read_trace(tmp_path / "crash.partial")
    back = read_trace(tmp_path / "crash.partial", salvage=True)
    assert back.meta["complete"] is False and back.meta["salvaged"] is True
    assert back.n_ops == 40  # ops 0..39 arrived; 40..44 did not, so 45.. are past the gap
    p = back.program
    assert np.array_equal(p.kind, tr.program.kind[:40])
    assert np.array_equal(p.dep_idx, tr.program.dep_idx[:tr.program.dep_ptr[40]])
    assert np.array_equal(back.start, tr.start[:40]) and back.n_links == tr.n_links
    closed = read_trace(tmp_path / "t.trace")  # close() gave ops 40..44 rows with NaN times
    assert np.isnan(closed.start[40:45]).all() and closed.ran.sum() == m - 5
    assert program_equal(closed.program, tr.program) and closed.meta["complete"] is True


# -- truncation at any byte ------------------------------------------------------------------------

_TRUNC = {}


def _trunc_source(tmp):
    if not _TRUNC:
        tr = _trace(build("all-reduce", "ring", 4, 1000))
        _record(os.path.join(tmp, "src.trace"), tr, _shuffled_thirds(tr.n_ops, seed=1))
        with open(os.path.join(tmp, "src.trace"), "rb") as f:
            _TRUNC.update(tr=tr, data=f.read())
    return _TRUNC["tr"], _TRUNC["data"]


@settings(max_examples=300)
@given(frac=st.floats(0, 1, exclude_max=True), salvage=st.booleans())
def test_truncated_at_any_byte_is_an_error_or_a_prefix(tmp_path_factory, frac, salvage):
    tmp = str(tmp_path_factory.getbasetemp())
    tr, data = _trunc_source(tmp)
    cut = int(frac * len(data))
    path = os.path.join(tmp, "cut.trace")
    with open(path, "wb") as f:
        f.write(data[:cut])
    try:
        back = read_trace(path, salvage=salvage)
    except TraceFormatError as e:
        assert str(e).startswith(path) or "no trace file" in str(e)
        return
    k = back.n_ops
    assert np.array_equal(back.program.kind, tr.program.kind[:k])
    assert np.array_equal(back.start, tr.start[:k], equal_nan=True)
    if back.meta["complete"]:  # cut only inside the end-of-stream marker
        assert back == tr
    else:
        assert salvage and back.meta["salvaged"] is True


def test_every_cut_of_a_small_trace(tmp_path):
    tr, data = _trunc_source(str(tmp_path))
    path = tmp_path / "cut.trace"
    kinds = set()
    for cut in [*range(0, len(data) - 8, 11), len(data) - 9]:  # the last 8 bytes: end of stream
        path.write_bytes(data[:cut])
        with pytest.raises(TraceFormatError):
            read_trace(path)
        try:
            kinds.add(read_trace(path, salvage=True).n_ops)
        except TraceFormatError:
            kinds.add("error")
    assert "error" in kinds and 0 in kinds and tr.n_ops in kinds
    for cut in range(len(data) - 8, len(data) + 1):  # the end batch arrived: nothing is missing
        path.write_bytes(data[:cut])
        assert read_trace(path) == tr


# -- one clear error for every bad file --------------------------------------------------------------

def _rewrite(src, dst, *, header=None, table=None, end=True):
    """Copy a trace file, editing its header JSON and/or its table."""
    t = ipc.open_stream(str(src)).read_all()
    h = json.loads(t.schema.metadata[b"rankscope"])
    if header:
        header(h)
    t = table(t) if table else t
    with pa.OSFile(str(dst), "wb") as sink:
        w = ipc.new_stream(sink, t.schema.with_metadata({b"rankscope": json.dumps(h)}))
        w.write_table(t)
        if end:
            w.write_batch(pa.RecordBatch.from_pylist([], schema=t.schema),
                          custom_metadata={b"rankscope-end": json.dumps(
                              {"complete": True, "n_rows": t.num_rows})})
        w.close()


@pytest.fixture
def good(tmp_path):
    write_trace(tmp_path / "good.trace", _trace(build("all-reduce", "ring", 4, 1000)))
    return tmp_path / "good.trace"


def _err(path, **kw):
    with pytest.raises(TraceFormatError) as e:
        read_trace(path, **kw)
    assert isinstance(e.value, RankscopeError) and "\n" not in str(e.value)
    return str(e.value)


def test_missing_empty_and_garbage_files(tmp_path):
    assert "no trace file at" in _err(tmp_path / "nope.trace")
    assert "is a directory" in _err(tmp_path).lower() or "cannot read" in _err(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    assert "empty" in _err(tmp_path / "empty")
    (tmp_path / "junk").write_bytes(np.random.default_rng(0).bytes(5000))
    assert "not a rankscope trace" in _err(tmp_path / "junk")
    (tmp_path / "text").write_text('{"magic": "rankscope-trace"}\n')
    assert "not an Arrow IPC stream" in _err(tmp_path / "text")


def test_other_arrow_files(tmp_path):
    t = pa.table({"a": [1, 2]})
    with ipc.new_stream(str(tmp_path / "plain"), t.schema) as w:
        w.write_table(t)
    assert "without rankscope metadata" in _err(tmp_path / "plain")
    with ipc.new_file(str(tmp_path / "file"), t.schema) as w:
        w.write_table(t)
    assert "Arrow IPC *file*, not a stream" in _err(tmp_path / "file")


def test_wrong_magic(good, tmp_path):
    _rewrite(good, tmp_path / "m", header=lambda h: h.update(magic="something-else"))
    assert "wrong magic 'something-else'" in _err(tmp_path / "m")


@pytest.mark.parametrize("v", [2, 0])
def test_other_versions(good, tmp_path, v):
    _rewrite(good, tmp_path / "v", header=lambda h: h.update(version=v))
    msg = _err(tmp_path / "v", salvage=True)
    assert f"written by rankscope trace format v{v}; this rankscope reads v1" in msg


def test_a_rewritten_good_file_still_reads(good, tmp_path):
    _rewrite(good, tmp_path / "same")
    assert read_trace(tmp_path / "same").program.n_ops == 24


def _replace(t, name, values, type_=None):
    i = t.schema.get_field_index(name)
    return t.set_column(i, pa.field(name, type_ or t.schema.field(i).type), [values])


def test_corrupt_columns(good, tmp_path):
    _rewrite(good, tmp_path / "a", table=lambda t: _replace(
        t, "rank", pa.array(t.column("rank").to_numpy().astype(np.int64)), pa.int64()))
    assert "column 'rank' has type int64, expected int32" in _err(tmp_path / "a")
    _rewrite(good, tmp_path / "b", table=lambda t: t.drop_columns(["lane"]))
    assert "column 'lane' is missing" in _err(tmp_path / "b")

    def shift(t):
        op = t.column("op").to_numpy().copy()
        op[3] = 99
        return _replace(t, "op", pa.array(op))
    _rewrite(good, tmp_path / "c", table=shift)
    assert "op id 99 out of range 0..23" in _err(tmp_path / "c")

    def dup(t):
        op = t.column("op").to_numpy().copy()
        op[3] = 2
        return _replace(t, "op", pa.array(op))
    _rewrite(good, tmp_path / "d", table=dup)
    assert "op 2 has 2 rows" in _err(tmp_path / "d")

    _rewrite(good, tmp_path / "e", table=lambda t: t.slice(1))
    assert "1 of 24 ops have no row (first: op 0)" in _err(tmp_path / "e")

    def nulls(t):
        return _replace(t, "start", pa.array([None] * t.num_rows, pa.float64()))
    _rewrite(good, tmp_path / "f", table=nulls)
    assert "null values" in _err(tmp_path / "f")

    def bytes_(t):
        nb = t.column("nbytes").to_numpy().copy()
        nb[5] += 1
        return _replace(t, "nbytes", pa.array(nb))
    _rewrite(good, tmp_path / "g", table=bytes_)
    assert "corrupt row for op 5" in _err(tmp_path / "g")

    def lanes(t):
        lane = t.column("lane").to_numpy().copy()
        lane[6] = 7
        return _replace(t, "lane", pa.array(lane))
    _rewrite(good, tmp_path / "h", table=lanes)
    assert "op 6 has lane 7, meta lists 3 lanes" in _err(tmp_path / "h")


def test_invalid_program_and_metadata(good, tmp_path):
    def self_send(t):
        peer = t.column("peer").to_numpy().copy()
        peer[0] = t.column("rank").to_numpy()[0]
        return _replace(t, "peer", pa.array(peer))
    _rewrite(good, tmp_path / "p", table=self_send)
    assert "the program in this trace is invalid: op 0 sends to a peer" in _err(tmp_path / "p")
    _rewrite(good, tmp_path / "q", header=lambda h: h.pop("buffers"))
    assert "header buffers must be a list, got NoneType" in _err(tmp_path / "q")
    _rewrite(good, tmp_path / "r", header=lambda h: h["buffers"][0].update(init="weird"))
    assert "header buffers[0]: init 'weird' is not one of" in _err(tmp_path / "r")


def test_an_end_marker_that_disagrees(good, tmp_path):
    _rewrite(good, tmp_path / "x", table=lambda t: t.slice(0, 30))
    # the helper's end marker counts what it wrote; a stale count is corruption
    data = (tmp_path / "x").read_bytes().replace(b'"n_rows": 30', b'"n_rows": 31')
    (tmp_path / "y").write_bytes(data)
    assert "end marker counts 31 rows, the file holds 30" in _err(tmp_path / "y")


def test_span_and_makespan_are_one_rule():
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.topology import parse_topology

    prog, topo = build("all-reduce", "ring", 4, 4096), parse_topology("switch:4")
    sim = simulate(prog, topo)
    t = sim.to_trace(prog, topo)
    assert t.makespan == sim.makespan == t.span(np.arange(prog.n_ops))
    first = np.flatnonzero(prog.step == 0)
    assert t.span(first) == pytest.approx(float(sim.end[first].max() - sim.start[first].min()))
    cut = Trace(prog, np.where(prog.step < 2, t.start, np.nan), np.where(prog.step < 1, t.end, np.nan), t.lane)
    assert cut.makespan == pytest.approx(float(t.end[first].max() - t.start.min()))  # started ops count from their start
    none = Trace(prog, np.full(prog.n_ops, np.nan), np.full(prog.n_ops, np.nan), t.lane)
    assert none.makespan == 0.0
