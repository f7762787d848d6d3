"""The command line: output, JSON, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from rankscope.cli import main
from rankscope.simulator.units import format_ranks, parse_size


def test_sizes_parse():
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("1GB") == 10**9
    assert parse_size("4096") == 4096
    assert parse_size("1.5e6") == 1_500_000
    assert parse_size("2 KiB") == 2048


def test_format_ranks():
    assert format_ranks([], 4) == "-"
    assert format_ranks([0, 1, 2, 3], 4) == "all"
    assert format_ranks([0, 2, 3], 8) == "{0,2,3}"
    assert format_ranks([0, 1, 2, 5], 8) == "{0-2,5}"


def test_sim_prints_steps_grid_and_bytes(capsys):
    assert main(["sim", "all-reduce", "--ranks", "4", "--size", "1000"]) == 0
    out = capsys.readouterr().out
    assert "step 0  reduce-scatter 1/3" in out
    assert "step 5  all-gather 3/3" in out
    assert "0 -> 1    chunk 3" in out and "250B  reduce" in out
    last_grid = [ln for ln in out.split("step 5")[1].splitlines() if ln.startswith("  rank ") and "sent" not in ln]
    assert len(last_grid) == 4
    assert all([c.rstrip("*") for c in ln.split()[2:]] == ["all"] * 4 for ln in last_grid)
    assert "total 6000 bytes in 24 messages" in out


def test_sim_json_matches_text(capsys):
    assert main(["sim", "all-gather", "--ranks", "3", "--size", "10", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["program"]["collective"] == "all-gather"
    assert len(doc["steps"]) == 2
    assert doc["steps"][-1]["provenance"] == [[[0], [1], [2]]] * 3
    assert doc["bytes"]["total"] == 20


def test_nccl_sizes_count_the_whole_message_not_one_channel_buffer(capsys):
    # NCCL's ring gives each channel its own buffer; algbw and busbw divide the message, 64 MiB
    argv = ["sim", "all-reduce", "--algo", "nccl", "--size", "64MiB", "--topology", "nodes:1x8,gpu=h100",
            "--nccl-algo", "ring", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    t = doc["timing"]
    assert t["algbw"] == pytest.approx(64 * 2**20 / t["seconds"], rel=1e-12)
    assert t["busbw"] == pytest.approx(2 * 7 / 8 * t["algbw"], rel=1e-12)
    nccl = doc["nccl"]  # with NCCL's base latency, as the sweep and nccl-tests report
    assert nccl["simulated"] > t["seconds"]
    assert nccl["busbw"] == pytest.approx(2 * 7 / 8 * 64 * 2**20 / nccl["simulated"], rel=1e-12)
    assert main(argv[:-1] + ["--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "64MiB (67108864 bytes)" in out and "1 of " in out and "ring0[" in out


def test_large_programs_are_cut_at_the_limit(capsys):
    assert main(["sim", "all-reduce", "-n", "64", "-s", "1MiB", "--limit", "100"]) == 0
    out = capsys.readouterr().out
    assert "7964 more ops not shown" in out
    assert "rank 0 " not in out  # no grid above 16 ranks


@pytest.mark.parametrize("argv, msg", [
    (["sim", "all-reduce", "--size", "12XB"], "cannot parse size '12XB'"),
    (["sim", "all-reduce", "--ranks", "0"], "must be >= 1"),
    (["sim", "gather"], "unknown collective 'gather'"),
    (["sim", "all-reduce", "--algo", "magic"], "unknown algorithm 'magic'"),
    (["sim", "all-reduce", "--algo", "hier", "-n", "6", "--nodes", "4"], "dividing"),
    (["bogus-verb"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_console_entry_point_runs_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "rankscope", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "sim" in out.stdout and "demo" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "rankscope", "sim", "all-reduce", "-n", "-3"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_sweep_table_csv_and_json(capsys):
    assert main(["sweep", "--ranks", "4", "--max", "1KiB"]) == 0
    out = capsys.readouterr().out
    assert "ring" in out and "hd" in out and "ps" in out and out.count("\n") == 3 + 8
    assert main(["sweep", "--ranks", "4", "--max", "64", "--csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "size,algo,seconds,algbw_GBps,busbw_GBps,method" and len(rows) == 1 + 4 * 3
    assert main(["sweep", "broadcast", "--ranks", "4", "--max", "64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["algo"] for r in doc["rows"]} == {"ring", "tree"}


def test_sim_out_then_info(tmp_path, capsys):
    path = tmp_path / "ring.trace"
    assert main(["sim", "all-reduce", "-n", "4", "-s", "1MiB", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_ops"] == 24 and doc["executor"] == "sim" and doc["topology"] == "switch:4"
    assert doc["bytes_moved"] == 2 * 3 * 2**20
    # a truncated copy: one clear line without --salvage
    data = path.read_bytes()
    cut = tmp_path / "cut.trace"
    cut.write_bytes(data[: len(data) // 2])
    assert main(["info", str(cut)]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "--salvage" in err and err.count("\n") == 1
    assert main(["info", str(cut), "--salvage"]) == 0
    assert "NO (partial trace)" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.trace")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_every_layer_has_its_verbs_and_building_the_parser_stays_light():
    code = ("import sys\nfrom rankscope.cli import make_parser\nh = make_parser().format_help()\n"
            "print(all(v in h for v in ('replay', 'real', 'calibrate', 'export', 'import', 'demo')), "
            "'torch' in sys.modules, 'textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


def test_a_verb_builds_the_parser_of_its_own_module_only():
    """The lazy table: `rankscope sim ...` imports rankscope.cli.sim, not the real or TUI verbs'
    modules (nor torch, textual); an unknown verb gets the full list of choices."""
    code = ("import sys\nfrom rankscope.cli import main\n"
            "main(['sim', 'all-reduce', '-n', '2', '--size', '1KiB', '--json'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('rankscope.cli.')), "
            "'torch' in sys.modules, 'textual' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.split() == ["['rankscope.cli.args',", "'rankscope.cli.sim',", "'rankscope.cli.sim_train']",
                                  "False", "False"]


def test_bare_rankscope_and_demo_open_the_tui_and_text_prints(monkeypatch, capsys):
    import rankscope.tui.app as app

    opened = []
    monkeypatch.setattr(app, "demo_main", lambda trace=None: opened.append("demo") or 0)
    monkeypatch.setattr(app, "replay_main", lambda files, salvage=False: opened.append((files, salvage)) or 0)
    assert main([]) == 0 and main(["demo"]) == 0
    assert main(["replay", "a.trace", "b.trace", "--salvage"]) == 0
    assert opened == ["demo", "demo", (["a.trace", "b.trace"], True)]
    assert main(["demo", "--text"]) == 0
    assert "all-reduce (ring) on 8 ranks" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [
    (["replay", "/no/such.trace"], "no trace file"),
    (["replay", "a", "b", "c"], "replay takes one trace, or two"),
    (["real", "train", "--strategy", "magic"], "invalid choice"),
    (["real", "all-reduce", "--algo", "magic", "-n", "2"], "magic"),
    (["sim", "all-reduce", "--out", "/no/such/folder/x.trace"], "the folder '/no/such/folder' does not exist"),
    (["sim", "all-reduce", "--out", "/tmp"], "is a folder"),
    (["sim", "all-reduce", "--gamma", "nan"], "gamma must be a finite number"),
    (["sim", "train", "--compare-strategies", "--out", "x.trace"], "--out writes one trace"),
    (["real", "all-reduce", "-n", "2", "--out", "/no/such/folder/x.trace"], "does not exist"),
    (["real", "train", "--out", "/no/such/folder/x.trace"], "does not exist"),
    (["calibrate", "-n", "2", "--sizes", "4KiB", "4KiB"], "two different sizes"),
    (["validate", "--out-dir", "/no/such/folder/v"], "does not exist"),
    (["compare", "a.trace", "b.trace", "--plot", "out.txt"], "cannot write a plot as 'out.txt'"),
    (["export", "a.trace", "--format", "kineto", "-o", "/no/such/folder/d"], "cannot create the folder"),
    (["export", "a.trace", "--format", "chrome", "-o", "/no/such/folder/x.json"], "does not exist"),
])
def test_layer_verbs_bad_input_is_one_line_and_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_ranks_default_to_the_topologys(capsys):
    assert main(["sim", "broadcast", "--algo", "tree", "--size", "1MiB", "--topology", "dgx-h100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["program"]["nranks"] == 8
    assert main(["sim", "all-reduce", "--size", "1KiB", "--topology", "ring", "--json"]) == 0  # no N: 4
    assert json.loads(capsys.readouterr().out)["program"]["nranks"] == 4
    assert main(["sim", "all-reduce", "-n", "4", "--topology", "dgx-h100"]) == 2
    assert "has 8 ranks but nranks=4" in capsys.readouterr().err
