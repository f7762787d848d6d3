"""Closed-form α-β(-γ) costs of the collectives the builders make: pure functions, no engine.

Notation: p ranks, n bytes of the whole buffer, α seconds per message, β seconds per byte
(1/bandwidth), γ seconds per byte of reduction arithmetic. p = 1 costs 0 everywhere.

| function                        | textbook time (p | n)                        | source                  |
|---------------------------------|----------------------------------------------|-------------------------|
| ring_reduce_scatter             | (p-1)α + n(p-1)/p·(β+γ)                      | Thakur et al. 2005      |
| ring_all_gather                 | (p-1)α + n(p-1)/p·β                          | Thakur et al. 2005      |
| ring_all_reduce                 | 2(p-1)α + 2n(p-1)/p·β + n(p-1)/p·γ           | Thakur et al. 2005      |
| pipelined_ring_broadcast (k)    | (p+k-2)(α + nβ/k)                            | Thakur et al. 2005 [1]  |
| binomial_tree_broadcast         | ceil(log2 p)(α + nβ)                         | Thakur et al. 2005      |
| halving_doubling_all_reduce     | 2log2(p)α + 2n(p-1)/p·β + n(p-1)/p·γ         | Thakur et al. 2005 [2]  |
| ..._on_ring, near (MPICH order) | 2(p-1)α + log2(p)·nβ + n(p-1)/p·γ            | ring:p, m flows per hop |
| ..._on_ring, far-first          | 2(p-1)α + 2n(p²-1)/(3p)·β + n(p-1)/p·γ       | ring:p, m flows per hop |
| parameter_server_all_reduce     | 2α + 2(p-1)nβ + (p-1)nγ                      | naive, incast [3]       |
| hierarchical_all_reduce (m × g) | RS(g, n) + ring AR(m, n/g) + AG(g, n)        | NCCL / Horovod 2-level  |

Thakur, Rabenseifner & Gropp, "Optimization of Collective Communication Operations in MPICH",
IJHPCA 19(1), 2005. [1] the pipelined form of "scatter + ring all-gather". [2] Rabenseifner's
algorithm; for p not a power of two MPICH folds r = p - p' ranks in and out (p' the largest power of
two <= p), which adds 2(α + nβ) + nγ. [3] see :func:`parameter_server_all_reduce` for the model.

NCCL's own model (src/graph/tuning.cc) counts nsteps = 2(p-1) for a ring all-reduce and p-1 for
reduce-scatter and all-gather, the step counts used here.

[Note: exact vs textbook]
The builders cut a buffer with :func:`~simulator.program.split`: when p does not divide n, the first
n % p chunks hold one byte more. A ring step is a round whose length is set by its largest chunk in
flight, and in a ring the same (largest) chunk is in flight at every step, so the simulated time is
per step α + ceil(n/p)·β (+ ceil(n/p)·γ when the receiver reduces). ``exact=True`` (the default)
gives that time; ``exact=False`` gives the textbook form with n/p. They are equal, to the bit, when
p divides n, and ``exact - textbook <= steps · (ceil(n/p) - n/p) · (β + γ)`` otherwise.

Bandwidths follow nccl-tests (doc/PERFORMANCE.md): algbw = S / t, busbw = algbw · factor, with the
factors in :data:`BUSBW_FACTOR`; a ring all-reduce that saturates its links has busbw = 1/β.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Callable

from .errors import UsageError

__all__ = [
    "BUSBW_FACTOR", "algbw", "binomial_tree_broadcast", "busbw", "closed_form",
    "halving_doubling_all_reduce", "halving_doubling_all_reduce_on_ring", "hierarchical_all_reduce",
    "parameter_server_all_reduce",
    "pipelined_ring_broadcast", "ring_all_gather", "ring_all_reduce", "ring_reduce_scatter",
]


# -- validation ---------------------------------------------------------------------------------
def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise UsageError(f"{name} must be a whole number >= {minimum}, got {name}={value!r}")
    return int(value)


def _rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < math.inf:
        raise UsageError(f"{name} must be a finite number >= 0 (seconds), got {name}={value!r}")
    return float(value)


def _check(p: object, n: object, **rates: object) -> tuple[int, int]:
    for name, value in rates.items():
        _rate(name, value)
    return _count("p", p, 1), _count("n", n, 0)


def _chunk(n: int, parts: int, exact: bool) -> float:
    """Bytes of the largest of ``parts`` chunks of ``n`` bytes: ceil(n/parts), or n/parts."""
    return float(-(-n // parts)) if exact else n / parts


def _ring(steps: int, alpha: float, chunk: float, per_byte: float) -> float:
    return steps * (alpha + chunk * per_byte)


# -- rings --------------------------------------------------------------------------------------
def ring_reduce_scatter(p: int, n: int, alpha: float, beta: float, gamma: float = 0.0, *,
                        exact: bool = True) -> float:
    """Ring reduce-scatter: p-1 steps of α + c(β+γ), c = ceil(n/p) (exact) or n/p.

    Textbook: (p-1)α + n(p-1)/p·(β+γ) (Thakur, Rabenseifner & Gropp 2005, table 1).
    """
    p, n = _check(p, n, alpha=alpha, beta=beta, gamma=gamma)
    return _ring(p - 1, alpha, _chunk(n, p, exact), beta + gamma)


def ring_all_gather(p: int, n: int, alpha: float, beta: float, *, exact: bool = True) -> float:
    """Ring all-gather of an n-byte result: p-1 steps of α + cβ, c = ceil(n/p) or n/p.

    Textbook: (p-1)α + n(p-1)/p·β (Thakur, Rabenseifner & Gropp 2005, table 1).
    """
    p, n = _check(p, n, alpha=alpha, beta=beta)
    return _ring(p - 1, alpha, _chunk(n, p, exact), beta)


def ring_all_reduce(p: int, n: int, alpha: float, beta: float, gamma: float = 0.0, *,
                    exact: bool = True) -> float:
    """Ring all-reduce = ring reduce-scatter then ring all-gather on the same chunks.

    Textbook: 2(p-1)α + 2n(p-1)/p·β + n(p-1)/p·γ (Thakur, Rabenseifner & Gropp 2005); NCCL's
    tuning.cc counts the same nsteps = 2(p-1).
    """
    return (ring_reduce_scatter(p, n, alpha, beta, gamma, exact=exact)
            + ring_all_gather(p, n, alpha, beta, exact=exact))


# -- broadcasts ---------------------------------------------------------------------------------
def pipelined_ring_broadcast(p: int, n: int, alpha: float, beta: float, pieces: int, *,
                             exact: bool = True) -> float:
    """Pipelined chain broadcast in k = ``pieces`` pieces: p + k - 2 steps.

    Textbook (even pieces): (p+k-2)(α + nβ/k), the pipelined "scatter + ring all-gather" of
    Thakur, Rabenseifner & Gropp 2005. Exact (pieces from ``split(n, k)``, s_0 = ceil(n/k) the
    largest): piece 0 is in flight for the first p-1 steps, then step p-2+j is led by piece j, so
    the time is (p-1)(α + s_0β) + (k-1)α + (n - s_0)β. This is also the longest path through the
    (piece, hop) grid, and is below (p+k-2)(α + s_0β) whenever k does not divide n.
    """
    p, n = _check(p, n, alpha=alpha, beta=beta)
    k = _count("pieces", pieces, 1)
    if p == 1:
        return 0.0
    s0 = _chunk(n, k, exact)
    return (p - 1) * (alpha + s0 * beta) + (k - 1) * alpha + (n - s0) * beta


def binomial_tree_broadcast(p: int, n: int, alpha: float, beta: float) -> float:
    """Binomial-tree broadcast: ceil(log2 p) rounds of α + nβ (Thakur, Rabenseifner & Gropp 2005)."""
    p, n = _check(p, n, alpha=alpha, beta=beta)
    return (p - 1).bit_length() * (alpha + n * beta)


# -- all-reduce variants ------------------------------------------------------------------------
def halving_doubling_all_reduce(p: int, n: int, alpha: float, beta: float, gamma: float = 0.0, *,
                                exact: bool = True) -> float:
    """Rabenseifner's all-reduce: recursive-halving reduce-scatter + recursive-doubling all-gather.

    p' = largest power of two <= p. For p = p': 2log2(p)α + 2n(p-1)/p·β + n(p-1)/p·γ (Thakur,
    Rabenseifner & Gropp 2005). The step at distance d moves d of the p' cells of ``split(n, p')``;
    exact uses the largest such block, d·(n//p') + min(d, n % p'), instead of d·n/p'.
    For p != p', MPICH's fold adds one step in which r = p - p' ranks reduce their whole buffer into
    a partner (α + n(β+γ)) and one in which the partner copies the result back (α + nβ): 2(α + nβ) + nγ
    on top of the p'-rank cost.
    """
    p, n = _check(p, n, alpha=alpha, beta=beta, gamma=gamma)
    pp = 1 << (p.bit_length() - 1)
    q, rem = divmod(n, pp)
    t = 0.0
    d = 1
    while d < pp:
        block = float(d * q + min(d, rem)) if exact else d * (n / pp)
        t += (alpha + block * (beta + gamma)) + (alpha + block * beta)  # halving + doubling step
        d *= 2
    if pp < p:
        t += 2 * (alpha + n * beta) + n * gamma
    return t


def halving_doubling_all_reduce_on_ring(p: int, n: int, alpha: float, beta: float, gamma: float = 0.0, *,
                                        order: str = "near") -> float:
    """Rabenseifner's all-reduce on the bidirectional ring ``ring:p`` (p a power of two), α and β per link.

    The partner at mask m (v XOR m) is m hops away, so a message pays mα; the ranks with bit m clear
    send m hops one way and the others m hops the other way, and every route crosses a link that m
    routes share (the run of m consecutive senders with bit m clear), so max-min fairness gives each
    flow 1/(mβ). A step that moves b bytes then costs mα + b·mβ (+ bγ when it reduces).
    MPICH's order (``near``) moves n/(2m) at mask m: each step costs mα + nβ/2, in all
    2(p-1)α + log2(p)·nβ + n(p-1)/p·γ. Far-first moves mn/p at mask m: mα + m²nβ/p, in all
    2(p-1)α + 2n(p²-1)/(3p)·β + n(p-1)/p·γ, since Σ m² over m = 1, 2, .., p/2 is (p²-1)/3.
    Cells of n/p bytes (the simulator agrees to the bit when p divides n; otherwise unequal flows
    share links and the engine's max-min answer differs from this form).
    """
    p, n = _check(p, n, alpha=alpha, beta=beta, gamma=gamma)
    if p & (p - 1):
        raise UsageError(f"p must be a power of two for halving-doubling on a ring, got p={p}")
    if order not in ("near", "far"):
        raise UsageError(f"order must be 'near' or 'far', got {order!r}")
    t, m = 0.0, 1
    while m < p:
        block = n / (2 * m) if order == "near" else m * n / p
        t += (m * alpha + block * m * beta + block * gamma) + (m * alpha + block * m * beta)
        m *= 2
    return t


def parameter_server_all_reduce(p: int, n: int, alpha: float, beta: float, gamma: float = 0.0, *,
                                incast: bool = True) -> float:
    """Naive all-reduce through rank 0, one full-duplex link per rank (star).

    Model: (1) the p-1 other ranks send n bytes each to rank 0: one α, and with ``incast`` the
    (p-1)n bytes share rank 0's down link, (p-1)nβ; without it the receive side is taken to be no
    bottleneck and the arrivals overlap, nβ. (2) rank 0 reduces the p-1 arrivals, (p-1)nγ.
    (3) rank 0 sends the result back through its one up link: α + (p-1)nβ. Total with incast:
    2α + 2(p-1)nβ + (p-1)nγ: rank 0's link carries (p-1)n each way, the bottleneck a ring removes
    (Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations",
    JPDC 69(2), 2009, section 2).
    """
    p, n = _check(p, n, alpha=alpha, beta=beta, gamma=gamma)
    if p == 1:
        return 0.0
    gather = alpha + ((p - 1) if incast else 1) * n * beta
    return gather + (p - 1) * n * gamma + alpha + (p - 1) * n * beta


def hierarchical_all_reduce(m: int, g: int, n: int, alpha_intra: float, beta_intra: float,
                            alpha_inter: float, beta_inter: float, gamma: float = 0.0, *,
                            exact: bool = True) -> float:
    """Two-level ring all-reduce on m nodes of g ranks (p = m·g).

    Ring reduce-scatter inside each node (g-1 steps on chunks of n/g), ring all-reduce across
    nodes of each n/g shard (2(m-1) steps on sub-chunks of n/(gm)), ring all-gather inside each
    node. Exact chunks are ceil(n/g) inside and ceil(ceil(n/g)/m) = ceil(n/p) across, as
    :mod:`simulator.collectives.hierarchical` cuts them. The rail-aligned two-level scheme of
    NCCL and Horovod; each piece is a ring of Thakur, Rabenseifner & Gropp 2005.
    """
    m = _count("m", m, 1)
    g = _count("g", g, 1)
    n = _count("n", n, 0)
    for name, value in (("alpha_intra", alpha_intra), ("beta_intra", beta_intra),
                        ("alpha_inter", alpha_inter), ("beta_inter", beta_inter), ("gamma", gamma)):
        _rate(name, value)
    sub = _chunk(n, g * m, exact)
    inter = (_ring(m - 1, alpha_inter, sub, beta_inter + gamma)
             + _ring(m - 1, alpha_inter, sub, beta_inter))
    return (ring_reduce_scatter(g, n, alpha_intra, beta_intra, gamma, exact=exact) + inter
            + ring_all_gather(g, n, alpha_intra, beta_intra, exact=exact))


# -- bandwidths (nccl-tests doc/PERFORMANCE.md) ---------------------------------------------------
BUSBW_FACTOR: dict[str, Callable[[int], float]] = {
    "all-reduce": lambda p: 2 * (p - 1) / p,
    "reduce-scatter": lambda p: (p - 1) / p,
    "all-gather": lambda p: (p - 1) / p,
    "broadcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
    "all-to-all": lambda p: (p - 1) / p,
}


def algbw(nbytes: int, seconds: float) -> float:
    """Algorithm bandwidth S / t in bytes/s, S the whole buffer (nccl-tests); t = 0 gives inf."""
    nbytes = _count("nbytes", nbytes, 0)
    seconds = _rate("seconds", seconds)
    return math.inf if seconds == 0 else nbytes / seconds


def busbw(collective: str, p: int, nbytes: int, seconds: float) -> float:
    """Bus bandwidth algbw · factor(p) (nccl-tests): comparable to link bandwidth for any p."""
    factor = BUSBW_FACTOR[_canonical(collective, BUSBW_FACTOR, "collective")](_count("p", p, 1))
    bw = algbw(nbytes, seconds)
    return 0.0 if factor == 0 else bw * factor


# -- dispatch -------------------------------------------------------------------------------------
_ALGOS = {
    "all-reduce": ("ring", "hd", "hd-far", "ps", "hier"),
    "reduce-scatter": ("ring",),
    "all-gather": ("ring",),
    "broadcast": ("ring", "tree"),
}
_KW = {"pieces", "nodes", "alpha_inter", "beta_inter", "exact", "incast", "root"}


def _canonical(name: str, known, what: str) -> str:
    from .collectives import ALIASES  # same spellings the builders accept

    name = ALIASES.get(name, name)
    if name not in known:
        raise UsageError(f"unknown {what} {name!r}; choose from {', '.join(known)}")
    return name


def closed_form(collective: str, algo: str, p: int, n: int, alpha: float, beta: float,
                gamma: float = 0.0, **kw) -> float:
    """Closed-form time of ``collective`` by ``algo``, the same names :func:`build` takes.

    Keywords: ``exact`` (default True), ``pieces`` (ring broadcast, default 4 as in ``build``),
    ``nodes`` (hier: m nodes, g = p // m), ``alpha_inter``/``beta_inter`` (hier; default alpha/beta),
    ``incast`` (ps). ``root`` is accepted and ignored (no cost depends on it).
    """
    unknown = set(kw) - _KW
    if unknown:
        raise UsageError(f"unknown keyword(s) {sorted(unknown)} for closed_form; use {sorted(_KW)}")
    coll = _canonical(collective, _ALGOS, "collective")
    name = _canonical(algo, _ALGOS[coll], f"algorithm for {coll}")
    exact = kw.get("exact", True)
    if coll == "broadcast":
        if name == "tree":
            return binomial_tree_broadcast(p, n, alpha, beta)
        return pipelined_ring_broadcast(p, n, alpha, beta, kw.get("pieces", 4), exact=exact)
    if coll == "all-gather":
        _rate("gamma", gamma)
        return ring_all_gather(p, n, alpha, beta, exact=exact)
    if coll == "reduce-scatter":
        return ring_reduce_scatter(p, n, alpha, beta, gamma, exact=exact)
    if name == "ring":
        return ring_all_reduce(p, n, alpha, beta, gamma, exact=exact)
    if name in ("hd", "hd-far"):  # the same cost on a non-blocking network (both orders)
        return halving_doubling_all_reduce(p, n, alpha, beta, gamma, exact=exact)
    if name == "ps":
        return parameter_server_all_reduce(p, n, alpha, beta, gamma, incast=kw.get("incast", True))
    p = _count("p", p, 1)
    nodes = kw.get("nodes")
    if nodes is None:
        raise UsageError(f"hierarchical all-reduce needs nodes=M (M nodes x G ranks = {p})")
    nodes = _count("nodes", nodes, 1)
    if p % nodes:
        raise UsageError(f"nodes={nodes} must divide p={p} for hierarchical all-reduce")
    return hierarchical_all_reduce(nodes, p // nodes, n, alpha, beta, kw.get("alpha_inter", alpha),
                                   kw.get("beta_inter", beta), gamma, exact=exact)
