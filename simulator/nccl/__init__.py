"""NCCL's view of a GPU cluster, its tuner and its schedules, pinned to NCCL 2.20.3.

- :mod:`.constants`  the tuner's tables, each with its source file and symbol
- :mod:`.search`     the channel search (``ncclTopoCompute``) in closed form on a preset
- :mod:`.tuner`      ``ncclTopoTuneModel``, ``ncclTopoGetAlgoTime``, ``topoGetAlgoInfo``
- :mod:`simulator.collectives.nccl_ring`, :mod:`simulator.collectives.nccl_tree`: the multi-channel
  ring and the double binary tree, plain builders there (the builder registry, and so the real
  executor, holds them; collectives cannot import this package, which imports the engine)
- :mod:`.nvls`       NVLS and NVLSTree
- :mod:`.model`      choice -> program -> simulation on the protocol's view of the topology
"""

from .model import cluster_of, nccl_collective, p2p_choice, simulate_nccl, tuning, view
from .tuner import Choice, Tuning

__all__ = ["Choice", "Tuning", "cluster_of", "nccl_collective", "p2p_choice", "simulate_nccl", "tuning", "view"]
