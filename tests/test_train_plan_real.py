"""Real FSDP2 runs on 2 gloo ranks with activation checkpointing and with FSDP2's
MixedPrecisionPolicy(param_dtype=torch.bfloat16), checked against the simulator: collectives
exactly, peak memory within 10%. Each run forks 2 ranks, ~5-10 s on 2 cores."""

import contextlib
import importlib.util
import io
import json

import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip("real runs need torch", allow_module_level=True)

from rankscope.cli import main  # noqa: E402
from rankscope.simulator.program import OpKind  # noqa: E402
from rankscope.simulator.trace import read_trace  # noqa: E402


def _real(tmp_path, *extra):
    out = tmp_path / "run.trace"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["real", "train", "--strategy", "fsdp", "--ranks", "2", "--steps", "2", "--out", str(out),
                     "--json", *extra])
    return code, json.loads(buf.getvalue())["comparison"], read_trace(out)


@pytest.mark.parametrize("extra, precision", [(("--checkpointing", "full"), "fp32"),
                                              (("--param-dtype", "bf16", "--checkpointing", "full"), "bf16")])
def test_fsdp2_checkpointed_and_mixed_precision_runs_match_the_simulator(tmp_path, extra, precision):
    code, comp, trace = _real(tmp_path, *extra)
    assert code == 0 and comp["collectives"]["match"], comp["collectives"]
    assert comp["collectives"]["per_step_simulated"] == 12
    assert comp["train_config"]["checkpointing"] == "full" and comp["train_config"]["precision"] == precision
    assert comp["train_config"]["master_weights"] == ("param" if precision == "bf16" else "optimizer")
    for row in comp["memory"]["ranks"]:
        assert row["within_tolerance"], row
    # the recomputation runs inside the backward spans: one forward span per unit and step
    labels = [trace.program.compute_label[trace.program.arg[o]] for o in
              (i for i in range(trace.program.n_ops) if trace.program.kind[i] == OpKind.COMPUTE and trace.program.rank[i] == 0)]
    assert labels.count("fwd layer0") == 2 and labels.count("bwd layer0") == 2


def test_bf16_needs_fsdp(capsys):
    assert main(["real", "train", "--strategy", "ddp", "--param-dtype", "bf16"]) == 2
    assert "MixedPrecisionPolicy" in capsys.readouterr().err
