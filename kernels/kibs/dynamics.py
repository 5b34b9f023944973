"""Network dynamics: ties decay without use and are made by triadic closure, proximity search,
brokerage and the information platform's long-range search (docs/ODD.md s.7.7)."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.caching import prefetch
from kibs_mc.kernels.kibs.knowledge import cognitive_distance
from kibs_mc.kernels.kibs.state import (
    INT,
    PREFETCH_AHEAD,
    PREFETCH_FROM,
    Agents,
    KibsParams,
    Ties,
)
from kibs_mc.kernels.kibs.ties import add_tie, remove_tie
from kibs_mc.kernels.rng import integer, uniform
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def proximity_accept(agents: Agents, i: int, j: int, distance_scale: float) -> float:
    """Probability that a search by i ties it to j: exp(-dist_ij / s) (1 - delta_ij)
    (geographic and organizational proximity, paper s.II.A; Boschma 2005)."""
    position = agents.position
    dx = position[i, 0] - position[j, 0]
    dy = position[i, 1] - position[j, 1]
    return np.exp(-np.sqrt(dx * dx + dy * dy) / distance_scale) * (
        1.0 - cognitive_distance(agents.knowledge, i, j)
    )


@njit(cache=True, nogil=True)
def decay_ties(
    ties: Ties, alive: np.ndarray, decay: float, floor: float, prefetch_from: int = PREFETCH_FROM
) -> int:
    """Ties that are not partnerships decay, w <- (1 - epsilon) w, and vanish below the floor
    w_min (social capital needs upkeep; Giuliani 2007). Returns the ties removed.

    Each row decays its own copy of every tie (both copies hold the same weight, so they stay
    equal without looking up the mirror); a tie is removed from its lower end, rows in slot
    order and each row from its last slot down."""
    indptr, row_len, indices, weights, partner, _ = ties
    keep = 1.0 - decay
    removed = 0
    n = row_len.shape[0]
    ahead = n >= prefetch_from
    for i in range(n):
        if ahead and i + PREFETCH_AHEAD < n:  # rows are far apart (padded): fetch ahead, both
            x = i + PREFETCH_AHEAD  # ends (a row may straddle cache lines)
            prefetch(weights, indptr[x], 0)
            prefetch(partner, indptr[x], 0)
            if row_len[x] > 1:
                prefetch(weights, indptr[x] + row_len[x] - 1, 0)
                prefetch(partner, indptr[x] + row_len[x] - 1, 0)
        if not alive[i]:
            continue
        start = indptr[i]
        for p in range(start + row_len[i] - 1, start - 1, -1):
            if partner[p]:
                continue  # partnerships never decay
            w = weights[p] * keep
            weights[p] = w
            if w < floor and indices[p] > i:
                remove_tie(ties, i, p)
                removed += 1
    return removed


@njit(cache=True, nogil=True)
def form_ties(agents: Agents, ties: Ties, rng_state: np.ndarray, prm: KibsParams) -> int:
    """New ties, made with weight w_0; returns how many. For every living agent i in slot order:

    1. triadic closure with probability p_T: a neighbour j, then a neighbour k of j, uniformly;
       tie i-k (Granovetter 1973; cluster networks close triads);
    2. proximity search with probability p_S: a uniform candidate j, accepted with
       exp(-dist_ij / s) (1 - delta_ij);
    3. an intermediary, with probability p_B, ties two of its neighbours drawn uniformly
       (brokerage of its own, unpaid; paper s.III.A: intermediaries provide information and
       consultation; what the information instrument pays them for is
       ``instruments.information_platform``).
    One uniform is drawn per agent for each of 1 and 2 (and for 3 if INT) whatever follows.
    """
    agent_type = agents.agent_type
    alive = agents.alive
    indptr = ties.indptr
    row_len = ties.row_len
    indices = ties.indices
    n = agent_type.shape[0]
    made = 0
    w0 = prm.new_tie_weight
    for i in range(n):
        if not alive[i]:
            continue
        start = indptr[i]
        if uniform(rng_state) < prm.triadic_p and row_len[i] > 0:
            j = indices[start + integer(rng_state, row_len[i])]
            if row_len[j] > 0:
                k = indices[indptr[j] + integer(rng_state, row_len[j])]
                if add_tie(ties, i, k, w0, False):
                    made += 1
        if uniform(rng_state) < prm.proximity_p:
            j = integer(rng_state, n)
            if (
                alive[j]
                and j != i
                and uniform(rng_state) < proximity_accept(agents, i, j, prm.distance_scale)
            ):
                if add_tie(ties, i, j, w0, False):
                    made += 1
        if agent_type[i] == INT:
            if uniform(rng_state) < prm.broker_p and row_len[i] > 1:
                a = indices[start + integer(rng_state, row_len[i])]
                b = indices[start + integer(rng_state, row_len[i])]
                if add_tie(ties, a, b, w0, False):
                    made += 1
    return made
