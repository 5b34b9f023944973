"""The cluster model: high-tech firms (HTE), KIBS, universities, intermediaries and banks.

MODEL.md section 3; every equation below is written out in ``docs/ODD.md`` (section 7,
"Submodels"), which ties it to the paragraph of the seed paper it represents.

State of a cluster of n agents (one slot per agent; a slot freed by an exit may be reused by a
start-up), in two NamedTuples that every kernel takes whole (Numba compiles NamedTuples of
arrays into structs; a field access costs what a separate argument costs):

- :class:`Agents`: ``agent_type`` int64 (n): HTE, T_KIBS, P_KIBS, UNI, INT, FIN (the constants below);
- ``position`` float64 (n, 2) in the unit square; ``knowledge`` float64 (n, D);
  ``core`` int64 (n), the agent's core field; ``manage`` float64 (n), managerial capability
  m_i in [0, 1]; ``capital``, ``potential`` (innovation potential) float64 (n);
  ``innovations`` int64 (n); ``alive`` and ``member`` (common-platform member) bool (n).
- :class:`Ties`: the network in *padded* CSR form, so that ties can be made and dropped in place: row i
  holds ``row_len[i]`` ties in ``indices[indptr[i]:indptr[i] + row_len[i]]``, with capacity
  ``indptr[i + 1] - indptr[i]``; ``weights`` (tie strength w in (0, 1], social capital) and
  ``partner`` (strategic partnership) run parallel to ``indices``. Every undirected tie is
  stored in both rows with the same weight and flag.

Kernel parameters arrive as one :class:`KibsParams` tuple, built from the validated config
by ``kibs_mc.governance.kernel_parameters`` (the single place where governance levers become
kernel parameters); :class:`TypeTraits` holds what drawing a new agent needs, and
:class:`Workspace` the per-step scratch arrays and running totals. Randomness comes only from
the replicate's SplitMix64 state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from kibs_mc.kernels.cowan_jonard import can_trade
from kibs_mc.kernels.rng import integer, shuffle, uniform
from numba import njit

HTE = 0
T_KIBS = 1
P_KIBS = 2
UNI = 3
INT = 4
FIN = 5
#: Type names in type order (the order of every per-type list in ``conf/cluster``).
TYPE_NAMES = ("hte", "t_kibs", "p_kibs", "uni", "intermediaries", "fin")


class Agents(NamedTuple):
    """Per-agent state, one slot per agent (see the module docstring)."""

    agent_type: np.ndarray  # int64 (n)
    position: np.ndarray  # float64 (n, 2)
    knowledge: np.ndarray  # float64 (n, D)
    core: np.ndarray  # int64 (n)
    manage: np.ndarray  # float64 (n), managerial capability m_i
    capital: np.ndarray  # float64 (n)
    potential: np.ndarray  # float64 (n), innovation potential
    innovations: np.ndarray  # int64 (n)
    alive: np.ndarray  # bool (n)
    member: np.ndarray  # bool (n), common-platform member


class Ties(NamedTuple):
    """The network in padded CSR form; every undirected tie is stored in both rows."""

    indptr: np.ndarray  # int64 (n + 1): row i's capacity is indptr[i + 1] - indptr[i]
    row_len: np.ndarray  # int64 (n): ties in row i
    indices: np.ndarray  # int64: the other end of each tie
    weights: np.ndarray  # float64: tie strength w in (0, 1]
    partner: np.ndarray  # bool: strategic partnership


class Workspace(NamedTuple):
    """Scratch arrays and running totals of one replicate, allocated once (:func:`workspace`)."""

    gained: np.ndarray  # float64 (n): knowledge gained this step (absorbed and own R&D)
    order: np.ndarray  # int64 (n): the random-sequential meeting order
    pool: np.ndarray  # float64 (D): the platform's pooled UNI knowledge
    revenue: np.ndarray  # float64 (1): KIBS revenue so far


class KibsParams(NamedTuple):
    """Every parameter the step kernels read (see ``docs/ODD.md`` for each symbol): scalars,
    and the per-type base of absorptive capacity."""

    absorptive_base: tuple[float, ...]  # A_t per type (6 floats, type order): the ceiling of a_i

    random_draw: bool  # schedule: True = Cowan-Jonard random draw, False = random sequential
    barter: bool  # trade only on a double coincidence of wants (docking)
    tolerance: float
    adaptive_absorption: bool  # False: a_i = fixed_absorption for every agent (docking)
    fixed_absorption: float
    knowledge_half: float  # K_half in a_i
    absorption_management_weight: float  # omega_m in a_i
    distance_learning: bool  # False: phi = 1 (docking)
    optimum_base: float  # b_0 in b_i = b_0 + b_1 a_i
    optimum_slope: float  # b_1
    transfer_efficiency: float  # tau
    goal_alignment: float  # share by which a partnership shrinks cognitive distance
    tie_reinforcement: float
    service_fee: float
    consulting_rate: float
    production: bool
    uni_rate: float
    t_kibs_rate: float
    rd_gain: float
    rd_cost: float
    rd_cost_member: float  # R&D cost on the common technology platform
    platform_transfer: float
    innovation: bool
    innovation_rate: float
    conversion_management_weight: float
    innovation_reward: float
    innovation_knowledge: float
    benefit_share: float
    finance: bool
    fixed_cost: float
    credit_line: float
    interest: float
    risk_share: float
    startup_prob: float
    startup_capital: float
    startup_search: int
    partnership_share: float
    platform_share: float
    network_dynamics: bool
    tie_decay: float
    tie_floor: float
    new_tie_weight: float
    triadic_p: float
    proximity_p: float
    distance_scale: float
    broker_p: float
    long_range_p: float


class TypeTraits(NamedTuple):
    """Per-type arrays (length 6, type order) used to draw a new agent and its capacity."""

    spread: np.ndarray  # sd of position around the park centre
    level: np.ndarray  # mean knowledge per field
    manage_mean: np.ndarray
    capital: np.ndarray
    max_ties: np.ndarray  # int64
    knowledge_spread: float
    core_boost: float
    manage_spread: float


# --------------------------------------------------------------------------- agents


@njit(cache=True, nogil=True)
def draw_agent(i: int, t: int, agents: Agents, traits: TypeTraits, rng_state: np.ndarray) -> None:
    """Draw the initial state of agent ``i`` of type ``t`` (also used for start-ups).

    Position: the park centre (0.5, 0.5) plus a type-specific spread s_t times a standard
    normal per coordinate (Box-Muller), clipped to the unit square: HTEs concentrate in the park,
    KIBS sit in and around it (geographic proximity, seed paper section II.A).
    Knowledge: k_id = L_t (1 - sigma + 2 sigma u), u ~ U[0, 1), in every field d; the core field
    c_i ~ U{0..D-1} is multiplied by the core boost. With L_t = 5, sigma = 1 and boost 1 this is
    Cowan-Jonard's U[0, 10).
    Managerial capability m_i = clip(mu_t + s_m (2u - 1), 0, 1); HTE founders are engineers with
    weak management (seed paper section IV.B). Capital: the type's initial capital.
    """
    agents.agent_type[i] = t
    position = agents.position
    knowledge = agents.knowledge
    for c in range(2):
        u1 = uniform(rng_state)
        u2 = uniform(rng_state)
        z = np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2)
        position[i, c] = min(1.0, max(0.0, 0.5 + traits.spread[t] * z))
    d = knowledge.shape[1]
    spread = traits.knowledge_spread
    for f in range(d):
        knowledge[i, f] = traits.level[t] * (1.0 - spread + 2.0 * spread * uniform(rng_state))
    c = integer(rng_state, d)
    agents.core[i] = c
    knowledge[i, c] *= traits.core_boost
    m = traits.manage_mean[t] + traits.manage_spread * (2.0 * uniform(rng_state) - 1.0)
    agents.manage[i] = min(1.0, max(0.0, m))
    agents.capital[i] = traits.capital[t]


# --------------------------------------------------------------------------- ties


@njit(cache=True, nogil=True, inline="always")
def find_slot(ties: Ties, i: int, j: int) -> int:
    """Position of j in i's row, or -1 when i and j are not tied."""
    start = ties.indptr[i]
    indices = ties.indices
    for p in range(start, start + ties.row_len[i]):
        if indices[p] == j:
            return p
    return -1


@njit(cache=True, nogil=True, inline="always")
def add_tie(ties: Ties, i: int, j: int, w: float, is_partner: bool) -> bool:
    """Tie i and j with weight w; False (and nothing changed) if i == j, they are already tied,
    or either row is full."""
    if i == j or find_slot(ties, i, j) >= 0:
        return False
    indptr, row_len, indices, weights, partner = ties
    if row_len[i] >= indptr[i + 1] - indptr[i] or row_len[j] >= indptr[j + 1] - indptr[j]:
        return False
    p = indptr[i] + row_len[i]
    q = indptr[j] + row_len[j]
    indices[p] = j
    indices[q] = i
    weights[p] = w
    weights[q] = w
    partner[p] = is_partner
    partner[q] = is_partner
    row_len[i] += 1
    row_len[j] += 1
    return True


@njit(cache=True, nogil=True, inline="always")
def _drop_slot(ties: Ties, i: int, p: int) -> None:
    indptr, row_len, indices, weights, partner = ties
    last = indptr[i] + row_len[i] - 1
    indices[p] = indices[last]
    weights[p] = weights[last]
    partner[p] = partner[last]
    row_len[i] -= 1


@njit(cache=True, nogil=True, inline="always")
def remove_tie(ties: Ties, i: int, p: int) -> None:
    """Remove the tie in slot p of i's row, and its mirror in the other row. The last tie of
    each row moves into the freed slot."""
    j = ties.indices[p]
    q = find_slot(ties, j, i)
    _drop_slot(ties, i, p)
    if q >= 0:
        _drop_slot(ties, j, q)


@njit(cache=True, nogil=True, inline="always")
def set_weight(ties: Ties, i: int, p: int, w: float) -> None:
    """Set the weight of the tie in slot p of i's row and of its mirror."""
    j = ties.indices[p]
    ties.weights[p] = w
    q = find_slot(ties, j, i)
    if q >= 0:
        ties.weights[q] = w


@njit(cache=True, nogil=True, inline="always")
def first_partner(ties: Ties, i: int) -> int:
    """The first strategic partner of i, or -1."""
    start = ties.indptr[i]
    for p in range(start, start + ties.row_len[i]):
        if ties.partner[p]:
            return ties.indices[p]
    return -1


# --------------------------------------------------------------------------- learning


@njit(cache=True, nogil=True, inline="always")
def absorptive_capacity(knowledge: np.ndarray, i: int, manage_i: float, base: float,
                        knowledge_half: float, management_weight: float) -> float:
    """Absorptive capacity a_i = A_t * kbar_i / (kbar_i + K_half) * (1 - omega_m + omega_m m_i).

    Rises with prior knowledge kbar_i (the mean of k_i over fields) and with managerial
    capability m_i, from a type-specific base A_t (Cohen & Levinthal 1990, "Absorptive capacity",
    Admin. Sci. Q. 35:128-152; seed paper section II.A). a_i lies in [0, A_t].
    """
    d = knowledge.shape[1]
    total = 0.0
    for f in range(d):
        total += knowledge[i, f]
    kbar = total / d
    if kbar <= 0.0:
        return 0.0
    return base * kbar / (kbar + knowledge_half) * (1.0 - management_weight + management_weight * manage_i)


@njit(cache=True, nogil=True)
def profile_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b||_1 / (||a||_1 + ||b||_1) of two non-negative knowledge vectors, in [0, 1]."""
    num = 0.0
    den = 0.0
    for f in range(a.shape[0]):
        num += abs(a[f] - b[f])
        den += a[f] + b[f]
    return num / den if den > 0.0 else 0.0


@njit(cache=True, nogil=True, inline="always")
def cognitive_distance(knowledge: np.ndarray, i: int, j: int) -> float:
    """delta_ij = ||k_i - k_j||_1 / (||k_i||_1 + ||k_j||_1), in [0, 1].

    Grows with differences in level as well as in profile (MODEL.md s.3), so a deeper expert in
    one's own field is distant, not identical (Nooteboom et al. 2007, Research Policy 36:1016).
    """
    return profile_distance(knowledge[i], knowledge[j])


@njit(cache=True, nogil=True, inline="always")
def learning(delta: float, optimum_width: float) -> float:
    """Inverted U of learning in cognitive distance (Nooteboom et al. 2007):

        phi(delta) = max(0, delta (b - delta)) / (b^2 / 4),

    zero at delta = 0 (nothing new) and at delta >= b (cannot understand), 1 at the optimum
    delta* = b / 2. The width b = b_0 + b_1 a_i grows with absorptive capacity, which moves the
    optimum outward.
    """
    v = delta * (optimum_width - delta)
    if v <= 0.0:
        return 0.0
    return v / (0.25 * optimum_width * optimum_width)


@njit(cache=True, nogil=True, inline="always")
def transfer(knowledge: np.ndarray, i: int, j: int, rate_i: float, rate_j: float) -> tuple[float, float]:
    """Non-rival transfer: in every field the lagging side closes a share of the gap,

        k_id += rate_i * max(0, k_jd - k_id),   k_jd += rate_j * max(0, k_id - k_jd),

    both from the values before the meeting (Cowan & Jonard 2004's barter with
    rate = a tau phi). Returns the knowledge gained by i and by j.
    """
    gain_i = 0.0
    gain_j = 0.0
    for f in range(knowledge.shape[1]):
        x = knowledge[i, f]
        y = knowledge[j, f]
        if y > x:
            g = rate_i * (y - x)
            knowledge[i, f] = x + g
            gain_i += g
        elif x > y:
            g = rate_j * (x - y)
            knowledge[j, f] = y + g
            gain_j += g
    return gain_i, gain_j


@njit(cache=True, nogil=True, inline="always")
def choose_partner(ties: Ties, i: int, u: float) -> int:
    """Slot of the partner of i, drawn with probability w_ij / sum_k w_ik from u ~ U[0, 1);
    -1 when i has no ties."""
    start = ties.indptr[i]
    n = ties.row_len[i]
    weights = ties.weights
    if n == 0:
        return -1
    total = 0.0
    for p in range(start, start + n):
        total += weights[p]
    target = u * total
    acc = 0.0
    for p in range(start, start + n):
        acc += weights[p]
        if target < acc:
            return p
    return start + n - 1


@njit(cache=True, nogil=True, inline="always")
def _learning_rate(agents: Agents, i: int, delta: float, prm: KibsParams) -> float:
    if prm.adaptive_absorption:
        a = absorptive_capacity(agents.knowledge, i, agents.manage[i],
                                prm.absorptive_base[agents.agent_type[i]],
                                prm.knowledge_half, prm.absorption_management_weight)
    else:
        a = prm.fixed_absorption
    if prm.distance_learning:
        phi = learning(delta, prm.optimum_base + prm.optimum_slope * a)
    else:
        phi = 1.0
    return a * prm.transfer_efficiency * phi


@njit(cache=True, nogil=True, inline="always")
def meet(i: int, p: int, agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> bool:
    """One meeting of i with the partner in slot p of its row; True if knowledge moved.

    1. Barter (docking only): no transfer without a double coincidence of wants.
    2. Transfer with rate_i = a_i tau phi(delta_ij^eff), delta^eff = (1 - g) delta on a strategic
       partnership (goal alignment g), else delta.
    3. A tie that carried knowledge strengthens: w += rho (1 - w) (network dynamics on).
    4. An HTE meeting a P-KIBS moves its managerial capability toward the consultant's:
       m_i += c (m_j - m_i) if m_j > m_i (management interface).
    5. An HTE served by a KIBS (knowledge or consulting received) pays it the service fee.
    """
    knowledge = agents.knowledge
    agent_type = agents.agent_type
    manage = agents.manage
    capital = agents.capital
    j = ties.indices[p]
    if prm.barter and not can_trade(knowledge, i, j, prm.tolerance):
        return False
    delta = cognitive_distance(knowledge, i, j)
    if ties.partner[p]:
        delta *= 1.0 - prm.goal_alignment
    rate_i = _learning_rate(agents, i, delta, prm)
    rate_j = _learning_rate(agents, j, delta, prm)
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
        if th != HTE or (tk != T_KIBS and tk != P_KIBS):
            continue
        served = (gain_i if side == 0 else gain_j) > 0.0
        if tk == P_KIBS and manage[k] > manage[h]:
            manage[h] += prm.consulting_rate * (manage[k] - manage[h])
            served = True
        if served:
            capital[h] -= prm.service_fee
            capital[k] += prm.service_fee
            work.revenue[0] += prm.service_fee
    return moved


@njit(cache=True, nogil=True)
def meetings(agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray,
             prm: KibsParams) -> tuple[int, int]:
    """One step of meetings (the hot kernel); returns (meetings, transfers).

    ``random_sequential``: every living agent, in a fresh random order (Fisher-Yates shuffle of
    ``order``), meets one partner drawn with probability proportional to tie weight.
    ``random_draw`` (Cowan & Jonard 2004): n meetings, each of an agent drawn uniformly among
    the n slots (a dead one skips its turn) with a partner drawn as above.
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
        if prm.random_draw:
            i = integer(rng_state, n)
        else:
            i = order[k]
        if not alive[i] or row_len[i] == 0:
            continue
        p = choose_partner(ties, i, uniform(rng_state))
        held += 1
        if meet(i, p, agents, ties, work, prm):
            moved += 1
    return held, moved


# --------------------------------------------------------------------------- production


@njit(cache=True, nogil=True)
def produce_knowledge(agents: Agents, work: Workspace, prm: KibsParams) -> None:
    """Knowledge production, once per step:

    - UNI: k_{i,c_i} += r_U (universities are the source of new knowledge; paper s.III.A,
      Ahrweiler, Pyka & Gilbert 2011);
    - T-KIBS: k_{i,c_i} += r_T (KIBS produce knowledge; paper s.II.B);
    - HTE with capital > 0: in-house R&D, k_{i,c_i} += r_H at cost C_RD (C_RD (1 - x) on the
      common technology platform, the business interface, paper s.IV.C); the gain counts
      towards innovation potential.
    """
    agent_type, _, knowledge, core, _, capital, _, _, alive, member = agents
    gained = work.gained
    for i in range(agent_type.shape[0]):
        if not alive[i]:
            continue
        t = agent_type[i]
        if t == UNI:
            knowledge[i, core[i]] += prm.uni_rate
        elif t == T_KIBS:
            knowledge[i, core[i]] += prm.t_kibs_rate
        elif t == HTE and capital[i] > 0.0 and prm.rd_gain > 0.0:
            knowledge[i, core[i]] += prm.rd_gain
            gained[i] += prm.rd_gain
            capital[i] -= prm.rd_cost_member if member[i] else prm.rd_cost


@njit(cache=True, nogil=True)
def platform_transfer(agents: Agents, work: Workspace, prm: KibsParams) -> None:
    """Technology transfer from the common platform (business interface, paper s.IV.C).

    The platform pools the knowledge of the living universities, P_d = mean of k_Ud over UNI;
    each member HTE learns from it as in a meeting, one-sided and scaled by the platform's
    intensity pi: k_id += pi a_i tau phi(delta_iP) max(0, P_d - k_id). No UNI, no platform
    knowledge.
    """
    agent_type = agents.agent_type
    knowledge = agents.knowledge
    alive = agents.alive
    member = agents.member
    gained = work.gained
    pool = work.pool
    d = knowledge.shape[1]
    n = agent_type.shape[0]
    count = 0
    pool[:] = 0.0
    for i in range(n):
        if alive[i] and agent_type[i] == UNI:
            count += 1
            for f in range(d):
                pool[f] += knowledge[i, f]
    if count == 0 or prm.platform_transfer <= 0.0:
        return
    for f in range(d):
        pool[f] /= count
    for i in range(n):
        if not (alive[i] and member[i] and agent_type[i] == HTE):
            continue
        delta = profile_distance(knowledge[i], pool)
        rate = prm.platform_transfer * _learning_rate(agents, i, delta, prm)
        for f in range(d):
            if pool[f] > knowledge[i, f]:
                g = rate * (pool[f] - knowledge[i, f])
                knowledge[i, f] += g
                gained[i] += g


# --------------------------------------------------------------------------- innovation


@njit(cache=True, nogil=True)
def innovate(agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> int:
    """Innovation by HTEs; returns the number of innovations this step.

    Potential accumulates knowledge gained (absorbed and own R&D): P_i += g_i. An innovation
    happens with probability 1 - exp(-lambda (1 - omega + omega m_i) P_i): conversion needs
    management (engineer-founders lack it, paper s.IV.B). It earns the reward R, adds
    kappa to the core field, and resets P_i to 0. With a strategic partner, a share beta of R
    passes to the partner (benefit sharing, paper s.III.C and IV.A). One uniform is drawn per
    living HTE per step whatever happens.
    """
    agent_type, _, knowledge, core, manage, capital, potential, innovations, alive, _ = agents
    gained = work.gained
    count = 0
    for i in range(agent_type.shape[0]):
        if not alive[i] or agent_type[i] != HTE:
            continue
        potential[i] += gained[i]
        conversion = 1.0 - prm.conversion_management_weight + prm.conversion_management_weight * manage[i]
        p = 1.0 - np.exp(-prm.innovation_rate * conversion * potential[i])
        if uniform(rng_state) < p:
            count += 1
            innovations[i] += 1
            potential[i] = 0.0
            knowledge[i, core[i]] += prm.innovation_knowledge
            reward = prm.innovation_reward
            j = first_partner(ties, i)
            if j >= 0 and prm.benefit_share > 0.0:
                share = prm.benefit_share * reward
                capital[j] += share
                work.revenue[0] += share
                reward -= share
            capital[i] += reward
    return count


# --------------------------------------------------------------------------- finance


@njit(cache=True, nogil=True, inline="always")
def credit_limit(agent_type: np.ndarray, ties: Ties, i: int, credit_line: float) -> float:
    """Credit an HTE can draw: the credit line times its tie strength to banks, capped at 1:
    CL_i = L min(1, sum of w_ij over FIN neighbours j) (paper s.III.A: financial institutions
    provide financial support)."""
    total = 0.0
    start = ties.indptr[i]
    for p in range(start, start + ties.row_len[i]):
        if agent_type[ties.indices[p]] == FIN:
            total += ties.weights[p]
    return credit_line * min(1.0, total)


@njit(cache=True, nogil=True)
def form_partnership(i: int, agents: Agents, ties: Ties, prm: KibsParams) -> int:
    """Strategic partnership of HTE i with its most complementary KIBS (paper s.IV.A).

    Complementarity of KIBS j for i: the knowledge i would gain from j in one meeting,
    sum_d a_i phi(delta_ij) max(0, k_jd - k_id); the best j with a free slot (or already tied)
    becomes a partner: weight 1, no decay. Returns j, or -1 if none.
    """
    agent_type = agents.agent_type
    knowledge = agents.knowledge
    alive = agents.alive
    indptr = ties.indptr
    row_len = ties.row_len
    best = -1
    best_value = 0.0
    d = knowledge.shape[1]
    for j in range(agent_type.shape[0]):
        t = agent_type[j]
        if not alive[j] or (t != T_KIBS and t != P_KIBS):
            continue
        tied = find_slot(ties, i, j) >= 0
        if not tied and row_len[j] >= indptr[j + 1] - indptr[j]:
            continue
        delta = cognitive_distance(knowledge, i, j)
        rate = _learning_rate(agents, i, delta, prm)
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
        q = find_slot(ties, best, i)
        ties.partner[q] = True
        return best
    if add_tie(ties, i, best, 1.0, True):
        return best
    return -1


@njit(cache=True, nogil=True, inline="always")
def proximity_accept(agents: Agents, i: int, j: int, distance_scale: float) -> float:
    """Probability that a search by i ties it to j: exp(-dist_ij / s) (1 - delta_ij)
    (geographic and organizational proximity, paper s.II.A; Boschma 2005)."""
    position = agents.position
    dx = position[i, 0] - position[j, 0]
    dy = position[i, 1] - position[j, 1]
    return np.exp(-np.sqrt(dx * dx + dy * dy) / distance_scale) * (
        1.0 - cognitive_distance(agents.knowledge, i, j))


@njit(cache=True, nogil=True)
def finance(agents: Agents, ties: Ties, traits: TypeTraits, rng_state: np.ndarray, prm: KibsParams) -> int:
    """Finance and selection of HTEs; returns the number of exits this step.

    capital -= F (fixed cost), of which a strategic partner bears the share s_r (risk sharing,
    paper s.III.C); a negative balance pays interest r on the debt; an HTE whose capital
    falls below -CL_i (its credit limit with the banks) exits: its ties go, and with
    probability q a start-up takes the slot at once (survival of the fittest, paper s.III.B),
    drawn as a new HTE with capital K_0, making ``startup_search`` proximity searches, joining
    the platform and getting a partnership with the shares of the governance levers.
    Four uniforms are drawn per exit whatever follows (start-up, membership, partnership).
    """
    agent_type = agents.agent_type
    capital = agents.capital
    alive = agents.alive
    row_len = ties.row_len
    exits = 0
    for i in range(agent_type.shape[0]):
        if not alive[i] or agent_type[i] != HTE:
            continue
        j = first_partner(ties, i)
        if j >= 0:
            capital[i] -= (1.0 - prm.risk_share) * prm.fixed_cost
            capital[j] -= prm.risk_share * prm.fixed_cost
        else:
            capital[i] -= prm.fixed_cost
        if capital[i] < 0.0:
            capital[i] -= prm.interest * (-capital[i])
        if capital[i] >= -credit_limit(agent_type, ties, i, prm.credit_line):
            continue
        exits += 1
        alive[i] = False
        while row_len[i] > 0:
            remove_tie(ties, i, ties.indptr[i] + row_len[i] - 1)
        u_start = uniform(rng_state)
        u_member = uniform(rng_state)
        u_partner = uniform(rng_state)
        uniform(rng_state)  # reserved: keeps the stream aligned should a fourth choice be added
        if u_start >= prm.startup_prob:
            continue
        draw_agent(i, HTE, agents, traits, rng_state)
        capital[i] = prm.startup_capital
        agents.potential[i] = 0.0
        alive[i] = True
        agents.member[i] = u_member < prm.platform_share
        n = agent_type.shape[0]
        for _ in range(prm.startup_search):
            j = integer(rng_state, n)
            if alive[j] and j != i and uniform(rng_state) < proximity_accept(
                    agents, i, j, prm.distance_scale):
                add_tie(ties, i, j, prm.new_tie_weight, False)
        if u_partner < prm.partnership_share:
            form_partnership(i, agents, ties, prm)
    return exits


# --------------------------------------------------------------------------- network


@njit(cache=True, nogil=True)
def decay_ties(ties: Ties, alive: np.ndarray, decay: float, floor: float) -> int:
    """Ties that are not partnerships decay, w <- (1 - epsilon) w, and vanish below the floor
    w_min (social capital needs upkeep; Giuliani 2007). Returns the ties removed."""
    indptr, row_len, indices, weights, partner = ties
    removed = 0
    for i in range(row_len.shape[0]):
        if not alive[i]:
            continue
        start = indptr[i]
        for p in range(start + row_len[i] - 1, start - 1, -1):
            j = indices[p]
            if j < i or partner[p]:
                continue  # each tie once, from its lower end; partnerships never decay
            w = weights[p] * (1.0 - decay)
            if w < floor:
                remove_tie(ties, i, p)
                removed += 1
                continue
            # set_weight written out: this loop runs over every tie every step, and reading
            # the rows through the local arrays keeps it as fast as the unbundled kernel
            weights[p] = w
            for q in range(indptr[j], indptr[j] + row_len[j]):
                if indices[q] == i:
                    weights[q] = w
                    break
    return removed


@njit(cache=True, nogil=True)
def form_ties(agents: Agents, ties: Ties, rng_state: np.ndarray, prm: KibsParams) -> int:
    """New ties, made with weight w_0; returns how many. For every living agent i in slot order:

    1. triadic closure with probability p_T: a neighbour j, then a neighbour k of j, uniformly;
       tie i-k (Granovetter 1973; cluster networks close triads);
    2. proximity search with probability p_S: a uniform candidate j, accepted with
       exp(-dist_ij / s) (1 - delta_ij);
    3. an intermediary, with probability p_B, ties two of its neighbours drawn uniformly
       (brokerage; paper s.III.A: intermediaries provide information and consultation);
    4. long-range search with probability p_L (information interface, paper s.IV.D): a uniform
       candidate j anywhere, accepted with 1 - delta_ij.
    One uniform is drawn per agent for each of 1, 2 and 4 (and for 3 if INT) whatever follows.
    """
    agent_type = agents.agent_type
    knowledge = agents.knowledge
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
            if alive[j] and j != i and uniform(rng_state) < proximity_accept(
                    agents, i, j, prm.distance_scale):
                if add_tie(ties, i, j, w0, False):
                    made += 1
        if agent_type[i] == INT:
            if uniform(rng_state) < prm.broker_p and row_len[i] > 1:
                a = indices[start + integer(rng_state, row_len[i])]
                b = indices[start + integer(rng_state, row_len[i])]
                if add_tie(ties, a, b, w0, False):
                    made += 1
        if uniform(rng_state) < prm.long_range_p:
            j = integer(rng_state, n)
            if alive[j] and j != i and uniform(rng_state) < 1.0 - cognitive_distance(knowledge, i, j):
                if add_tie(ties, i, j, w0, False):
                    made += 1
    return made


# --------------------------------------------------------------------------- measures


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


# --------------------------------------------------------------------------- replicate


@njit(cache=True, nogil=True)
def workspace(agents: Agents) -> Workspace:
    """Fresh scratch arrays for a replicate of these agents (order = identity, totals 0)."""
    n = agents.agent_type.shape[0]
    return Workspace(np.zeros(n), np.arange(n), np.zeros(agents.knowledge.shape[1]), np.zeros(1))


@njit(cache=True, nogil=True)
def run_replicate(
    agents: Agents, ties: Ties, traits: TypeTraits, rng_state: np.ndarray, prm: KibsParams, steps: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run ``steps`` steps (months) on the cluster state, in place.

    Each step: meetings; knowledge production and platform transfer; innovation; finance and
    selection; network dynamics (decay, then formation). A process switched off in ``prm``
    draws nothing from the stream.

    Returns per-step arrays of length steps + 1 (index 0 = before the first step):
    HTE mean knowledge, cumulative innovations, tie count, and a length-2 float array
    (KIBS revenue, HTE exits).
    """
    work = workspace(agents)
    hte_mean = np.zeros(steps + 1)
    cumulative = np.zeros(steps + 1, dtype=np.int64)
    tie_count = np.zeros(steps + 1, dtype=np.int64)
    hte_mean[0] = hte_mean_knowledge(agents)
    tie_count[0] = ties.row_len.sum() // 2
    total_innovations = 0
    exits = 0
    for t in range(1, steps + 1):
        work.gained[:] = 0.0
        meetings(agents, ties, work, rng_state, prm)
        if prm.production:
            produce_knowledge(agents, work, prm)
            platform_transfer(agents, work, prm)
        if prm.innovation:
            total_innovations += innovate(agents, ties, work, rng_state, prm)
        if prm.finance:
            exits += finance(agents, ties, traits, rng_state, prm)
        if prm.network_dynamics:
            decay_ties(ties, agents.alive, prm.tie_decay, prm.tie_floor)
            form_ties(agents, ties, rng_state, prm)
        hte_mean[t] = hte_mean_knowledge(agents)
        cumulative[t] = total_innovations
        tie_count[t] = ties.row_len.sum() // 2
    totals = np.array([work.revenue[0], float(exits)])
    return hte_mean, cumulative, tie_count, totals
