"""``real sweep``, ``calibrate`` and the torchrun launch mode on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from real_helpers import children, run_cli  # noqa: E402

from rankscope.real.calibrate import fit  # noqa: E402
from rankscope.simulator.program import OpKind  # noqa: E402
from rankscope.simulator.topology import parse_topology  # noqa: E402
from rankscope.simulator.trace import read_trace  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_sweep_times_native_and_p2p_and_writes_traces(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert run_cli(["real", "sweep", "-n", "2", "--sizes", "4KiB,64KiB", "--algos", "ring,hd", "--iters", "2",
                    "--json", "--out-dir", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["impl"], r["nbytes"]) for r in rows] == [
        ("native", 4096), ("ring", 4096), ("hd", 4096), ("native", 65536), ("ring", 65536), ("hd", 65536)]
    for r in rows:
        assert r["seconds"] > 0 and r["algbw"] == pytest.approx(r["nbytes"] / r["seconds"])
        assert r["busbw"] == pytest.approx(r["algbw"] * 2 * (2 - 1) / 2)  # all-reduce, p = 2
        tr = read_trace(r["trace"])
        assert tr.ran.all() and tr.meta["real"]["sweep"] is True
        if r["impl"] == "native":
            assert (tr.program.kind == OpKind.COLLECTIVE).all() and tr.n_ops == 2
    assert not children()


def test_sweep_of_every_collective_prints_a_table(capsys):
    assert run_cli(["real", "sweep", "-n", "2", "--collective", "all", "--sizes", "1KiB", "--iters", "1",
                    "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    for coll in ("all-reduce", "reduce-scatter", "all-gather", "broadcast"):
        assert f"# rankscope real sweep: {coll} on 2 ranks, gloo" in text
    assert "native" in text and "tree" in text


def test_fit_recovers_alpha_and_bandwidth():
    sizes = np.array([1e3, 1e4, 1e5, 1e6])
    alpha, bw, res = fit(sizes, 20e-6 + sizes / 2e9)
    assert alpha == pytest.approx(20e-6) and bw == pytest.approx(2e9) and np.abs(res).max() < 1e-12
    alpha, bw, _ = fit(sizes, sizes / 1e9 - 1e-6)  # noise below zero latency: through the origin
    assert alpha == 0.0 and bw == pytest.approx(1e9, rel=1e-2)


def test_calibrate_writes_a_topology_the_simulator_loads(tmp_path, capsys):
    path = tmp_path / "cal.toml"
    assert run_cli(["calibrate", "-n", "3", "--sizes", "1KiB", "1MiB", "4MiB", "--rounds", "8",
                    "-o", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(p["src"], p["dst"]) for p in doc["pairs"]] == [(0, 1), (0, 2), (1, 2)]
    assert all(p["bw"] > 0 and p["alpha"] >= 0 and len(p["residuals"]) == 3 for p in doc["pairs"])
    topo = parse_topology(str(path))
    assert topo.nranks == 3 and len(topo.link_names) == 6
    assert topo.link_bw[0] == pytest.approx(doc["pairs"][0]["bw"])
    assert not children()


_SCRIPT = f"""
import sys
sys.path.insert(0, {TESTS!r})
from real_helpers import run_cli
sys.exit(run_cli(sys.argv[1:]))
"""


def _torchrun(tmp_path, *args):
    script = tmp_path / "rank.py"
    script.write_text(_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(script), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_under_torchrun_the_ranks_join_the_job(tmp_path):
    out = tmp_path / "tr.trace"
    proc = _torchrun(tmp_path, "real", "all-reduce", "-s", "4KiB", "--check-steps", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("{")]  # rank 0 reports, once
    s = json.loads(line)
    assert s["nranks"] == 2 and s["provenance"] == "equal" and s["native"] == "equal"
    tr = read_trace(out)
    assert tr.ran.all() and tr.meta["executor"] == "gloo" and len(tr.meta["hosts"]) == 2
