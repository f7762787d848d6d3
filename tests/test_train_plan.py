"""The step as people plan it: sequence length, activation checkpointing, mixed precision,
gradient accumulation, device memory and the largest micro-batch that fits."""

import pytest

from rankscope.cli import main
from rankscope.simulator.engine import simulate
from rankscope.simulator.memory import memory_timeline
from rankscope.simulator.models import PRESETS, parse_device, parse_model
from rankscope.simulator.program import CollKind, OpKind
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.train_report import find_max_batch, peak_bytes
from rankscope.simulator.training import TrainConfig, compile_step

H100 = parse_device("h100")


def _buf(prog, name):
    return next(b.nbytes for b in prog.buffers if b.name == name)


def _secs(prog, label):
    return prog.compute_seconds[list(prog.compute_label).index(label)] * H100.flops_per_s("bf16")


@pytest.mark.parametrize("mode, attention, per_layer", [
    ("none", "eager", lambda s, b, h, a: s * b * h * (34 + 5 * a * s / h)),   # Korthikanti et al. eq. 1
    ("none", "flash", lambda s, b, h, a: 34 * s * b * h),                    # no s² tensor kept
    ("selective", "eager", lambda s, b, h, a: 34 * s * b * h),               # eq. 2
    ("full", "eager", lambda s, b, h, a: 2 * s * b * h),                     # the layer's input
])
def test_activation_bytes_per_layer_follow_korthikanti(mode, attention, per_layer):
    t = PRESETS["gpt2-medium"]
    s, b = 512, 3
    prog = compile_step(parse_model("gpt2-medium", b, s), 2, TrainConfig(strategy="ddp", checkpointing=mode,
                                                                       attention=attention), H100)
    want = per_layer(s, b, t.hidden, t.heads)
    for i in (0, t.layers - 1):
        assert _buf(prog, f"layer{i}.activations") == pytest.approx(want, abs=1)


def test_full_recomputation_rebuilds_one_layer_at_a_time():
    t = PRESETS["gpt2"]
    s, b, h, a = 1024, 2, t.hidden, t.heads
    prog = compile_step(parse_model("gpt2", b), 1, TrainConfig(strategy="ddp", checkpointing="full",
                                                             attention="eager"), H100)
    rec = _buf(prog, "layer0.recomputed")
    assert rec == pytest.approx(s * b * h * (34 + 5 * a * s / h) - 2 * s * b * h, abs=1)
    sim = simulate(prog, parse_topology("switch:1"))
    mt = memory_timeline(prog, sim.start, sim.end)
    embed, head = _buf(prog, "embed.activations"), _buf(prog, "head.activations")
    kept = t.layers * 2 * s * b * h
    # the end of forward (every checkpoint and the logits) or a layer's backward (one layer rebuilt)
    assert mt.peak_by_category(0)["activation"] == pytest.approx(max(embed + kept + head, embed + kept + rec), abs=64)


def test_recomputation_costs_forward_flops():
    s, h = 4096, 4096
    core = 4 * s * s * h          # the attention core's forward, per layer (micro-batch 1)
    for mode, attention, redo in (("none", "eager", lambda f: 0), ("none", "flash", lambda f: core / 2),
                                  ("selective", "eager", lambda f: core), ("full", "eager", lambda f: f),
                                  ("full", "flash", lambda f: f + core / 2)):
        prog = compile_step(parse_model("llama2-7b"), 2, TrainConfig(strategy="ddp", checkpointing=mode,
                                                                   attention=attention), H100)
        fwd, bwd = _secs(prog, "fwd layer3"), _secs(prog, "bwd layer3")
        assert fwd == pytest.approx(2 * parse_model("llama2-7b").units[4].params * s + core)
        assert bwd == pytest.approx(2 * fwd + redo(fwd)), (mode, attention)
        # the embedding and the head are not checkpointed
        assert _secs(prog, "bwd head") == pytest.approx(2 * _secs(prog, "fwd head"))


def test_seq_len_scales_activations_and_the_s2_term():
    m1, m2 = parse_model("llama2-7b", 1, 2048), parse_model("llama2-7b", 1, 4096)
    assert m1.params == m2.params and m2.tokens == 2 * m1.tokens
    u1, u2 = m1.units[1], m2.units[1]
    assert m2.act_bytes(u2) == 2 * m1.act_bytes(u1)
    assert m2.fwd_flops(u2) - 2 * m1.fwd_flops(u1) == pytest.approx(2 * 4 * 2048**2 * 4096)
    with pytest.raises(Exception, match="learned positions"):
        parse_model("gpt2", 1, 2048)


@pytest.mark.parametrize("billions, without, with_fp32", [(1, 16, 20), (7, 112, 140), (70, 1120, 1400)])
def test_ultrascale_playbook_model_memory(billions, without, with_fp32):
    """The Ultra-Scale Playbook (Hugging Face 2025), 'Memory usage in Transformers': a 16-bit step
    with fp32 master weights and Adam needs 16 B per parameter, 20 with fp32 gradient accumulation;
    1B: 16 / 20 GB, 7B: 112 / 140 GB, 70B: 1120 / 1400 GB."""
    model = parse_model(f"params:{billions}e9")
    for cfg, gb in ((TrainConfig(strategy="ddp"), without), (TrainConfig(strategy="ddp", fp32_grad_accum=True), with_fp32),
                    (TrainConfig(strategy="ddp", master_weights="param"), without)):
        prog = compile_step(model, 1, cfg, H100)
        state = sum(b.nbytes for b in prog.buffers if b.category in ("param", "grad", "optim"))
        assert state == gb * 10**9


def test_fsdp2_mixed_precision_policy_bytes():
    """MixedPrecisionPolicy(param_dtype=bf16): fp32 shards (the master) and gradients, Adam's 8 B;
    all-gathers and unsharded gradients in bf16; reduce-scatters in reduce_dtype."""
    model, n = parse_model("mlp:4x1024"), 4
    unit = 1024 * 1024 + 1024
    for reduce, rs_bytes in ((None, 2), ("fp32", 4)):
        prog = compile_step(model, n, TrainConfig(strategy="zero3", master_weights="param", reduce_dtype=reduce), H100)
        sizes = {b.name: b.nbytes for b in prog.buffers}
        assert sizes["param"] == 4 * 4 * unit // n and sizes["grad"] == 4 * 4 * unit // n
        assert sizes["optim"] == 8 * 4 * unit // n and sizes["layer0.unsharded"] == 2 * unit
        c = (prog.kind == OpKind.COLLECTIVE) & (prog.rank == 0)
        kinds, nbytes = prog.coll_kind[prog.arg[c]], prog.coll_bytes[prog.arg[c]]
        assert set(nbytes[kinds == CollKind.ALL_GATHER]) == {2 * unit}
        assert set(nbytes[kinds == CollKind.REDUCE_SCATTER]) == {rs_bytes * unit}


def _colls(prog, kind):
    c = (prog.kind == OpKind.COLLECTIVE) & (prog.rank == 0)
    return int((prog.coll_kind[prog.arg[c]] == kind).sum())


def test_gradient_accumulation_reduces_once_or_every_micro_batch():
    model, K, n = parse_model("mlp:4x1024"), 4, 2
    unit = (1024 * 1024 + 1024) * 2
    for strat, kind, per in (("ddp", CollKind.ALL_REDUCE, 1), ("zero3", CollKind.REDUCE_SCATTER, 4)):
        last = compile_step(model, n, TrainConfig(strategy=strat, grad_accum=K), H100)
        every = compile_step(model, n, TrainConfig(strategy=strat, grad_accum=K, grad_sync="every"), H100)
        assert _colls(last, kind) == per and _colls(every, kind) == K * per
        assert sum(lab.startswith("fwd layer0") for lab in last.compute_label) == K
    # FSDP2 without a sync keeps every unit's unsharded gradient until the last micro-batch
    t = parse_topology("switch:2")
    for sync, alive in (("last", 4), ("every", 2)):
        prog = compile_step(model, n, TrainConfig(strategy="zero3", grad_accum=K, grad_sync=sync), H100)
        sim = simulate(prog, t)
        assert memory_timeline(prog, sim.start, sim.end).peak_by_category(0)["grad_unsharded"] == alive * unit
    # all-gathers: every micro-batch, forward and backward
    assert _colls(prog, CollKind.ALL_GATHER) == 2 * 4 * K


def test_find_max_batch_bisects_a_monotone_peak():
    calls = []

    def peak(b):
        calls.append(b)
        return 1000 + 7 * b

    assert find_max_batch(peak, 1000 + 7 * 300) == (300, 1000 + 7 * 300)
    assert len(calls) <= 2 * 10 + 2
    assert find_max_batch(peak, 999) == (0, None)
    assert find_max_batch(lambda b: 0, 1, cap=64)[0] == 64


def test_find_max_batch_is_the_edge_of_fitting(capsys):
    import json

    limit = 40 * 10**9
    assert main(["sim", "train", "--model", "llama2-7b", "--ranks", "8", "--strategy", "zero3",
                 "--seq-len", "2048", "--find-max-batch", "--gpu-memory", str(limit), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    b = row["max_micro_batch"]
    assert b >= 1
    cfg, topo = TrainConfig(strategy="zero3"), parse_topology("switch:8")

    def peak(b):
        prog = compile_step(parse_model("llama2-7b", b, 2048), 8, cfg, H100)
        return peak_bytes(prog, simulate(prog, topo))

    assert peak(b) <= limit < peak(b + 1) and peak(b) == row["peak"]


def test_cli_memory_limit_lines(capsys):
    assert main(["sim", "train", "--model", "llama2-7b", "--ranks", "8", "--strategy", "ddp"]) == 0
    out = capsys.readouterr().out
    assert "DOES NOT FIT: peak 127GB" in out and "80GB" in out
    assert main(["sim", "train", "--model", "llama2-7b", "--ranks", "8", "--compare-strategies"]) == 0
    rows = {line.split()[0]: line.split()[3] for line in capsys.readouterr().out.splitlines()
            if line.split() and line.split()[0] in ("ddp", "zero1", "zero2", "zero3")}
    assert rows == {"ddp": "NO", "zero1": "yes", "zero2": "yes", "zero3": "yes"}
    assert main(["sim", "train", "--model", "mlp:4x1024", "--ranks", "2", "--checkpointing", "full"]) == 0
    assert "fits: peak" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [
    (["--model", "mlp:4x64", "--seq-len", "128"], "--seq-len applies"),
    (["--strategy", "zero2", "--grad-accum", "2", "--grad-sync", "last"], "reduces every micro-batch"),
    (["--device", "cpu", "--find-max-batch"], "needs a memory size"),
    (["--strategy", "zero1", "--master-weights", "param"], "master weights"),
    (["--fp32-grad-accum", "--precision", "fp32"], "fp32 already"),
])
def test_cli_bad_plans_exit_2(argv, msg, capsys):
    assert main(["sim", "train", "--ranks", "2", *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_the_does_not_fit_line_suggests_only_what_applies_and_the_search_cap_is_said(capsys):
    assert main(["sim", "train", "--model", "llama2-7b", "--ranks", "8", "--strategy", "ddp", "--micro-batch", "4",
                 "--topology", "nodes:1x8"]) == 0
    out = capsys.readouterr().out
    assert "try --checkpointing full, a smaller --micro-batch or zero3)" in out
    assert main(["sim", "train", "--model", "llama2-7b", "--ranks", "8", "--strategy", "zero3", "--topology",
                 "nodes:1x8", "--checkpointing", "full", "--gpu-memory", "1GB"]) == 0
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "(--gpu-memory)" in out and "try" not in out.split("DOES NOT FIT")[1]
    assert main(["sim", "train", "--model", "mlp:2x64", "--find-max-batch", "--gpu-memory", "1TB", "--device",
                 "cpu"]) == 0
    out = capsys.readouterr().out
    assert ">= 1048576" in out and "the search stops at 1048576" in out
