"""Joint projects of strategic partners: the collaboration surplus (docs/ODD.md s.7.3), where
the strategic instrument's matching grant is spent."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.instruments import _synergy
from kibs_mc.kernels.kibs.knowledge import _absorption, cognitive_distance, learning, sharing
from kibs_mc.kernels.kibs.state import (
    COSTS_OUT,
    GOV_SPENT,
    GOV_STRATEGIC,
    HTE,
    HTE_SPENDING,
    INDEPENDENT,
    KIBS_COSTS,
    KIBS_GROSS,
    MARKET_IN,
    PROJECT_SUCCESS,
    PROJECTS,
    STRATEGIC,
    SURPLUS,
    Agents,
    KibsParams,
    Ties,
    Workspace,
)
from kibs_mc.kernels.kibs.ties import first_partner
from kibs_mc.kernels.rng import uniform
from numba import njit


@njit(cache=True, nogil=True)
def joint_projects(
    agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams
) -> int:
    """Joint innovation projects of strategic partners: the collaboration surplus (paper
    s.III.B-C, IV.A); returns the number of successes.

    Each living HTE i with a partner j runs one project step: outlay C (costs out), of which
    the matching grant g = M_S / n_S pays what it can; the rest, C - g (negative: a surplus of
    grant), is borne by i and j by the risk share s_r (j: s_r). The project succeeds with
    probability 1 - exp(-lambda_P phi_i(delta_ij) s_ij (1 - omega + omega max(m_i, m_j))
    (1 + theta c_i)): complementary knowledge at a learnable distance, what the partners share
    (opportunism curbed by goal alignment), and the better manager of the two. A success is an
    independent innovation of i: the surplus V comes from the market and is split by the
    benefit share beta (j: beta V); both add kappa to their core field. One uniform per project.
    """
    if prm.money[STRATEGIC] <= 0.0 or work.recipients[STRATEGIC] == 0:
        return 0
    grant = prm.money[STRATEGIC] / work.recipients[STRATEGIC]
    ledger = work.ledger
    capital = agents.capital
    knowledge = agents.knowledge
    successes = 0
    for i in range(agents.agent_type.shape[0]):
        if not (agents.alive[i] and agents.enrolled[i, STRATEGIC] and agents.agent_type[i] == HTE):
            continue
        j = first_partner(ties, i)
        if j < 0:
            continue
        work.tally[PROJECTS] += 1
        ledger[GOV_SPENT] += grant
        ledger[GOV_STRATEGIC] += grant
        ledger[COSTS_OUT] += prm.project_cost
        rest = prm.project_cost - grant
        capital[i] -= (1.0 - prm.risk_share) * rest
        capital[j] -= prm.risk_share * rest
        ledger[KIBS_COSTS] += prm.risk_share * rest
        ledger[HTE_SPENDING] += (1.0 - prm.risk_share) * prm.project_cost
        delta = cognitive_distance(knowledge, i, j)
        a = _absorption(agents, i, prm)
        phi = learning(delta, prm.optimum_base + prm.optimum_slope * a) if prm.distance_learning else 1.0
        m = max(agents.manage[i], agents.manage[j])
        w = prm.conversion_management_weight
        hazard = (
            prm.project_rate * phi * sharing(prm, 1.0, True) * (1.0 - w + w * m) * _synergy(agents, i, prm)
        )
        if uniform(rng_state) < 1.0 - np.exp(-hazard):
            successes += 1
            work.tally[PROJECT_SUCCESS] += 1
            work.tally[INDEPENDENT] += 1
            agents.innovations[i] += 1
            value = prm.project_value
            ledger[MARKET_IN] += value
            ledger[SURPLUS] += value
            capital[j] += prm.benefit_share * value
            ledger[KIBS_GROSS] += prm.benefit_share * value
            capital[i] += (1.0 - prm.benefit_share) * value
            knowledge[i, agents.core[i]] += prm.innovation_knowledge
            knowledge[j, agents.core[i]] += prm.innovation_knowledge
    return successes
