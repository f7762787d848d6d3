"""Collective schedules as programs. :func:`build` is the one entry point the CLI and tests use.

| collective     | algorithms                                                               |
|----------------|--------------------------------------------------------------------------|
| all-reduce     | ring, hd (halving-doubling, MPICH's order), hd-far (far-first), ps, hier,|
|                | nccl-ring (2 channels), nccl-tree (NCCL's double binary tree)            |
| reduce-scatter | ring, nccl-ring                                                          |
| all-gather     | ring, nccl-ring                                                          |
| broadcast      | ring (pipelined, ``pieces``), tree (binomial)                            |
"""

from __future__ import annotations

from typing import Callable

from ..errors import UsageError
from ..program import Program
from .broadcast import ring_broadcast, tree_broadcast
from .halving_doubling import halving_doubling_all_reduce, halving_doubling_far_all_reduce
from .hierarchical import hierarchical_all_reduce
from .nccl_ring import nccl_ring
from .nccl_tree import nccl_tree
from .parameter_server import parameter_server_all_reduce
from .ring import ring_all_gather, ring_all_reduce, ring_reduce_scatter

NCCL_CHANNELS = 2  # nccl-ring / nccl-tree as builders: two channels (NCCL's two trees; two rings)


def _nccl(kind: str, collective: str) -> Callable[..., Program]:
    def fn(nranks: int, nbytes: int, *, nodes: int = 1, pieces: int = 4) -> Program:
        if nodes < 1 or nranks % nodes:
            raise UsageError(f"{kind} needs --nodes M dividing --ranks {nranks}, got {nodes}")
        if kind == "nccl-ring":
            return nccl_ring(collective, nodes, nranks // nodes, nbytes, NCCL_CHANNELS)
        return nccl_tree(nodes, nranks // nodes, nbytes, NCCL_CHANNELS, pieces)
    fn.__doc__ = f"NCCL's {kind[5:]} ({collective}) with {NCCL_CHANNELS} channels on --nodes M x N/M ranks."
    return fn


ALGORITHMS: dict[str, dict[str, Callable[..., Program]]] = {
    "all-reduce": {"ring": ring_all_reduce, "hd": halving_doubling_all_reduce,
                   "hd-far": halving_doubling_far_all_reduce, "ps": parameter_server_all_reduce,
                   "hier": hierarchical_all_reduce,
                   "nccl-ring": _nccl("nccl-ring", "all-reduce"), "nccl-tree": _nccl("nccl-tree", "all-reduce")},
    "reduce-scatter": {"ring": ring_reduce_scatter, "nccl-ring": _nccl("nccl-ring", "reduce-scatter")},
    "all-gather": {"ring": ring_all_gather, "nccl-ring": _nccl("nccl-ring", "all-gather")},
    "broadcast": {"ring": ring_broadcast, "tree": tree_broadcast},
}
ALIASES = {"halving-doubling": "hd", "rabenseifner": "hd", "mpich": "hd", "halving-doubling-far": "hd-far",
           "parameter-server": "ps", "naive": "ps", "hierarchical": "hier", "binomial": "tree", "pipeline": "ring",
           "allreduce": "all-reduce", "reducescatter": "reduce-scatter", "allgather": "all-gather",
           "all_reduce": "all-reduce", "reduce_scatter": "reduce-scatter", "all_gather": "all-gather"}


def build(collective: str, algo: str, nranks: int, nbytes: int, *, pieces: int = 4, root: int = 0,
          nodes: int | None = None) -> Program:
    """The program of ``collective`` by ``algo`` on ``nranks`` ranks and ``nbytes`` bytes."""
    coll = ALIASES.get(collective, collective)
    if coll not in ALGORITHMS:
        raise UsageError(f"unknown collective {collective!r}; choose from {', '.join(ALGORITHMS)}")
    name = ALIASES.get(algo, algo)
    if name in ("nccl-nvls", "nccl-nvls_tree", "nccl-nvlstree", "nvls", "nvls_tree", "nvlstree"):
        raise UsageError(f"{algo}: NVLS reduces inside the NVSwitch and cannot be expressed in point-to-point "
                         "messages; use nccl-ring or nccl-tree (the simulator runs NVLS with --algo nccl)")
    if name == "nccl":
        raise UsageError("--algo nccl needs the NCCL model of a topology: use it with sim, sweep or sim train; "
                         "the real executor runs nccl-ring or nccl-tree")
    algos = ALGORITHMS[coll]
    if name not in algos:
        raise UsageError(f"unknown algorithm {algo!r} for {coll}; choose from {', '.join(algos)}")
    if nranks < 1:
        raise UsageError(f"--ranks must be >= 1, got {nranks}")
    if nbytes < 0:
        raise UsageError(f"--size must be >= 0 bytes, got {nbytes}")
    fn = algos[name]
    if coll == "broadcast":
        return fn(nranks, nbytes, root=root, **({"pieces": pieces} if name == "ring" else {}))
    if name.startswith("nccl-"):
        return fn(nranks, nbytes, nodes=nodes or 1, pieces=pieces)
    if name == "hier":
        if nodes is None:
            raise UsageError(f"hierarchical all-reduce needs --nodes M (M nodes x G ranks = {nranks})")
        return fn(nranks, nbytes, nodes=nodes)
    return fn(nranks, nbytes)
