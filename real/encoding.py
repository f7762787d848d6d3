"""Values that reveal which ranks they contain, and how program bytes map onto tensor elements.

[Note: provenance encoding]
Rank r contributes 2^r: summed contributions of distinct ranks are a bitset, so decoding a received
value gives the set of ranks in it, the *measured provenance* (the design's "state is derived"). One
int64 word holds 62 ranks (bits 0..61; bits 62 and 63 stay clear, so a sum of every rank counted
twice still fits without overflow); for N > 62 an *element* is several words, word w carrying ranks
62w .. 62w+61. A last word counts contributions: every rank puts 1 there.

A double count, 2^a + 2^a = 2^(a+1), looks like rank a+1 in the bitset alone. The count word
catches it: the popcount of a sum of powers of two equals the number of terms exactly when no
carry happened (Kummer: each carry removes one bit), so ``popcount(bits) != count`` means some
contribution was counted more than once. Words outside 0 .. 2^62-1 mean an overflow.

So an element is ``W + 1`` int64 words, W = ceil(N / 62): 16 bytes for N <= 62.
Timing runs (sweep, benchmark) use plain float32 elements instead (``provenance=False``): the
values are meaningless there and the bytes on the wire equal the program's bytes.

[Note: bytes and elements]
A program's chunks are byte ranges; a tensor moves whole elements. The real buffer holds the
program's bytes exactly (S bytes = S / elem_bytes elements), so the wire carries what the
simulator charges for. For that every chunk boundary must fall on an element: :func:`aligned_size`
rounds the requested size *up* to a multiple of ``elem_bytes x lcm(N, p, pieces)`` (p the power of
two of halving-doubling, pieces the pipelined broadcast's), which makes every builder's
:func:`~simulator.program.split` exact; :func:`aligned_program` builds the program at that size and
checks the alignment (so provenance per program segment stays exact). The requested and the
actual size both go in the trace's meta. Rounding, not refusing: ``--size 64MiB`` on 3 ranks runs
64 MiB + 16 bytes rather than failing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rankscope.simulator.collectives import ALIASES, NCCL_CHANNELS, build
from rankscope.simulator.errors import ProgramError
from rankscope.simulator.program import Buffer, Init, Program, split

RANKS_PER_WORD = 62
_WORD_LIMIT = 1 << RANKS_PER_WORD

# Why a segment cannot be decoded (see :class:`Decoded`).
OK, MIXED, CARRY, OVERFLOW = 0, 1, 2, 3
PROBLEMS = {MIXED: "its elements differ (part of it moved without the rest)",
            CARRY: "a contribution was counted twice (the count word disagrees with the bitset)",
            OVERFLOW: "a word overflowed (value outside 0 .. 2^62-1)"}


@dataclass(frozen=True)
class Encoding:
    """How rank buffers are filled and read back (see [Note: provenance encoding])."""

    nranks: int
    provenance: bool = True

    @property
    def dtype(self) -> str:
        """The torch/numpy dtype name of one word."""
        return "int64" if self.provenance else "float32"

    @property
    def itemsize(self) -> int:
        return 8 if self.provenance else 4

    @property
    def rank_words(self) -> int:
        return -(-self.nranks // RANKS_PER_WORD)

    @property
    def words(self) -> int:
        """Words per element: the rank bitset words and the count word (1 for plain float32)."""
        return self.rank_words + 1 if self.provenance else 1

    @property
    def elem_bytes(self) -> int:
        return self.itemsize * self.words

    def contribution(self, rank: int) -> np.ndarray:
        """One element of rank ``rank``'s own input: (words,)."""
        if not self.provenance:
            return np.array([rank + 1], dtype=np.float32)
        out = np.zeros(self.words, dtype=np.int64)
        out[rank // RANKS_PER_WORD] = 1 << (rank % RANKS_PER_WORD)
        out[-1] = 1
        return out

    def initial(self, buf: Buffer, rank: int) -> np.ndarray:
        """Rank ``rank``'s flat buffer (nbytes / itemsize words) before any op, as ``buf.init`` says."""
        n_elem = buf.nbytes // self.elem_bytes
        out = np.zeros((n_elem, self.words), dtype=self.dtype)
        own = self.contribution(rank)
        if buf.init is Init.OWN or (buf.init is Init.ROOT and rank == buf.root):
            out[:] = own
        elif buf.init is Init.SHARD:
            b = split(buf.nbytes, self.nranks)
            out[b[rank] // self.elem_bytes:b[rank + 1] // self.elem_bytes] = own
        return out.reshape(-1)

    def bitsets(self, elems: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode elements (n, words) into the simulator's bitsets (n, ceil(N/64)) uint64 and a
        problem code per element (OK, CARRY, OVERFLOW)."""
        n, w = elems.shape[0], self.rank_words
        words = elems[:, :w]
        problem = np.zeros(n, dtype=np.int8)
        over = ((words < 0) | (words >= _WORD_LIMIT)).any(axis=1)
        u = np.ascontiguousarray(np.where(words < 0, 0, words), dtype="<u8")
        pop = np.bitwise_count(u).sum(axis=1, dtype=np.int64)
        problem[pop != elems[:, w]] = CARRY
        problem[over] = OVERFLOW
        raw = np.unpackbits(u.view(np.uint8).reshape(n, w, 8), axis=-1, bitorder="little")
        ranks = raw[:, :, :RANKS_PER_WORD].reshape(n, w * RANKS_PER_WORD)[:, :self.nranks]
        sim_words = -(-self.nranks // 64)
        padded = np.zeros((n, sim_words * 64), dtype=np.uint8)
        padded[:, :self.nranks] = ranks
        bits = np.packbits(padded, axis=-1, bitorder="little").view("<u8").astype(np.uint64)
        return bits.reshape(n, sim_words), problem

    def decode(self, flat: np.ndarray, bounds: np.ndarray) -> "Decoded":
        """The measured provenance of each segment ``[bounds[s], bounds[s+1])`` (bytes) of a buffer."""
        if not self.provenance:
            raise ProgramError("plain float32 buffers carry no provenance; use provenance=True")
        elems = np.asarray(flat).reshape(-1, self.words)
        eb = np.asarray(bounds, dtype=np.int64) // self.elem_bytes
        first = elems[eb[:-1]]
        seg_of = np.repeat(np.arange(eb.size - 1), np.diff(eb))
        mixed = np.zeros(eb.size - 1, dtype=bool)
        np.logical_or.at(mixed, seg_of, (elems != first[seg_of]).any(axis=1))
        bits, problem = self.bitsets(first)
        problem[mixed] = MIXED
        return Decoded(bits, problem)


@dataclass(frozen=True)
class Decoded:
    """Per segment: the decoded bitset in the simulator's layout ((n_seg, ceil(N/64)) uint64, as
    :attr:`simulator.provenance.Layout.bits`) and why it could not be decoded (0 = it could)."""

    bits: np.ndarray
    problem: np.ndarray


def ranks_of(bits: np.ndarray, nranks: int) -> list[int]:
    """The ranks in one bitset row of the simulator's layout."""
    raw = np.unpackbits(np.ascontiguousarray(bits, dtype="<u8").view(np.uint8), bitorder="little")
    return [int(r) for r in np.flatnonzero(raw[:nranks])]


# -- bytes and elements ---------------------------------------------------------------------------

def alignment_unit(collective: str, algo: str, nranks: int, *, pieces: int = 4) -> int:
    """The count every size must be a multiple of (in elements) so that each split is exact."""
    coll, name = ALIASES.get(collective, collective), ALIASES.get(algo, algo)
    unit = max(nranks, 1)
    if name in ("hd", "hd-far"):  # both orders cut the buffer into p' cells
        unit = math.lcm(unit, 1 << (max(nranks, 1).bit_length() - 1))
    if coll == "broadcast" and name == "ring":
        unit = math.lcm(unit, max(pieces, 1))
    if name == "nccl-ring":  # every rank's shard cut over the channels
        unit = max(nranks, 1) * NCCL_CHANNELS
    if name == "nccl-tree":  # the buffer cut over the channels, each into pieces
        unit = math.lcm(unit, NCCL_CHANNELS * max(pieces, 1))
    return unit


def aligned_size(nbytes: int, elem_bytes: int, unit: int) -> int:
    """``nbytes`` rounded up to a multiple of ``elem_bytes * unit`` (at least one such block)."""
    block = elem_bytes * unit
    return max(1, -(-int(nbytes) // block)) * block


def check_aligned(prog: Program, elem_bytes: int) -> None:
    """Raise :class:`ProgramError` unless every chunk (and shard) boundary falls on an element."""
    bad = np.flatnonzero((prog.chunk_off % elem_bytes != 0) | (prog.chunk_len % elem_bytes != 0))
    if bad.size:
        c = int(bad[0])
        raise ProgramError(f"chunk {c} (bytes {int(prog.chunk_off[c])}+{int(prog.chunk_len[c])}) does not "
                           f"fall on {elem_bytes}-byte elements; the real executor moves whole elements")
    for buf in prog.buffers:
        if buf.nbytes % elem_bytes or (buf.init is Init.SHARD
                                       and np.any(split(buf.nbytes, prog.nranks) % elem_bytes)):
            raise ProgramError(f"buffer {buf.name!r} of {buf.nbytes} bytes does not split into whole "
                               f"{elem_bytes}-byte elements over {prog.nranks} ranks")


def aligned_program(collective: str, algo: str, nranks: int, nbytes: int, elem_bytes: int, *,
                    pieces: int = 4, root: int = 0, nodes: int | None = None) -> Program:
    """The builder's program at ``nbytes`` rounded up as [Note: bytes and elements] says; its meta
    records ``requested_nbytes``."""
    size = aligned_size(nbytes, elem_bytes, alignment_unit(collective, algo, nranks, pieces=pieces))
    prog = build(collective, algo, nranks, size, pieces=pieces, root=root, nodes=nodes)
    check_aligned(prog, elem_bytes)
    prog.meta["requested_nbytes"] = int(nbytes)
    return prog
