"""Real gloo runs of every builder on N = 2, 3, 4 local ranks (one launch per N runs them all).

For every program: the result equals the native collective's, the measured provenance equals the
simulated one after every step, and the trace loads with one event per op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from real_helpers import children, run_cli  # noqa: E402

from rankscope.real.encoding import Encoding, aligned_program  # noqa: E402
from rankscope.real.runner import run_programs  # noqa: E402
from rankscope.simulator.collectives import ALGORITHMS  # noqa: E402
from rankscope.simulator.engine import LANE_COMM  # noqa: E402
from rankscope.simulator.errors import UsageError  # noqa: E402
from rankscope.simulator.trace import read_trace  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def specs(n):
    out = [(c, a, {}) for c, algos in ALGORITHMS.items() for a in algos if a != "hier"]
    out += [("all-reduce", "hier", {"nodes": m}) for m in range(1, n + 1) if n % m == 0]
    out += [("broadcast", "ring", {"root": n - 1, "pieces": 3}), ("broadcast", "tree", {"root": n // 2})]
    return out


@pytest.fixture(scope="module", params=[2, 3, 4])
def suite(request, tmp_path_factory):
    n = request.param
    tmp = tmp_path_factory.mktemp(f"real{n}")
    enc = Encoding(n)
    progs = [aligned_program(c, a, n, 1000, enc.elem_bytes, **kw) for c, a, kw in specs(n)]
    outs = [str(tmp / f"{i}.trace") for i in range(len(progs))]
    summaries = run_programs(progs, outs, timeout=30, check_steps=True)
    assert not children()
    return n, progs, outs, summaries


def test_every_builder_matches_native_and_simulated_provenance(suite):
    n, progs, _, summaries = suite
    assert len(summaries) == len(progs)
    for prog, s in zip(progs, summaries):
        what = f"{s['collective']} {s['algo']} N={n}"
        assert s["mismatch"] is None, what
        assert s["provenance"] == "equal" and s["native"] == "equal" and s["check_steps"], what
        assert s["nbytes"] == prog.buffers[0].nbytes and s["requested_nbytes"] == 1000


def test_traces_load_with_one_event_per_op(suite):
    n, progs, outs, _ = suite
    for prog, path in zip(progs, outs):
        tr = read_trace(path)
        assert tr.n_ops == prog.n_ops and tr.ran.all()
        assert np.isfinite(tr.start).all() and np.isfinite(tr.end).all() and tr.start.min() == 0.0
        assert (tr.lane == LANE_COMM).all()
        m = tr.meta
        assert m["executor"] == "gloo" and m["clock"] == "monotonic" and m["complete"] is True
        assert m["lanes"][LANE_COMM] == "comm" and len(m["clock_offsets_ns"]) == n
        assert m["real"]["provenance"] == "equal" and m["real"]["native"] == "equal"
        assert np.array_equal(tr.program.arg, prog.arg) and np.array_equal(tr.program.peer, prog.peer)


def test_a_double_count_fails_with_rank_chunk_and_step(monkeypatch):
    """Rank 2 adds op 1's chunk twice (the forked ranks inherit the patch): the run reports it."""
    import rankscope.real.executor as ex

    land = ex._land

    def twice(x, view, landing):
        land(x, view, landing)
        if x.op == 1:
            view.add_(landing)

    monkeypatch.setattr(ex, "_land", twice)
    prog = aligned_program("all-reduce", "ring", 3, 1000, Encoding(3).elem_bytes)
    (s,) = run_programs([prog], timeout=20, check_steps=True)
    assert s["provenance"] == "differs" and s["native"] == "differs"
    c = int(prog.arg[1])
    assert f"after step 0 at rank 2, chunk {c}" in s["mismatch"]
    assert "counted twice" in s["mismatch"]


def test_cli_real_prints_json_and_writes_the_trace(tmp_path, capsys):
    out = tmp_path / "ar.trace"
    code = run_cli(["real", "all-reduce", "-n", "2", "-s", "4KiB", "--json", "-o", str(out)])
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    assert s["provenance"] == "equal" and s["native"] == "equal" and s["nbytes"] == 4096
    assert s["busbw"] > 0 and read_trace(out).meta["executor"] == "gloo"
    assert not children()


def test_cli_text_summary(capsys):
    assert run_cli(["real", "broadcast", "--algo", "tree", "-n", "3", "--root", "2", "-s", "100",
                    "--check-steps"]) == 0
    text = capsys.readouterr().out
    assert "real broadcast (tree) on 3 ranks, gloo" in text
    assert "requested 100 rounded up" in text and "measured == simulated" in text


@pytest.mark.parametrize("argv, message", [
    (["real", "all-reduce", "--algo", "nope", "-n", "2"], "unknown algorithm"),
    (["real", "all-reduce", "--algo", "hier", "-n", "4", "--nodes", "3"], "dividing"),
    (["real", "broadcast", "--root", "5", "-n", "2"], "root 5"),
    (["real", "sweep", "--collective", "gather", "-n", "2"], "unknown collective"),
])
def test_bad_input_is_a_usage_error_before_any_launch(argv, message):
    with pytest.raises(UsageError, match=message):
        run_cli(argv)


def test_real_cli_imports_no_torch():
    code = ("import sys, argparse; import rankscope.cli.real as cli; "
            "import rankscope.real.encoding, rankscope.real.plan, rankscope.real.verify, rankscope.real.faults; "
            "p = argparse.ArgumentParser(); cli.register(p.add_subparsers()); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


class _BatchedJob:
    """The NCCL path's wave posting (one batch_isend_irecv per wave), exercised on gloo."""

    def __call__(self, ctx):
        from rankscope.real.executor import Executor
        from rankscope.real.verify import Checker

        out = []
        for coll, algo in (("all-reduce", "ring"), ("all-reduce", "hd"), ("broadcast", "tree")):
            enc = Encoding(ctx.world)
            prog = aligned_program(coll, algo, ctx.world, 512, enc.elem_bytes)
            ex = Executor(ctx, prog, enc, batched=True)
            ex.run()
            rec = ex.records()
            sent, got = prog.rank == ctx.rank, prog.peer == ctx.rank
            assert np.isfinite(rec[0, sent]).all() and np.isfinite(rec[1, got]).all()
            out.append(Checker(prog, enc, ctx.rank).check(prog.n_steps - 1, ex.host_buffers()))
        return out


def test_batched_waves_give_the_same_provenance():
    from rankscope.real.launch import launch

    res = launch(_BatchedJob(), nranks=3, timeout=20)
    assert res.ok, res.failure_message()
    assert all(m is None for r in range(3) for m in res.results[r])


def test_the_simulated_and_the_measured_trace_of_one_command_line_join_on_op_id(tmp_path, capsys):
    """`rankscope sim ... --out` and `rankscope real ... --out` with the same arguments: compare and
    replay join them op by op (the measured program notes the requested size in its meta)."""
    from rankscope.cli import main
    from rankscope.simulator.compare import compare

    sim, real = str(tmp_path / "sim.trace"), str(tmp_path / "real.trace")
    assert main(["sim", "all-reduce", "-n", "2", "--size", "64KiB", "--out", sim]) == 0
    assert main(["real", "all-reduce", "-n", "2", "--size", "64KiB", "--out", real]) == 0
    capsys.readouterr()
    a, b = read_trace(sim), read_trace(real)
    c = compare(a, b, names=("sim", "real"))
    assert c.joined_on == "op id" and c.op_model.size == a.program.n_ops
    assert compare(b, a, ("real", "sim")).names == ("sim", "real")  # the simulated one is the model
    assert main(["compare", sim, real, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["joined_on"] == "op id"
