"""Training steps as programs: the ZeRO paper's memory, bytes per step, and FSDP's behaviour."""

import numpy as np
import pytest

from rankscope.cli import main
from rankscope.simulator.engine import simulate
from rankscope.simulator.memory import exposed_comm, memory_timeline
from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.program import CollKind, OpKind
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.traffic import traffic
from rankscope.simulator.training import TrainConfig, compile_step

H100 = parse_device("h100")


def _run(model, n, topo="switch", **cfg):
    prog = compile_step(parse_model(model) if isinstance(model, str) else model, n, TrainConfig(**cfg), H100)
    sim = simulate(prog, parse_topology(f"{topo}:{n}"))
    return prog, sim, memory_timeline(prog, sim.start, sim.end)


@pytest.mark.parametrize("strategy, gb", [("ddp", 120), ("zero1", 31.4), ("zero2", 16.6), ("zero3", 1.9)])
def test_zero_paper_model_state_from_the_timeline(strategy, gb):
    """Rajbhandari et al. SC'20: Ψ = 7.5B, N = 64, mixed-precision Adam."""
    prog, sim, mt = _run("params:7.5e9", 64, strategy=strategy)
    for r in (0, 63):
        cat = mt.peak_by_category(r)
        state = cat["param"] + cat["grad"] + cat["optim"]
        assert round(state / 1e9, 1 if gb < 100 else 0) == gb


@pytest.mark.parametrize("strategy, factor", [("ddp", 2), ("zero1", 2), ("zero2", 2), ("zero3", 3)])
def test_bytes_moved_per_rank_per_step(strategy, factor):
    n, psi = 64, 7.5e9
    prog, _, _ = _run("params:7.5e9", n, strategy=strategy)
    sent = traffic(prog).sent
    expect = factor * psi * 2 * (n - 1) / n  # bf16 elements
    assert np.all(np.abs(sent / expect - 1) < 1e-6)


def _param_peak(mt, r=0):
    cat = mt.categories
    c = mt.by_category[r]
    return int((c[:, cat.index("param")] + c[:, cat.index("param_unsharded")]).max())


def test_fsdp_peak_is_shards_plus_units_alive():
    n, model = 4, parse_model("mlp:8x1024")
    unit = (1024 * 1024 + 1024) * 2
    shard = 8 * unit // n
    _, _, none = _run(model, n, strategy="fsdp", forward_prefetch=False, backward_prefetch=False)
    _, _, pre = _run(model, n, strategy="fsdp", forward_prefetch=True, backward_prefetch=True)
    assert _param_peak(none) == shard + unit
    assert _param_peak(pre) == shard + 2 * unit


def test_no_reshard_after_forward_keeps_units_and_drops_backward_all_gathers():
    n, model = 4, parse_model("mlp:8x1024")
    unit = (1024 * 1024 + 1024) * 2
    shard = 8 * unit // n
    prog_r, _, mt_r = _run(model, n, strategy="fsdp", backward_prefetch=False)
    prog_k, _, mt_k = _run(model, n, strategy="fsdp", reshard_after_forward=False, backward_prefetch=False)
    assert _param_peak(mt_k) == shard + 8 * unit
    assert _param_peak(mt_k) - _param_peak(mt_r) == 7 * unit

    def gathers(p):
        c = (p.kind == OpKind.COLLECTIVE) & (p.rank == 0)
        return int((p.coll_kind[p.arg[c]] == CollKind.ALL_GATHER).sum())

    assert gathers(prog_r) == 16 and gathers(prog_k) == 8


def test_prefetch_shortens_the_step_when_communication_costs():
    # a unit's all-gather (33.5 MB at 25 GB/s, ~1.2 ms) about as long as its forward (~1.1 ms)
    model = parse_model("mlp:8x4096", micro_batch=16384)
    t = parse_topology("switch:8")
    times = {}
    for pf in (False, True):
        prog = compile_step(model, 8, TrainConfig(strategy="fsdp", forward_prefetch=pf, backward_prefetch=pf), H100)
        times[pf] = simulate(prog, t).makespan
    assert times[True] < 0.95 * times[False], times


def test_ddp_overlaps_bucket_all_reduce_with_backward():
    model = parse_model("mlp:8x4096", micro_batch=2048)
    prog = compile_step(model, 8, TrainConfig(strategy="ddp", bucket_bytes=32 << 20), H100)
    sim = simulate(prog, parse_topology("switch:8"))
    comm = float(sim.end[prog.kind == OpKind.COLLECTIVE].max() - sim.start[prog.kind == OpKind.COLLECTIVE].min())
    busy = (sim.end - sim.start)[(prog.kind == OpKind.COLLECTIVE) & (prog.rank == 0)].sum()
    assert busy <= comm
    assert exposed_comm(prog, sim.start, sim.end)[0] < busy  # part of it hides behind backward


@pytest.mark.parametrize("name, billions", [("gpt2", 0.124), ("gpt2-medium", 0.355), ("llama2-7b", 6.74),
                                            ("llama2-13b", 13.0), ("llama2-70b", 69.0)])
def test_published_parameter_counts(name, billions):
    assert round(parse_model(name).params / 1e9, 3 if billions < 1 else 2 if billions < 10 else 1) == billions


def test_flops_follow_2_params_tokens_plus_the_attention_core():
    """Narayanan et al. SC'21: 2·params·tokens + 4·b·s²·h forward; flash attention's backward
    recomputes QKᵀ (2·b·s²·h); eager attention without recomputation makes backward 2 x forward."""
    model = parse_model("llama2-7b")
    rate = H100.flops_per_s("bf16")
    s, h = 4096, 4096
    for attention, extra in (("flash", 2 * s * s * h), ("eager", 0)):
        prog = compile_step(model, 2, TrainConfig(strategy="ddp", attention=attention), H100)
        labels = list(prog.compute_label)
        fwd = prog.compute_seconds[labels.index("fwd layer0")] * rate
        bwd = prog.compute_seconds[labels.index("bwd layer0")] * rate
        assert fwd == pytest.approx(2 * model.units[1].params * s + 4 * s * s * h)
        assert bwd == pytest.approx(2 * fwd + extra)
    mlp = compile_step(parse_model("mlp:2x64"), 2, TrainConfig(strategy="ddp"), H100)
    labels = list(mlp.compute_label)
    assert mlp.compute_seconds[labels.index("fwd layer0")] * rate == pytest.approx(2 * (64 * 64 + 64) * 32)


def test_fsdp1_and_fsdp2_padding():
    model = parse_model("mlp:4x1001")
    p1 = compile_step(model, 4, TrainConfig(strategy="fsdp", fsdp_version=1), H100)
    p2 = compile_step(model, 4, TrainConfig(strategy="fsdp", fsdp_version=2), H100)
    per_unit = 1001 * 1001 + 1001  # = 1003002, 2 short of a multiple of 4
    assert p1.meta["padding_bytes"] == 4 * 2 * 2
    # FSDP2 pads dim 0 of the weight (1001 -> 1004 rows of 1001) and of the bias (1001 -> 1004)
    assert p2.meta["padding_bytes"] == 4 * (3 * 1001 + 3) * 2
    assert per_unit % 4 == 2


def test_event_loop_agrees_with_the_sweep_on_a_training_step():
    prog = compile_step(parse_model("mlp:4x1024"), 4, TrainConfig(strategy="fsdp", forward_prefetch=True), H100)
    t = parse_topology("switch:4")
    a, b = simulate(prog, t, method="sweep"), simulate(prog, t, method="events")
    np.testing.assert_allclose(a.start, b.start, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.end, b.end, rtol=1e-12, atol=1e-15)


def test_cli_train(capsys):
    assert main(["sim", "train", "--model", "params:7.5e9", "--ranks", "64", "--compare-strategies"]) == 0
    out = capsys.readouterr().out
    assert "120GB" in out and "31.4GB" in out and "16.6GB" in out and "1.88GB" in out
    assert main(["sim", "train", "--model", "mlp:4x1024", "--ranks", "4", "--strategy", "zero9"]) == 2
    assert "unknown strategy" in capsys.readouterr().err


def test_cli_train_json_and_trace(tmp_path, capsys):
    import json

    from rankscope.simulator.trace import read_trace

    out = tmp_path / "step.trace"
    assert main(["sim", "train", "--model", "mlp:4x1024", "--ranks", "4", "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reports"]["rows"][0]["peak"] > doc["reports"]["rows"][0]["model_state"]
    tr = read_trace(out)
    assert (tr.program.kind == OpKind.COLLECTIVE).sum() == 4 * 12
