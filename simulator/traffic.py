"""Bytes moved, from the program alone (no timing): per rank and per ordered rank pair."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .program import OpKind, Program, ring_bytes_sent


@dataclass(frozen=True)
class Traffic:
    """``sent[r]``, ``received[r]``: bytes rank r sends / receives over the whole program.
    ``pairs``: (K, 3) int64 rows (src, dst, bytes) for every ordered pair that exchanges anything,
    zero-byte transfers included (they are still messages), sorted by (src, dst). A COLLECTIVE op
    counts as its ring form: rank r sends to r+1 (:func:`~simulator.program.ring_bytes_sent`)."""

    sent: np.ndarray
    received: np.ndarray
    pairs: np.ndarray
    messages: int

    @property
    def total(self) -> int:
        return int(self.sent.sum())


def traffic(prog: Program, mask: np.ndarray | None = None) -> Traffic:
    """Bytes moved by all ops, or by the ops in ``mask`` (e.g. those that ran)."""
    n = prog.nranks
    t = prog.is_transfer if mask is None else prog.is_transfer & mask
    src = prog.rank[t].astype(np.int64)
    dst = prog.peer[t].astype(np.int64)
    nbytes = prog.chunk_len[prog.arg[t]]
    c = prog.kind == OpKind.COLLECTIVE
    if mask is not None:
        c &= mask
    if c.any():
        r = prog.rank[c].astype(np.int64)
        a = prog.arg[c]
        src = np.concatenate([src, r])
        dst = np.concatenate([dst, (r + 1) % n])
        nbytes = np.concatenate([nbytes, ring_bytes_sent(prog.coll_kind[a], prog.coll_bytes[a], r, n)])
    # bincount weights are float64: exact for totals below 2^53 bytes (8 PiB)
    sent = np.bincount(src, weights=nbytes, minlength=n).astype(np.int64)
    received = np.bincount(dst, weights=nbytes, minlength=n).astype(np.int64)
    key = src * n + dst
    uniq, inv = np.unique(key, return_inverse=True)
    per = np.bincount(inv, weights=nbytes, minlength=uniq.size).astype(np.int64)
    pairs = np.stack([uniq // n, uniq % n, per], axis=1) if uniq.size else np.zeros((0, 3), np.int64)
    return Traffic(sent, received, pairs.astype(np.int64), int(t.sum() + c.sum()))
