"""`rankscope validate`: the calibration fits, and the whole loop on 2 gloo ranks (small sizes)."""

import importlib.util
import json

import numpy as np
import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip("real runs need torch", allow_module_level=True)

from rankscope.cli import main  # noqa: E402
from rankscope.real.validate_fit import RingStepFit, loaded_topology, relative_fit  # noqa: E402
from rankscope.real.validate_report import format_report  # noqa: E402
from rankscope.simulator.collectives import build  # noqa: E402
from rankscope.simulator.costs import ring_all_reduce  # noqa: E402
from rankscope.simulator.engine import simulate  # noqa: E402
from rankscope.simulator.topology import parse_topology  # noqa: E402
from rankscope.simulator.trace import read_trace  # noqa: E402


def test_relative_fit_recovers_alpha_and_bw_exactly():
    sizes = [1 << 20, 4 << 20, 16 << 20]
    alpha, bw = 150e-6, 1.25e9
    a, b, res = relative_fit(sizes, [alpha + n / bw for n in sizes])
    assert a == pytest.approx(alpha, rel=1e-9) and b == pytest.approx(bw, rel=1e-9)
    assert np.abs(res).max() < 1e-15


def test_the_loaded_topology_prices_a_ring_step_as_calibrated(tmp_path):
    f = RingStepFit(4, 0.0, 1e9, 0.3e-9, (1,), (1.0,), (0.0,))
    topo = loaded_topology(f, 500e-6, {"source": "test"})
    path = tmp_path / "t.toml"
    path.write_text(topo.to_toml())
    back = parse_topology(str(path), 4)
    prog = build("all-reduce", "ring", 4, 4 << 20)
    got = simulate(prog, back, gamma=f.gamma)
    t = float(np.nanmax(got.end) - np.nanmin(got.start))
    # 2(N-1) steps of α + (S/N)/bw, and N-1 reductions of S/N bytes
    want = 6 * (500e-6 + (1 << 20) / 1e9) + 3 * (1 << 20) * 0.3e-9
    assert t == pytest.approx(want, rel=1e-9)
    assert ring_all_reduce(4, 4 << 20, 500e-6, 1 / 1e9, 0.3e-9) == pytest.approx(want, rel=1e-9)  # β in s/B


def test_validate_runs_the_whole_loop(tmp_path, capsys):
    """Every figure of the report is what the loop's own outputs say: the measured time is the
    median run's trace, the model is the simulator on the calibrated topology it wrote, which is
    the ring's closed form with the calibrated α, bw and γ, and α is the overhead runs' median."""
    out = tmp_path / "v"
    code = main(["validate", "--ranks", "2", "--sizes", "64KiB", "1MiB", "--repeats", "3", "--no-fsdp",
                 "--out-dir", str(out), "--json", "--timeout", "60"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r == json.loads((out / "validate.json").read_text())
    c = r["calibration"]["2"]
    topo = parse_topology(str(out / "calibrated-2.toml"), 2)
    assert [row["requested"] for row in r["rows"]] == [64 << 10, 1 << 20]
    for row in r["rows"]:
        runs = row["measured_runs"]
        assert len(runs) == 3 and row["measured"] == float(np.median(runs))
        assert row["measured_fastest"] == min(runs)
        real = read_trace(row["real_trace"])      # the median run's trace
        assert real.meta["executor"] == "gloo" and real.ran.all()
        assert float(np.nanmax(real.end) - np.nanmin(real.start)) == pytest.approx(row["measured"], rel=1e-12)
        sim = read_trace(row["sim_trace"])
        prog = sim.program
        assert prog.buffers[0].nbytes == row["size"] == real.program.buffers[0].nbytes
        again = simulate(prog, topo, gamma=c["gamma"])
        model = float(np.nanmax(again.end) - np.nanmin(again.start))
        assert row["model"] == pytest.approx(model, rel=1e-12)
        closed = ring_all_reduce(2, row["size"], c["alpha"], 1 / c["bw"], c["gamma"])
        assert row["model"] == pytest.approx(closed, rel=1e-6)
        assert row["error"] == pytest.approx((row["model"] - row["measured"]) / row["measured"])
    assert c["alpha"] == pytest.approx(float(np.median(c["overhead_runs"])) / 2, rel=1e-12)  # 2(N-1) steps
    assert r["summary"]["2"]["median_abs_error"] == pytest.approx(abs(r["rows"][1]["error"]))
    assert r["median_abs_error_from_1MiB"] == pytest.approx(abs(r["rows"][1]["error"]))
    assert r["plot"] == str(out / "validate.png") and (out / "validate.png").stat().st_size > 0
    text = format_report(r)
    assert f"N=2: per-step α {c['alpha'] * 1e6:.1f} us" in text
    assert f"median |error| for sizes >= 1 MiB: {r['summary']['2']['median_abs_error']:.1%}" in text


def test_validate_bad_input_is_one_line(capsys):
    assert main(["validate", "--ranks", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
