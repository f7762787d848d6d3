"""simulator.routing finds the routes Topology.routes finds, all pairs at once."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.simulator.routing import routes, routes_numpy
from rankscope.simulator.topology import Topology, parse_topology


def _all_pairs(n):
    s, d = np.meshgrid(np.arange(n), np.arange(n))
    keep = s.ravel() != d.ravel()
    return s.ravel()[keep], d.ravel()[keep]


def _same(topo, src, dst):
    want = topo.routes(src, dst)
    for got in (routes_numpy(topo, src, dst), routes(topo, src, dst)):  # the numpy rounds, and the policy
        assert got is not None
        assert np.array_equal(got[0], want[0])
        assert np.array_equal(got[1], want[1])  # latencies to the bit (both math.fsum)


@pytest.mark.parametrize("spec", ["ring:2", "ring:3", "ring:16", "ring:17", "switch:9", "dgx-a100", "dgx-h100",
                                  "nodes:2x4", "nodes:3x8"])
def test_presets_all_pairs(spec):
    t = parse_topology(spec)
    _same(t, *_all_pairs(t.nranks))


@settings(max_examples=60)
@given(n=st.integers(2, 9), extra=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11), st.sampled_from([1, 2, 3])),
                                            max_size=25), data=st.data())
def test_random_graphs_with_tied_latencies(n, extra, data):
    """A ring (every pair has a route) plus random links through up to three switches; latencies drawn
    from three values, so equal-cost paths abound and the lexicographic rule decides."""
    names = list(range(n)) + ["s0", "s1", "s2"]
    links, seen = [], set()
    for r in range(n):
        for u, v in ((r, (r + 1) % n), ((r + 1) % n, r)):
            if u != v and (u, v) not in seen:
                seen.add((u, v))
                links.append([u, v, 1e9, data.draw(st.sampled_from([1e-6, 2e-6, 3e-6]))])
    for a, b, lat in extra:
        u, v = names[a % len(names)], names[b % len(names)]
        if u != v and (u, v) not in seen:
            seen.add((u, v))
            links.append([u, v, 1e9, lat * 1e-6])
    # a switch needs a way back in and out to keep every rank reachable: give each used one both ways
    for sw in ("s0", "s1", "s2"):
        if any(sw in link[:2] for link in links):
            for u, v in ((sw, 0), (0, sw)):
                if (u, v) not in seen:
                    seen.add((u, v))
                    links.append([u, v, 1e9, 1e-6])
    t = Topology.from_dict({"name": "random", "nranks": n, "ring": list(range(n)), "links": links})
    _same(t, *_all_pairs(n))


def test_subset_of_pairs_and_repeats():
    t = parse_topology("nodes:2x4")
    src, dst = np.array([0, 7, 0, 3, 0]), np.array([5, 1, 5, 4, 1])
    _same(t, src, dst)
