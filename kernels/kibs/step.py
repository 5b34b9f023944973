"""A replicate's steps in order (:func:`run_replicate`, docs/ODD.md s.3), and the measures
taken along the way."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.dynamics import decay_ties, form_ties
from kibs_mc.kernels.kibs.finance import finance
from kibs_mc.kernels.kibs.innovation import age_market, innovate
from kibs_mc.kernels.kibs.instruments import instruments
from kibs_mc.kernels.kibs.meetings import meetings, meetings_ahead
from kibs_mc.kernels.kibs.production import platform_transfer, produce_knowledge
from kibs_mc.kernels.kibs.projects import joint_projects
from kibs_mc.kernels.kibs.state import BUSINESS, HTE, Agents, KibsParams, Ties, Workspace
from numba import njit


@njit(cache=True, nogil=True)
def hte_mean_knowledge(agents: Agents) -> float:
    """Mean of k_id over living HTEs and fields (0 if none)."""
    agent_type = agents.agent_type
    knowledge = agents.knowledge
    alive = agents.alive
    total = 0.0
    count = 0
    for i in range(agent_type.shape[0]):
        if alive[i] and agent_type[i] == HTE:
            for f in range(knowledge.shape[1]):
                total += knowledge[i, f]
            count += 1
    return total / (count * knowledge.shape[1]) if count > 0 else 0.0


@njit(cache=True, nogil=True)
def living_capital(agents: Agents) -> float:
    """Sum of capital (net worth) over living agents."""
    total = 0.0
    for i in range(agents.agent_type.shape[0]):
        if agents.alive[i]:
            total += agents.capital[i]
    return total


@njit(cache=True, nogil=True)
def average_clustering(ties: Ties, alive: np.ndarray) -> float:
    """Mean local clustering coefficient over living agents (0 for degree < 2, as networkx's
    ``average_clustering``): C_i = triangles_i / (deg_i (deg_i - 1) / 2)."""
    indptr = ties.indptr
    row_len = ties.row_len
    indices = ties.indices
    n = row_len.shape[0]
    mark = np.full(n, -1, dtype=np.int64)
    total = 0.0
    count = 0
    for i in range(n):
        if not alive[i]:
            continue
        count += 1
        deg = row_len[i]
        if deg < 2:
            continue
        start = indptr[i]
        for p in range(start, start + deg):
            mark[indices[p]] = i
        links = 0
        for p in range(start, start + deg):
            j = indices[p]
            for q in range(indptr[j], indptr[j] + row_len[j]):
                if mark[indices[q]] == i:
                    links += 1
        total += (links / 2) / (deg * (deg - 1) / 2)
    return total / count if count > 0 else 0.0


@njit(cache=True, nogil=True)
def run_replicate(
    agents: Agents,
    ties: Ties,
    work: Workspace,
    rng_state: np.ndarray,
    prm: KibsParams,
    steps: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``steps`` steps (months) on the cluster state, in place; money and counts accumulate
    in ``work``.

    Each step: meetings; the governance instruments (strategic partners chosen within the
    KIBS's room and what its capital covers, ``instruments.form_partnership``); knowledge
    production and platform transfer; the market's launch counts fade; joint projects;
    innovation; finance and selection; network dynamics (decay, then formation). A process
    switched off in ``prm`` draws nothing from the stream; the instruments draw only from
    ``work.policy``.

    ``work.clock`` holds the month (advanced once per step), the run's last month, which
    :func:`finance` reads to date entries and to count only entrants observed for
    ``YOUNG_WINDOW`` months (one call per replicate), and the firms entered so far.

    Returns per-step arrays of length steps + 1 (index 0 = before the first step):
    HTE mean knowledge, cumulative innovations, tie count.
    """
    hte_mean = np.zeros(steps + 1)
    cumulative = np.zeros(steps + 1, dtype=np.int64)
    tie_count = np.zeros(steps + 1, dtype=np.int64)
    hte_mean[0] = hte_mean_knowledge(agents)
    tie_count[0] = ties.row_len.sum() // 2
    total_innovations = 0
    work.clock[1] = work.clock[0] + steps
    for t in range(1, steps + 1):
        work.clock[0] += 1
        work.gained[:] = 0.0
        work.own_gained[:] = 0.0
        if prm.money[BUSINESS] > 0.0:
            work.served[:] = 0.0
        if prm.random_draw or agents.agent_type.shape[0] < prm.prefetch_from:
            meetings(agents, ties, work, rng_state, prm)
        else:
            meetings_ahead(agents, ties, work, rng_state, prm)
        instruments(agents, ties, work, prm)
        if prm.production:
            produce_knowledge(agents, work, prm)
            platform_transfer(agents, work, prm)
        age_market(work, prm)
        total_innovations += joint_projects(agents, ties, work, prm)
        if prm.innovation:
            total_innovations += innovate(agents, work, rng_state, prm)
        if prm.finance:
            finance(agents, ties, work, rng_state, prm)
        if prm.network_dynamics:
            decay_ties(ties, agents.alive, prm.tie_decay, prm.tie_floor, prm.prefetch_from)
            form_ties(agents, ties, rng_state, prm)
        hte_mean[t] = hte_mean_knowledge(agents)
        cumulative[t] = total_innovations
        tie_count[t] = ties.row_len.sum() // 2
    return hte_mean, cumulative, tie_count
