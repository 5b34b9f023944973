"""Joint projects of strategic partners: the collaboration surplus (docs/ODD.md s.7.3), where
the strategic instrument's matching grant is spent."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.innovation import demand_factor, launch
from kibs_mc.kernels.kibs.instruments import _book, _partner
from kibs_mc.kernels.kibs.knowledge import _absorption, cognitive_distance, learning
from kibs_mc.kernels.kibs.state import (
    COSTS_OUT,
    GOV_UNSPENT,
    HTE,
    HTE_SPENDING,
    JOINT,
    JOINT_VALUE,
    KIBS_COSTS,
    KIBS_GROSS,
    MARKET_IN,
    PROJECT_COSTS,
    PROJECTS,
    STRATEGIC,
    Agents,
    KibsParams,
    Ties,
    Workspace,
)
from kibs_mc.kernels.kibs.ties import add_tie, find_slot, set_weight
from kibs_mc.kernels.rng import uniform
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _joint_work(ties: Ties, i: int, j: int, prm: KibsParams) -> None:
    """Joint work ties the partners, or strengthens their tie as a meeting that moved knowledge
    does (w += rho (1 - w), network dynamics on); a partnership's tie does not decay."""
    p = find_slot(ties, i, j)
    if p < 0:
        add_tie(ties, i, j, prm.new_tie_weight, True)
        return
    ties.partner[p] = True
    ties.partner[ties.mirror[p]] = True
    if prm.network_dynamics:
        w = ties.weights[p]
        set_weight(ties, i, p, w + prm.tie_reinforcement * (1.0 - w))


@njit(cache=True, nogil=True)
def joint_projects(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> int:
    """Joint innovation projects of strategic partners (paper s.III.B-C, IV.A); returns the
    joint innovations launched this step.

    Each living HTE i of the programme (``instruments.list_members``) with a partner j
    (``instruments.partner_of``) runs one project month. Resources: the matching grant
    g = M_S / n_S plus the partners' outlays, (1 - s_r) C_o from i and s_r C_o from j, each paid
    only from positive capital (projects are not financed by debt), all spent on the project
    (costs out). Opportunism wastes a share o (1 - g_ij) of them, g_ij the partnership's goal
    alignment. The project builds knowledge

        J_i += y_P phi_i(delta_ij) (1 - omega + omega max(m_i, m_j)) R^gamma,

    R the resources not wasted: complementary knowledge at a learnable distance, the better
    manager of the two, and diminishing returns to resources (gamma < 1). Work that built
    knowledge ties the partners (:func:`_joint_work`). The project launches a joint innovation
    with probability 1 - exp(-lambda_P J_i D_c), D_c the market's demand in i's core field c
    (``innovation.demand_factor``; one policy uniform per project month): both partners add J_i
    to field c, its value v_J J_i comes from the market and is split by the benefit share beta
    (j: beta), J_i is reset and alignment rises, g += a_g (1 - g). A month without a launch
    wears it, g -= a_w g.
    """
    if prm.money[STRATEGIC] <= 0.0:
        return 0
    if work.recipients[STRATEGIC] == 0:
        work.ledger[GOV_UNSPENT + STRATEGIC] += prm.money[STRATEGIC]
        return 0
    grant = prm.money[STRATEGIC] / work.recipients[STRATEGIC]
    work.per_unit[STRATEGIC] = grant
    ledger = work.ledger
    capital = agents.capital
    knowledge = agents.knowledge
    launched = 0
    w_m = prm.conversion_management_weight
    partner, partner_firm, alive, firm = agents.partner, agents.partner_firm, agents.alive, agents.firm
    for m in range(work.member_count[STRATEGIC]):  # the programme's members (instruments step)
        i = work.members[STRATEGIC, m]
        j = _partner(partner, partner_firm, alive, firm, i)
        if j < 0:
            continue
        work.tally[PROJECTS] += 1
        _book(work, STRATEGIC, HTE, grant, prm.unit_cost[STRATEGIC])
        own_i = (1.0 - prm.risk_share) * prm.project_outlay if capital[i] > 0.0 else 0.0
        own_j = prm.risk_share * prm.project_outlay if capital[j] > 0.0 else 0.0
        capital[i] -= own_i
        capital[j] -= own_j
        resources = grant + own_i + own_j
        ledger[PROJECT_COSTS] += resources
        ledger[COSTS_OUT] += resources
        ledger[HTE_SPENDING] += grant + own_i
        ledger[KIBS_COSTS] += own_j
        g = agents.alignment[i]
        used = resources * (1.0 - prm.opportunism * (1.0 - g))
        if prm.distance_learning:
            a = _absorption(agents, i, prm)
            phi = learning(cognitive_distance(knowledge, i, j), prm.optimum_base + prm.optimum_slope * a)
        else:
            phi = 1.0
        built = prm.project_yield * phi * (1.0 - w_m + w_m * max(agents.manage[i], agents.manage[j]))
        built *= used**prm.project_elasticity
        if built > 0.0:
            agents.project[i] += built
            _joint_work(ties, i, j, prm)
        c = agents.core[i]
        size = agents.project[i]
        hazard = prm.project_rate * size * demand_factor(work, prm, c)
        if uniform(work.policy) < 1.0 - np.exp(-hazard):
            launched += 1
            work.tally[JOINT] += 1
            agents.innovations[i] += 1
            launch(work, c)
            knowledge[i, c] += size
            knowledge[j, c] += size
            work.delivered[STRATEGIC] += 2.0 * size
            value = prm.joint_value * size
            ledger[MARKET_IN] += value
            ledger[JOINT_VALUE] += value
            capital[j] += prm.benefit_share * value
            ledger[KIBS_GROSS] += prm.benefit_share * value
            capital[i] += (1.0 - prm.benefit_share) * value
            agents.project[i] = 0.0
            agents.alignment[i] = g + prm.alignment_gain * (1.0 - g)
        else:
            agents.alignment[i] = g - prm.alignment_wear * g
    return launched
