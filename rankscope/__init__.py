"""rankscope: see what distributed training does to memory and the network.

Installed as one namespace whose layers are the repository's top-level folders (see
``[tool.setuptools.package-dir]`` in pyproject.toml):

- :mod:`rankscope.simulator` (``simulator/``): programs, builders, provenance, topologies, the
  engine, traces, training steps, compare, import and export. Imports neither torch nor textual.
- :mod:`rankscope.real` (``real/``): the same programs on real ranks with torch.distributed.
- :mod:`rankscope.tui` (``tui/``): the Textual app that replays traces. Never imports torch.
- :mod:`rankscope.cli` (``rankscope/cli/``): the ``rankscope`` command, above all three.
"""

__version__ = "0.1.0"
