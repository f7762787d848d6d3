"""Topologies: presets, routes, the TOML format and the round trips, read as a specification."""

import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rankscope.simulator.topology_model as topology_model
from rankscope.simulator.errors import TopologyError
from rankscope.simulator.topology import Topology, parse_topology

PRESETS = ["ring:8", "ring:2", "switch:8", "dgx-a100", "dgx-h100", "nodes:2x4", "nodes:3x2"]


def names(topo, route):
    return [topo.link_names[i] for i in route]


# -- presets ---------------------------------------------------------------------------------------
def test_ring_links_both_ways_and_routes_take_the_short_side():
    t = parse_topology("ring:8")
    assert (t.name, t.nranks, len(t.link_names), t.ring) == ("ring:8", 8, 16, tuple(range(8)))
    assert t.link_names[0] == "0->1" and t.link_names[8] == "1->0" and t.link_names[15] == "0->7"
    assert np.all(t.link_bw == 25e9) and np.all(t.link_lat == 5e-6)
    assert names(t, t.route(0, 7)) == ["0->7"]
    assert names(t, t.route(1, 6)) == ["1->0", "0->7", "7->6"]
    assert list(t.route(0, 4)) == [0, 1, 2, 3]  # a tie of both directions: the smaller link ids
    assert len(parse_topology("ring:2").link_names) == 2 and len(parse_topology("ring:1").link_names) == 0


def test_switch_route_is_up_then_down():
    t = parse_topology("switch", nranks=8)
    assert t.name == "switch:8" and len(t.link_names) == 16 and t.graph.number_of_nodes() == 9
    for r in range(8):
        for s in range(8):
            if r != s:
                assert list(t.route(r, s)) == [r, 8 + s]
                assert names(t, t.route(r, s)) == [f"{r}->sw", f"sw->{s}"]
    _, lat = t.routes(np.array([0]), np.array([3]))
    assert lat[0] == pytest.approx(10e-6)


@pytest.mark.parametrize("spec, bw", [("dgx-a100", 240e9), ("dgx-h100", 370.8e9)])
def test_dgx_presets_are_eight_gpus_behind_nvswitch(spec, bw):
    t = parse_topology(spec)
    assert (t.nranks, len(t.link_names)) == (8, 16)
    assert np.allclose(t.link_bw, bw) and np.allclose(t.link_lat, 1.7e-6)
    assert names(t, t.route(2, 5)) == ["2->nvswitch0", "nvswitch0->5"]
    assert t.routes(np.array([2]), np.array([5]))[1][0] == pytest.approx(3.4e-6)  # NCCL Ring/Simple NVLink
    assert t.meta["preset"] == spec


def test_nodes_intra_over_nvswitch_inter_over_nics():
    t = parse_topology("nodes:2x4")
    assert (t.name, t.nranks, len(t.link_names)) == ("nodes:2x4", 8, 48)
    assert names(t, t.route(1, 3)) == ["1->nvswitch0", "nvswitch0->3"]
    assert names(t, t.route(1, 6)) == ["1->nic1", "nic1->fabric", "fabric->nic6", "nic6->6"]
    hops, lat = t.routes(np.array([1, 1, 6]), np.array([3, 6, 2]))
    assert list(hops[0]) == [1, 11, -1, -1] and (hops[1] >= 0).all()
    assert lat == pytest.approx([3.4e-6, 14e-6, 14e-6])
    assert np.allclose(t.link_bw[:16], 370.8e9) and np.allclose(t.link_bw[16:], 12e9)
    assert np.allclose(t.link_lat[16:], 3.5e-6)


def test_overrides_apply_per_link_and_accept_units():
    t = parse_topology("switch:4", bw="50 GB/s", lat=0, intra_bw=None)
    assert np.all(t.link_bw == 50e9) and np.all(t.link_lat == 0)
    n = parse_topology("nodes:2x2", intra_lat="1 us", nic_bw="100 Gb/s", nic_lat=2e-6)
    assert n.routes(np.array([0, 0]), np.array([1, 2]))[1] == pytest.approx([2e-6, 8e-6])
    assert n.link_bw[-1] == 12.5e9 and n.meta["nic_bw"] == 12.5e9
    assert np.all(parse_topology("dgx-a100", intra_bw=1e9).link_bw == 1e9)


def test_nranks_gives_or_checks_the_rank_count():
    assert parse_topology("ring", nranks=5).name == "ring:5"
    assert parse_topology("dgx-h100", nranks=8).nranks == 8
    for spec, n in [("switch:8", 4), ("dgx-h100", 4), ("nodes:2x4", 6)]:
        with pytest.raises(TopologyError, match=f"nranks={n}"):
            parse_topology(spec, nranks=n)


# -- routes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", PRESETS + ["nodes:3x4", "ring:9", "switch:13"])
def test_routes_equals_route_for_random_pairs(spec):
    t = parse_topology(spec)
    rng = np.random.default_rng(0)
    src = rng.integers(0, t.nranks, 500)
    dst = (src + rng.integers(1, t.nranks, 500)) % t.nranks
    hops, lat = t.routes(src, dst)
    assert hops.dtype == np.int32 and lat.dtype == np.float64 and hops.shape[0] == 500
    for k in range(500):
        r = t.route(int(src[k]), int(dst[k]))
        assert list(hops[k, :r.size]) == list(r) and (hops[k, r.size:] == -1).all()
        assert lat[k] == pytest.approx(t.link_lat[r].sum())


def test_routes_of_a_million_repeated_pairs():
    # speed: benchmarks/route_speed.py
    t = parse_topology("nodes:2x4")
    src = np.tile(np.arange(8), 125_000)
    dst = (src + 1) % 8
    hops, lat = t.routes(src, dst)
    assert hops.shape == (1_000_000, 4)
    assert (hops[3] == t.route(3, 4)).all() and lat[3] == pytest.approx(14e-6)
    assert (hops[8:16] == hops[:8]).all()


def test_routes_past_big_switches():
    """A search towards one dst pushes only the switch ports that can lead to it (speed:
    benchmarks/route_speed.py)."""
    for spec in ("switch:2048", "nodes:128x8"):
        t = parse_topology(spec)
        src = np.arange(t.nranks)
        hops, _ = t.routes(src, (src + 8) % t.nranks)
        assert (hops[:, :2] >= 0).all()
        assert all((hops[k, :r.size] == r).all() for k, r in ((k, t.route(k, (k + 8) % t.nranks)) for k in (0, 7, 9)))


def test_routes_checks_its_arguments():
    t = parse_topology("switch:4")
    h, lat = t.routes(np.array([], np.int64), np.array([], np.int64))
    assert h.shape[0] == 0 and lat.shape == (0,)
    with pytest.raises(TopologyError, match="rank 9"):
        t.routes(np.array([0, 9]), np.array([1, 1]))
    with pytest.raises(TopologyError, match="rank 2 to itself"):
        t.routes(np.array([0, 2]), np.array([1, 2]))
    with pytest.raises(TopologyError, match="rank -1"):
        t.route(-1, 2)
    with pytest.raises(TopologyError, match="rank 1 to itself"):
        t.route(1, 1)
    with pytest.raises(ValueError):
        t.route(0, 1)[0] = 5  # cached routes are read-only


def _nx(t: Topology) -> nx.DiGraph:
    """The topology's graph as networkx's (the oracle's library; the project's own graph is not)."""
    g = nx.DiGraph()
    g.add_nodes_from(t.graph.nodes)
    g.add_edges_from(t.graph.edges(data=True))
    return g


def _brute_force(g: nx.DiGraph, src, dst):
    key = [(sum(round(g.edges[u, v]["lat"] * 1e15) for u, v in zip(p, p[1:])), len(p) - 1,
            [g.edges[u, v]["id"] for u, v in zip(p, p[1:])]) for p in nx.all_simple_paths(g, src, dst)]
    return min(key)[2]


@st.composite
def small_networks(draw):
    n = draw(st.integers(2, 4))
    nodes = list(range(n)) + ["a", "b"][:draw(st.integers(0, 2))]
    pairs = [(u, v) for u in nodes for v in nodes if u != v]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=10))
    chosen += [(r, (r + 1) % n) for r in range(n) if (r, (r + 1) % n) not in chosen]  # keeps it connected
    lats = draw(st.lists(st.integers(0, 2), min_size=len(chosen), max_size=len(chosen)))
    links = [{"src": u, "dst": v, "bw": 1e9, "lat": k * 1e-6} for (u, v), k in zip(chosen, lats)]
    return {"name": "random", "nranks": n, "ring": list(range(n)),
            "links": [[x["src"], x["dst"], x["bw"], x["lat"]] for x in links]}


@given(small_networks(), st.booleans())
def test_route_is_least_latency_then_fewest_hops_then_smallest_ids(d, whole_tree):
    t = Topology.from_dict(d)
    old = topology_model._TREE_MIN
    topology_model._TREE_MIN = 1 if whole_tree else 10**9  # one search per source, or one per pair
    try:
        pairs = [(s, r) for s in range(t.nranks) for r in range(t.nranks) if s != r]
        hops, _ = t.routes(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    finally:
        topology_model._TREE_MIN = old
    for k, (s, r) in enumerate(pairs):
        assert [int(i) for i in hops[k] if i >= 0] == _brute_force(_nx(t), s, r)


def test_determinism_same_spec_same_ids_and_routes():
    for spec in PRESETS:
        a, b = parse_topology(spec), parse_topology(spec)
        assert a == b and a.link_names == b.link_names
        assert [(u, v, d["id"]) for u, v, d in a.graph.edges(data=True)] == \
               [(u, v, d["id"]) for u, v, d in b.graph.edges(data=True)]
        src = np.arange(a.nranks)
        assert np.array_equal(a.routes(src, (src + 1) % a.nranks)[0], b.routes(src, (src + 1) % b.nranks)[0])


# -- round trips -----------------------------------------------------------------------------------
CUSTOM = """
name = "custom"
ranks = 3
ring = [2, 0, 1]
[[link]]
src = 0
dst = "sw"
bw = "25 GB/s"
lat = "5 us"
bidirectional = true
[[link]]
src = 1
dst = "sw"
bw = 12500000000
lat = 1e-6
bidirectional = true
[[link]]
src = 2
dst = 1
bw = "100 Gb/s"
lat = "500 ns"
bidirectional = true
"""


def test_toml_file_loads_with_units_and_link_order(tmp_path):
    path = tmp_path / "custom.toml"
    path.write_text(CUSTOM)
    t = parse_topology(str(path))
    assert (t.name, t.nranks, t.ring) == ("custom", 3, (2, 0, 1))
    assert t.link_names == ("0->sw", "sw->0", "1->sw", "sw->1", "2->1", "1->2")
    assert list(t.link_bw) == [25e9, 25e9, 12.5e9, 12.5e9, 12.5e9, 12.5e9]
    assert list(t.link_lat) == [5e-6, 5e-6, 1e-6, 1e-6, 5e-7, 5e-7]
    assert names(t, t.route(0, 2)) == ["0->sw", "sw->1", "1->2"]
    assert t.meta == {"preset": "toml", "path": str(path)}
    (tmp_path / "stem.toml").write_text(CUSTOM.replace('name = "custom"', ""))
    assert parse_topology(str(tmp_path / "stem.toml")).name == "stem"


@pytest.mark.parametrize("spec", PRESETS + ["custom"])
def test_to_toml_then_parse_gives_an_equal_topology(spec, tmp_path):
    if spec == "custom":
        (tmp_path / "c.toml").write_text(CUSTOM)
        spec = str(tmp_path / "c.toml")
    t = parse_topology(spec)
    path = tmp_path / "out.toml"
    path.write_text(t.to_toml())
    back = parse_topology(str(path), nranks=t.nranks)
    assert back == t and back.link_names == t.link_names
    assert np.array_equal(back.link_bw, t.link_bw) and np.array_equal(back.link_lat, t.link_lat)


@pytest.mark.parametrize("spec", PRESETS)
def test_to_dict_from_dict_round_trip_through_json(spec):
    t = parse_topology(spec)
    back = Topology.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t and back.meta == t.meta and back.link_names == t.link_names
    assert list(back.route(0, t.nranks - 1)) == list(t.route(0, t.nranks - 1))


# -- errors ----------------------------------------------------------------------------------------
GOOD_LINK = '[[link]]\nsrc = 0\ndst = 1\nbw = "1 GB/s"\nlat = "1 us"\nbidirectional = true\n'


@pytest.mark.parametrize("text, match", [
    ("ranks = 2\n[[link]\n", r"not valid TOML.*line 2"),
    ('name = "x"\n' + GOOD_LINK, r"missing key 'ranks'"),
    ('ranks = 2\n[[link]]\nsrc = 0\ndst = 1\nlat = 0\n', r"\[\[link\]\] #1 is missing key 'bw'"),
    ("ranks = 2\n" + GOOD_LINK.replace("dst = 1", "dst = 7"), r"dst 7 is not a rank: ranks are 0\.\.1"),
    ("ranks = 3\n" + GOOD_LINK, r"no route from rank 0 to rank 2"),
    ("ranks = 2\n" + GOOD_LINK.replace('"1 GB/s"', "0"), r"bw 0 must be a finite bandwidth > 0"),
    ("ranks = 2\n" + GOOD_LINK.replace('"1 GB/s"', '"-3 GB/s"'), r"cannot read .*bw '-3 GB/s'"),
    ("ranks = 2\n" + GOOD_LINK.replace('"1 GB/s"', '"3 GHz"'), r"'3 GHz'.*units: B/s"),
    ("ranks = 2\n" + GOOD_LINK.replace('"1 us"', "-1e-6"), r"lat -1e-06 must be a finite latency >= 0"),
    ("ranks = 2\nring = [0, 0]\n" + GOOD_LINK, r"ring \[0, 0\] is not a permutation"),
    ("ranks = 2\nrings = [0, 1]\n" + GOOD_LINK, r"unknown key 'rings'"),
    ("ranks = 2\n" + GOOD_LINK * 2, r"link 0->1 is given twice"),
    ("ranks = 2\n" + GOOD_LINK.replace("bidirectional = true", "bidirectional = 1"), r"bidirectional = 1"),
    ("ranks = 0\n", r"ranks 0 must be a whole number >= 1"),
    ("ranks = 2\n" + GOOD_LINK.replace("src = 0", "src = 1.5"), r"src 1.5 is neither a rank"),
])
def test_bad_files_give_one_line_errors_naming_the_value(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TopologyError, match=match) as err:
        parse_topology(str(path))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("call, match", [
    (lambda p: parse_topology(str(p / "nope.toml")), r"nope\.toml' does not exist"),
    (lambda p: parse_topology("torus:8"), r"unknown topology 'torus:8'"),
    (lambda p: parse_topology("ring"), r"'ring' needs a rank count"),
    (lambda p: parse_topology("ring:0"), r"rank count of 'ring:0' 0"),
    (lambda p: parse_topology("switch:4", lat=-1), r"override lat -1 must be"),
    (lambda p: parse_topology("switch:4", bw="0 GB/s"), r"override bw '0 GB/s' must be"),
    (lambda p: parse_topology("switch:4", nic_bw=1e9), r"override 'nic_bw' does not apply to 'switch:4'"),
    (lambda p: Topology.from_dict({"name": "x", "nranks": 2}), r"missing key 'ring'"),
    (lambda p: Topology.from_dict({"name": "x", "nranks": 2, "ring": [0, 1], "links": [[0, 1, 1e9]]}),
     r"links\[0\] = \[0, 1, 1000000000\.0\]"),
])
def test_bad_specs_give_topology_errors(tmp_path, call, match):
    with pytest.raises(TopologyError, match=match):
        call(tmp_path)


# -- GPU-cluster presets (simulator.cluster) ----------------------------------------------------------
def test_cluster_preset_links_and_rails():
    t = parse_topology("nodes:2x8,gpu=h100,nics=4,nic=400Gb/s")
    spec = t.meta["cluster"]
    assert (spec["gpu"], spec["nics"], spec["nic_bw"], spec["nvls"]) == ("h100", 4, 50e9, True)
    assert t.nranks == 16 and t.name == "nodes:2x8,gpu=h100,nics=4,nic=400Gb/s"
    up = t.route(0, 8)
    names = [t.link_names[i] for i in up]
    assert names == ["0->nic0.0", "nic0.0->fabric", "fabric->nic1.0", "nic1.0->8"]
    assert [t.link_names[i] for i in t.route(1, 9)][0] == "1->nic0.0"  # GPUs 0, 1 share rail 0
    assert [t.link_names[i] for i in t.route(2, 10)][0] == "2->nic0.1"
    nvl = t.route(0, 1)
    assert np.allclose(t.link_bw[nvl], 18 * 20.6e9)


@pytest.mark.parametrize("spec,gpu,nvlink", [("nodes:1x8,gpu=a100", "a100", 12 * 20.0e9),
                                             ("nodes:1x8,gpu=h200", "h200", 18 * 20.6e9),
                                             ("nodes:1x8,gpu=b200", "b200", 18 * 40.1e9),
                                             ("dgx-h100,nvls=off", "h100", 18 * 20.6e9)])
def test_cluster_generations(spec, gpu, nvlink):
    t = parse_topology(spec)
    assert t.meta["cluster"]["gpu"] == gpu and t.link_bw[0] == pytest.approx(nvlink)
    assert not any("nic" in n for n in t.link_names)  # one node: NCCL trims the NICs


def test_cluster_toml_says_the_same(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('name = "two"\n[cluster]\nnodes = 2\ngpus = 8\ngpu = "h100"\nnics = 8\nnic = "400Gb/s"\n')
    a, b = parse_topology(str(f)), parse_topology("nodes:2x8,gpu=h100,nics=8,nic=400Gb/s")
    assert a.name == "two" and a.meta["cluster"] == b.meta["cluster"]
    assert np.array_equal(a.link_bw, b.link_bw) and a._ends == b._ends


@pytest.mark.parametrize("spec,msg", [("nodes:2x8,gpu=v100", "not known"), ("nodes:2x8,nics=9", "at most one NIC"),
                                      ("nodes:1x8,gpu=a100,nvls=on", "needs an NVSwitch and a Hopper"),
                                      ("nodes:2x8,color=red", "unknown cluster option"),
                                      ("nodes:2x8,nic=fast", "cannot read nic"), ("nodes:2x8,nics", "key=value")])
def test_cluster_bad_options(spec, msg):
    with pytest.raises(TopologyError, match=msg):
        parse_topology(spec)


def test_old_presets_still_load():
    for spec in ("dgx-a100", "dgx-h100", "nodes:2x4", "ring:4", "switch:8"):
        assert parse_topology(spec).nranks > 0
