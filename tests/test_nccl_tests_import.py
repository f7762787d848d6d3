"""`rankscope import nccl-tests` and `rankscope compare RUN.nccltests`: the fixtures of
tests/fixtures/nccl/ (written from nccl-tests' format strings, see make_fixtures.py), what the
table trace holds, errors that name the line, and mutated files that never cost a traceback."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate_lines

from rankscope.cli import main
from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.interop.errors import ImportFormatError
from rankscope.simulator.interop.nccl_compare import simulate_size
from rankscope.simulator.interop.nccl_tests import (
    import_nccl_tests,
    nccl_tests_trace,
    parse_nccl_tests,
    table_runs,
    version_from_code,
)
from rankscope.simulator.program import CollKind, OpKind
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.trace import read_trace

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "nccl")
FILES = ("all_reduce_1x8.txt", "mpi_2x4_three_tests.txt", "slurm_old_format.txt")


def fx(name):
    return os.path.join(FIX, name)


def text(name):
    with open(fx(name)) as f:
        return f.read()


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fixtures_are_what_make_fixtures_writes(tmp_path):
    subprocess.run([sys.executable, fx("make_fixtures.py"), str(tmp_path)], check=True)
    for name in FILES + ("nccl_2x4.log",):
        assert (tmp_path / name).read_text() == text(name), f"{name} is stale: run tests/fixtures/nccl/make_fixtures.py"


# -- the three fixtures ----------------------------------------------------------------------------
def test_one_node_all_reduce_header_rows_and_footer():
    (run,) = parse_nccl_tests(text("all_reduce_1x8.txt"), "f")
    assert run.test == "all_reduce_perf" and run.nccl_tests_version == "2.13.9" and run.nccl_version == "2.19.3"
    assert run.params["ngpus"] == 8 and run.params["min_bytes"] == 8 and run.params["max_bytes"] == 128 << 20
    assert [d["rank"] for d in run.devices] == list(range(8)) and run.hosts == ["node0"]
    assert run.devices[3]["name"] == "NVIDIA H100 80GB HBM3" and run.devices[3]["bus"] == "0000:4b:00"
    assert [r.size for r in run.rows] == [8 * 4 ** k for k in range(13)]
    last = run.rows[-1]
    assert (last.size, last.count, last.type, last.redop, last.root) == (134217728, 33554432, "float", "sum", -1)
    assert (last.time_us, last.algbw, last.busbw, last.wrong) == (670.45, 200.19, 350.33, 0)
    assert (last.in_time_us, last.in_algbw, last.in_busbw, last.in_wrong) == (677.15, 198.21, 346.87, 0)
    assert last.line == 30
    assert run.avg_busbw == 85.8195 and run.out_of_bounds == 0 and run.ended


def test_table_trace_is_one_collective_per_rank_and_size_laid_end_to_end():
    tr = import_nccl_tests(fx("all_reduce_1x8.txt"))
    p = tr.program
    assert p.nranks == 8 and p.n_ops == 8 * 13 and (p.kind == OpKind.COLLECTIVE).all()
    assert set(p.coll_kind.tolist()) == {int(CollKind.ALL_REDUCE)}
    assert p.coll_bytes.tolist() == [8 * 4 ** k for k in range(13)]
    rows = table_runs(tr)[0]["rows"]
    r0 = p.rank == 0
    np.testing.assert_allclose(tr.end[r0] - tr.start[r0], [r["time_us"] * 1e-6 for r in rows])
    np.testing.assert_allclose(tr.start[r0][1:], tr.end[r0][:-1])
    assert tr.meta["executor"] == "nccl-tests" and tr.meta["clock"] == "nccl-tests"


def test_mpirun_tagged_file_with_three_tests():
    runs = parse_nccl_tests(text("mpi_2x4_three_tests.txt"), "f")
    assert [r.test for r in runs] == ["all_reduce_perf", "all_gather_perf", "reduce_scatter_perf"]
    assert all(r.hosts == ["gpu-a", "gpu-b"] and len(r.devices) == 8 and len(r.rows) == 5 for r in runs)
    assert runs[1].rows[0].wrong is None and runs[1].rows[0].in_wrong is None   # validation off: N/A
    assert runs[0].rows[0].wrong == 0 and all(r.nccl_version == "2.19.3" for r in runs)
    tr = import_nccl_tests(fx("mpi_2x4_three_tests.txt"))
    kinds = [CollKind(int(k)).label for k in tr.program.coll_kind]
    assert kinds == ["all-reduce"] * 5 + ["all-gather"] * 5 + ["reduce-scatter"] * 5
    docs = table_runs(tr)
    assert [d["nodes"] for d in docs] == [2, 2, 2] and docs[1]["first_line"] == 39


def test_slurm_labels_and_the_older_format():
    (run,) = parse_nccl_tests(text("slurm_old_format.txt"), "f")
    assert run.test == "all_reduce_perf"        # from the command line: the old format names no test
    assert run.nccl_tests_version is None and run.nccl_version is None
    assert run.hosts == ["nid000", "nid001"] and run.devices[1]["bus"] == "0x47"
    assert [r.size for r in run.rows] == [1 << 20 << k for k in range(7)]
    assert run.rows[-1].time_us == 5063.2 and run.rows[-1].wrong == 0
    tr = import_nccl_tests(fx("slurm_old_format.txt"))
    assert tr.program.nranks == 4


def test_version_codes():
    assert version_from_code(21903) == "2.19.3" and version_from_code(22907) == "2.29.7"
    assert version_from_code(2804) == "2.8.4"


def test_collective_and_ranks_inferred_without_a_header():
    rows = [ln for ln in text("all_reduce_1x8.txt").splitlines() if ln and not ln.startswith("#")]
    tr = nccl_tests_trace("\n".join(rows), "bare")     # no names, no devices: shape and busbw/algbw
    doc = table_runs(tr)[0]
    assert doc["collective"] == "all-reduce" and doc["nranks"] == 8
    ag = [ln for ln in text("mpi_2x4_three_tests.txt").splitlines() if "none" in ln and "float" in ln]
    tr = nccl_tests_trace("\n".join(x.split(":", 1)[1] for x in ag), "ag", ranks=8)
    assert table_runs(tr)[0]["collective"] == "all-gather"


# -- errors name the line --------------------------------------------------------------------------
def test_a_short_row_is_refused_with_its_line():
    t = text("all_reduce_1x8.txt").splitlines()
    t[20] = t[20][:70]
    with pytest.raises(ImportFormatError, match=r"f:21: a result row needs 13 columns"):
        parse_nccl_tests("\n".join(t), "f")


def test_a_bad_number_is_refused_with_its_line():
    t = text("all_reduce_1x8.txt").replace("670.45", "67x.45")
    with pytest.raises(ImportFormatError, match=r"f:30: time '67x.45' is not a number"):
        parse_nccl_tests(t, "f")


def test_a_garbled_column_header_falls_back_to_the_plain_layout():
    t = text("all_reduce_1x8.txt").replace("busbw  #wrong     time", "busbw4#wrong     time", 1)
    (run,) = parse_nccl_tests(t, "f")     # found by the mutation test: an IndexError before
    assert run.rows[-1].in_time_us == 677.15


def test_no_rows_and_different_rank_counts_are_refused():
    with pytest.raises(ImportFormatError, match="no nccl-tests result rows"):
        parse_nccl_tests("srun: error\n# nThread 1\n", "f")
    a, b = text("all_reduce_1x8.txt"), text("slurm_old_format.txt")
    with pytest.raises(ImportFormatError, match=r"different rank counts \(8 at line 1, 4 at line"):
        nccl_tests_trace(a + b, "f")


def test_a_huge_rank_count_is_refused_before_anything_is_built():
    t = text("all_reduce_1x8.txt").replace("#  Rank  7 ", "#  Rank 99999999 ")
    with pytest.raises(ImportFormatError, match="more than an import holds"):
        nccl_tests_trace(t, "f")


def test_cli_import_and_errors(tmp_path, capsys):
    out = tmp_path / "run.nccltests"
    code, o, _ = run_cli(capsys, "import", "nccl-tests", fx("mpi_2x4_three_tests.txt"), "-o", str(out))
    assert code == 0 and "all_gather_perf: all-gather on 8 ranks (2 nodes), NCCL 2.19.3, 5 sizes" in o
    assert read_trace(str(out)).program.n_ops == 8 * 15
    code, o, _ = run_cli(capsys, "import", "nccl-tests", fx("all_reduce_1x8.txt"), "-o", str(out), "--json")
    assert code == 0 and json.loads(o)["runs"][0]["nranks"] == 8
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    code, _, err = run_cli(capsys, "import", "nccl-tests", str(bad), "-o", str(out))
    assert code == 2 and err.count("\n") == 1 and "no nccl-tests result rows" in err
    code, _, err = run_cli(capsys, "import", "nccl-tests", str(tmp_path / "missing.txt"))
    assert code == 2 and "cannot read" in err
    code, _, err = run_cli(capsys, "import", "nccl-tests", fx("all_reduce_1x8.txt"), "-o", str(out),
                           "--collective", "frobnicate")
    assert code == 2 and "--collective 'frobnicate' is no collective" in err


def test_wrong_elements_are_imported_with_a_warning_and_info_reads_the_trace(tmp_path, capsys):
    t = text("all_reduce_1x8.txt").splitlines()
    t[29] = t[29][:-1] + "7"          # 128 MiB in-place: 7 wrong elements
    src = tmp_path / "w.txt"
    src.write_text("\n".join(t) + "\n")
    out = tmp_path / "w.nccltests"
    code, o, _ = run_cli(capsys, "import", "nccl-tests", str(src), "-o", str(out))
    assert code == 0 and "WARNING: 7 wrong elements reported" in o
    assert table_runs(read_trace(str(out)))[0]["rows"][-1]["in_wrong"] == 7
    code, o, _ = run_cli(capsys, "info", str(out))
    assert code == 0 and "8 ranks, 104 ops, executor nccl-tests" in o


# -- compare -------------------------------------------------------------------------------------
def test_simulate_size_is_the_ring_builder_on_a_topology_that_is_not_a_gpu_cluster():
    topo = parse_topology("switch:8")
    r = simulate_size("all-reduce", 8, 1 << 20, topo)
    # ring all-reduce on 8 ranks of switch:8: 14 steps of alpha + (S/8)/bw, alpha = 2 links x 5 us
    want = 14 * (10e-6 + (1 << 20) / 8 / 25e9)
    assert r["seconds"] == pytest.approx(want, rel=1e-9) and r["algo"].startswith("ring")
    assert simulate_size("all-to-all", 8, 1 << 20, topo) is None
    with pytest.raises(RankscopeError, match="measured run has 4 ranks"):
        simulate_size("all-reduce", 4, 1 << 20, topo)


def test_simulate_size_is_nccls_model_on_a_gpu_cluster():
    from rankscope.simulator.nccl import nccl_collective, simulate_nccl

    topo = parse_topology("dgx-h100")
    for size in (8, 1 << 20, 1 << 28):
        r = simulate_size("all-reduce", 8, size, topo)
        prog, ch = nccl_collective("all-reduce", topo, size)
        assert r["seconds"] == simulate_nccl(prog, topo, max_link_rows=0)[2]
        assert r["algo"] == f"{ch.algo}/{ch.proto}/{ch.nchannels}ch (NCCL model)"


def test_compare_prints_per_size_and_writes_json_and_a_plot(tmp_path, capsys):
    out = tmp_path / "run.nccltests"
    assert main(["import", "nccl-tests", fx("all_reduce_1x8.txt"), "-o", str(out)]) == 0
    capsys.readouterr()
    code, o, _ = run_cli(capsys, "compare", str(out), "--topology", "dgx-h100", "--plot", str(tmp_path / "p.png"))
    assert code == 0 and "vs simulated on dgx-h100" in o and os.path.getsize(tmp_path / "p.png") > 1000
    line = next(x for x in o.splitlines() if x.strip().startswith("128MiB"))
    assert "670us" in line and "NCCL model" in o
    code, o, _ = run_cli(capsys, "compare", str(out), "--topology", "dgx-h100", "--json")
    doc = json.loads(o)
    row = doc["runs"][0]["rows"][-1]
    sim = simulate_size("all-reduce", 8, row["size"], parse_topology("dgx-h100"))["seconds"]
    assert row["simulated"] == sim and row["error"] == pytest.approx(sim / 670.45e-6 - 1)
    assert row["busbw_measured"] == pytest.approx(350.33e9) and row["nccl_predicted"] is None


def test_compare_against_a_sweep_json(tmp_path, capsys):
    out = tmp_path / "run.nccltests"
    assert main(["import", "nccl-tests", fx("all_reduce_1x8.txt"), "-o", str(out)]) == 0
    capsys.readouterr()
    code, o, _ = run_cli(capsys, "sweep", "all-reduce", "--topology", "dgx-h100", "--max", "128MiB", "--json")
    (tmp_path / "sweep.json").write_text(o)
    code, o, _ = run_cli(capsys, "compare", str(out), str(tmp_path / "sweep.json"), "--json")
    rows = json.loads(o)["runs"][0]["rows"]
    assert code == 0 and all(r["simulated"] is not None for r in rows if r["size"] >= 8)
    assert rows[-1]["sim_algo"] in ("ring", "hd", "ps")


def test_a_sweep_compares_the_tests_of_its_collective(tmp_path, capsys):
    out = tmp_path / "run.nccltests"
    assert main(["import", "nccl-tests", fx("mpi_2x4_three_tests.txt"), "-o", str(out)]) == 0
    capsys.readouterr()
    code, o, _ = run_cli(capsys, "sweep", "all-gather", "--ranks", "8", "--min", "1MiB", "--max", "256MiB", "--json")
    (tmp_path / "ag.json").write_text(o)
    code, o, _ = run_cli(capsys, "compare", str(out), str(tmp_path / "ag.json"))
    assert code == 0 and "measured all_gather_perf" in o and "all_reduce_perf" not in o
    assert "(2 other test(s) of the import left out: the sweep is of all-gather on 8 ranks)" in o
    code, o, _ = run_cli(capsys, "sweep", "broadcast", "--ranks", "8", "--max", "1MiB", "--json")
    (tmp_path / "bc.json").write_text(o)
    code, _, err = run_cli(capsys, "compare", str(out), str(tmp_path / "bc.json"))
    assert code == 2 and "the sweep is of broadcast on 8 ranks; the import holds all-reduce on 8 ranks" in err


def test_compare_refusals(tmp_path, capsys):
    out = tmp_path / "run.nccltests"
    assert main(["import", "nccl-tests", fx("slurm_old_format.txt"), "-o", str(out)]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "compare", str(out))
    assert code == 2 and "needs --topology" in err
    code, _, err = run_cli(capsys, "compare", str(out), "--topology", "dgx-h100")
    assert code == 2 and "has 4 ranks, topology 'dgx-h100' 8" in err
    code, _, err = run_cli(capsys, "compare", os.path.join(os.path.dirname(__file__), "..", "traces",
                                                            "ring_allreduce_4.trace"), "--topology", "switch:4")
    assert code == 2 and "not an import of nccl-tests output" in err


# -- mutations -----------------------------------------------------------------------------------
NOISE = ["srun: error: task 3 killed", "[1,3]<stderr>:warning", "0: ", "#", "# Using devices", "   ",
         "node0:1:1 [0] NCCL INFO NCCL version 2.21.5+cuda12.4", "12 34", "  8  2  float  sum  -1  1 2 3 N/A",
         "# Avg bus bandwidth    : nan", "# nThread 1 nGpus 1 minBytes 8 maxBytes 8 step: 2(factor) warmup iters: 1 "
         "iters: 1", "#  Rank 70000 Group 0 Pid 1 on h device 0 [0x01] X", "\x00\xff", "# Collective test starting: x"]


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(FILES))
    lines = text(name).splitlines()
    rng = random.Random(draw(st.integers(0, 2 ** 32 - 1)))
    return mutate_lines(lines, rng, draw(st.integers(1, 4)), NOISE, "0123456789.-x: #/N",
                        ops=("truncate", "swap", "noise", "drop", "chars", "dup"))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_files_import_or_fail_in_one_line(t):
    try:
        tr = nccl_tests_trace(t, "m")
    except RankscopeError as e:
        assert "\n" not in str(e)
        return
    runs = table_runs(tr)
    assert runs and all(r["rows"] for r in runs)
    assert tr.program.n_ops == tr.program.nranks * sum(len(r["rows"]) for r in runs) or tr.meta["other_collectives"]
