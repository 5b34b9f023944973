"""The Cowan-Jonard barter model of knowledge diffusion on a network.

Cowan, R. & Jonard, N. (2004). Network structure and the diffusion of knowledge.
Journal of Economic Dynamics and Control 28(8), 1557-1575.

Agent i holds knowledge v_i in R^K. In one meeting an agent i is drawn uniformly and then
one of its neighbours j uniformly. They barter only on a double coincidence of wants:

    exists k:  v_ik - v_jk > tol * max(v_ik, v_jk)   and
    exists k': v_jk' - v_ik' > tol * max(v_ik', v_jk')

and then in every category the lagging side gains a share alpha of the gap (the giver keeps
what it gives: knowledge is non-rival):

    v_ik <- v_ik + alpha * max(0, v_jk - v_ik),    v_jk <- v_jk + alpha * max(0, v_ik - v_jk).

The run stops at steady state, when no tied pair can trade (checked every ``check_every``
meetings), or after ``max_meetings``.
"""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.rng import bounded_bits, step, uniform
from numba import njit


@njit(cache=True, nogil=True)
def can_trade(knowledge: np.ndarray, i: int, j: int, tolerance: float) -> bool:
    """Double coincidence of wants between agents i and j (see module docstring).

    Branch-free on purpose: the outcome of each comparison is close to a coin toss, so
    branches mispredict on most categories; OR-ing the comparisons lets LLVM emit compares
    and selects instead (docs/bench/journal.md, the meeting loop against C and Mesa). The two flags
    are never both set in one category (``threshold >= 0`` for non-negative knowledge), so
    this is the ``if ... elif`` of the definition, bit for bit.
    """
    i_ahead = False
    j_ahead = False
    for k in range(knowledge.shape[1]):
        x = knowledge[i, k]
        y = knowledge[j, k]
        threshold = tolerance * (x if x > y else y)
        i_ahead |= x - y > threshold
        j_ahead |= y - x > threshold
    return i_ahead and j_ahead


@njit(cache=True, nogil=True)
def barter(knowledge: np.ndarray, i: int, j: int, alpha: float) -> None:
    """Each side gains alpha times the gap in every category where it lags.

    Written as ``v + alpha * max(0, gap)`` for both sides, without branches (a trade is
    close to a coin toss per category); where a side does not lag it gains ``alpha * 0.0``,
    and ``x + 0.0 == x`` exactly, so the result is bit for bit that of the branching form.
    """
    for k in range(knowledge.shape[1]):
        x = knowledge[i, k]
        y = knowledge[j, k]
        i_gap = y - x
        j_gap = x - y
        knowledge[i, k] = x + alpha * (i_gap if i_gap > 0.0 else 0.0)
        knowledge[j, k] = y + alpha * (j_gap if j_gap > 0.0 else 0.0)


@njit(cache=True, nogil=True)
def find_trading_pair(
    indptr: np.ndarray, indices: np.ndarray, knowledge: np.ndarray, tolerance: float, start: int
) -> int:
    """An agent with a neighbour it can still trade with, or -1 at steady state.

    The scan starts at ``start`` and wraps around: the agent found last time is the most
    likely to still have a partner, so the check is cheap until the very end of a run.
    """
    n = knowledge.shape[0]
    for offset in range(n):
        i = start + offset
        if i >= n:
            i -= n
        for p in range(indptr[i], indptr[i + 1]):
            if can_trade(knowledge, i, indices[p], tolerance):
                return i
    return -1


@njit(cache=True, nogil=True)
def run_replicate(  # noqa: PLR0913 - a Numba kernel: plain arrays and scalars, no settings object
    indptr: np.ndarray,
    indices: np.ndarray,
    knowledge: np.ndarray,
    rng_state: np.ndarray,
    alpha: float,
    tolerance: float,
    max_meetings: int,
    check_every: int,
) -> tuple[int, int, bool]:
    """Run meetings on ``knowledge`` (agents x categories, changed in place) to steady state.

    Args:
        indptr, indices: the network in CSR form.
        knowledge: float64 array (N, K), C-contiguous; updated in place.
        rng_state: one-element uint64 array, the replicate's random state; advanced.
        alpha: absorptive capacity, the share of a gap closed per trade.
        tolerance: relative difference below which two levels count as equal.
        max_meetings: upper bound on meetings.
        check_every: meetings between steady-state checks (Cowan-Jonard: N);
            0 disables the checks (a fixed number of meetings, as in the benchmark).

    Returns:
        (meetings, trades, converged).
    """
    n = knowledge.shape[0]
    s = rng_state[0]
    meetings = 0
    trades = 0
    converged = False
    scan_from = 0
    block = check_every if check_every > 0 else max_meetings
    while meetings < max_meetings:
        todo = min(block, max_meetings - meetings)
        for _ in range(todo):
            s, z = step(s)
            i = bounded_bits(z, n)
            start = indptr[i]
            d = indptr[i + 1] - start
            if d == 0:
                continue
            s, z = step(s)
            j = indices[start + bounded_bits(z, d)]
            if can_trade(knowledge, i, j, tolerance):
                barter(knowledge, i, j, alpha)
                trades += 1
        meetings += todo
        if check_every > 0:
            found = find_trading_pair(indptr, indices, knowledge, tolerance, scan_from)
            if found < 0:
                converged = True
                break
            scan_from = found
    rng_state[0] = s
    return meetings, trades, converged


@njit(cache=True, nogil=True)
def initial_knowledge(n: int, categories: int, rng_state: np.ndarray, high: float) -> np.ndarray:
    """Knowledge levels i.i.d. Uniform[0, high), drawn agent by agent, category by category."""
    v = np.empty((n, categories), dtype=np.float64)
    for i in range(n):
        for k in range(categories):
            v[i, k] = high * uniform(rng_state)
    return v
