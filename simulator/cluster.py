"""GPU-cluster node presets: what NCCL sees in a node (GPU generation, NVLinks, NVSwitch, NVLS, NICs).

[Note: cluster presets]
``nodes:MxG,opt=value,...`` (and ``dgx-a100,...``, ``dgx-h100,...``; a TOML ``[cluster]`` table
takes the same keys) describes M nodes of G GPUs:

  gpu       a100 | h100 | h200 | b200 (default h100)
  nvlinks   NVLinks per GPU (default: the generation's: 12 A100, 18 H100/H200/B200)
  nvlink    bandwidth of one NVLink as NCCL counts it (default: NCCL's per-generation figure)
  nvswitch  on | off: the GPUs of a node meet at an NVSwitch (default on)
  nvls      on | off: NVLink SHARP, reduction in the switch (default: on where the generation
            has it, Hopper and later, and nvswitch is on)
  nics      NICs per node (default G: one per GPU, rail-optimised)
  nic       bandwidth of one NIC (default 400Gb/s for H100/H200/B200, 200Gb/s for A100)

GPU local rank g uses NIC ``g * nics // G`` (a rail: GPUs sharing a PCIe switch share its NIC).
Per-NVLink figures are NCCL's ``SM80_NVLINK_BW`` (20.0 GB/s), ``SM90_NVLINK_BW`` (20.6) and
``SM100_NVLINK_BW`` (40.1) of src/graph/topo.h; NVLinks per GPU are NVIDIA's data sheets (A100: 12
third-generation links, H100 SXM: 18 fourth-generation, B200: 18 fifth-generation). NVLS needs
NVSwitch and compute capability 9.0 (src/graph/search.cc, ``ncclTopoCompute``: ``ccMin < 90``
gives no NVLS graph).

This module only describes; :mod:`simulator.topology` turns a :class:`NodeSpec` into links.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import TopologyError

# generation: (NVLink bytes/s per link as NCCL counts it, NVLinks per GPU, compute capability, NVLS-capable,
#              default NIC bits/s, GPU-NIC PCIe bytes/s as NCCL reads it: Gen4 x16 24 GB/s, Gen5 x16 48 GB/s)
GPUS = {
    "a100": (20.0e9, 12, 80, False, 200e9, 24e9),
    "h100": (20.6e9, 18, 90, True, 400e9, 48e9),
    "h200": (20.6e9, 18, 90, True, 400e9, 48e9),
    "b200": (40.1e9, 18, 100, True, 400e9, 48e9),
}
_KEYS = ("gpu", "nvlinks", "nvlink", "nvswitch", "nvls", "nics", "nic")


@dataclass(frozen=True)
class NodeSpec:
    """One node type of a GPU cluster, in NCCL's terms (bandwidths in bytes/s)."""

    nodes: int
    gpus: int
    gpu: str = "h100"
    nvlinks: int = 18
    nvlink_bw: float = 20.6e9
    nvswitch: bool = True
    nvls: bool = True
    nics: int = 8
    nic_bw: float = 50e9

    @property
    def nranks(self) -> int:
        return self.nodes * self.gpus

    @property
    def compcap(self) -> int:
        return GPUS[self.gpu][2]

    @property
    def pcie_bw(self) -> float:
        return GPUS[self.gpu][5]

    @property
    def gpu_nvlink_bw(self) -> float:
        """A GPU's NVLink bandwidth to its NVSwitch, one direction (NCCL: nvlinks x per-link)."""
        return self.nvlinks * self.nvlink_bw

    def rail(self, local: int) -> int:
        """The NIC (0..nics-1) that local GPU ``local`` uses."""
        return local * self.nics // self.gpus

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NodeSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _flag(value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise TopologyError(f"{what} = {value!r}: write on or off")


def _int(value, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise TopologyError(f"{what} = {value!r} must be a whole number >= 1") from None
    if isinstance(value, bool) or n < 1 or (isinstance(value, float) and value != n):
        raise TopologyError(f"{what} = {value!r} must be a whole number >= 1")
    return n


def node_spec(nodes: int, gpus: int, options: dict, quantity) -> NodeSpec:
    """A checked :class:`NodeSpec` from ``options`` (keys of [Note: cluster presets]); ``quantity(value,
    what)`` reads a bandwidth (bytes/s) from a number or a string such as ``"400Gb/s"``."""
    unknown = sorted(set(options) - set(_KEYS))
    if unknown:
        raise TopologyError(f"unknown cluster option {unknown[0]!r}; the options are {', '.join(_KEYS)}")
    gpu = str(options.get("gpu", "h100")).strip().lower()
    if gpu not in GPUS:
        raise TopologyError(f"gpu = {gpu!r} is not known; use one of {', '.join(GPUS)}")
    per_link, links, cc, has_nvls, nic_bits, _ = GPUS[gpu]
    nvswitch = _flag(options.get("nvswitch", True), "nvswitch")
    default_nvls = has_nvls and nvswitch
    nvls = _flag(options.get("nvls", default_nvls), "nvls")
    if nvls and not (has_nvls and nvswitch):
        raise TopologyError(f"nvls = on needs an NVSwitch and a Hopper or later GPU (gpu = {gpu}, "
                            f"nvswitch = {'on' if nvswitch else 'off'}); drop nvls=on")
    if not nvswitch and gpus > 2:
        raise TopologyError("nvswitch = off is only modelled for 1 or 2 GPUs per node (one NVLink bundle "
                            "between them); keep nvswitch=on")
    spec = NodeSpec(
        nodes=_int(nodes, "node count"), gpus=_int(gpus, "GPUs per node"), gpu=gpu,
        nvlinks=_int(options.get("nvlinks", links), "nvlinks"),
        nvlink_bw=quantity(options.get("nvlink", per_link), "nvlink"),
        nvswitch=nvswitch, nvls=nvls,
        nics=_int(options.get("nics", gpus), "nics"),
        nic_bw=quantity(options.get("nic", f"{nic_bits / 1e9:g}Gb/s"), "nic"))
    if spec.nics > spec.gpus:
        raise TopologyError(f"nics = {spec.nics} is more than the {spec.gpus} GPUs of a node; give at most one "
                            "NIC per GPU")
    return spec


def parse_options(text: str) -> dict:
    """``"gpu=h100,nics=8"`` -> ``{"gpu": "h100", "nics": "8"}``."""
    out: dict = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise TopologyError(f"cluster option {part!r} is not key=value (e.g. gpu=h100, nics=8, nic=400Gb/s)")
        key = key.strip().lower()
        if key in out:
            raise TopologyError(f"cluster option {key!r} is given twice")
        out[key] = value.strip()
    return out
