"""rankscope whatif: a measured training step re-simulated on other ranks, links and speeds."""

import json

import numpy as np
import pytest

from rankscope.cli import main
from rankscope.simulator.engine import simulate
from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.program import OpKind
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.trace import read_trace, write_trace
from rankscope.simulator.training import TrainConfig, compile_step
from rankscope.simulator.whatif import measure, predict, slow_links

CPU = parse_device("cpu")


def _synthetic(tmp_path, strategy="ddp", model="mlp:4x1024", n=2, bucket_mb=1e6, topo="switch:2", name="m",
               **topo_kw):
    """A 'measured' trace that is a simulated step, with the step windows and run metadata a
    `real train` trace has."""
    s = "zero3" if strategy == "fsdp" else strategy
    cfg = TrainConfig(strategy=s, precision="fp32", bucket_bytes=int(bucket_mb * 2**20), fsdp_version=2,
                      reshard_after_forward=True, forward_prefetch=False, backward_prefetch=True)
    m = parse_model(model)
    prog = compile_step(m, n, cfg, CPU)
    t = parse_topology(topo, **topo_kw)
    sim = simulate(prog, t)
    meta = {"steps": {str(r): [[0.0, sim.makespan]] for r in range(n)},
            "run": {"model": model, "strategy": strategy, "micro_batch": m.micro_batch, "bucket_mb": bucket_mb}}
    path = tmp_path / f"{name}.trace"
    write_trace(str(path), sim.to_trace(prog, t, meta))
    return str(path), prog, sim


def test_replay_is_exact_and_a_straggler_lengthens_the_step_by_the_graph(tmp_path):
    """One DDP bucket: the all-reduce waits for the slow rank's backward and its optimizer step
    follows, so --slow-rank 1=1.3 adds 0.3 x rank 1's compute, exactly."""
    path, prog, sim = _synthetic(tmp_path)
    meas = measure(read_trace(path))
    topo = parse_topology("switch:2")
    _, same, _, rep = predict(meas, 2, topo)
    assert same.makespan == pytest.approx(sim.makespan, rel=1e-12)
    assert rep["predicted"]["peak"] == rep["measured"]["peak"]
    _, slow, _, _ = predict(meas, 2, topo, slow_ranks={1: 1.3})
    comp1 = (prog.kind == OpKind.COMPUTE) & (prog.rank == 1)
    own = float((sim.end - sim.start)[comp1].sum())
    assert slow.makespan == pytest.approx(sim.makespan + 0.3 * own, rel=1e-12)
    # a slow rank 0 instead: the same, by symmetry
    _, slow0, _, _ = predict(meas, 2, topo, slow_ranks={0: 1.3})
    assert slow0.makespan == pytest.approx(slow.makespan, rel=1e-12)


def test_the_ring_calibration_recovers_the_network(tmp_path):
    # GPT-2's buckets differ in size (the embedding, the layers, the head), so alpha and beta separate
    path, _, _ = _synthetic(tmp_path, model="gpt2", bucket_mb=25, topo="switch:2")
    meas = measure(read_trace(path))
    assert meas.n_collectives > 3
    assert meas.beta == pytest.approx(1 / 25e9, rel=1e-6)      # switch:N's 25 GB/s links
    assert meas.alpha == pytest.approx(2 * 5e-6, rel=1e-6)     # two 5 us hops per route
    _, sim, topo, _ = predict(meas, 2)                          # default: switch:2 from the fit
    assert topo.link_bw == pytest.approx(25e9)


def test_more_ranks_shrink_the_shards_and_the_optimizer_step(tmp_path):
    path, _, _ = _synthetic(tmp_path, strategy="fsdp")
    meas = measure(read_trace(path))
    _, _, _, two = predict(meas, 2, parse_topology("switch:2"))
    _, _, _, four = predict(meas, 4, parse_topology("switch:4"))
    assert four["predicted"]["peak"] < two["predicted"]["peak"]
    assert four["predicted"]["optimizer_scale"] == pytest.approx(0.5, rel=1e-3)
    _, _, _, ddp = predict(meas, 4, parse_topology("switch:4"), strategy="ddp")
    assert ddp["predicted"]["strategy"] == "ddp" and ddp["predicted"]["peak"] > two["predicted"]["peak"]


def test_a_slow_link_slows_the_collectives(tmp_path):
    path, prog, sim = _synthetic(tmp_path, strategy="fsdp")
    meas = measure(read_trace(path))
    topo = parse_topology("switch:2")
    assert slow_links(topo, [("1", 4.0)]).link_bw.tolist() == [25e9, 25e9 / 4, 25e9, 25e9 / 4]
    assert slow_links(topo, [("0->sw", 2.0)]).link_bw.tolist() == [12.5e9, 25e9, 25e9, 25e9]
    _, base, _, _ = predict(meas, 2, topo)
    _, slow, _, _ = predict(meas, 2, topo, links=[("1", 4.0)])
    c = prog.kind == OpKind.COLLECTIVE
    assert slow.makespan > base.makespan
    assert np.all((slow.end - slow.start)[c] > 3 * (base.end - base.start)[c])


def test_cli_whatif_prints_writes_a_trace_compare_opens(tmp_path, capsys):
    path, _, _ = _synthetic(tmp_path)
    out = tmp_path / "pred.trace"
    assert main(["whatif", path, "--topology", "switch:2", "--slow-rank", "1=1.3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "step time" in text and "peak memory" in text and "rank 1 compute x1.3" in text
    assert read_trace(str(out)).meta["whatif"]["predicted"]["nranks"] == 2
    assert main(["compare", str(out), path]) == 0
    assert "per-op |error|" in capsys.readouterr().out
    assert main(["whatif", path, "--ranks", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["predicted"]["nranks"] == 4 and doc["predicted"]["topology"] == "switch:4"


@pytest.mark.parametrize("argv, msg", [
    (["--slow-rank", "x=2"], "rank number"),
    (["--slow-rank", "1=0"], "factor > 0"),
    (["--slow-rank", "5=2"], "ranks are 0..1"),
    (["--slow-link", "9=2", "--topology", "switch:2"], "not a rank"),
    (["--ranks", "4", "--topology", "switch:2"], "agree"),
])
def test_cli_whatif_bad_input_exits_2(tmp_path, capsys, argv, msg):
    path, _, _ = _synthetic(tmp_path)
    assert main(["whatif", path, *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_cli_whatif_needs_a_training_trace(tmp_path, capsys):
    from rankscope.simulator.collectives import build

    prog = build("all-reduce", "ring", 2, 1024)
    t = parse_topology("switch:2")
    path = tmp_path / "ar.trace"
    write_trace(str(path), simulate(prog, t).to_trace(prog, t))
    assert main(["whatif", str(path)]) == 2
    assert "training-step windows" in capsys.readouterr().err


def test_host_cores_time_share_compute_and_the_calibrated_ring(tmp_path):
    path, prog, _ = _synthetic(tmp_path, model="gpt2", bucket_mb=25)
    meas = measure(read_trace(path))
    p1, s1, t1, _ = predict(meas, 4)
    p2, s2, t2, rep = predict(meas, 4, host_cores=2)      # 4 ranks on 2 cores, measured 2 on 2: x2
    assert rep["predicted"]["host_share"] == 2.0
    np.testing.assert_allclose(p2.compute_seconds, 2 * p1.compute_seconds, rtol=1e-12)
    assert t2.link_bw == pytest.approx(t1.link_bw / 2) and t2.link_lat == pytest.approx(t1.link_lat * 2)
    assert s2.makespan == pytest.approx(2 * s1.makespan, rel=1e-9)
    assert predict(meas, 2, host_cores=2)[3]["predicted"]["host_share"] == 1.0


def test_one_bucket_ddp_fits_only_the_bandwidth(tmp_path, capsys):
    """One bucket: every measured collective is the same all-reduce, so k·α + c·β = d has one
    equation: α is switch:N's default route latency and β the fit given it, which reproduces the
    measured collective exactly on the measured ranks."""
    from rankscope.simulator import costs
    from rankscope.simulator.topology import DEFAULT_LAT

    path, prog, sim = _synthetic(tmp_path, topo="switch:2", lat=20e-6, bw=10e9)  # route: 40 us, 10 GB/s
    meas = measure(read_trace(path))
    assert meas.fit == "beta" and meas.alpha == 2 * DEFAULT_LAT
    nbytes = int(prog.coll_bytes[0])
    k, c = costs.ring_all_reduce(2, nbytes, 1.0, 0.0), costs.ring_all_reduce(2, nbytes, 0.0, 1.0)
    d = k * 40e-6 + c / 10e9
    assert meas.beta == pytest.approx((d - k * 2 * DEFAULT_LAT) / c, rel=1e-9)
    _, same, _, _ = predict(meas, 2)
    assert same.makespan == pytest.approx(sim.makespan, rel=1e-9)
    assert main(["whatif", path]) == 0
    assert "cannot separate alpha from beta: alpha 10 us is switch:N's default route latency" in capsys.readouterr().out
    # two sizes (GPT-2's buckets) still fit both
    path2, _, _ = _synthetic(tmp_path, model="gpt2", bucket_mb=25, name="g")
    assert measure(read_trace(path2)).fit == "fit"


def test_measured_strategy_and_model_only_fill_what_the_trace_lacks(tmp_path, capsys):
    from pathlib import Path

    from rankscope.simulator.errors import UsageError
    from rankscope.simulator.interop.kineto_import import import_kineto

    path, _, _ = _synthetic(tmp_path)                      # records ddp and mlp:4x1024
    assert measure(read_trace(path), "mlp:4x1024", "ddp").strategy == "ddp"
    for argv, msg in ((["--measured-strategy", "fsdp"], "the trace records strategy ddp"),
                      (["--model", "mlp:2x128"], "the trace records model mlp:4x1024")):
        assert main(["whatif", path, *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1
    kineto = import_kineto([str(Path(__file__).resolve().parent / "fixtures" / "gloo_fsdp")])  # records neither
    with pytest.raises(UsageError, match="does not say"):
        measure(kineto)
    meas = measure(kineto, "mlp:2x128", "fsdp")
    assert (meas.model, meas.strategy) == ("mlp:2x128", "fsdp")
