"""A rank that raises or is killed: every rank exits within the timeout, the culprit is named, the
command exits non-zero, no process is left behind, and the partial trace is marked incomplete."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("torch")

from real_helpers import children, run_cli  # noqa: E402

from rankscope.real.faults import ENV  # noqa: E402
from rankscope.simulator.trace import read_trace  # noqa: E402


@pytest.mark.parametrize("fault, reason", [
    ("raise:1:1", "rank 1 failed: InjectedFault: injected fault: rank 1 raised at step 1"),
    ("kill:2:2", "rank 2 failed: killed by signal SIGKILL"),
])
def test_a_failing_rank_ends_the_run(fault, reason, tmp_path, capsys):
    out = tmp_path / "partial.trace"
    t0 = time.monotonic()
    code = run_cli(["real", "all-reduce", "-n", "3", "-s", "4KiB", "--timeout", "15", "-o", str(out),
                    "--inject-fault", fault])
    assert time.monotonic() - t0 < 30
    assert code == 1
    err = capsys.readouterr().err
    assert reason in err and "stopped after it" in err
    assert "partial trace (marked incomplete)" in err
    assert not children()
    tr = read_trace(out)
    assert tr.meta["complete"] is False and reason in tr.meta["error"]
    ran = tr.ran
    assert 0 < ran.sum() < tr.n_ops                  # the steps before the fault ran, not the rest
    assert np.isnan(tr.start[~ran]).all() and np.isnan(tr.end[~ran]).all()
    rank, step = map(int, fault.split(":")[1:])
    p = tr.program
    involved = (p.rank == rank) | (p.peer == rank)
    assert not ran[involved & (p.step >= step)].any()
    if fault.startswith("raise"):  # the raising rank publishes the stamps it has
        assert ran[involved & (p.step < step)].all()
    else:                          # a killed rank's stamps die with it
        assert not ran[involved].any()


def test_the_fault_can_come_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv(ENV, "raise:0:0")
    assert run_cli(["real", "reduce-scatter", "-n", "2", "-s", "1KiB", "--timeout", "15"]) == 1
    assert "rank 0 failed: InjectedFault" in capsys.readouterr().err
    assert not children()


def test_a_hung_rank_is_named_and_killed(capsys):
    """Rank 1 stops answering: its peers time out after --timeout, the launcher kills it --timeout
    later; the hung rank is the culprit, not the peers that timed out."""
    t0 = time.monotonic()
    assert run_cli(["real", "all-gather", "-n", "3", "-s", "1KiB", "--timeout", "2",
                    "--inject-fault", "hang:1:0"]) == 1
    assert time.monotonic() - t0 < 20
    assert "rank 1 failed: hung" in capsys.readouterr().err
    assert not children()


def test_forked_ranks_start_before_the_store_exists(monkeypatch):
    """Forking while the store's server thread accepted the first ranks' connections deadlocked a
    later rank now and then (real/launch.py, [Note: launch modes]); the order is the fix."""
    import rankscope.real.launch as launch
    import rankscope.real.procs as procs

    alive_at_store = []
    real_store = procs.server_store

    def spy(timeout, tries=3):
        alive_at_store.append(len(children()))
        return real_store(timeout, tries)

    monkeypatch.setattr(procs, "server_store", spy)
    out = launch.launch(lambda ctx: ctx.rank * 10, nranks=3, timeout=20)
    assert out.ok and out.results == {0: 0, 1: 10, 2: 20}
    assert alive_at_store == [3]
    assert children() == []
