"""NCCL's multi-channel ring and double binary tree on real gloo ranks: the measured provenance after
every step equals the simulated one, the result equals the native collective's; NVLS is refused in
one line (it reduces inside the switch, which point-to-point messages cannot say)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import subprocess  # noqa: E402
import sys  # noqa: E402

from real_helpers import children  # noqa: E402

from rankscope.real.encoding import Encoding, aligned_program  # noqa: E402
from rankscope.real.runner import run_programs  # noqa: E402

SPECS = [("all-reduce", "nccl-ring", 1), ("all-reduce", "nccl-ring", 2), ("all-reduce", "nccl-tree", 1),
         ("all-reduce", "nccl-tree", 2), ("reduce-scatter", "nccl-ring", 2), ("all-gather", "nccl-ring", 2)]


def test_nccl_schedules_run_on_gloo_with_simulated_provenance(tmp_path):
    n = 4
    enc = Encoding(n)
    progs = [aligned_program(c, a, n, 1000, enc.elem_bytes, nodes=m, pieces=3) for c, a, m in SPECS]
    assert all(p.meta["nchannels"] == 2 for p in progs)
    outs = [str(tmp_path / f"{i}.trace") for i in range(len(progs))]
    summaries = run_programs(progs, outs, timeout=60, check_steps=True)
    assert not children()
    for (c, a, m), s in zip(SPECS, summaries):
        what = f"{c} {a} nodes={m}"
        assert s["mismatch"] is None, what
        assert s["provenance"] == "equal" and s["native"] == "equal" and s["check_steps"], what


def test_nvls_is_refused_in_one_line():
    r = subprocess.run([sys.executable, "-m", "rankscope", "real", "all-reduce", "--algo", "nccl-nvls", "-n", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "cannot be expressed in point-to-point" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_real_algo_nccl_runs_nccls_choice(capsys):
    from real_helpers import run_cli

    assert run_cli(["real", "all-reduce", "--algo", "nccl", "-t", "nodes:2x2,gpu=h100,nics=2", "-n", "4",
                    "-s", "1000", "--check-steps"]) == 0
    out = capsys.readouterr().out
    assert "NCCL 2.20.3 on nodes:2x2,gpu=h100,nics=2: tree/ll" in out and "running nccl-tree" in out
    assert "measured == simulated" in out and not children()


def test_real_algo_nccl_refuses_nvls_in_one_line():
    r = subprocess.run([sys.executable, "-m", "rankscope", "real", "all-reduce", "--algo", "nccl", "-t",
                        "nodes:1x8,gpu=h100", "-n", "8", "-s", "64MiB"], capture_output=True, text=True)
    assert r.returncode == 2 and "NCCL picks nvls" in r.stderr and len(r.stderr.strip().splitlines()) == 1
