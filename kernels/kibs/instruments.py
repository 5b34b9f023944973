"""The governance instruments as a table (paper s.IV; docs/ODD.md s.7.6): who each reaches at the
start (:func:`enrol`), and one function per instrument that spends its money for a step
(:func:`instruments` calls them in instrument order). The strategic instrument's grant is spent
in the joint projects (``projects.joint_projects``).

Adding an instrument: an index and a name in ``state`` (the table: ``N_INSTRUMENTS``,
``INSTRUMENT_NAMES``, ``HTE_ONLY``, ``ENROL_ORDER``, a ledger account), its money and reach in
``kibs_mc.models.kibs.governance``, one function here called from :func:`instruments`.
"""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.knowledge import _learning_rate, cognitive_distance
from kibs_mc.kernels.kibs.state import (
    BUSINESS,
    ENROL_ORDER,
    GOV_BUSINESS,
    GOV_INFORMATION,
    GOV_MANAGEMENT,
    GOV_SPENT,
    HTE,
    HTE_KIBS_SERVICES,
    HTE_ONLY,
    HTE_SPENDING,
    INFORMATION,
    INT,
    KIBS_GROSS,
    MANAGEMENT,
    P_KIBS,
    P_PARTNERS,
    STRATEGIC,
    T_KIBS,
    T_PARTNERS,
    UNI,
    Agents,
    KibsParams,
    Ties,
    Workspace,
)
from kibs_mc.kernels.kibs.ties import add_tie, best_tied, find_slot, first_partner, set_weight
from kibs_mc.kernels.rng import uniform
from numba import njit

# --------------------------------------------------------------------------- reach


@njit(cache=True, nogil=True)
def _reached(agents: Agents, rng_state: np.ndarray, share: float, hte_only: bool) -> np.ndarray:
    """Who a programme reaches at the start: one uniform per eligible agent (HTEs, or all
    agents), and the round(share x eligible) agents with the smallest draws are reached, so the
    number reached is what the money buys (and the draws do not depend on the budget)."""
    n = agents.agent_type.shape[0]
    u = np.full(n, 2.0)
    eligible = 0
    for i in range(n):
        if not hte_only or agents.agent_type[i] == HTE:
            u[i] = uniform(rng_state)
            eligible += 1
    k = int(np.floor(share * eligible + 0.5))
    reached = np.zeros(n, dtype=np.bool_)
    order = np.argsort(u, kind="mergesort")
    for r in range(k):
        reached[order[r]] = True
    return reached


@njit(cache=True, nogil=True)
def enrol(agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> None:
    """Who the instruments reach at the start (:func:`_reached`), instrument by instrument in
    ``ENROL_ORDER``; then each HTE of the strategic programme forms its partnership, in slot
    order."""
    enrolled = agents.enrolled
    for k in ENROL_ORDER:
        reached = _reached(agents, rng_state, prm.reach[k], HTE_ONLY[k])
        for i in range(agents.agent_type.shape[0]):
            enrolled[i, k] = reached[i]
    for i in range(agents.agent_type.shape[0]):
        if enrolled[i, STRATEGIC]:
            form_partnership(i, agents, ties, work, prm)


@njit(cache=True, nogil=True)
def count_recipients(agents: Agents, ties: Ties, work: Workspace) -> None:
    """Agents reached by each instrument this step (living, flagged; strategic: contracted
    HTEs with a partner; information: the living intermediaries that run the platform get the
    money, the connected agents the service, so its count is of intermediaries)."""
    r = work.recipients
    r[:] = 0
    enrolled = agents.enrolled
    for i in range(agents.agent_type.shape[0]):
        if not agents.alive[i]:
            continue
        t = agents.agent_type[i]
        if t == HTE:
            if enrolled[i, STRATEGIC] and first_partner(ties, i) >= 0:
                r[STRATEGIC] += 1
            if enrolled[i, MANAGEMENT]:
                r[MANAGEMENT] += 1
            if enrolled[i, BUSINESS]:
                r[BUSINESS] += 1
        elif t == INT:
            r[INFORMATION] += 1


@njit(cache=True, nogil=True, inline="always")
def _synergy(agents: Agents, i: int, prm: KibsParams) -> float:
    """1 + theta for an HTE on the information platform: the other three interfaces "must be
    implemented through the information platform" (paper s.IV.D)."""
    return 1.0 + prm.information_synergy if agents.enrolled[i, INFORMATION] else 1.0


# --------------------------------------------------------------------------- whom the money buys


@njit(cache=True, nogil=True)
def form_partnership(i: int, agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> int:
    """Strategic partnership of HTE i with a KIBS chosen by what i lacks (paper s.IV.A-B).

    i's technical deficit d_T = 1 - kbar_i / kbar_T (kbar_T: mean knowledge of living T-KIBS)
    and managerial deficit d_M = 1 - m_i / m_P (m_P: mean capability of living P-KIBS). If
    d_M > d_T, i partners the P-KIBS with the highest capability m_j; else the T-KIBS with the
    highest complementarity, the knowledge i would gain in one meeting,
    sum_d a_i phi_i(delta_ij) max(0, k_jd - k_id). Only a KIBS with a free slot (or already
    tied) counts; the tie becomes a partnership of weight 1 that does not decay.
    Returns the partner, or -1 if none.
    """
    knowledge = agents.knowledge
    alive = agents.alive
    indptr = ties.indptr
    row_len = ties.row_len
    d = knowledge.shape[1]
    k_t = 0.0
    n_t = 0
    m_p = 0.0
    n_p = 0
    by_type = work.by_type
    start = work.type_start
    for s in range(start[T_KIBS], start[T_KIBS + 1]):
        j = by_type[s]
        if alive[j]:
            for f in range(d):
                k_t += knowledge[j, f]
            n_t += 1
    for s in range(start[P_KIBS], start[P_KIBS + 1]):
        j = by_type[s]
        if alive[j]:
            m_p += agents.manage[j]
            n_p += 1
    kbar_i = 0.0
    for f in range(d):
        kbar_i += knowledge[i, f]
    kbar_i /= d
    tech_deficit = 1.0 - kbar_i / (k_t / (n_t * d)) if n_t > 0 and k_t > 0.0 else -1.0
    manage_deficit = 1.0 - agents.manage[i] / (m_p / n_p) if n_p > 0 and m_p > 0.0 else -1.0
    want = P_KIBS if manage_deficit > tech_deficit else T_KIBS
    best = -1
    best_value = 0.0
    for s in range(start[want], start[want + 1]):
        j = by_type[s]
        if not alive[j]:
            continue
        tied = find_slot(ties, i, j) >= 0
        if not tied and row_len[j] >= indptr[j + 1] - indptr[j]:
            continue
        if want == P_KIBS:
            value = agents.manage[j] - agents.manage[i]
        else:
            rate = _learning_rate(agents, i, cognitive_distance(knowledge, i, j), prm)
            value = 0.0
            for f in range(d):
                if knowledge[j, f] > knowledge[i, f]:
                    value += rate * (knowledge[j, f] - knowledge[i, f])
        if value > best_value:
            best_value = value
            best = j
    if best < 0:
        return -1
    p = find_slot(ties, i, best)
    if p >= 0:
        set_weight(ties, i, p, 1.0)
        ties.partner[p] = True
        ties.partner[ties.mirror[p]] = True
    elif not add_tie(ties, i, best, 1.0, True):
        return -1
    work.tally[T_PARTNERS if want == T_KIBS else P_PARTNERS] += 1
    return best


@njit(cache=True, nogil=True)
def rank_kibs(agents: Agents, work: Workspace, t: int, by_management: bool) -> int:
    """Fill ``work.ranking`` with the living agents of type t, best first by managerial
    capability (by_management) or by total knowledge, ties by slot; returns how many.

    Used by :func:`contract_with` within one instruments step, where these values do not change
    (only HTEs learn and gain capability there), so the best KIBS with a free slot is the first
    of the ranking with one."""
    knowledge = agents.knowledge
    by_type = work.by_type
    lo = work.type_start[t]
    hi = work.type_start[t + 1]
    slots = np.empty(hi - lo, dtype=np.int64)
    values = np.empty(hi - lo)
    m = 0
    for s in range(lo, hi):
        k = by_type[s]
        if not agents.alive[k]:
            continue
        if by_management:
            value = agents.manage[k]
        else:
            value = 0.0
            for f in range(knowledge.shape[1]):
                value += knowledge[k, f]
        slots[m] = k
        values[m] = -value
        m += 1
    order = np.argsort(values[:m], kind="mergesort")  # stable: equal values keep slot order
    for r in range(m):
        work.ranking[r] = slots[order[r]]
    return m


@njit(cache=True, nogil=True)
def contract_with(
    agents: Agents,
    ties: Ties,
    work: Workspace,
    i: int,
    t: int,
    by_management: bool,
    w0: float,
    cursor: np.ndarray,
) -> int:
    """The KIBS of type t that serves i: its best tied one (``ties.best_tied``), else a new tie
    (weight w_0) to the best living one with a free slot; -1 if none.

    The best with a free slot is the first in ``work.ranking[:cursor[1]]`` (:func:`rank_kibs`)
    at or after ``cursor[0]`` whose row is not full; slots only fill during the instruments
    step, so the cursor only moves forward (O(1) amortised instead of a scan of every agent)."""
    j = best_tied(agents, ties, i, t, by_management)
    if j >= 0:
        return j
    ranking = work.ranking
    ranked = cursor[1]
    while cursor[0] < ranked:
        k = ranking[cursor[0]]
        if ties.row_len[k] < ties.indptr[k + 1] - ties.indptr[k]:
            break
        cursor[0] += 1
    if cursor[0] < ranked and add_tie(ties, i, ranking[cursor[0]], w0, False):
        return ranking[cursor[0]]
    return -1


# --------------------------------------------------------------------------- one function per instrument


@njit(cache=True, nogil=True)
def seek_partners(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """Strategic (s.IV.A): a contracted HTE without a partner (its partner exited) looks for a
    new one (:func:`form_partnership`); the matching grant is spent in the joint projects."""
    for i in range(agents.agent_type.shape[0]):
        if (
            agents.alive[i]
            and agents.enrolled[i, STRATEGIC]
            and agents.agent_type[i] == HTE
            and first_partner(ties, i) < 0
        ):
            form_partnership(i, agents, ties, work, prm)


@njit(cache=True, nogil=True)
def consulting(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """Management (s.IV.B): a consulted HTE buys consulting from its best P-KIBS (by
    capability) for m = M_M / n_M: the P-KIBS earns m, and
    m_i += (1 - exp(-e_M m (1 + theta c_i))) (m_j - m_i)."""
    ledger = work.ledger
    capital = agents.capital
    money = prm.money[MANAGEMENT] / work.recipients[MANAGEMENT]
    cursor = np.array([0, rank_kibs(agents, work, P_KIBS, True)])
    for i in range(agents.agent_type.shape[0]):
        if not (agents.alive[i] and agents.enrolled[i, MANAGEMENT] and agents.agent_type[i] == HTE):
            continue
        j = contract_with(agents, ties, work, i, P_KIBS, True, prm.new_tie_weight, cursor)
        if j < 0:
            continue
        capital[j] += money
        ledger[GOV_SPENT] += money
        ledger[GOV_MANAGEMENT] += money
        ledger[KIBS_GROSS] += money
        ledger[HTE_KIBS_SERVICES] += money
        ledger[HTE_SPENDING] += money
        if agents.manage[j] > agents.manage[i]:
            step = 1.0 - np.exp(-prm.consulting_effect * money * _synergy(agents, i, prm))
            agents.manage[i] += step * (agents.manage[j] - agents.manage[i])


@njit(cache=True, nogil=True)
def vouchers(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """Business (s.IV.C): a member HTE's voucher v = M_B / n_B buys engineering and software
    services from its best T-KIBS (share 1 - f of v; the T-KIBS earns it and transfers
    knowledge one-sidedly at rate a_i phi_i (1 - exp(-e_S v (1 - f) (1 + theta c_i)))) and
    access to the universities' common technology platform (share f, paid to the living UNI
    equally; members learn from the pooled UNI knowledge, ``production.platform_transfer``)."""
    ledger = work.ledger
    capital = agents.capital
    knowledge = agents.knowledge
    voucher = prm.money[BUSINESS] / work.recipients[BUSINESS]
    service = voucher * (1.0 - prm.platform_fee_share)
    platform = voucher * prm.platform_fee_share
    unis = 0
    for s in range(work.type_start[UNI], work.type_start[UNI + 1]):
        if agents.alive[work.by_type[s]]:
            unis += 1
    cursor = np.array([0, rank_kibs(agents, work, T_KIBS, False)])
    paid = 0
    for i in range(agents.agent_type.shape[0]):
        if not (agents.alive[i] and agents.enrolled[i, BUSINESS] and agents.agent_type[i] == HTE):
            continue
        j = contract_with(agents, ties, work, i, T_KIBS, False, prm.new_tie_weight, cursor)
        if j >= 0 and service > 0.0:
            capital[j] += service
            ledger[GOV_SPENT] += service
            ledger[GOV_BUSINESS] += service
            ledger[KIBS_GROSS] += service
            ledger[HTE_KIBS_SERVICES] += service
            ledger[HTE_SPENDING] += service
            depth = 1.0 - np.exp(-prm.service_effect * service * _synergy(agents, i, prm))
            rate = _learning_rate(agents, i, cognitive_distance(knowledge, i, j), prm) * depth
            for f in range(knowledge.shape[1]):
                if knowledge[j, f] > knowledge[i, f]:
                    g = rate * (knowledge[j, f] - knowledge[i, f])
                    knowledge[i, f] += g
                    work.gained[i] += g
        if unis > 0 and platform > 0.0:
            paid += 1
            ledger[GOV_SPENT] += platform
            ledger[GOV_BUSINESS] += platform
            ledger[HTE_SPENDING] += platform
    if paid > 0:  # the platform fees of all members, paid to the living UNI at once
        each = paid * (platform / unis)
        for s in range(work.type_start[UNI], work.type_start[UNI + 1]):
            if agents.alive[work.by_type[s]]:
                capital[work.by_type[s]] += each


@njit(cache=True, nogil=True)
def information_platform(agents: Agents, work: Workspace, prm: KibsParams) -> None:
    """Information (s.IV.D): M_I pays the living intermediaries that run the platform."""
    capital = agents.capital
    each = prm.money[INFORMATION] / work.recipients[INFORMATION]
    for s in range(work.type_start[INT], work.type_start[INT + 1]):
        if agents.alive[work.by_type[s]]:
            capital[work.by_type[s]] += each
    work.ledger[GOV_SPENT] += prm.money[INFORMATION]
    work.ledger[GOV_INFORMATION] += prm.money[INFORMATION]


@njit(cache=True, nogil=True)
def instruments(agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> None:
    """The four governance instruments spend their money for this step (paper s.IV), one
    function each, in instrument order. Each instrument's money per step M_X is split equally
    among its recipients (``count_recipients``) and lands on balance sheets in the cluster;
    no recipient, no money spent. The strategic instrument first re-partners contracted HTEs
    (:func:`seek_partners`); its grant is spent in ``projects.joint_projects``, which draws
    one uniform per partnered HTE. The instruments draw nothing here."""
    if prm.money[STRATEGIC] > 0.0:
        seek_partners(agents, ties, work, prm)
    count_recipients(agents, ties, work)
    r = work.recipients
    if prm.money[MANAGEMENT] > 0.0 and r[MANAGEMENT] > 0:
        consulting(agents, ties, work, prm)
    if prm.money[BUSINESS] > 0.0 and r[BUSINESS] > 0:
        vouchers(agents, ties, work, prm)
    if prm.money[INFORMATION] > 0.0 and r[INFORMATION] > 0:
        information_platform(agents, work, prm)
