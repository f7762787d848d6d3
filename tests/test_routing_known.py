"""routing.routes remembers the routes it found per topology object: a second call with other
pairs (some new, some seen) answers exactly what the topology's own search answers."""

from __future__ import annotations

import numpy as np

from rankscope.simulator import routing
from rankscope.simulator.topology import parse_topology


def test_remembered_routes_equal_the_topologys_own():
    topo = parse_topology("nodes:4x8,gpu=h100,nics=8,nic=400Gb/s")
    n = topo.nranks
    src = np.repeat(np.arange(n), n - 1)
    dst = np.concatenate([np.delete(np.arange(n), r) for r in range(n)])
    half = src < n // 2
    first = routing.routes(topo, src[half], dst[half])
    again = routing.routes(topo, src, dst)  # half of these are new, half remembered
    for (h, lat), s, d in ((first, src[half], dst[half]), (again, src, dst)):
        want_h, want_lat = topo.routes(s, d)
        want_h = np.asarray(want_h)
        assert h.shape == want_h.shape and np.array_equal(h, want_h)
        assert np.array_equal(lat, np.asarray(want_lat))
    assert routing._known(topo)["keys"].size == n * (n - 1)
