"""Real DDP and FSDP2 runs on 2 gloo ranks, checked against the simulator; failures and timeouts.

Each run forks 2 ranks (torch is imported once, in this process) and takes ~5 s on 2 cores.
"""

import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("torch") is None:  # checked without importing it: collection stays light
    pytest.skip("real runs need torch", allow_module_level=True)

from rankscope.cli import main  # noqa: E402
from rankscope.real import train as real_train  # noqa: E402
from rankscope.real.train import TrainRunConfig, TrainRunError, launch  # noqa: E402
from rankscope.simulator.interop.kineto_export import write_kineto  # noqa: E402
from rankscope.simulator.interop.kineto_import import import_kineto  # noqa: E402
from rankscope.simulator.program import OpKind  # noqa: E402
from rankscope.simulator.trace import read_trace  # noqa: E402


def _run(tmp_path, capsys, strategy):
    out = tmp_path / f"{strategy}.trace"
    code = main(["real", "train", "--strategy", strategy, "--ranks", "2", "--steps", "3", "--out", str(out), "--json",
                       "--profile-dir", str(tmp_path / "prof")])
    text = capsys.readouterr().out
    doc = json.loads(text)
    return code, doc, read_trace(out)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    out = tmp / "ddp.trace"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["real", "train", "--strategy", "ddp", "--ranks", "2", "--steps", "3", "--out", str(out), "--json"])
    return code, json.loads(buf.getvalue()), read_trace(out)


def test_ddp_collectives_equal_the_simulators_and_memory_is_close(ddp_run):
    code, doc, trace = ddp_run
    comp = doc["comparison"]
    assert code == 0
    assert comp["collectives"]["match"], comp["collectives"]
    assert comp["collectives"]["per_step_simulated"] == 1          # one 16.8 MB bucket
    assert all(s["match"] for s in comp["collectives"]["steps"]) and len(comp["collectives"]["steps"]) == 6
    left_out = [m for m in comp["collectives"]["mapping"] if "left_out" in m]
    assert {m["rank"] for m in left_out} == {0, 1}                   # the bucket-rebuild broadcasts
    for row in comp["memory"]["ranks"]:
        assert row["within_tolerance"], row
    assert trace.meta["executor"] == "gloo" and trace.program.nranks == 2
    assert {"fwd layer0", "bwd layer3", "optimizer step"} <= set(trace.program.compute_label)


def test_fsdp_collectives_equal_the_simulators_and_memory_is_close(tmp_path, capsys):
    code, doc, trace = _run(tmp_path, capsys, "fsdp")
    comp = doc["comparison"]
    assert code == 0 and comp["collectives"]["match"], comp["collectives"]
    assert comp["collectives"]["per_step_simulated"] == 12          # 8 all-gathers, 4 reduce-scatters
    assert comp["train_config"]["strategy"] == "zero3"
    for row in comp["memory"]["ranks"]:
        assert row["within_tolerance"], row
    assert sorted(os.listdir(tmp_path / "prof")) == ["flight_recorder", "rank0.json", "rank0.stats.json",
                                                     "rank0.stderr", "rank1.json", "rank1.stats.json",
                                                     "rank1.stderr"]


def test_real_run_round_trips_through_the_kineto_export(ddp_run, tmp_path):
    _, _, trace = ddp_run
    write_kineto(trace, str(tmp_path))
    back = import_kineto([str(tmp_path)])

    def colls(t):
        p = t.program
        c = np.flatnonzero(p.kind == OpKind.COLLECTIVE)
        rows = [(int(p.rank[o]), int(p.coll_kind[p.arg[o]]), int(p.coll_bytes[p.arg[o]])) for o in c]
        return sorted(rows + [(c_["rank"], c_["kind"], c_["nbytes"]) for c_ in t.meta["other_collectives"]],
                      key=str)

    assert colls(back) == colls(trace) and len(colls(trace)) >= 2 * 4


def _wait_for_no_children():
    for _ in range(50):
        if not multiprocessing.active_children():
            return True
        import time

        time.sleep(0.1)
    return False


def test_a_rank_that_raises_fails_the_run_and_leaves_no_process(tmp_path, monkeypatch):
    real_rank = real_train.run_rank

    def flaky(cfg, ctx, *a, **k):
        if ctx.rank == 1:
            raise RuntimeError("boom on rank 1")
        return real_rank(cfg, ctx, *a, **k)

    monkeypatch.setattr(real_train, "run_rank", flaky)   # the forked ranks inherit it
    with pytest.raises(TrainRunError, match="rank 1 failed: RuntimeError: boom on rank 1"):
        launch(TrainRunConfig(model="mlp:2x64", strategy="ddp", nranks=2, steps=1, timeout=20), str(tmp_path))
    assert _wait_for_no_children()


def test_a_rank_that_hangs_hits_the_timeout(tmp_path, monkeypatch):
    def hang(cfg, ctx, *a, **k):
        import time

        time.sleep(60)

    monkeypatch.setattr(real_train, "run_rank", hang)
    with pytest.raises(TrainRunError, match="did not finish within --timeout 2 s"):
        launch(TrainRunConfig(model="mlp:2x64", nranks=2, steps=1, timeout=2), str(tmp_path))
    assert _wait_for_no_children()


def test_bad_arguments_are_one_line(capsys):
    assert main(["real", "train", "--model", "gpt2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rankscope: error: real runs build mlp:LxW models only, got 'gpt2'"]
    assert main(["real", "train", "--strategy", "zero2"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_model_is_the_simulators():
    from rankscope.simulator.models import parse_model

    m = parse_model("mlp:3x64")
    net = real_train.build_model(m)
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert shapes == [s for u in m.units for s in u.shapes]


def test_cli_modules_import_without_torch():
    code = ("import sys\nimport rankscope.cli.train, rankscope.cli.interop, rankscope.real.train\n"
            "import rankscope.real.profile_convert, rankscope.real.train_compare\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_under_torchrun_each_process_is_one_rank_and_rank0_converts(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("no torchrun next to this python")
    out = tmp_path / "tr.trace"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node=2", "-m", "rankscope", "real", "train",
                          "--model", "mlp:2x128", "--strategy", "fsdp", "--ranks", "2", "--steps", "2",
                          "--device", "cpu", "--out", str(out), "--json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    assert doc["comparison"]["collectives"]["match"] and doc["run"]["backend"] == "gloo"
    assert read_trace(out).program.nranks == 2
    assert (tmp_path / "tr.trace.profiles" / "rank1.json").exists()
