"""`rankscope import nccl-log`: NCCL's INFO lines (tests/fixtures/nccl/nccl_2x4.log, written from
NCCL's format strings, see make_fixtures.py) into a topology TOML with the [nccl] channel layout;
the topology simulates with the channels and NICs the log states; mutated logs never cost a
traceback."""

import json
import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate_lines

from rankscope.cli import main
from rankscope.simulator.collectives import build
from rankscope.simulator.engine import simulate
from rankscope.simulator.errors import RankscopeError, TopologyError
from rankscope.simulator.interop.errors import ImportFormatError
from rankscope.simulator.interop.nccl_compare import nccl_predict, simulate_size
from rankscope.simulator.interop.nccl_log import parse_nccl_log
from rankscope.simulator.interop.nccl_topology import import_nccl_log, toml_of_log
from rankscope.simulator.topology import parse_topology

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "nccl")
LOG = os.path.join(FIX, "nccl_2x4.log")
with open(LOG) as _f:
    TEXT = _f.read()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("log") / "cluster.toml")
    topo, layout = import_nccl_log(LOG, out)
    return topo, layout, out


def test_what_the_log_says():
    log = parse_nccl_log(TEXT, "f")
    assert log.version == "2.19.3"
    assert log.env == {"NCCL_ALGO": "Ring,Tree", "NCCL_MIN_NCHANNELS": "2"}
    assert log.rank_host == {r: "gpu-a" if r < 4 else "gpu-b" for r in range(8)}
    assert log.nics["gpu-b"] == {0: "mlx5_0", 1: "mlx5_1", 2: "mlx5_2", 3: "mlx5_3"}
    assert log.net_bw["gpu-a"] == {0: 50.0, 1: 50.0, 2: 50.0, 3: 50.0} and max(log.nvl_bw["gpu-a"]) == 370.8
    assert log.rings == {0: [0, 1, 2, 3, 4, 5, 6, 7], 1: [1, 0, 3, 2, 5, 4, 7, 6]}
    assert log.trees[0][0] == ([1, 4], -1) and log.trees[3][5] == ([6], 4)
    assert log.channels == {"coll": 2, "collnet": 2, "nvls": 0, "p2p": 2} and log.nvls is False
    assert [g["algo"] for g in log.graphs] == ["ring", "balanced-tree"] * 2
    assert log.graphs[0]["channels"][1] == ["NET/1", "GPU/1", "GPU/0", "GPU/3", "GPU/2", "NET/1"]
    ar = {(a, p): (lat, bw) for a, p, lat, bw in log.tuning["AllReduce"]}
    assert ar[("Ring", "Simple")] == (40.0, 25.7) and ar[("Tree", "LL")] == (12.0, 4.0)
    sends = [(h["channel"], h["src"], h["dst"], h["dev"]) for h in log.hops if h["side"] == "send"]
    assert sends == [(0, 3, 4, 0), (0, 7, 0, 0), (1, 2, 5, 1), (1, 6, 1, 1)]


def test_the_topology_has_the_logs_channels_and_nics(cluster):
    topo, layout, out = cluster
    assert topo == parse_topology(out) and topo.nranks == 8 and topo.ring == tuple(range(8))
    nccl = topo.meta["nccl"]
    assert nccl["nchannels"] == 2 and nccl["rings"] == [[0, 1, 2, 3, 4, 5, 6, 7], [1, 0, 3, 2, 5, 4, 7, 6]]
    assert nccl["ring_nics"][0] == [[3, 4, "gpu-a/mlx5_0", "gpu-b/mlx5_0"], [7, 0, "gpu-b/mlx5_0", "gpu-a/mlx5_0"]]
    assert nccl["ring_nics"][1] == [[2, 5, "gpu-a/mlx5_1", "gpu-b/mlx5_1"], [6, 1, "gpu-b/mlx5_1", "gpu-a/mlx5_1"]]
    assert nccl["rank_nics"][2] == ["gpu-a/mlx5_1"] and nccl["version"] == "2.19.3"
    assert nccl["tuning"]["AllReduce"][5] == ["Ring", "Simple", 40.0, 25.7]
    # each inter-node hop of each channel leaves and arrives by the NICs the log names
    for ch in nccl["ring_nics"]:
        for src, dst, snic, rnic in ch:
            names = [topo.link_names[i] for i in topo.route(src, dst)]
            assert names == [f"{src}->{snic}", f"{snic}->fabric", f"fabric->{rnic}", f"{rnic}->{dst}"]
    i = topo.link_names.index("3->gpu-a/mlx5_0")
    assert topo.link_bw[i] == 50e9 and topo.link_lat[i] == pytest.approx(14e-6 / 4)
    j = topo.link_names.index("0->gpu-a/nvswitch")
    assert topo.link_bw[j] == 370.8e9 and topo.link_lat[j] == pytest.approx(1.7e-6)


def test_a_ring_simulated_on_it_crosses_the_logs_nics(cluster):
    topo, _, _ = cluster
    prog = build("all-reduce", "ring", 8, 8 << 20)
    res = simulate(prog, topo)
    used = {topo.link_names[i] for i in np.unique(res.link_id)}
    assert {"3->gpu-a/mlx5_0", "gpu-a/mlx5_0->fabric", "fabric->gpu-b/mlx5_0", "gpu-b/mlx5_0->4",
            "7->gpu-b/mlx5_0", "gpu-a/mlx5_0->0"} <= used
    assert not any("mlx5_2" in n or "mlx5_3" in n for n in used)   # NICs no channel uses are not wired
    # the ring's two inter-node hops bound it: 14 steps of 14 us + (S/8) / 50 GB/s
    want = 14 * (14e-6 + (8 << 20) / 8 / 50e9)
    assert res.makespan == pytest.approx(want, rel=1e-9)


def test_without_the_logs_rings_simulate_size_lays_one_ring_on_the_ring_order(tmp_path, cluster):
    _, _, out = cluster
    doc = open(out).read().replace("ring = [0, 1, 2, 3, 4, 5, 6, 7]", "ring = [1, 0, 3, 2, 5, 4, 7, 6]", 1)
    doc = "\n".join(x for x in doc.splitlines() if not x.startswith("rings = "))  # no channel rings: the ring order
    p = tmp_path / "ch1.toml"
    p.write_text(doc)
    topo = parse_topology(str(p))
    # channel 1's ring crosses nodes at 2 -> 5 and 6 -> 1, on mlx5_1 both ways
    order = np.array(topo.ring)
    assert [(int(order[r]), int(order[(r + 1) % 8])) for r in range(8) if r % 4 == 3] == [(2, 5), (6, 1)]
    assert simulate_size("all-reduce", 8, 1 << 20, topo)["seconds"] == pytest.approx(
        14 * (14e-6 + (1 << 20) / 8 / 50e9), rel=1e-9)
    assert [topo.link_names[i] for i in topo.route(2, 5)] == ["2->gpu-a/mlx5_1", "gpu-a/mlx5_1->fabric",
                                                             "fabric->gpu-b/mlx5_1", "gpu-b/mlx5_1->5"]


def test_nccl_predict_is_the_tuning_formula(cluster):
    _, layout, _ = cluster
    t, algo, proto = nccl_predict(layout, "all-reduce", 64 << 20, 8)
    assert (algo, proto) == ("Ring", "Simple") and t == pytest.approx((40.0 + (64 << 20) / (1000 * 25.7)) * 1e-6)
    t, algo, proto = nccl_predict(layout, "all-reduce", 1024, 8)
    # Tree/LL: 12 us + 1024 B / (1000 x 4.0 GB/s x 0.9), treeCorrectionFactor[LL][log2(1024/64) = 4]
    assert (algo, proto) == ("Tree", "LL") and t == pytest.approx((12.0 + 1024 / (1000 * 4.0 * 0.9)) * 1e-6)
    t, _, _ = nccl_predict(layout, "all-gather", 64 << 20, 8)   # nBytes = S, bandwidth the AllGather row's
    assert t == pytest.approx((40.0 + (64 << 20) / (1000 * 51.4)) * 1e-6)
    assert nccl_predict(None, "all-reduce", 1, 8) is None and nccl_predict(layout, "all-to-all", 1, 8) is None


def test_a_smaller_communicators_ring_does_not_replace_the_largest_ones():
    sub = "gpu-a:61000:61000 [0] NCCL INFO Channel 00/02 :   0   1"
    log = parse_nccl_log(TEXT + "\n" + sub + "\n", "f")
    assert log.rings[0] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_nvls_lines():
    t = (TEXT.replace("NVLS multicast support is not available on dev 0", "NVLS multicast support is available on dev 0")
         .replace(" 0 nvls channels", " 16 nvls channels"))
    t += "gpu-a:61000:61000 [0] NCCL INFO NVLS Head  0:  0  4\ngpu-a:61000:61000 [0] NCCL INFO NVLS Head  1:  1  5\n"
    _, layout = toml_of_log(t, "f")
    assert layout["nvls"] is True and layout["nvls_channels"] == 16 and layout["nvls_heads"] == [[0, 4], [1, 5]]


def test_the_older_tuning_table_form():
    old = [" Latency/AlgBw |    Tree/    LL |    Tree/ LL128 |    Tree/Simple |    Ring/    LL |    Ring/ LL128 |"
           "    Ring/Simple |",
           "     AllReduce |     6.8/   1.2 |     8.0/  11.1 |    17.0/  13.0 |     4.4/   2.6 |     6.0/  22.2 |"
           "    11.0/  32.0 |"]
    log = parse_nccl_log("\n".join(f"h:1:1 [0] NCCL INFO {x}" for x in old), "f")
    assert log.tuning["AllReduce"][5] == ["Ring", "Simple", 11.0, 32.0]


def test_defaults_are_stated_where_the_log_lacks_figures():
    lines = [x for x in TEXT.splitlines() if "NVL[" not in x and "NET[" not in x and "via NET" not in x]
    text, layout = toml_of_log("\n".join(lines), "f")
    d = "\n".join(layout["defaults"])
    assert "no NVL[...] link in the topology dump; intra-node bandwidth from the ring graph: bw 40.0 GB/s x 2" in d
    assert "no NET[...] bandwidth" in d and "12 GB/s" in d
    assert "8 ranks with no 'via NET' line" in d
    assert all(f"# default: {x}" in text for x in layout["defaults"])
    only_rank0 = [x for x in TEXT.splitlines() if x.startswith("gpu-a:61000:")]
    _, layout = toml_of_log("\n".join(only_rank0), "f")
    assert layout["nranks"] == 8 and "7 ranks with no line of their own" in "\n".join(layout["defaults"])


def test_garbled_figures_are_skipped_and_zero_figures_defaulted():
    # found by the mutation tests: '[.4.0]' raised ValueError, a truncated Protocol line IndexError,
    # and NET[0.0] wrote a link of 0 bytes/s that the topology loader refuses
    t = TEXT.replace("+ PCI[24.0] - GPU/0-4b000", "+ PCI[.4.0] - GPU/0-4b000").replace("NET[50.0]", "NET[0.0]")
    t = t.replace("|          LL128 |         Simple |             LL |", "|          LL", 1)
    text, layout = toml_of_log(t, "f")
    assert "no NET[...] bandwidth" in "\n".join(layout["defaults"])
    assert "bw = 0.0" not in text


def test_cli(tmp_path, capsys):
    out = tmp_path / "c.toml"
    assert main(["import", "nccl-log", LOG, "-o", str(out)]) == 0
    o = capsys.readouterr().out
    assert "8 ranks on 2 node(s) gpu-a, gpu-b; NCCL 2.19.3; 2 channels" in o
    assert "ring 0: 3->4 via gpu-a/mlx5_0 / gpu-b/mlx5_0, 7->0 via gpu-b/mlx5_0 / gpu-a/mlx5_0" in o
    assert main(["import", "nccl-log", LOG, "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nccl"]["nnodes"] == 2
    assert main(["sim", "all-reduce", "--topology", str(out), "--size", "1MiB", "--json"]) == 0
    bad = tmp_path / "bad.log"
    bad.write_text("no nccl here\n")
    assert main(["import", "nccl-log", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NCCL_DEBUG=INFO" in err


def test_an_nccl_table_that_is_no_table_is_refused(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text('ranks = 2\nnccl = 3\n[[link]]\nsrc = 0\ndst = 1\nbw = 1e9\nlat = 0\nbidirectional = true\n')
    with pytest.raises(TopologyError, match="'nccl' must be a table"):
        parse_topology(str(p))


def test_a_huge_rank_count_is_refused():
    t = TEXT.replace("nRanks 8 nNodes", "nRanks 99999999 nNodes", 1)
    with pytest.raises(ImportFormatError, match="more than 65536"):
        toml_of_log(t, "f")


# -- mutations -----------------------------------------------------------------------------------
NOISE = ["gpu-a:61000:61000 [0] NCCL INFO Channel 00/02 :   0   1", "gpu-a:61000:61000 [0] NCCL WARN Cuda failure",
         "gpu-b:61004:61004 [0] NCCL INFO comm 0x1 rank 9 nRanks 8 nNodes 2 localRanks 4 localRank 0 MNNVL 0",
         "gpu-a:61000:61000 [0] NCCL INFO Trees [0] 99/-1/-1->0->-1", "[1,2]<stdout>:hello", "\x00",
         "gpu-a:61000:61000 [0] NCCL INFO     AllReduce |  1e9/  nan |", "gpu-a:61000:61000 [0] NCCL INFO",
         "gpu-b:61007:61007 [3] NCCL INFO Channel 01/0 : 6[2] -> 1[1] [send] via NET/IB/77/GDRDMA",
         "gpu-a:61000:61000 [0] NCCL INFO + NET[0.0] - NET/0-0 (1/1/0.0)", "srun: error: node down"]


@st.composite
def mutated(draw):
    lines = TEXT.splitlines()
    rng = random.Random(draw(st.integers(0, 2 ** 32 - 1)))
    return mutate_lines(lines, rng, draw(st.integers(1, 5)), NOISE, "0123456789.-x: []/")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutated())
def test_mutated_logs_give_a_loadable_topology_or_one_line(tmp_path, t):
    try:
        text, layout = toml_of_log(t, "m")
        p = tmp_path / "m.toml"
        p.write_text(text)
        topo = parse_topology(str(p))
    except RankscopeError as e:
        assert "\n" not in str(e)
        return
    assert topo.nranks == layout["nranks"] and topo.meta["nccl"]["nchannels"] == layout["nchannels"]


def test_simulate_size_runs_the_logs_channels_on_their_nics(cluster):
    """The log's 2 channels: 2 rings in the printed orders with half the buffer each, channel 1's
    inter-node hops on mlx5_1 (the NICs the log names), faster than one ring of the whole buffer."""
    from rankscope.simulator.collectives.nccl_ring import multi_ring

    topo, layout, _ = cluster
    assert layout["nchannels"] == 2 and len(layout["rings"]) == 2
    r = simulate_size("all-reduce", 8, 8 << 20, topo)
    assert r["algo"] == "ring, the log's 2 channels (rankscope)"
    prog = multi_ring("all-reduce", 8, 8 << 20, [tuple(x) for x in layout["rings"]])
    res = simulate(prog, topo)
    assert r["seconds"] == res.makespan < 14 * (14e-6 + (8 << 20) / 8 / 50e9)
    used = {topo.link_names[i] for i in np.unique(res.link_id)}
    assert {"2->gpu-a/mlx5_1", "gpu-b/mlx5_1->5", "6->gpu-b/mlx5_1", "gpu-a/mlx5_1->1"} <= used
    assert simulate_size("broadcast", 8, 1 << 20, topo)["algo"].startswith("ring")
