"""Per-rank compute speed ([[rank]] in TOML topologies) and degraded links, simulated from scratch."""

import numpy as np
import pytest

from rankscope.cli import main
from rankscope.simulator import costs
from rankscope.simulator.engine import simulate
from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.program import OpKind
from rankscope.simulator.rank_speed import scale_compute, with_topology_speeds
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.training import TrainConfig, compile_step

H100 = parse_device("h100")


def _toml(tmp_path, n=2, ranks="", bw=("25GB/s",) * 2, name="t"):
    links = "".join(f'\n[[link]]\nsrc = {r}\ndst = "sw"\nbw = "{bw[r]}"\nlat = "5us"\nbidirectional = true\n'
                    for r in range(n))
    p = tmp_path / f"{name}.toml"
    p.write_text(f"ranks = {n}\n{ranks}{links}")
    return str(p)


def test_rank_tables_load_and_round_trip(tmp_path):
    topo = parse_topology(_toml(tmp_path, ranks="[[rank]]\nid = 1\nspeed = 0.5\n"))
    assert topo.meta["rank_speed"] == [1.0, 0.5]
    again = tmp_path / "again.toml"
    again.write_text(topo.to_toml())
    assert parse_topology(str(again)).meta["rank_speed"] == [1.0, 0.5]


@pytest.mark.parametrize("body, msg", [("[[rank]]\nid = 2\nspeed = 1\n", "must be a rank"),
                                       ("[[rank]]\nid = 0\nspeed = 0\n", "> 0"),
                                       ("[[rank]]\nid = 0\n", "exactly the keys")])
def test_bad_rank_tables(tmp_path, body, msg, capsys):
    path = _toml(tmp_path, ranks=body)
    with pytest.raises(RankscopeError, match=msg):
        parse_topology(path)
    assert main(["sim", "train", "--ranks", "2", "--topology", path]) == 2
    assert msg in capsys.readouterr().err


def test_a_slow_rank_lengthens_a_ddp_step_by_its_own_compute(tmp_path):
    """One bucket: the all-reduce waits for the slowest rank's backward, and the optimizer step
    follows it; at speed 1/2 rank 1 adds exactly its own compute time once more."""
    prog = compile_step(parse_model("mlp:4x1024"), 2, TrainConfig(strategy="ddp", bucket_bytes=1 << 40), H100)
    fast = simulate(prog, parse_topology(_toml(tmp_path)))
    topo = parse_topology(_toml(tmp_path, ranks="[[rank]]\nid = 1\nspeed = 0.5\n", name="slow"))
    slowp = with_topology_speeds(prog, topo)
    slow = simulate(slowp, topo)
    comp1 = (prog.kind == OpKind.COMPUTE) & (prog.rank == 1)
    own = float((fast.end - fast.start)[comp1].sum())
    assert slow.makespan == pytest.approx(fast.makespan + own, rel=1e-12)
    np.testing.assert_allclose((slow.end - slow.start)[comp1], 2 * (fast.end - fast.start)[comp1], rtol=1e-12)
    comp0 = (prog.kind == OpKind.COMPUTE) & (prog.rank == 0)
    np.testing.assert_allclose((slow.end - slow.start)[comp0], (fast.end - fast.start)[comp0], rtol=1e-12)
    assert list(slowp.compute_label[slowp.arg[o]] for o in np.flatnonzero(comp1)) == \
        list(prog.compute_label[prog.arg[o]] for o in np.flatnonzero(comp1))


def test_scale_compute_is_identity_at_one_and_checks_its_input():
    prog = compile_step(parse_model("mlp:2x64"), 2, TrainConfig(strategy="ddp"), H100)
    assert scale_compute(prog, [1.0, 1.0]) is prog
    with pytest.raises(RankscopeError):
        scale_compute(prog, [1.0])
    with pytest.raises(RankscopeError):
        scale_compute(prog, [1.0, 0.0])


def test_a_degraded_link_slows_every_ring_collective(tmp_path):
    prog = compile_step(parse_model("mlp:4x1024"), 2, TrainConfig(strategy="zero3"), H100)
    ok = simulate(prog, parse_topology(_toml(tmp_path)))
    bad = simulate(prog, parse_topology(_toml(tmp_path, bw=("25GB/s", "5GB/s"), name="bad")))
    c = np.flatnonzero(prog.kind == OpKind.COLLECTIVE)
    nbytes = prog.coll_bytes[prog.arg[c]]
    dur = (bad.end - bad.start)[c]
    # a two-rank ring: one 5 us + 5 us route each way, its slowest hop at 5 GB/s
    want = [costs.ring_all_gather(2, s, 10e-6, 1 / 5e9) if k == 2 else costs.ring_reduce_scatter(2, s, 10e-6, 1 / 5e9)
            for k, s in zip(prog.coll_kind[prog.arg[c]], nbytes)]
    assert bad.makespan > ok.makespan
    np.testing.assert_allclose(dur, want, rtol=1e-9)


def test_cli_sim_train_honours_rank_speeds(tmp_path, capsys):
    import json

    fast, slow = _toml(tmp_path), _toml(tmp_path, ranks="[[rank]]\nid = 0\nspeed = 0.25\n", name="slow")
    times = []
    for topo in (fast, slow):
        assert main(["sim", "train", "--model", "mlp:4x1024", "--ranks", "2", "--strategy", "ddp",
                     "--device", "cpu", "--topology", topo, "--json"]) == 0
        times.append(json.loads(capsys.readouterr().out)["reports"]["step_time"])
    assert times[1] > 2 * times[0]
