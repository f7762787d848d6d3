"""NCCL's tuner constants, pinned to NCCL 2.20.3 (NVIDIA/nccl commit b6475625, makefiles/version.mk).

Every table is reimplemented from the named file and symbol of that commit:
- src/graph/tuning.cc: ``baseLat``, ``hwLat``, ``llMaxBws``, ``perChMaxRingLL128Bws``,
  ``perChMaxTreeLL128Bws``, ``perChMaxTreeBws``, ``treeCorrectionFactor``, ``getNetOverhead``
  (1 us on Intel x86, 2 us on AMD; we assume Intel).
- src/graph/search.cc: ``speedArrayIntra``, ``speedArrayInter``, ``sm90SpeedArrayIntra``,
  ``sm90SpeedArrayInter``; ``MAXCHANNELS/2`` rings per search.
- src/include/comm.h: ``NCCL_LL_THREAD_THRESHOLD`` 8, ``NCCL_LL128_THREAD_THRESHOLD`` 8,
  ``NCCL_SIMPLE_THREAD_THRESHOLD`` 64. src/include/device.h: ``NCCL_LL_MAX_NTHREADS`` 512,
  ``NCCL_LL128_MAX_NTHREADS`` 640, ``NCCL_SIMPLE_MAX_NTHREADS`` 512, ``NCCL_STEPS`` 8, LL lines
  of 8 bytes carrying 4 (``union ncclLLFifoLine``), LL128 lines of 16 8-byte elements carrying 15
  (``NCCL_LL128_LINEELEMS``, ``NCCL_LL128_DATAELEMS``). src/init.cc: buffer sizes
  (``DEFAULT_LL_BUFFSIZE`` = NCCL_LL_LINES_PER_THREAD 8 x 512 threads x NCCL_STEPS x 16 B = 512 KiB,
  ``DEFAULT_LL128_BUFFSIZE`` = NCCL_LL128_ELEMS_PER_THREAD 120 x 640 x NCCL_STEPS x 8 B, ``DEFAULT_BUFFSIZE``
  4 MiB). PCIe: src/graph/topo.cc reads a link as width x generation rate / 80 (Gen4 x16: 24 GB/s,
  Gen5 x16: 48 GB/s).
- src/graph/connect.cc ``ncclTopoPostset``: the communicator runs ``min(MAXCHANNELS, 2 x graph
  channels)`` channels; src/transport/nvls.cc: ``NCCL_NVLS_NCHANNELS`` default 16.

Differences in other versions (not modelled): 2.19 and older lack ``latencyInter`` and the 1.4
ring plateau; 2.21+ adds PAT and per-protocol NVLS efficiency (``nvlsEfficiency``), and later
versions move these tables into ``ncclTunerConstants``; Blackwell (compute capability 10.0) is
unknown to 2.20: we give B200 the Hopper tables and LL128 off, as 2.20's ``pEnable`` switch does
for an unknown compute capability.
"""

from __future__ import annotations

VERSION = "2.20.3"
COMMIT = "b6475625fbcaa2c3c0e50eed2fa1255d7514d4a2"

ALGOS = ("tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree")  # NCCL_ALGO_* order
PROTOS = ("ll", "ll128", "simple")  # NCCL_PROTO_* order
TREE, RING, COLLNET_DIRECT, COLLNET_CHAIN, NVLS, NVLS_TREE = range(6)
LL, LL128, SIMPLE = range(3)
HW_NVLINK, HW_PCI, HW_NET = range(3)

# us, [algorithm][protocol]
BASE_LAT = ((6.8, 14.0, 0.0), (6.6, 14.0, 8.4), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
# us, [hardware][algorithm][protocol]
HW_LAT = (
    ((0.6, 1.25, 28.0), (0.6, 1.9, 3.4), (0.0, 0.0, 3.7), (0.0, 0.0, 2.8), (0.0, 0.0, 23.0), (0.0, 0.0, 23.0)),
    ((1.0, 1.9, 28.0), (1.0, 2.5, 5.7), (0.0, 0.0, 3.7), (0.0, 0.0, 2.8), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((5.0, 8.5, 28.0), (2.7, 4.0, 14.0), (0.0, 0.0, 31.0), (0.0, 0.0, 30.0), (0.0, 0.0, 18.0), (0.0, 0.0, 14.0)),
)
VOLTA, AMPERE, HOPPER = range(3)  # compCapIndex
# GB/s, [index1][index2]: index1 = compCapIndex on one node, CPU vendor (0 Intel, 1 AMD) across nodes;
# index2 = nNodes-1 for 1 and 2 nodes, else 2
LL_MAX_BWS = ((39.0, 39.0, 20.4), (87.7, 22.5, 19.0), (87.7, 22.5, 19.0))
PER_CH_MAX_RING_LL128_BWS = ((20.0, 20.0, 20.0), (20.0, 20.0, 20.0), (36.7, 36.7, 36.7))
PER_CH_MAX_TREE_LL128_BWS = ((20.0, 20.0, 20.0), (20.0, 20.0, 20.0), (36.7, 36.7, 29.0))
PER_CH_MAX_TREE_BWS = ((26.5, 18.5, 10.0), (24.0, 23.6, 17.8), (38.7, 41.4, 36.0))
# [protocol][log2(nBytes >> 6)], powers of two 64 B .. 256 MB
TREE_CORRECTION = (
    (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1.0, 1.0),
    (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9),
)
NET_OVERHEAD_US = 1.0  # getNetOverhead: Intel x86

SPEED_INTRA = (40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0)
SPEED_INTER = (48.0, 30.0, 28.0, 24.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.4, 1.2, 0.24, 0.12)
SM90_SPEED_INTRA = (60.0, 50.0, 40.0, 30.0, 24.0, 20.0, 15.0, 12.0, 6.0, 3.0)
SM90_SPEED_INTER = (48.0, 45.0, 42.0, 40.0, 30.0, 24.0, 22.0, 20.0, 17.5, 15.0, 12.0, 6.0, 3.0, 2.4, 1.2, 0.24, 0.12)

MAXCHANNELS = 32
NVLS_NCHANNELS = 16
THREAD_THRESHOLD = (8, 8, 64)  # LL, LL128, Simple
MAX_NTHREADS = (512, 640, 512)  # LL, LL128, Simple (ring and tree)
NCCL_STEPS = 8
BUFF_SIZES = (8 * 512 * 8 * 16, 120 * 640 * 8 * 8, 4 * 1024 * 1024)  # LL, LL128, Simple bytes per connection
# fraction of each line that is data: LL 4 of 8 bytes, LL128 15 of 16 elements, Simple all
PROTO_EFFICIENCY = (0.5, 15 / 16, 1.0)
