"""Knowledge production (universities, T-KIBS, HTE R&D) and the universities' common
technology platform (docs/ODD.md s.7.2)."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.knowledge import _learning_rate, profile_distance
from kibs_mc.kernels.kibs.state import (
    BUSINESS,
    COSTS_OUT,
    HTE,
    HTE_SPENDING,
    KIBS_COSTS,
    RD_COSTS,
    T_KIBS,
    UNI,
    Agents,
    KibsParams,
    Workspace,
)
from numba import njit


@njit(cache=True, nogil=True)
def produce_knowledge(agents: Agents, work: Workspace, prm: KibsParams) -> None:
    """Knowledge production, once per step:

    - UNI: k_{i,c_i} += r_U (universities are the source of new knowledge; paper s.III.A,
      Ahrweiler, Pyka & Gilbert 2011);
    - T-KIBS with capital > 0: k_{i,c_i} += r_T at cost C_T (KIBS produce knowledge, paper
      s.II.B; learning is the KIBS' own spending);
    - HTE with capital > 0: in-house R&D, k_{i,c_i} += r_H at cost C_RD (1 - x D_i), D_i the
      depth of the engineering and software service the HTE received this step (business
      voucher, ``instruments.vouchers``; 0 without one): the service's tools cut the cost of
      product development, paper s.IV.C; the gain counts towards the independent-innovation
      potential.
    """
    agent_type = agents.agent_type
    knowledge = agents.knowledge
    core = agents.core
    capital = agents.capital
    ledger = work.ledger
    for i in range(agent_type.shape[0]):
        if not agents.alive[i]:
            continue
        t = agent_type[i]
        if t == UNI:
            knowledge[i, core[i]] += prm.uni_rate
        elif t == T_KIBS and capital[i] > 0.0 and prm.t_kibs_rate > 0.0:
            knowledge[i, core[i]] += prm.t_kibs_rate
            capital[i] -= prm.t_kibs_cost
            ledger[COSTS_OUT] += prm.t_kibs_cost
            ledger[RD_COSTS] += prm.t_kibs_cost
            ledger[KIBS_COSTS] += prm.t_kibs_cost
        elif t == HTE and capital[i] > 0.0 and prm.rd_gain > 0.0:
            knowledge[i, core[i]] += prm.rd_gain
            work.own_gained[i] += prm.rd_gain
            cost = prm.rd_cost * (1.0 - prm.rd_cost_cut * work.served[i])
            capital[i] -= cost
            ledger[COSTS_OUT] += cost
            ledger[RD_COSTS] += cost
            ledger[HTE_SPENDING] += cost


@njit(cache=True, nogil=True)
def platform_transfer(agents: Agents, work: Workspace, prm: KibsParams) -> None:
    """Technology transfer from the universities' common technology platform (business
    interface, paper s.IV.C: "government funding, universities and research institutions
    bearing").

    The members' platform fees (share f of the voucher v, ``instruments.vouchers``) pay the
    universities to run the platform this step; what it gives a member grows with the fee, with
    diminishing returns: intensity pi_B = pi (1 - exp(-e_P f v)). The platform pools the
    knowledge of the living universities, P_d = mean of k_Ud over UNI; each member HTE learns
    from it as in a meeting, one-sided: k_id += pi_B a_i tau phi(delta_iP) max(0, P_d - k_id).
    No fee (no money, or no university), no platform.
    """
    agent_type = agents.agent_type
    knowledge = agents.knowledge
    alive = agents.alive
    enrolled = agents.enrolled
    gained = work.gained
    pool = work.pool
    d = knowledge.shape[1]
    n = agent_type.shape[0]
    fee = prm.platform_fee_share * work.per_unit[BUSINESS]
    intensity = prm.platform_transfer * (1.0 - np.exp(-prm.platform_effect * fee))
    if intensity <= 0.0:
        return
    count = 0
    pool[:] = 0.0
    for i in range(n):
        if alive[i] and agent_type[i] == UNI:
            count += 1
            for f in range(d):
                pool[f] += knowledge[i, f]
    if count == 0:
        return
    for f in range(d):
        pool[f] /= count
    for i in range(n):
        if not (alive[i] and enrolled[i, BUSINESS] and agent_type[i] == HTE):
            continue
        delta = profile_distance(knowledge[i], pool)
        rate = intensity * prm.transfer_efficiency * _learning_rate(agents, i, delta, prm)
        moved = 0.0
        for f in range(d):
            if pool[f] > knowledge[i, f]:
                g = rate * (pool[f] - knowledge[i, f])
                knowledge[i, f] += g
                moved += g
        gained[i] += moved
        work.delivered[BUSINESS] += moved
