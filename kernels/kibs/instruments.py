"""The governance instruments as a table (paper s.IV; docs/ODD.md s.7.6): who each reaches at the
start (:func:`enrol`), and one function per instrument that spends its money for a step
(:func:`instruments` calls them in instrument order). The strategic instrument's grant is spent
in the joint projects (``projects.joint_projects``).

Every instrument acts only through what agents do with its money: a consulting or service
contract delivered by a KIBS, a grant spent on a joint project, fees that pay the universities
and the intermediaries to run their platforms. Money an instrument cannot place is not spent
(``GOV_UNSPENT``); money beyond the unit cost of what it reaches deepens the treatment with
diminishing returns (``GOV_DEPTH``). Draws that depend on the policy (searches, brokered
matches, project launches) come from the replicate's second stream ``Workspace.policy``, so an
instrument whose money or mechanism is off leaves the cluster's own stream untouched.

Adding an instrument: an index and a name in ``state`` (the table: ``N_INSTRUMENTS``,
``INSTRUMENT_NAMES``, ``HTE_ONLY``, ``ENROL_ORDER``), its money and reach in
``kibs_mc.models.kibs.governance``, one function here called from :func:`instruments`
(docs/architecture.md, "Adding a governance interface").
"""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.knowledge import (
    _learning_rate,
    cognitive_distance,
    learning_value,
    profile_distance,
)
from kibs_mc.kernels.kibs.state import (
    BUSINESS,
    COSTS_OUT,
    ENROL_ORDER,
    GOV_DEPTH,
    GOV_SPENT,
    GOV_STRATEGIC,
    GOV_TO,
    GOV_UNSPENT,
    HTE,
    HTE_KIBS_SERVICES,
    HTE_ONLY,
    HTE_SPENDING,
    INFORMATION,
    INT,
    KIBS_GROSS,
    MANAGEMENT,
    MATCHES,
    N_INSTRUMENTS,
    N_TYPES,
    P_KIBS,
    P_PARTNERS,
    PLATFORM_COSTS,
    STRATEGIC,
    T_KIBS,
    T_PARTNERS,
    UNI,
    Agents,
    KibsParams,
    Ties,
    Workspace,
)
from kibs_mc.kernels.kibs.ties import add_tie, find_slot
from kibs_mc.kernels.rng import integer, uniform
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
    ``ENROL_ORDER``; then the information platform opens (:func:`platform_capacity`) and each
    HTE of the strategic programme looks for its partner, in slot order (no partnership yet:
    ``load`` starts at zero)."""
    enrolled = agents.enrolled
    for k in ENROL_ORDER:
        reached = _reached(agents, rng_state, prm.reach[k], HTE_ONLY[k])
        for i in range(agents.agent_type.shape[0]):
            enrolled[i, k] = reached[i]
    platform_capacity(agents, work, prm)
    load = np.zeros((2, agents.agent_type.shape[0]), dtype=np.int64)
    for i in range(agents.agent_type.shape[0]):
        if enrolled[i, STRATEGIC]:
            form_partnership(i, agents, ties, work, prm, load)


@njit(cache=True, nogil=True, inline="always")
def partner_of(agents: Agents, i: int) -> int:
    """HTE i's strategic partner, or -1 (none, or it left: its slot is empty or holds another
    firm)."""
    return _partner(agents.partner, agents.partner_firm, agents.alive, agents.firm, i)


# A loop over many agents reads the arrays once and calls this: passing ``Agents`` to a
# function costs a reference count of each of its arrays per call.
@njit(cache=True, nogil=True, inline="always")
def _partner(
    partner: np.ndarray, partner_firm: np.ndarray, alive: np.ndarray, firm: np.ndarray, i: int
) -> int:
    """:func:`partner_of` on the arrays of ``Agents``."""
    j = partner[i]
    if j >= 0 and alive[j] and firm[j] == partner_firm[i]:
        return j
    return -1


@njit(cache=True, nogil=True, inline="always")
def on_platform(agents: Agents, work: Workspace, i: int) -> bool:
    """i is a member of the information platform while the platform runs (its directory of
    every firm is open to i)."""
    return agents.enrolled[i, INFORMATION] and work.per_unit[INFORMATION] > 0.0


@njit(cache=True, nogil=True)
def platform_capacity(agents: Agents, work: Workspace, prm: KibsParams) -> int:
    """The information platform this step: it runs while it has money, living intermediaries
    to run it and living members. ``work.per_unit[INFORMATION]`` becomes the share of its
    members' upkeep the money pays, min(1, M_I / (u_I members)) (0: closed), and
    ``work.recipients[INFORMATION]`` the living intermediaries. Returns the members."""
    members = 0
    ints = 0
    for i in range(agents.agent_type.shape[0]):
        if agents.alive[i]:
            if agents.enrolled[i, INFORMATION]:
                members += 1
            if agents.agent_type[i] == INT:
                ints += 1
    work.recipients[INFORMATION] = ints
    money = prm.money[INFORMATION]
    if money <= 0.0 or ints == 0 or members == 0:
        work.per_unit[INFORMATION] = 0.0
    elif prm.unit_cost[INFORMATION] <= 0.0:
        work.per_unit[INFORMATION] = 1.0
    else:
        work.per_unit[INFORMATION] = min(1.0, money / (prm.unit_cost[INFORMATION] * members))
    return members


@njit(cache=True, nogil=True)
def list_members(agents: Agents, work: Workspace) -> None:
    """Each instrument's living members this step, in slot order: ``work.members[k]``'s first
    ``work.member_count[k]`` slots (HTEs only for an HTE programme). Alive and enrolled change
    only in ``finance.finance``, so the lists hold through the instruments step and the joint
    projects, and the instruments visit only their members."""
    enrolled = agents.enrolled
    members = work.members
    count = work.member_count
    count[:] = 0
    for i in range(agents.agent_type.shape[0]):
        if not agents.alive[i]:
            continue
        hte = agents.agent_type[i] == HTE
        for k in range(N_INSTRUMENTS):
            if enrolled[i, k] and (hte or not HTE_ONLY[k]):
                members[k, count[k]] = i
                count[k] += 1


@njit(cache=True, nogil=True)
def count_recipients(agents: Agents, work: Workspace) -> None:
    """HTEs reached by the strategic (with a partner), management and business instruments this
    step (the information platform's count is :func:`platform_capacity`'s), from the members
    (:func:`list_members`)."""
    r = work.recipients
    r[STRATEGIC] = 0
    members = work.members
    partner, partner_firm, alive, firm = agents.partner, agents.partner_firm, agents.alive, agents.firm
    for m in range(work.member_count[STRATEGIC]):
        if _partner(partner, partner_firm, alive, firm, members[STRATEGIC, m]) >= 0:
            r[STRATEGIC] += 1
    r[MANAGEMENT] = work.member_count[MANAGEMENT]
    r[BUSINESS] = work.member_count[BUSINESS]


@njit(cache=True, nogil=True, inline="always")
def _book(work: Workspace, k: int, t: int, money: float, unit_cost: float) -> None:
    """Book money instrument k spent on an agent of type t (and the part beyond the unit cost)."""
    ledger = work.ledger
    ledger[GOV_SPENT] += money
    ledger[GOV_STRATEGIC + k] += money
    ledger[GOV_TO + k * N_TYPES + t] += money
    if money > unit_cost:
        ledger[GOV_DEPTH + k] += money - unit_cost


# --------------------------------------------------------------------------- whom the money buys


@njit(cache=True, nogil=True)
def partner_load(agents: Agents, ties: Ties, load: np.ndarray) -> None:
    """Each KIBS j's load of strategic partnerships: ``load[0, j]`` its current partnerships that
    joint work has not tied yet (each holds one of j's tie slots, the one its tie will fill),
    ``load[1, j]`` all its current partnerships (each costs j its share of a project's outlay a
    month)."""
    load[:] = 0
    partner, partner_firm, alive, firm = agents.partner, agents.partner_firm, agents.alive, agents.firm
    agent_type = agents.agent_type
    indptr, row_len, indices = ties.indptr, ties.row_len, ties.indices
    for i in range(agent_type.shape[0]):
        if alive[i] and agent_type[i] == HTE:
            j = _partner(partner, partner_firm, alive, firm, i)
            if j >= 0:
                load[1, j] += 1
                tied = False  # ties.find_slot(ties, i, j) >= 0
                for p in range(indptr[i], indptr[i] + row_len[i]):
                    if indices[p] == j:
                        tied = True
                        break
                if not tied:
                    load[0, j] += 1


@njit(cache=True, nogil=True, inline="always")
def _room_for_partner(ties: Ties, load: np.ndarray, i: int, j: int) -> bool:
    """j's ties, its partnerships not yet tied (``load[0]``) and i's partnership fit in j's room
    (i's tie to j, if any, already holds its slot)."""
    need = 0 if find_slot(ties, i, j) >= 0 else 1
    return ties.row_len[j] + load[0, j] + need <= ties.indptr[j + 1] - ties.indptr[j]


@njit(cache=True, nogil=True, inline="always")
def _covers_partner(agents: Agents, prm: KibsParams, load: np.ndarray, j: int) -> bool:
    """j's capital covers ``partner_cover`` months of its share s_r C_o of a project's monthly
    outlay for each of its partnerships (``load[1]``) and the new one: K_j >= H (n_j + 1) s_r C_o
    (always, when that is 0)."""
    need = prm.partner_cover * (load[1, j] + 1) * prm.risk_share * prm.project_outlay
    return need <= 0.0 or agents.capital[j] >= need


# One search: the deficits choose the partner type, then the best candidate of those i sees.
@njit(cache=True, nogil=True)
def form_partnership(  # noqa: C901, PLR0912
    i: int, agents: Agents, ties: Ties, work: Workspace, prm: KibsParams, load: np.ndarray
) -> int:
    """Strategic partnership of HTE i with a KIBS chosen by what i lacks (paper s.IV.A-B).

    i's technical deficit d_T = 1 - kbar_i / kbar_T (kbar_T: mean knowledge of living T-KIBS)
    and managerial deficit d_M = 1 - m_i / m_P (m_P: mean capability of living P-KIBS). If
    d_M > d_T, i looks for the P-KIBS with the highest capability m_j; else for the T-KIBS with
    the highest complementarity (``knowledge.learning_value``). A member of the information
    platform sees every living KIBS of the type (the platform's directory); any other HTE sees
    its tied ones and ``search_draws`` drawn uniformly from the type (the policy stream). Only a
    KIBS with room for i's partnership counts (:func:`_room_for_partner`: its ties plus its
    partnerships not yet tied, ``load[0]`` (:func:`partner_load`), leave a slot, or i is tied to
    it) whose capital covers the outlays of its partnerships and i's (:func:`_covers_partner`).
    The partnership starts with alignment g_0 and an empty project, adds to the KIBS's load and
    holds its slot of the KIBS until joint work makes its tie (``projects.joint_projects``).
    Returns the partner, or -1.
    """
    knowledge = agents.knowledge
    alive = agents.alive
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
    lo = start[want]
    count = start[want + 1] - lo
    directory = on_platform(agents, work, i)
    tied = ties.row_len[i]
    draws = count if directory else tied + (prm.search_draws if count > 0 else 0)
    for c in range(draws):
        if directory:
            j = by_type[lo + c]
        elif c < tied:
            j = ties.indices[ties.indptr[i] + c]
            if agents.agent_type[j] != want:
                continue
        else:
            j = by_type[lo + integer(work.policy, count)]
        if not alive[j] or not _room_for_partner(ties, load, i, j):
            continue
        if not _covers_partner(agents, prm, load, j):
            continue
        if want == P_KIBS:
            value = agents.manage[j] - agents.manage[i]
        else:
            value = learning_value(agents, i, j, prm)
        if value > best_value:
            best_value = value
            best = j
    if best < 0:
        return -1
    if find_slot(ties, i, best) < 0:
        load[0, best] += 1
    load[1, best] += 1
    agents.partner[i] = best
    agents.partner_firm[i] = agents.firm[best]
    agents.alignment[i] = prm.alignment_start
    agents.project[i] = 0.0
    work.tally[T_PARTNERS if want == T_KIBS else P_PARTNERS] += 1
    return best


@njit(cache=True, nogil=True)
def rank_kibs(agents: Agents, work: Workspace, t: int) -> int:
    """Fill ``work.ranking`` with the living agents of type t, best first (P-KIBS by managerial
    capability, T-KIBS by total knowledge), ties by slot; returns how many.

    Used by :func:`contract_with` within one instruments step, where these values do not change
    (only HTEs learn and gain capability there), so the best KIBS with a free slot is the first
    of the ranking with one."""
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
        slots[m] = k
        values[m] = -_kibs_value(agents, k, t)
        m += 1
    order = np.argsort(values[:m], kind="mergesort")  # stable: equal values keep slot order
    for r in range(m):
        work.ranking[r] = slots[order[r]]
    return m


@njit(cache=True, nogil=True, inline="always")
def _kibs_value(agents: Agents, k: int, t: int) -> float:
    """How good a KIBS of type t is at its service: capability (P-KIBS), total knowledge (T-KIBS)."""
    if t == P_KIBS:
        return agents.manage[k]
    value = 0.0
    for f in range(agents.knowledge.shape[1]):
        value += agents.knowledge[k, f]
    return value


@njit(cache=True, nogil=True)
def contract_with(
    agents: Agents, ties: Ties, work: Workspace, prm: KibsParams, i: int, t: int, cursor: np.ndarray
) -> int:
    """The KIBS of type t that serves i: its best tied one (by capability for a P-KIBS, total
    knowledge for a T-KIBS, the first in slot order on ties among equals); else, for a
    member of the information platform, the best living one with a free slot (the platform's
    directory); else the best with a free slot of ``search_draws`` drawn uniformly from the type
    (the policy stream); -1 if none.

    The directory's best with a free slot is the first in ``work.ranking[:cursor[1]]``
    (:func:`rank_kibs`) at or after ``cursor[0]`` whose row is not full; slots only fill during
    the instruments step, so the cursor only moves forward (O(1) amortised)."""
    return _contract(
        _firms(agents), ties, _directory(work, cursor), on_platform(agents, work, i), prm.search_draws, i, t
    )


@njit(cache=True, nogil=True, inline="always")
def _firms(agents: Agents) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of ``Agents`` that :func:`_contract` reads (a loop over members passes these,
    not ``Agents``: a call costs a reference count of each array it is passed)."""
    return agents.agent_type, agents.alive, agents.manage, agents.knowledge


@njit(cache=True, nogil=True, inline="always")
def _directory(
    work: Workspace, cursor: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of ``Workspace`` that :func:`_contract` reads, and the directory's cursor."""
    return work.ranking, work.type_start, work.by_type, work.policy, cursor


@njit(cache=True, nogil=True)
def _contract(
    firms: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ties: Ties,
    directory: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    listed: bool,
    search_draws: int,
    i: int,
    t: int,
) -> int:
    """:func:`contract_with` on the arrays it reads (``listed``: i sees the platform's
    directory)."""
    agent_type, alive, manage, knowledge = firms
    ranking, type_start, by_type, policy, cursor = directory
    indptr, row_len, indices = ties.indptr, ties.row_len, ties.indices
    best = -1  # the best tied: capability (P-KIBS) or total knowledge (T-KIBS), first on ties
    best_value = -1.0
    for p in range(indptr[i], indptr[i] + row_len[i]):
        j = indices[p]
        if agent_type[j] != t or not alive[j]:
            continue
        value = _value(manage, knowledge, j, t)
        if value > best_value:
            best_value = value
            best = j
    if best >= 0:
        return best
    if listed:
        ranked = cursor[1]
        while cursor[0] < ranked:
            k = ranking[cursor[0]]
            if row_len[k] < indptr[k + 1] - indptr[k]:
                return k
            cursor[0] += 1
        return -1
    lo = type_start[t]
    count = type_start[t + 1] - lo
    if count == 0:
        return -1
    for _ in range(search_draws):
        k = by_type[lo + integer(policy, count)]
        if not alive[k] or row_len[k] >= indptr[k + 1] - indptr[k]:
            continue
        value = _value(manage, knowledge, k, t)
        if value > best_value:
            best_value = value
            best = k
    return best


@njit(cache=True, nogil=True, inline="always")
def _value(manage: np.ndarray, knowledge: np.ndarray, k: int, t: int) -> float:
    """:func:`_kibs_value` on the arrays."""
    if t == P_KIBS:
        return manage[k]
    value = 0.0
    for f in range(knowledge.shape[1]):
        value += knowledge[k, f]
    return value


# --------------------------------------------------------------------------- one function per instrument


@njit(cache=True, nogil=True)
def seek_partners(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """Strategic (s.IV.A): a contracted HTE without a partner (its partner left) looks for a
    new one (:func:`form_partnership`); the matching grant is spent in the joint projects."""
    load = np.empty((2, agents.agent_type.shape[0]), dtype=np.int64)
    counted = False  # most months nobody seeks: count the KIBS's load only when one does
    members = work.members
    partner, partner_firm, alive, firm = agents.partner, agents.partner_firm, agents.alive, agents.firm
    for m in range(work.member_count[STRATEGIC]):
        i = members[STRATEGIC, m]
        if _partner(partner, partner_firm, alive, firm, i) < 0:
            if not counted:
                partner_load(agents, ties, load)
                counted = True
            form_partnership(i, agents, ties, work, prm, load)


@njit(cache=True, nogil=True)
def consulting(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """Management (s.IV.B): a consulted HTE buys consulting from a P-KIBS (:func:`contract_with`)
    for m = M_M / n_M: the P-KIBS earns m and raises i's capability,
    m_i += (1 - exp(-e_M m)) (m_j - m_i) when m_j > m_i (diminishing returns in the money); a
    consultation that changed something leaves a tie. No P-KIBS found: m is not spent."""
    money = prm.money[MANAGEMENT] / work.recipients[MANAGEMENT]
    work.per_unit[MANAGEMENT] = money
    cursor = np.array([0, rank_kibs(agents, work, P_KIBS)])
    firms, directory = _firms(agents), _directory(work, cursor)
    platform_open = work.per_unit[INFORMATION] > 0.0
    for m in range(work.member_count[MANAGEMENT]):
        i = work.members[MANAGEMENT, m]
        listed = agents.enrolled[i, INFORMATION] and platform_open  # on_platform
        j = _contract(firms, ties, directory, listed, prm.search_draws, i, P_KIBS)  # contract_with
        if j < 0:
            work.ledger[GOV_UNSPENT + MANAGEMENT] += money
            continue
        agents.capital[j] += money
        _book(work, MANAGEMENT, P_KIBS, money, prm.unit_cost[MANAGEMENT])
        work.ledger[KIBS_GROSS] += money
        work.ledger[HTE_KIBS_SERVICES] += money
        work.ledger[HTE_SPENDING] += money
        gap = agents.manage[j] - agents.manage[i]
        step = (1.0 - np.exp(-prm.consulting_effect * money)) * gap if gap > 0.0 else 0.0
        if step > 0.0:
            agents.manage[i] += step
            work.delivered[MANAGEMENT] += step
            add_tie(ties, i, j, prm.new_tie_weight, False)


@njit(cache=True, nogil=True)
def vouchers(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """Business (s.IV.C): a member HTE's voucher v = M_B / n_B buys engineering and software
    services from a T-KIBS (share 1 - f; the T-KIBS earns it and transfers knowledge
    one-sidedly at rate a_i phi_i(delta_ij) D, D = 1 - exp(-e_S v (1 - f)) the service's depth,
    which also cuts i's R&D cost this step, ``production.produce_knowledge``) and the
    universities' common technology platform (share f: the universities spend it running the
    platform, ``production.platform_transfer``). A service that moved knowledge leaves a tie.
    No T-KIBS found, or no university: that share is not spent."""
    ledger = work.ledger
    knowledge = agents.knowledge
    voucher = prm.money[BUSINESS] / work.recipients[BUSINESS]
    work.per_unit[BUSINESS] = voucher
    service = voucher * (1.0 - prm.platform_fee_share)
    fee = voucher * prm.platform_fee_share
    unis = 0
    for s in range(work.type_start[UNI], work.type_start[UNI + 1]):
        if agents.alive[work.by_type[s]]:
            unis += 1
    cursor = np.array([0, rank_kibs(agents, work, T_KIBS)])
    cost = prm.unit_cost[BUSINESS]
    fees = 0.0
    firms, directory = _firms(agents), _directory(work, cursor)
    platform_open = work.per_unit[INFORMATION] > 0.0
    for m in range(work.member_count[BUSINESS]):
        i = work.members[BUSINESS, m]
        listed = agents.enrolled[i, INFORMATION] and platform_open  # on_platform
        j = -1
        if service > 0.0:  # contract_with
            j = _contract(firms, ties, directory, listed, prm.search_draws, i, T_KIBS)
        if j >= 0:
            agents.capital[j] += service
            _book(work, BUSINESS, T_KIBS, service, cost * (1.0 - prm.platform_fee_share))
            ledger[KIBS_GROSS] += service
            ledger[HTE_KIBS_SERVICES] += service
            ledger[HTE_SPENDING] += service
            depth = 1.0 - np.exp(-prm.service_effect * service)
            work.served[i] = depth
            rate = _learning_rate(agents, i, cognitive_distance(knowledge, i, j), prm) * depth
            moved = 0.0
            for f in range(knowledge.shape[1]):
                if knowledge[j, f] > knowledge[i, f]:
                    g = rate * (knowledge[j, f] - knowledge[i, f])
                    knowledge[i, f] += g
                    moved += g
            work.gained[i] += moved
            work.delivered[BUSINESS] += moved
            if moved > 0.0:
                add_tie(ties, i, j, prm.new_tie_weight, False)
        else:
            ledger[GOV_UNSPENT + BUSINESS] += service
        if unis > 0 and fee > 0.0:
            _book(work, BUSINESS, UNI, fee, cost * prm.platform_fee_share)
            ledger[HTE_SPENDING] += fee
            fees += fee
        else:
            ledger[GOV_UNSPENT + BUSINESS] += fee
    # the universities spend the members' fees on running the platform this step
    ledger[PLATFORM_COSTS] += fees
    ledger[COSTS_OUT] += fees
    if fees == 0.0:
        work.per_unit[BUSINESS] = 0.0  # no platform this step


@njit(cache=True, nogil=True)
def _broker(i: int, agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """One brokered match for member i: of ``match_candidates`` firms drawn uniformly (the
    policy stream), the member not yet tied to i, with room, from which i would learn most
    (``knowledge.learning_value``) is tied to i with weight w_0."""
    n = agents.agent_type.shape[0]
    best = -1
    best_value = 0.0
    for _ in range(prm.match_candidates):
        j = integer(work.policy, n)
        if j == i or not agents.alive[j] or not agents.enrolled[j, INFORMATION]:
            continue
        if find_slot(ties, i, j) >= 0 or ties.row_len[j] >= ties.indptr[j + 1] - ties.indptr[j]:
            continue
        value = learning_value(agents, i, j, prm)
        if value > best_value:
            best_value = value
            best = j
    if best >= 0 and add_tie(ties, i, best, prm.new_tie_weight, False):
        work.tally[MATCHES] += 1


@njit(cache=True, nogil=True)
def information_platform(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """Information (s.IV.D): M_I pays the living intermediaries to run the platform, and they
    spend it on it this step. It buys capacity: first the upkeep of its members, u_I each (the
    share s = min(1, M_I / (u_I members)) of them it can pay), then brokered matches at c_m each
    (each member's chance q = min(1, (M_I - upkeep) / (c_m members)), one policy uniform per
    member, while the money lasts; :func:`_broker`). Money beyond that is not spent. Members
    learn from the platform's codified knowledge, the mean knowledge of its members, at rate
    kappa_I s tau a_i phi_i(delta(k_i, pool)), one-sided. No money, no intermediaries or no
    members: no platform."""
    money = prm.money[INFORMATION]
    share = work.per_unit[INFORMATION]  # platform_capacity of this step
    if share <= 0.0:
        work.ledger[GOV_UNSPENT + INFORMATION] += money
        return
    knowledge = agents.knowledge
    d = knowledge.shape[1]
    pool = work.codified
    pool[:] = 0.0
    members = work.member_count[INFORMATION]
    for m in range(members):
        i = work.members[INFORMATION, m]
        for f in range(d):
            pool[f] += knowledge[i, f]
    for f in range(d):
        pool[f] /= members
    upkeep = share * prm.unit_cost[INFORMATION] * members
    budget = money - upkeep
    q = min(1.0, budget / (prm.match_cost * members)) if prm.match_cost > 0.0 else 0.0
    matches = 0
    intensity = prm.codified_transfer * share * prm.transfer_efficiency
    for m in range(members):
        i = work.members[INFORMATION, m]
        if intensity > 0.0:
            rate = intensity * _learning_rate(agents, i, profile_distance(knowledge[i], pool), prm)
            moved = 0.0
            for f in range(d):
                if pool[f] > knowledge[i, f]:
                    g = rate * (pool[f] - knowledge[i, f])
                    knowledge[i, f] += g
                    moved += g
            work.gained[i] += moved
            work.delivered[INFORMATION] += moved
        if q > 0.0 and budget >= prm.match_cost and uniform(work.policy) < q:
            budget -= prm.match_cost
            matches += 1
            _broker(i, agents, ties, work, prm)
    spent = upkeep + matches * prm.match_cost
    _book(work, INFORMATION, INT, spent, upkeep)
    work.ledger[PLATFORM_COSTS] += spent
    work.ledger[COSTS_OUT] += spent
    work.ledger[GOV_UNSPENT + INFORMATION] += money - spent


@njit(cache=True, nogil=True)
def instruments(agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> None:
    """The four governance instruments spend their money for this step (paper s.IV), one
    function each, in instrument order: the information platform's capacity first (whether its
    directory is open to its members' searches this step), then strategic re-partnering
    (:func:`seek_partners`; its grant is spent in ``projects.joint_projects``), consulting
    (:func:`consulting`), service vouchers (:func:`vouchers`) and the information platform
    (:func:`information_platform`), each over its members (:func:`list_members`). No recipient,
    no money spent."""
    work.per_unit[:] = 0.0
    list_members(agents, work)
    if prm.money[INFORMATION] > 0.0:
        platform_capacity(agents, work, prm)
    if prm.money[STRATEGIC] > 0.0:
        seek_partners(agents, ties, work, prm)
    count_recipients(agents, work)
    r = work.recipients
    for k in range(MANAGEMENT, BUSINESS + 1):
        if prm.money[k] > 0.0 and r[k] == 0:
            work.ledger[GOV_UNSPENT + k] += prm.money[k]
    if prm.money[MANAGEMENT] > 0.0 and r[MANAGEMENT] > 0:
        consulting(agents, ties, work, prm)
    if prm.money[BUSINESS] > 0.0 and r[BUSINESS] > 0:
        vouchers(agents, ties, work, prm)
    if prm.money[INFORMATION] > 0.0:
        information_platform(agents, ties, work, prm)
