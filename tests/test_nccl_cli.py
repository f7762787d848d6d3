"""The NCCL model on the command line: sim --algo nccl (--explain, forcing), sweep --algos nccl, sim train."""

from __future__ import annotations

import json

import pytest

from rankscope.cli import main

H100x2 = "nodes:2x4,gpu=h100,nics=4,nic=400Gb/s"


def test_sim_nccl_prints_choice_and_candidates(capsys):
    assert main(["sim", "all-reduce", "--algo", "nccl", "-t", "nodes:1x8,gpu=h100", "-s", "64MiB", "--explain",
                 "--limit", "0"]) == 0
    out = capsys.readouterr().out
    assert "-> nvls/simple, 16 channels; NCCL predicts 275us" in out
    assert "nvls/simple" in out and "<- chosen" in out and "ring/ll128" in out and "nvls_tree/simple" in out
    assert "reduce at the switch" in out


def test_sim_nccl_json_and_forcing(capsys):
    assert main(["sim", "all-reduce", "--algo", "nccl", "-t", H100x2, "-s", "1MiB", "--nccl-algo", "ring",
                 "--nccl-proto", "simple", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["nccl"]["algo"], doc["nccl"]["proto"]) == ("ring", "simple")
    assert doc["nccl"]["simulated"] > 0 and doc["nccl"]["predicted"] > 0


@pytest.mark.parametrize("argv,msg", [
    (["sim", "all-reduce", "--algo", "nccl", "-t", "switch:8"], "GPU cluster topology"),
    (["sim", "all-reduce", "--nccl-algo", "ring", "-t", H100x2], "go with --algo nccl"),
    (["sim", "broadcast", "--algo", "nccl", "-t", "nodes:1x8,gpu=h100"], "covers all-reduce"),
    (["sim", "all-reduce", "--algo", "nccl", "-t", "nodes:1x8,gpu=h100", "--nccl-proto", "fast"], "--nccl-proto"),
])
def test_bad_nccl_input_is_one_line_and_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_what_nccl_overrides_is_a_note_not_an_error(capsys):
    """NCCL_ALGO=NVLSTree on one node: NCCL 2.20.3 turns NVLSTree off, finds ring, tree and NVLS all
    off and enables ring and tree again (tuning.cc); the CLI says so on stderr and runs."""
    assert main(["sim", "all-reduce", "--algo", "nccl", "-t", "nodes:1x8,gpu=h100", "--nccl-algo", "NVLSTree",
                 "-s", "1MiB", "--limit", "0"]) == 0
    cap = capsys.readouterr()
    assert "-> ring/" in cap.out or "-> tree/" in cap.out
    assert cap.err.startswith("note: NCCL_ALGO") and "enables ring and tree again" in cap.err
    assert main(["sweep", "--algos", "nccl", "-t", H100x2, "--nccl-algo", "nvls", "--min", "1MiB", "--max",
                 "1MiB"]) == 0
    assert "enables ring and tree again" in capsys.readouterr().err


def test_sweep_nccl_side_by_side(capsys):
    assert main(["sweep", "--algos", "nccl,ring", "-t", H100x2, "--min", "8", "--max", "64MiB"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(lines) == 24
    first, last = lines[0].split(), lines[-1].split()
    assert first[0] == "8" and first[1] == "tree/ll/1"
    assert last[0] == str(64 << 20) and last[1].startswith("nvls_tree/simple")
    assert main(["sweep", "--algos", "nccl", "-t", H100x2, "--min", "1MiB", "--max", "1MiB", "--csv"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split(",")
    assert row[1] == "nccl" and row[6] == "tree/ll128/16" and float(row[7]) > 0


def test_sim_train_times_collectives_with_nccl(capsys):
    base = ["sim", "train", "--model", "params:1e9x4", "--ranks", "16", "--topology", H100x2.replace("2x4", "2x8"),
            "--json"]
    assert main(base + ["--algo", "ring"]) == 0
    ring = json.loads(capsys.readouterr().out)["reports"]
    assert main(base + ["--algo", "nccl"]) == 0
    nccl = json.loads(capsys.readouterr().out)["reports"]
    assert nccl["step_time"] < ring["step_time"]  # 8 rails of 50 GB/s against one ring's slowest hop
    # on a GPU-cluster topology NCCL's timing is the default; on the old presets the closed form
    assert main(base) == 0
    assert json.loads(capsys.readouterr().out)["reports"]["step_time"] == nccl["step_time"]
    old = [a if a != H100x2.replace("2x4", "2x8") else "nodes:2x8" for a in base]
    assert main(old) == 0
    default_old = json.loads(capsys.readouterr().out)["reports"]["step_time"]
    assert main(old + ["--algo", "ring"]) == 0
    assert json.loads(capsys.readouterr().out)["reports"]["step_time"] == default_old
    assert main(old + ["--algo", "nccl"]) == 0
    assert json.loads(capsys.readouterr().out)["reports"]["step_time"] != default_old
    assert main(base[:-1]) == 0
    assert "collectives timed by NCCL 2.20.3's tuner" in capsys.readouterr().out
    assert main(["sim", "train", "--algo", "hd", "--ranks", "4"]) == 2
    # NCCL's flags without NCCL's timing are refused on every path, --find-max-batch's too
    for extra in ([], ["--find-max-batch", "--gpu-memory", "80GB"]):
        assert main(["sim", "train", "--model", "gpt2", "--nccl-algo", "ring", *extra]) == 2
        assert main(["sim", "train", "--model", "gpt2", "--algo", "hd", *extra]) == 2
