"""SVG snapshots of every view at 120 x 40 (pytest-textual-snapshot). Regenerate after a
deliberate change with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the
SVGs (tests/__snapshots__/test_tui_snapshots/) before committing them."""

from test_tui_data import measured_copy, nccl_trace, ring4_trace, training_trace

from rankscope.tui.app import replay_app

SIZE = (120, 40)


def ring4():
    return replay_app([ring4_trace()], ["ring4.trace"])


def test_collective_first_step(snap_compare):
    assert snap_compare(ring4(), press=["right"], terminal_size=SIZE)


def test_collective_middle_step(snap_compare):
    assert snap_compare(ring4(), press=["right"] * 3, terminal_size=SIZE)


def test_collective_last_step(snap_compare):
    assert snap_compare(ring4(), press=["end"], terminal_size=SIZE)


def test_collective_nccl_second_buffer(snap_compare):
    """NCCL's ring on 1x4 H100 cuts the message into a buffer per ring: `b` shows the second."""
    app = replay_app([nccl_trace()], ["nccl_ring.trace"])
    assert snap_compare(app, press=["right", "right", "b"], terminal_size=SIZE)


def test_training_view(snap_compare):
    app = replay_app([training_trace()], ["fsdp_step.trace"])
    assert snap_compare(app, press=["right"] * 4, terminal_size=SIZE)


def test_compare_view(snap_compare):
    trace = ring4_trace()
    app = replay_app([trace, measured_copy(trace)], ["sim.trace", "measured.trace"])
    assert snap_compare(app, press=["d"], terminal_size=SIZE)


def test_help_screen(snap_compare):
    assert snap_compare(ring4(), press=["question_mark"], terminal_size=SIZE)


def _network(spec: str, algo: str, n: int):
    from rankscope.simulator.collectives import build
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.topology import parse_topology

    prog = build("all-reduce", algo, n, 64 << 20, **({"nodes": 2} if algo == "hier" else {}))
    topo = parse_topology(spec)
    return replay_app([simulate(prog, topo).to_trace(prog, topo)], [spec])


def test_network_picture_ring(snap_compare):
    assert snap_compare(_network("ring:8", "ring", 8), press=["right", "right"], terminal_size=SIZE)


def test_network_picture_switch_incast(snap_compare):
    assert snap_compare(_network("switch:4", "ps", 4), press=["right"], terminal_size=SIZE)


def test_network_picture_two_nodes(snap_compare):
    assert snap_compare(_network("nodes:2x4", "hier", 8), press=["right"] * 4, terminal_size=SIZE)


def _fsdp():
    from test_tui_training import fsdp_trace

    return replay_app([fsdp_trace()[2]], ["fsdp.trace"])


def test_fsdp_shard_view(snap_compare):
    assert snap_compare(_fsdp(), press=["right"] * 10, terminal_size=SIZE)


def test_drill_down_into_an_all_gather(snap_compare):
    assert snap_compare(_fsdp(), press=["right"] * 5 + ["o", "right", "right"], terminal_size=SIZE)
