"""Finance and selection: costs, interest, credit limits, exits and entry of firms and banks
(docs/ODD.md s.7.5)."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.dynamics import proximity_accept
from kibs_mc.kernels.kibs.instruments import form_partnership, partner_load
from kibs_mc.kernels.kibs.state import (
    COSTS_OUT,
    DEFAULTS,
    ENROL_ORDER,
    ENTRY_IN,
    EXIT_OUT,
    FIN,
    FIN_EXITS,
    FIXED_COSTS,
    HTE,
    HTE_EXITS,
    HTE_ONLY,
    HTE_SPENDING,
    INNOVATION_BINS,
    INTEREST,
    INTEREST_OUT,
    KIBS_COSTS,
    KIBS_EXITS,
    N_INSTRUMENTS,
    STRATEGIC,
    YOUNG_ENTRANTS,
    YOUNG_EXITS,
    YOUNG_WINDOW,
    Agents,
    KibsParams,
    Ties,
    Workspace,
    draw_agent,
    is_kibs,
)
from kibs_mc.kernels.kibs.ties import add_tie, remove_tie
from kibs_mc.kernels.rng import integer, uniform
from numba import njit


@njit(cache=True, nogil=True)
def bank_weight(agents: Agents, ties: Ties, i: int) -> float:
    """Sum of i's tie weights to living banks."""
    total = 0.0
    start = ties.indptr[i]
    for p in range(start, start + ties.row_len[i]):
        j = ties.indices[p]
        if agents.agent_type[j] == FIN and agents.alive[j]:
            total += ties.weights[p]
    return total


@njit(cache=True, nogil=True)
def pay_banks(agents: Agents, ties: Ties, i: int, amount: float, total_weight: float) -> None:
    """Move ``amount`` to i's banks in proportion to tie weight (negative: a loss to them)."""
    start = ties.indptr[i]
    for p in range(start, start + ties.row_len[i]):
        j = ties.indices[p]
        if agents.agent_type[j] == FIN and agents.alive[j]:
            agents.capital[j] += amount * ties.weights[p] / total_weight


@njit(cache=True, nogil=True, inline="always")
def credit_limit(agents: Agents, ties: Ties, i: int, credit_line: float) -> float:
    """Credit a firm can draw: the credit line times its tie strength to banks, capped at 1:
    CL_i = L min(1, sum of w_ij over FIN neighbours j) (paper s.III.A: financial institutions
    provide financial support)."""
    return credit_line * min(1.0, bank_weight(agents, ties, i))


@njit(cache=True, nogil=True)
def exit_firm(i: int, agents: Agents, ties: Ties, work: Workspace) -> None:
    """Firm i leaves: its banks write off its debt in proportion to tie weight (without banks,
    outside creditors bear it), its net worth leaves the books, its ties go."""
    capital = agents.capital
    if capital[i] < 0.0 and agents.agent_type[i] != FIN:
        total = bank_weight(agents, ties, i)
        if total > 0.0:
            pay_banks(agents, ties, i, capital[i], total)
            work.ledger[DEFAULTS] -= capital[i]
            capital[i] = 0.0
    work.ledger[EXIT_OUT] += capital[i]
    capital[i] = 0.0
    agents.alive[i] = False
    while ties.row_len[i] > 0:
        remove_tie(ties, i, ties.indptr[i] + ties.row_len[i] - 1)


# One pass over the firms in slot order, each firm's costs, interest, exit and entry booked in
# the model's order (docs/ODD.md s.7.5), which reads in one place.
@njit(cache=True, nogil=True)
def finance(agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> int:  # noqa: C901, PLR0912, PLR0915
    """Finance and selection of firms (HTE, T-KIBS, P-KIBS, banks); returns the exits.

    Each living firm in slot order: an HTE pays the fixed cost F, a KIBS its operating cost F_K
    (costs out); a firm with negative capital (debt) pays interest r on it to its banks in
    proportion to tie weight (to outside lenders when it has none); a firm whose capital falls
    below -CL_i (its credit limit with the banks) exits (:func:`exit_firm`), and so does a bank
    whose net worth is negative (survival of the fittest, paper s.III.B). 1 + N_INSTRUMENTS uniforms
    are drawn per exit whatever follows: with probability q an entrant of the same type takes the
    slot at once (drawn as at the start, with capital K_0 for an HTE and the type's capital
    otherwise, booked as capital in; a new firm id), makes ``startup_search`` proximity searches, and an HTE
    entrant is reached by each programme with its reach probability.

    Bookkeeping only (no dynamics read it): an exiting HTE's innovation count goes to
    ``work.exit_innovations``; an entrant's count starts at 0 and its entry month is
    ``work.born``; HTE entrants observed for ``YOUNG_WINDOW`` months before the run ends, and
    those of them that exit within that window, are counted (``YOUNG_ENTRANTS``, ``YOUNG_EXITS``).
    """
    agent_type = agents.agent_type
    capital = agents.capital
    alive = agents.alive
    ledger = work.ledger
    n = agent_type.shape[0]
    now = work.clock[0]
    last = work.clock[1]
    exits = 0
    u_enrol = np.empty(N_INSTRUMENTS)  # an entrant's draws, one per instrument (ENROL_ORDER)
    load = np.empty((2, n), dtype=np.int64)  # the KIBS's partnerships (instruments.partner_load)
    for i in range(n):
        if not alive[i]:
            continue
        t = agent_type[i]
        if t == HTE:
            capital[i] -= prm.fixed_cost
            ledger[COSTS_OUT] += prm.fixed_cost
            ledger[FIXED_COSTS] += prm.fixed_cost
            ledger[HTE_SPENDING] += prm.fixed_cost
        elif is_kibs(t):
            capital[i] -= prm.kibs_fixed_cost
            ledger[COSTS_OUT] += prm.kibs_fixed_cost
            ledger[FIXED_COSTS] += prm.kibs_fixed_cost
            ledger[KIBS_COSTS] += prm.kibs_fixed_cost
        elif t != FIN:
            continue
        if t == FIN:
            if capital[i] >= 0.0:
                continue
        else:
            if capital[i] < 0.0:
                owed = prm.interest * (-capital[i])
                capital[i] -= owed
                total = bank_weight(agents, ties, i)
                if total > 0.0:
                    pay_banks(agents, ties, i, owed, total)
                    ledger[INTEREST] += owed
                else:
                    ledger[COSTS_OUT] += owed
                    ledger[INTEREST_OUT] += owed
                if is_kibs(t):
                    ledger[KIBS_COSTS] += owed
                elif t == HTE:
                    ledger[HTE_SPENDING] += owed
            # capital >= 0 is within any credit limit (CL_i >= 0): skip the scan of i's banks
            if capital[i] >= 0.0 or capital[i] >= -credit_limit(agents, ties, i, prm.credit_line):
                continue
        exits += 1
        work.tally[HTE_EXITS if t == HTE else (FIN_EXITS if t == FIN else KIBS_EXITS)] += 1
        if t == HTE:
            work.exit_innovations[min(agents.innovations[i], INNOVATION_BINS - 1)] += 1
            entered = work.born[i]
            if entered > 0 and now - entered <= YOUNG_WINDOW and entered + YOUNG_WINDOW <= last:
                work.tally[YOUNG_EXITS] += 1
        exit_firm(i, agents, ties, work)
        u_start = uniform(rng_state)
        for k in ENROL_ORDER:
            u_enrol[k] = uniform(rng_state)
        if u_start >= prm.startup_prob:
            continue
        draw_agent(i, t, agents, prm.traits, rng_state)
        if t == HTE:
            capital[i] = prm.startup_capital
        ledger[ENTRY_IN] += capital[i]
        alive[i] = True
        agents.firm[i] = n + work.clock[2]  # a new firm, a new id
        work.clock[2] += 1
        agents.innovations[i] = 0  # a new firm: its count starts afresh
        work.born[i] = now
        if t == HTE and now + YOUNG_WINDOW <= last:
            work.tally[YOUNG_ENTRANTS] += 1
        for k in range(N_INSTRUMENTS):
            agents.enrolled[i, k] = (t == HTE or not HTE_ONLY[k]) and u_enrol[k] < prm.reach[k]
        for _ in range(prm.startup_search):
            j = integer(rng_state, n)
            if (
                alive[j]
                and j != i
                and uniform(rng_state) < proximity_accept(agents, i, j, prm.distance_scale)
            ):
                add_tie(ties, i, j, prm.new_tie_weight, False)
        if agents.enrolled[i, STRATEGIC]:
            partner_load(agents, ties, load)
            form_partnership(i, agents, ties, work, prm, load)
    return exits
