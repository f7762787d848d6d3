"""compare: exact errors on hand-made traces, and a clear refusal for different programs."""

import json

import numpy as np
import pytest

from rankscope.cli import main
from rankscope.simulator.collectives import build
from rankscope.simulator.compare import CompareError, compare
from rankscope.simulator.trace import Trace, write_trace


def _trace(prog, dur, executor, gap=0.0):
    """Ops of step k run back to back: step k spans [k·(dur+gap), k·(dur+gap) + dur)."""
    start = prog.step * (dur + gap)
    return Trace(prog, start.astype(float), start + dur, np.full(prog.n_ops, 1), meta={"executor": executor})


def test_known_errors_are_reported_exactly():
    prog = build("all-reduce", "ring", 4, 4096)
    sim = _trace(prog, 1.0e-3, "sim")
    real = _trace(prog, 1.25e-3, "gloo")
    c = compare(real, sim)  # order does not matter: the simulated trace is the model
    s = c.summary()
    assert c.model_name == "B" and s["joined_on"] == "op id" and s["ops"] == 24
    assert s["median_abs_error"] == pytest.approx(0.2, abs=1e-12)  # |1.0 - 1.25| / 1.25
    assert s["p90_abs_error"] == pytest.approx(0.2, abs=1e-12)
    assert s["total_error"] == pytest.approx(-0.2, abs=1e-12)
    assert s["first_divergence_step"] == 0
    assert {c["class"] for c in c.by_class()} == {"reduce", "copy"}
    assert all(st["error"] == pytest.approx(-0.2) for st in c.by_step())


def test_first_divergence_is_the_first_step_past_the_threshold():
    prog = build("all-reduce", "ring", 4, 4096)
    sim = _trace(prog, 1e-3, "sim")
    end = sim.end.copy()
    start = sim.start.copy()
    late = prog.step >= 3
    start[late] += 0.5e-3  # a 0.5 ms stall before step 3: it adds 1.5 ms instead of 1
    end[late] += 0.5e-3
    real = Trace(prog, start, end, sim.lane, meta={"executor": "gloo"})
    s = compare(sim, real).summary()
    assert s["first_divergence_step"] == 3
    assert s["median_abs_error"] == pytest.approx(0.0, abs=1e-12)  # every op took as long as modelled


def test_different_programs_are_refused(tmp_path, capsys):
    a, b = tmp_path / "a.trace", tmp_path / "b.trace"
    write_trace(a, _trace(build("all-reduce", "ring", 4, 4096), 1e-3, "sim"))
    write_trace(b, _trace(build("all-reduce", "hd", 4, 4096), 1e-3, "gloo"))
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "different programs" in err and err.count("\n") == 1
    with pytest.raises(CompareError):
        compare(_trace(build("all-reduce", "ring", 4, 4096), 1e-3, "sim"),
                _trace(build("all-reduce", "ring", 8, 4096), 1e-3, "sim"))


def test_cli_compare_text_json_and_plot(tmp_path, capsys):
    prog = build("all-reduce", "ring", 4, 4096)
    a, b, png = tmp_path / "a.trace", tmp_path / "b.trace", tmp_path / "steps.png"
    write_trace(a, _trace(prog, 1e-3, "sim"))
    write_trace(b, _trace(prog, 0.8e-3, "gloo"))
    assert main(["compare", str(a), str(b), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "median 25.0%" in out and "+25.0%" in out
    assert png.stat().st_size > 1000
    assert main(["compare", str(a), str(b), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["total_error"] == pytest.approx(0.25)


def test_a_measured_run_of_several_steps_joins_its_last_step():
    """A simulated step against a measured run of 3 steps: the last repetition is joined, exactly."""
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.interop.collectives import MeasuredCollective
    from rankscope.simulator.interop.measured import RankRecord, build_trace
    from rankscope.simulator.models import parse_device, parse_model
    from rankscope.simulator.program import CollKind, OpKind
    from rankscope.simulator.topology import parse_topology
    from rankscope.simulator.training import TrainConfig, compile_step

    prog = compile_step(parse_model("mlp:2x256"), 2, TrainConfig(strategy="zero3"), parse_device("h100"))
    topo = parse_topology("switch:2")
    model = simulate(prog, topo).to_trace(prog, topo)
    ops = np.flatnonzero(prog.kind == OpKind.COLLECTIVE)
    seqs = {r: [o for o in ops if prog.rank[o] == r] for r in range(2)}
    records = []
    for r, mine in seqs.items():
        colls, t, steps = [], 0.0, []
        for k in range(3):  # step k: every collective takes (k + 1) x 1 ms, 1 ms apart
            t0 = t
            for o in mine:
                kind = CollKind(int(prog.coll_kind[prog.arg[o]])).label
                colls.append(MeasuredCollective(r, kind, int(prog.coll_bytes[prog.arg[o]]), t, t + (k + 1) * 1e-3))
                t += (k + 2) * 1e-3
            steps.append((t0, t))
        records.append(RankRecord(r, f"rank{r}", colls, steps=steps))
    measured = build_trace(records)
    c = compare(model, measured, names=("sim", "real"))
    assert c.joined_on == "collective sequence (the last of real's 3 repetitions)"
    assert c.op_measured.size == ops.size and np.allclose(c.op_measured, 3e-3)
    assert c.total_measured == pytest.approx(len(seqs[0]) * 4e-3)
    cut = [RankRecord(r, f"rank{r}", rec.collectives[:2 * len(seqs[r]) + 1]) for r, rec in enumerate(records)]
    with pytest.raises(CompareError, match="do not line up"):  # 2 steps and one collective more
        compare(model, build_trace(cut))
