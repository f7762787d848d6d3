"""What the real verbs refuse before any rank starts, and the deadline of a run whose rank hangs.

- without torch, every real verb prints one line (a RankscopeError) and exits 2;
- an output that cannot be written (a folder that does not exist, ``/proc``) is refused before
  the launch, not after a run that then loses its result;
- a rank that hangs from the start ends the run within ``--timeout`` + 5 s of the command's start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")

from real_helpers import children, run_cli  # noqa: E402

from rankscope.cli import main  # noqa: E402
from rankscope.simulator.errors import UsageError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_TORCH = "import sys\nsys.modules['torch'] = None\nfrom rankscope.cli import main\nsys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("argv", [["real", "all-reduce", "-n", "2"], ["real", "sweep"], ["real", "train"],
                                  ["calibrate"], ["validate"]])
def test_without_torch_a_real_verb_is_one_line(argv, tmp_path):
    run = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("rankscope: error: rankscope ") and "needs torch" in lines[0]
    assert "pip install 'rankscope[real]'" in lines[0]


@pytest.fixture
def no_launch(monkeypatch):
    import rankscope.real.runner as runner
    import rankscope.real.train as train

    def launched(*a, **k):
        raise AssertionError("a rank was started")

    monkeypatch.setattr(runner, "launch", launched)
    monkeypatch.setattr(train, "launch", launched)


@pytest.mark.parametrize("out, why", [("/proc/x.trace", "cannot write '/proc/x.trace'"),
                                      ("{tmp}/missing/x.trace", "does not exist")])
def test_an_unwritable_out_is_refused_before_any_rank_starts(out, why, tmp_path, no_launch, capsys):
    out = out.format(tmp=tmp_path)
    with pytest.raises(UsageError, match=why):
        run_cli(["real", "all-reduce", "-n", "2", "-s", "4KiB", "--out", out])
    assert main(["real", "train", "--ranks", "2", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and why in err[0]
    assert not children() and not os.path.exists(out)


def test_the_probe_leaves_nothing_behind(tmp_path, no_launch):
    from rankscope.cli.real_env import check_writable

    check_writable(str(tmp_path / "x.trace"))
    check_writable(str(tmp_path / "new-folder"), folder=True)
    assert os.listdir(tmp_path) == []


def test_a_hung_rank_ends_the_run_within_timeout_plus_5s_of_the_start(capsys):
    """Rank 1 hangs before its first transfer: its peers' waits run out --timeout after the
    command started (start-up included), and the launcher kills rank 1 right after."""
    t0 = time.monotonic()
    assert run_cli(["real", "all-reduce", "-n", "3", "-s", "4KiB", "--timeout", "6",
                    "--inject-fault", "hang:1:0"]) == 1
    took = time.monotonic() - t0
    assert took < 6 + 5, took  # before: start-up + 6 s + 5 s of grace
    assert "rank 1 failed: hung" in capsys.readouterr().err
    assert not children()
