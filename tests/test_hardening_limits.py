"""The size estimates of rankscope.simulator.limits bound what the builders make (so a refusal
names a true upper bound), and stay within a small factor of it (so a legal request is not refused)."""

from __future__ import annotations

import pytest

from rankscope.simulator import limits
from rankscope.simulator.collectives import ALGORITHMS, build
from rankscope.simulator.models import PRESETS, parse_device, parse_model
from rankscope.simulator.training import STRATEGIES, TrainConfig, compile_step


@pytest.mark.parametrize("coll, algo", [(c, a) for c, algos in ALGORITHMS.items() for a in algos])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 8, 12, 16, 33])
def test_collective_estimates_bound_the_builders(coll, algo, n):
    nodes = next((m for m in (2, 3, 1) if n % m == 0), 1) if algo == "hier" else None
    for pieces in (1, 4, 7):
        try:
            prog = build(coll, algo, n, 4096, pieces=pieces, nodes=nodes)
        except Exception:  # a combination the builder refuses (hier with N/M ragged)
            continue
        est = limits.collective_ops(coll, algo, n, pieces=pieces, nodes=nodes)
        assert prog.n_ops <= est, (coll, algo, n, pieces, prog.n_ops, est)
        assert est <= 4 * prog.n_ops + 8 * n + 8, (coll, algo, n, pieces, prog.n_ops, est)


@pytest.mark.parametrize("model", list(PRESETS) + ["mlp:1x8", "mlp:7x64", "params:1e9x3"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("accum", [1, 3])
def test_training_estimates_bound_compile_step(model, strategy, accum):
    m = parse_model(model, 4)
    prog = compile_step(m, 4, TrainConfig(strategy=strategy, grad_accum=accum), parse_device("h100", None))
    est = limits.train_ops(len(m.units), 4, accum)
    assert prog.n_ops <= est <= 12 * prog.n_ops


def test_model_units_are_read_from_the_text_before_building():
    assert limits.model_units("mlp:4x1024") == 4
    assert limits.model_units("params:1e9x12") == 12
    assert limits.model_units("gpt2") is None
    for bad in ("mlp:1000000x4", "mlp:4x99999999999", "params:1e30", "params:1e9x99999999999999"):
        with pytest.raises(Exception, match="over the limit"):
            limits.model_units(bad)


def test_budgets_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RANKSCOPE_MEMORY", "1GiB")
    monkeypatch.delenv("RANKSCOPE_MAX_OPS", raising=False)
    assert limits.memory_budget() == 1 << 30
    assert limits.max_ops() == (1 << 30) // limits.BYTES_PER_OP
    monkeypatch.setenv("RANKSCOPE_MAX_OPS", "12")
    assert limits.max_ops() == 12
    for var, bad in (("RANKSCOPE_MAX_OPS", "x"), ("RANKSCOPE_MEMORY", "lots"), ("RANKSCOPE_MAX_RANKS", "0")):
        monkeypatch.setenv(var, bad)
        with pytest.raises(Exception, match=var):
            limits.max_ops() if var != "RANKSCOPE_MAX_RANKS" else limits.max_ranks()
        monkeypatch.delenv(var)
