"""Issue 14's reproducers, one test each: bad input is one line on stderr and exit 2, never a
traceback, a hang, all the memory or a user's file."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from fuzzing import laughs, read_raw, write_raw

from rankscope.cli import main
from rankscope.simulator.collectives import build
from rankscope.simulator.engine import simulate
from rankscope.simulator.errors import TraceFormatError, UsageError
from rankscope.simulator.interop.errors import ImportFormatError
from rankscope.simulator.interop.flight_recorder import import_flight_recorder
from rankscope.simulator.interop.safe_pickle import plain_loads
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.trace import read_trace, write_atomic, write_trace
from rankscope.simulator.tracefile.reader import salvage_prefix

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _err(argv, capsys) -> str:
    assert main([str(a) for a in argv]) == 2
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and "Traceback" not in cap.err, cap.err
    return cap.err


@pytest.fixture
def ring(tmp_path):
    prog = build("all-reduce", "ring", 4, 4096)
    topo = parse_topology("switch:4")
    path = tmp_path / "ring.trace"
    write_trace(path, simulate(prog, topo).to_trace(prog, topo))
    return path


# -- 1. never replace what is not a regular file ---------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_character_device_is_written_to_not_replaced(tmp_path, capsys):
    fake = tmp_path / "fake"
    os.mknod(fake, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    assert main(["sim", "all-reduce", "--ranks", "4", "--size", "4KiB", "--out", str(fake)]) == 0
    assert stat.S_ISCHR(os.stat(fake).st_mode)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_fifo_is_streamed_to(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["data"] = f.read()
    t = threading.Thread(target=reader)
    t.start()
    assert main(["sim", "all-reduce", "--ranks", "4", "--size", "4KiB", "--out", str(fifo)]) == 0
    t.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path / "copy.trace").write_bytes(got["data"])
    assert read_trace(tmp_path / "copy.trace").n_ops == 24


def test_a_trace_writer_streams_into_a_fifo_too(tmp_path):
    from rankscope.simulator.trace import TraceWriter

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}
    t = threading.Thread(target=lambda: got.update(data=fifo.read_bytes()))
    t.start()
    prog = build("all-reduce", "ring", 4, 4096)
    with TraceWriter(fifo, prog) as w:
        w.append(np.arange(prog.n_ops), np.zeros(prog.n_ops), np.ones(prog.n_ops))
    t.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ["pipe"]
    (tmp_path / "copy.trace").write_bytes(got["data"])
    assert read_trace(tmp_path / "copy.trace").meta["complete"]


def test_outputs_that_cannot_be_written_are_refused_before_the_run(tmp_path, capsys):
    assert "cannot write '/proc/x.trace'" in _err(["sim", "all-reduce", "--out", "/proc/x.trace"], capsys)
    assert "output path is empty" in _err(["sim", "all-reduce", "-o", ""], capsys)
    assert "cannot write to '-'" in _err(["sim", "all-reduce", "-o", "-"], capsys)
    assert "is a folder" in _err(["sim", "all-reduce", "-o", tmp_path], capsys)
    sock_dir = tmp_path / "s"
    sock_dir.mkdir()
    if os.geteuid() != 0:
        os.chmod(sock_dir, 0o500)
        assert "cannot write" in _err(["sim", "all-reduce", "-o", sock_dir / "x.trace"], capsys)


def test_an_empty_out_is_an_error_for_export_and_import(ring, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "output path is empty" in _err(["export", ring, "-o", ""], capsys)
    assert "output path is empty" in _err(["import", "flight-recorder", FIXTURES / "nccl_fr", "-o", ""], capsys)
    assert not (tmp_path / "ring.chrome.json").exists()


def test_sigterm_removes_the_temp_file_as_sigint_does(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("old")

    def fill(f):
        f.write(b"half")
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SystemExit) as e:
        write_atomic(target, fill)
    assert e.value.code == 128 + signal.SIGTERM
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["t.json"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# -- 2. distrust every number in a file -------------------------------------------------------------
@pytest.mark.parametrize("edit, msg", [
    (lambda h: h.update(nranks=int(4e8)), "header nranks = 400000000 is out of range 1..4194304"),
    (lambda h: h.update(nranks=200), "header nranks = 200, but 24 ops can touch at most 112"),
    (lambda h: h.update(nranks=4e8), "header nranks must be an integer, got float"),
    (lambda h: h.update(nranks=10**9), "header nranks = 1000000000 is out of range"),
    (lambda h: h.update(n_ops=10**11), "99999999976 of 100000000000 ops have no row (first: op 24)"),
    (lambda h: h.update(n_ops=3), "header n_ops = 3, but the file holds 24 op rows"),
    (lambda h: h.update(n_ops=float("inf")), "header n_ops must be an integer, got float inf"),
    (lambda h: h["buffers"][0].update(nbytes=2**70), "header buffers[0].nbytes = 1180591620717411303424 is out of"),
    (lambda h: h["collectives"].update(kind=[300], nbytes=[1], buffer=[0]), "header collectives.kind holds 300"),
    (lambda h: h["meta"].update(lanes=5), "trace meta 'lanes' must be a list of strings, got 5"),
    (lambda h: h.update(program_meta=[1]), "header program_meta must be an object, got list"),
    (lambda h: h["program_meta"].update(nbytes=10**400), "header program_meta.nbytes = 1000"),
    (lambda h: h["program_meta"].update(shard_bounds=5), "program_meta.shard_bounds must be a list of at most 1"),
    (lambda h: h["program_meta"].update(shard_bounds=[[0, "x", 3]]), "shard_bounds[0] must be a flat list of"),
    (lambda h: h["program_meta"].update(shard_bounds=[[0, 2**70, 0, 0, 0]]), "shard_bounds[0] must be a flat"),
    (lambda h: h["program_meta"].update(shard_bounds=[[0, 10]]), "shard_bounds[0] must be 5 offsets rising from 0"),
    (lambda h: h["program_meta"].update(shard_bounds=[[0, 3, 2, 4, h["buffers"][0]["nbytes"]]]),
     "shard_bounds[0] must be 5 offsets rising"),
    (lambda h: h["meta"].update(other_collectives=None), "other_collectives must be a list, got NoneType"),
    (lambda h: h["meta"]["topology"].update(nranks=2**64), "has nranks 18446744073709551616, the program has 4"),
    (lambda h: h["meta"]["topology"].update(name=5), "trace meta topology name must be a string, got int 5"),
    (lambda h: h.update(version=True), "written by rankscope trace format vTrue"),
    (lambda h: h.update(version=1.0), "written by rankscope trace format v1.0"),
])
def test_header_numbers_are_checked_before_anything_is_allocated(ring, tmp_path, edit, msg):
    table, header, end = read_raw(ring)
    edit(header)
    write_raw(tmp_path / "bad.trace", table, header, end)
    with pytest.raises(TraceFormatError) as e:
        read_trace(tmp_path / "bad.trace")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_an_infinite_start_time_is_refused_not_exported(ring, tmp_path, capsys):
    table, header, end = read_raw(ring)
    start = table.column("start").to_numpy().copy()
    start[0] = np.inf
    import pyarrow as pa
    i = table.schema.get_field_index("start")
    write_raw(tmp_path / "inf.trace", table.set_column(i, table.schema.field(i), pa.array(start)), header, end)
    assert "op 0 has start inf" in _err(["export", tmp_path / "inf.trace", "-f", "chakra",
                                         "-o", tmp_path / "c"], capsys)


def test_an_end_marker_with_a_string_count_is_corrupt(ring, tmp_path):
    table, header, end = read_raw(ring)
    write_raw(tmp_path / "s.trace", table, header, {**end, "n_rows": str(end["n_rows"])})
    with pytest.raises(TraceFormatError, match="end marker counts '72' rows, the file holds 72"):
        read_trace(tmp_path / "s.trace")


def test_byte_sums_that_would_overflow_are_an_error(ring, tmp_path):
    table, header, end = read_raw(ring)
    header["buffers"][0]["nbytes"] = 2**50
    header["chunks"]["nbytes"] = [2**50] * len(header["chunks"]["nbytes"])
    header["chunks"]["offset"] = [0] * len(header["chunks"]["offset"])
    import pyarrow as pa
    i = table.schema.get_field_index("nbytes")
    nb = table.column("nbytes").to_numpy().copy()
    nb[table.column("kind").to_numpy() != 255] = 2**50
    i2 = table.schema.get_field_index("offset")
    off = np.where(table.column("kind").to_numpy() != 255, 0, table.column("offset").to_numpy())
    table = table.set_column(i, table.schema.field(i), pa.array(nb)).set_column(i2, table.schema.field(i2),
                                                                               pa.array(off))
    write_raw(tmp_path / "o.trace", table, header, end)
    with pytest.raises(TraceFormatError, match="more than 2\\^53"):
        read_trace(tmp_path / "o.trace")


def test_info_of_a_device_does_not_read_forever(tmp_path, capsys):
    if os.geteuid() == 0:
        zero = tmp_path / "zero"
        os.mknod(zero, stat.S_IFCHR | 0o666, os.makedev(1, 5))  # what /dev/zero is
        assert "not an Arrow IPC stream" in _err(["info", zero], capsys)
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    t = threading.Thread(target=lambda: fifo.write_bytes(b"\0" * 65536))
    t.start()
    assert "not an Arrow IPC stream" in _err(["info", fifo], capsys)
    t.join(10)


# -- 3. salvage in linear time ----------------------------------------------------------------------
def _quadratic_prefix(ptr, idx, k):
    """The loop the reader had (quadratic on a chain): the reference for the linear one."""
    owner = np.repeat(np.arange(k), np.diff(ptr[:k + 1]))
    idx = idx[:ptr[k]]
    while k and (late := idx >= k).any():
        k = int(owner[late].min())
        idx, owner = idx[:ptr[k]], owner[:ptr[k]]
    return k


def test_salvage_prefix_agrees_with_the_reference():
    rng = np.random.default_rng(14)
    for _ in range(300):
        m = int(rng.integers(0, 40))
        counts = rng.integers(0, 3, m)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        idx = rng.integers(0, max(m, 1) + 5, int(ptr[-1])).astype(np.int64)
        k = int(rng.integers(0, m + 1))
        assert salvage_prefix(ptr, idx, k) == _quadratic_prefix(ptr, idx, k)


def test_a_cut_chain_salvages_to_the_ops_that_wait_for_nothing_dropped(tmp_path):
    """Ops each waiting for the next (the issue's 10^6-op file took 110 s; the old loop dropped one
    op per pass): cut in the middle, every kept op waits for a dropped one, so nothing is kept."""
    from rankscope.simulator.program import Buffer, Program
    from rankscope.simulator.trace import TraceWriter

    m = 20_000
    ptr = np.concatenate([np.arange(m), [m - 1]]).astype(np.int64)  # op i waits for op i + 1
    prog = Program(1, np.full(m, 2, np.uint8), np.zeros(m), np.full(m, -1), np.zeros(m), np.zeros(m),
                   ptr, np.arange(1, m, dtype=np.int64), (Buffer("b", 8),), np.zeros(0), np.zeros(0),
                   np.zeros(0), np.ones(1), np.zeros(1), ("c",))  # valid (a chain); not validated: 20,000 levels
    w = TraceWriter(tmp_path / "c.trace", prog)
    w.append(np.arange(m // 2), np.zeros(m // 2), np.ones(m // 2))
    w._sink.close()  # a crash: no end marker
    tr = read_trace(tmp_path / "c.trace.partial", salvage=True)
    assert tr.meta["salvaged"] and tr.n_ops == 0 and tr.meta["salvage"]["op_rows"] == m // 2


# -- 4. bounded command-line values ----------------------------------------------------------------
@pytest.mark.parametrize("argv, msg", [
    (["sim", "all-reduce", "--size", "1e19"], "over the limit of 1125899906842624 bytes"),
    (["sim", "all-reduce", "--size", "1e400"], "over the limit"),
    (["sweep", "--max", "1e30"], "over the limit"),
    (["real", "all-reduce", "--size", "1e19"], "over the limit"),
    (["real", "all-reduce", "--out", "/proc/x.trace"], "cannot write '/proc/x.trace'"),
    (["sim", "all-reduce", "--lat", "1e300"], "out of range: 0 to 3600 s"),
    (["sim", "train", "--bucket-mb", "nan"], "--bucket-mb must be > 0"),
    (["real", "all-reduce", "--timeout", "inf"], "must be 1 to 604800 seconds"),
    (["real", "all-reduce", "--timeout", "1e-9"], "must be 1 to 604800 seconds"),
    (["sweep", "--min", "0"], "--min must be >= 1 byte"),
    (["sim", "all-reduce", "--ranks", "30000", "--size", "4KiB"], "ranks is over the limit of 8192"),
    (["sim", "all-reduce", "--algo", "hd", "--ranks", "1000000"], "over the limit"),
    (["sim", "broadcast", "--pieces", "1000000"], "--pieces 1000000 is over the limit of 4096"),
    (["sim", "all-reduce", "--topology", "nodes:1000x1000"], "1000000 ranks is over the limit"),
    (["sim", "train", "--ranks", "1000000"], "over the limit"),
    (["sim", "train", "--model", "mlp:100000x10", "--ranks", "1000"], "would have about 1.4e+09 ops"),
    (["sim", "train", "--model", "params:1e30"], "over the limit of 1e+15"),
    (["sim", "train", "--model", "mlp:2x64", "--grad-accum", "1000000"], "--grad-accum 1000000 is over the limit of 4096"),
    (["sim", "train", "--model", "mlp:2000x64", "--grad-accum", "4000"], "x 4000 micro-batches would have about"),
    (["sim", "all-reduce", "--gamma", "1e308"], "gamma must be a finite number >= 0 and <= 1"),
    (["sim", "all-reduce", "--ranks", "9" * 40], "expected an integer"),
])
def test_cli_values_out_of_range_fail_in_one_line(argv, msg, capsys, monkeypatch):
    monkeypatch.setenv("RANKSCOPE_MAX_OPS", "100000000")
    assert msg in _err(argv, capsys)


def test_the_op_estimate_names_the_limit_and_the_user_can_raise_it(capsys, monkeypatch):
    monkeypatch.setenv("RANKSCOPE_MAX_OPS", "1000")
    err = _err(["sim", "all-reduce", "--ranks", "32", "--size", "4KiB"], capsys)
    assert "would have about 1.98e+03 ops, over the limit of 1e+03" in err and "RANKSCOPE_MAX_OPS" in err
    monkeypatch.setenv("RANKSCOPE_MAX_OPS", "2000")
    assert main(["sim", "all-reduce", "--ranks", "32", "--size", "4KiB", "--json"]) == 0


def test_sim_on_one_rank_writes_strict_json(capsys):
    assert main(["sim", "all-reduce", "--ranks", "1", "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert doc["timing"]["algbw"] is None


# -- 5. TOML topology errors say what is wrong -------------------------------------------------------
_TOML = "ranks = 2\n[[link]]\nsrc = 0\ndst = 1\nbw = {bw}\nlat = {lat}\nbidirectional = true\n"


@pytest.mark.parametrize("bw, lat, msg", [
    ("0", "1e-6", "bw 0 must be a finite bandwidth > 0"),
    ("1e9", "-1", "lat -1 must be a finite latency >= 0"),
    ("1e9", "1e300", "lat 1e+300 is out of range: 0 to 3600 s"),
    ('"5 parsecs"', "1e-6", "[[link]] #1: bw '5 parsecs': use a number or a string like '25 GB/s'"),
])
def test_toml_errors_are_reported_without_ranks(tmp_path, capsys, bw, lat, msg):
    f = tmp_path / "t.toml"
    f.write_text(_TOML.format(bw=bw, lat=lat))
    err = _err(["sim", "all-reduce", "--size", "4KiB", "-t", f], capsys)
    assert msg in err and "nranks=4 was asked for" not in err


def test_toml_self_and_duplicate_links_and_huge_files(tmp_path, capsys):
    f = tmp_path / "t.toml"
    f.write_text("ranks = 2\n[[link]]\nsrc = 0\ndst = 0\nbw = 1e9\nlat = 0\n")
    assert "link from 0 to itself" in _err(["sim", "all-reduce", "-t", f], capsys)
    f.write_text("ranks = 2\n" + "[[link]]\nsrc = 0\ndst = 1\nbw = 1e9\nlat = 0\n" * 2)
    assert "link 0->1 is given twice" in _err(["sim", "all-reduce", "-t", f], capsys)
    f.write_text("ranks = 2\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nests arrays or tables too deeply" in _err(["sim", "all-reduce", "-t", f], capsys)
    f.write_text("ranks = 1000000000\n")
    assert "ranks = 1000000000 is over the limit" in _err(["sim", "all-reduce", "-t", f], capsys)


# -- 6. flight-recorder dumps -------------------------------------------------------------------------
def test_a_pickle_that_reuses_one_list_is_refused_quickly():
    data = laughs(40)
    assert len(data) < 400
    with pytest.raises(ImportFormatError, match="expands to more than"):
        plain_loads(data, "rank0")


def test_a_pickle_cycle_is_refused():
    a: list = []
    a.append(a)
    with pytest.raises(ImportFormatError, match="contains itself"):
        plain_loads(pickle.dumps(a), "rank0")


def _dumps(tmp_path, edit=None, names=("rank0", "rank1")):
    folder = tmp_path / "fr"
    folder.mkdir(exist_ok=True)
    for r, name in zip((0, 1), names):
        d = json.loads((FIXTURES / "nccl_fr" / f"rank{r}.json").read_text())
        if edit:
            edit(r, d)
        (folder / name).write_text(json.dumps(d))
    return folder


@pytest.mark.parametrize("edit, msg", [
    (lambda r, d: [e.pop("input_dtypes") for e in d["entries"]], "but no input_dtypes"),
    (lambda r, d: d.update(pg_status=[1]), "'pg_status' must be a dict, this is a list"),
    (lambda r, d: d.update(pg_config="x"), "'pg_config' must be a dict"),
    (lambda r, d: d.update(rank=2**40), "rank 1099511627776 (its 'rank') is out of range"),
])
def test_malformed_dumps_fail_in_one_line(tmp_path, edit, msg):
    with pytest.raises(ImportFormatError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        import_flight_recorder([str(_dumps(tmp_path, edit))])


def test_a_dump_named_with_a_huge_rank(tmp_path):
    folder = _dumps(tmp_path, lambda r, d: d.pop("rank"), ("rank0", "rank99999999999999999999"))
    with pytest.raises(ImportFormatError, match="rank number in the file name"):
        import_flight_recorder([str(folder)])


# -- 8. loose ends -------------------------------------------------------------------------------------
def test_check_steps_is_in_the_trace_meta_and_compare_says_so(ring, tmp_path, capsys):
    table, header, end = read_raw(ring)
    header["meta"]["executor"] = "gloo"
    header["meta"]["real"] = {"check_steps": True}
    write_raw(tmp_path / "slow.trace", table, header, end)
    assert read_trace(tmp_path / "slow.trace").info.check_steps
    assert main(["compare", str(ring), str(tmp_path / "slow.trace")]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--check-steps" in notes[0]


def test_units_refuse_sizes_past_the_limit():
    from rankscope.simulator.units import MAX_BYTES, parse_size

    assert parse_size("1024TiB") == MAX_BYTES
    for bad in ("1024.001TiB", "1e400", 2**60, True):
        with pytest.raises(UsageError):
            parse_size(bad)
