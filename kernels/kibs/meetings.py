"""The meetings of a step, the hot kernel: every living agent meets one partner and knowledge
moves across the tie (docs/ODD.md s.7.1)."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.cowan_jonard import can_trade
from kibs_mc.kernels.kibs.caching import _prefetch_agent, _prefetch_ties, prefetch, prefetch_write
from kibs_mc.kernels.kibs.knowledge import _capacity, choose_partner, learning, sharing, transfer
from kibs_mc.kernels.kibs.state import (
    ABOVE_OPTIMUM,
    BELOW_OPTIMUM,
    FEES,
    HTE,
    HTE_KIBS_SERVICES,
    HTE_SPENDING,
    KIBS_GROSS,
    P_KIBS,
    PREDICT_AHEAD,
    PREFETCH_AHEAD,
    Agents,
    KibsParams,
    Ties,
    Workspace,
    is_kibs,
)
from kibs_mc.kernels.kibs.ties import set_weight
from kibs_mc.kernels.rng import integer, peek_uniform, shuffle, uniform
from numba import njit


# Inlined into the meeting loops (the innermost loop of a step): one meeting's steps in one body.
@njit(cache=True, nogil=True, inline="always")
def meet(i: int, p: int, agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> bool:  # noqa: PLR0915
    """One meeting of i with the partner in slot p of its row; True if knowledge moved.

    1. Barter (docking only): no transfer without a double coincidence of wants.
    2. Transfer with rate_i = a_i tau phi_i(delta_ij) s_ij: tau the transfer efficiency, s_ij
       the sharing factor (trust grows with tie strength).
    3. A tie that carried knowledge strengthens: w += rho (1 - w) (network dynamics on).
    4. An HTE meeting a P-KIBS moves its managerial capability toward the consultant's:
       m_i += c (m_j - m_i) if m_j > m_i.
    5. An HTE served by a KIBS (knowledge or consulting received) pays it the service fee.
    """
    knowledge = agents.knowledge
    agent_type = agents.agent_type
    manage = agents.manage
    capital = agents.capital
    j = ties.indices[p]
    if prm.barter and not can_trade(knowledge, i, j, prm.tolerance):
        return False
    # one pass over both rows for the distance and both absorptive capacities (each sum is
    # accumulated in field order, as cognitive_distance and absorptive_capacity do)
    d = knowledge.shape[1]
    total_i = 0.0
    total_j = 0.0
    num = 0.0
    den = 0.0
    for f in range(d):
        x = knowledge[i, f]
        y = knowledge[j, f]
        total_i += x
        total_j += y
        num += abs(x - y)
        den += x + y
    delta = num / den if den > 0.0 else 0.0
    share = prm.transfer_efficiency * sharing(prm, ties.weights[p])
    if prm.adaptive_absorption:
        w_m = prm.absorption_management_weight
        a_i = _capacity(total_i / d, manage[i], prm.absorptive_base[agent_type[i]], prm.knowledge_half, w_m)
        a_j = _capacity(total_j / d, manage[j], prm.absorptive_base[agent_type[j]], prm.knowledge_half, w_m)
    else:
        a_i = prm.fixed_absorption
        a_j = prm.fixed_absorption
    if prm.distance_learning:
        b_i = prm.optimum_base + prm.optimum_slope * a_i
        rate_i = a_i * learning(delta, b_i) * share
        rate_j = a_j * learning(delta, prm.optimum_base + prm.optimum_slope * a_j) * share
        if 2.0 * delta < b_i:
            work.tally[BELOW_OPTIMUM] += 1
        else:
            work.tally[ABOVE_OPTIMUM] += 1
    else:
        rate_i = a_i * share
        rate_j = a_j * share
    gain_i, gain_j = transfer(knowledge, i, j, rate_i, rate_j)
    work.gained[i] += gain_i
    work.gained[j] += gain_j
    moved = gain_i + gain_j > 0.0
    if moved and prm.network_dynamics and prm.tie_reinforcement > 0.0:
        w = ties.weights[p]
        set_weight(ties, i, p, w + prm.tie_reinforcement * (1.0 - w))
    ti = agent_type[i]
    tj = agent_type[j]
    for side in range(2):
        h = i if side == 0 else j
        k = j if side == 0 else i
        th = ti if side == 0 else tj
        tk = tj if side == 0 else ti
        if th != HTE or not is_kibs(tk):
            continue
        served = (gain_i if side == 0 else gain_j) > 0.0
        if tk == P_KIBS and manage[k] > manage[h]:
            manage[h] += prm.consulting_rate * (manage[k] - manage[h])
            served = True
        if served and prm.service_fee > 0.0:
            capital[h] -= prm.service_fee
            capital[k] += prm.service_fee
            work.ledger[KIBS_GROSS] += prm.service_fee
            work.ledger[FEES] += prm.service_fee
            work.ledger[HTE_KIBS_SERVICES] += prm.service_fee
            work.ledger[HTE_SPENDING] += prm.service_fee
    return moved


@njit(cache=True, nogil=True)
def meetings_ahead(
    agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams
) -> tuple[int, int]:
    """:func:`meetings` (random sequential) of a large cluster, fetching ahead of the
    meeting in progress: the state of the agent 2 PREFETCH_AHEAD positions on, the ties of the
    one PREFETCH_AHEAD on, and the partner the one PREDICT_AHEAD on will draw (its uniform is
    known in advance: :func:`peek_uniform`). The same meetings, draws and values as without.
    At 50 000 agents a meeting's data lies anywhere in memory; the far side is what it waits
    for without this."""
    n = agents.agent_type.shape[0]
    alive = agents.alive
    row_len = ties.row_len
    order = work.order
    knowledge = agents.knowledge
    last_field = knowledge.shape[1] - 1
    shuffle(order, rng_state)
    held = 0
    moved = 0
    # draws[c & 7]: 1 if the agent at position c of the order draws a partner (it is alive and
    # has ties; neither changes during the meetings), kept for the PREDICT_AHEAD positions ahead
    draws = np.zeros(8, dtype=np.int64)
    for c in range(min(PREDICT_AHEAD, n)):
        draws[c] = 1 if alive[order[c]] and row_len[order[c]] > 0 else 0
    for k in range(n):
        if k + 2 * PREFETCH_AHEAD < n:
            _prefetch_agent(agents, ties, work, order[k + 2 * PREFETCH_AHEAD])
        if k + PREFETCH_AHEAD < n:
            _prefetch_ties(ties, order[k + PREFETCH_AHEAD])
        c = k + PREDICT_AHEAD
        if c < n:
            x = order[c]
            draws[c & 7] = 1 if alive[x] and row_len[x] > 0 else 0
            if draws[c & 7]:
                m = 1  # x's is the m-th uniform from now: after the draws of positions k..c-1
                for q in range(k, c):
                    m += draws[q & 7]
                # fetch the far side of x's meeting: the partner x draws with that uniform under
                # the present weights, its knowledge and state, and the mirror slot whose weight
                # the meeting reinforces (for writing). A weight that changes before x's turn
                # may change its draw; the meeting then fetches its own partner's data. (Written
                # out here: an inlined helper taking the state tuples was slower,
                # docs/bench/journal.md.)
                p = choose_partner(ties, x, peek_uniform(rng_state, m))
                j = ties.indices[p]
                prefetch_write(ties.weights, ties.mirror[p], 0)
                prefetch_write(knowledge, j, 0)
                prefetch_write(knowledge, j, last_field)
                prefetch_write(work.gained, j, 0)
                prefetch_write(agents.manage, j, 0)
                prefetch_write(agents.capital, j, 0)
                prefetch(agents.agent_type, j, 0)
        i = order[k]
        if not alive[i] or row_len[i] == 0:
            continue
        held += 1
        if meet(i, choose_partner(ties, i, uniform(rng_state)), agents, ties, work, prm):
            moved += 1
    return held, moved


@njit(cache=True, nogil=True)
def meetings(
    agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams
) -> tuple[int, int]:
    """One step of meetings (the hot kernel); returns (meetings, transfers).

    ``random_sequential``: every living agent, in a fresh random order (Fisher-Yates shuffle of
    ``order``), meets one partner drawn with probability proportional to tie weight.
    ``random_draw`` (Cowan & Jonard 2004): n meetings, each of an agent drawn uniformly among
    the n slots (a dead one skips its turn) with a partner drawn as above.

    :func:`run_replicate` runs a random-sequential step of a cluster of ``prm.prefetch_from``
    agents or more in :func:`meetings_ahead` instead: the same draws and values. (Calling it
    from here slowed the default cluster's meetings: docs/bench/journal.md.)
    """
    n = agents.agent_type.shape[0]
    alive = agents.alive
    row_len = ties.row_len
    order = work.order
    held = 0
    moved = 0
    if not prm.random_draw:
        shuffle(order, rng_state)
    for k in range(n):
        i = integer(rng_state, n) if prm.random_draw else order[k]
        if not alive[i] or row_len[i] == 0:
            continue
        held += 1
        if meet(i, choose_partner(ties, i, uniform(rng_state)), agents, ties, work, prm):
            moved += 1
    return held, moved
