"""The cluster state: agent types, ledger accounts and counters, the instrument table, the state
tuples every kernel takes, and drawing an agent.

State of a cluster of n agents (one slot per agent; a slot freed by an exit may be reused by an
entrant of the same type), in NamedTuples that every kernel takes whole (Numba compiles
NamedTuples of arrays into structs; a field access costs what a separate argument costs):

- :class:`Agents`: type, position, knowledge, core field, managerial capability, capital (net
  worth: negative capital is debt owed to the agent's banks), the two innovation potentials
  (imitation, independent), innovation count, alive, and ``enrolled``, the instrument table's
  flags: which programme reaches the agent (one column per instrument, :data:`INSTRUMENT_NAMES`).
- :class:`Ties`: the network in *padded* CSR form, so that ties can be made and dropped in
  place: row i holds ``row_len[i]`` ties in ``indices[indptr[i]:indptr[i] + row_len[i]]``, with
  capacity ``indptr[i + 1] - indptr[i]``; ``weights`` (tie strength w in (0, 1], social capital
  and trust), ``partner`` (strategic partnership) and ``mirror`` (the slot of the tie's copy in
  the other row, so updating both copies costs O(1)) run parallel to ``indices``. Every
  undirected tie is stored in both rows with the same weight and flag.
- :class:`Workspace`: scratch arrays, the money ledger and the event counters of a replicate.
- :class:`KibsParams`: every parameter the step kernels read, built from the validated config
  by ``kibs_mc.models.kibs.governance.kernel_parameters`` (the single place where the
  governance budget becomes instrument money and reach); :class:`TypeTraits` holds what drawing
  a new agent needs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from kibs_mc.kernels.rng import integer, uniform
from numba import njit

HTE = 0
T_KIBS = 1
P_KIBS = 2
UNI = 3
INT = 4
FIN = 5
#: Type names in type order (the order of every per-type list in ``conf/cluster``).
TYPE_NAMES = ("hte", "t_kibs", "p_kibs", "uni", "intermediaries", "fin")
N_TYPES = 6

# The instrument table: one column of ``Agents.enrolled``, one entry of ``KibsParams.money``,
# ``.reach`` and ``.unit_cost``, of ``Workspace.recipients``, ``.per_unit`` and ``.delivered``,
# and one account in each per-instrument block of the ledger, per instrument k: the paper's
# four interfaces (s.IV.A-D). A new instrument is a new index here (and its function in
# ``instruments``): every array and block is sized by N_INSTRUMENTS.
STRATEGIC = 0  # partnership programme: matching grants for joint projects
MANAGEMENT = 1  # subsidised consulting
BUSINESS = 2  # service vouchers and the universities' technology platform
INFORMATION = 3  # the intermediaries' information platform
N_INSTRUMENTS = 4
#: Instrument names in instrument order.
INSTRUMENT_NAMES = ("strategic", "management", "business", "information")
#: Whether an instrument is for HTEs only (else every agent is eligible), in instrument order.
HTE_ONLY = (True, True, True, False)
#: The order in which the instruments draw who they reach, at the start (``enrol``: one uniform
#: per eligible agent and instrument, instrument by instrument) and for an entrant (``finance``:
#: one uniform per instrument, after the one that decides whether an entrant comes). Every
#: draw is made whatever the budget, so scenarios that share a seed share their cluster.
ENROL_ORDER = (BUSINESS, STRATEGIC, MANAGEMENT, INFORMATION)

# Ledger accounts (Workspace.ledger): money summed over the run. The first five are the flows
# across the cluster's boundary, so that the living agents' capital changes by
# GOV_SPENT + MARKET_IN + ENTRY_IN - COSTS_OUT - EXIT_OUT (``replicate.money_residual``).
GOV_SPENT = 0  # government money the instruments spent (paid into the cluster)
MARKET_IN = 1  # market revenue: innovation rewards and the value of joint innovations
COSTS_OUT = 2  # every cost paid outside: the sum of the five cost accounts below (FIXED_COSTS ..)
ENTRY_IN = 3  # capital brought in by entrants
EXIT_OUT = 4  # net worth of exiting firms taken off the books (negative: debt written off)
KIBS_GROSS = 5  # KIBS revenue: fees, consulting and service contracts, benefit shares
KIBS_COSTS = 6  # KIBS costs: operating cost, production, project outlays, interest
INTEREST = 7  # interest received by banks
DEFAULTS = 8  # loans written off by banks
JOINT_VALUE = 9  # market value of joint innovations (part of MARKET_IN)
HTE_KIBS_SERVICES = 10  # KIBS services bought by or for HTEs: fees, consulting and service contracts
HTE_SPENDING = 11  # HTEs' spending: fixed cost, R&D, interest, project outlays and grants, services
FEES = 12  # service fees HTEs paid KIBS in meetings
FIXED_COSTS = 13  # HTEs' fixed cost and KIBS' operating cost
RD_COSTS = 14  # HTEs' R&D and T-KIBS' knowledge production
PROJECT_COSTS = 15  # joint projects: the grants and the partners' outlays, spent on the project
PLATFORM_COSTS = 16  # running the universities' and the intermediaries' platforms
INTEREST_OUT = 17  # interest paid to outside lenders (by firms without bank ties)
# per-instrument blocks, sized by the instrument table
GOV_STRATEGIC = 18  # money spent by instrument k: GOV_STRATEGIC + k
GOV_MANAGEMENT = GOV_STRATEGIC + MANAGEMENT
GOV_BUSINESS = GOV_STRATEGIC + BUSINESS
GOV_INFORMATION = GOV_STRATEGIC + INFORMATION
GOV_UNSPENT = GOV_STRATEGIC + N_INSTRUMENTS  # money instrument k had but did not spend: + k
GOV_DEPTH = GOV_UNSPENT + N_INSTRUMENTS  # spent beyond the unit cost of what was reached: + k
GOV_TO = GOV_DEPTH + N_INSTRUMENTS  # spent by instrument k on agents of type t: + k N_TYPES + t
N_LEDGER = GOV_TO + N_INSTRUMENTS * N_TYPES

# Tally counters (Workspace.tally).
HTE_EXITS = 0
KIBS_EXITS = 1
FIN_EXITS = 2
IMITATIONS = 3  # innovations by imitation
INDEPENDENT = 4  # independent innovations from own R&D
PROJECTS = 5  # joint-project months run
JOINT = 6  # joint innovations (successful joint projects)
BELOW_OPTIMUM = 7  # meetings whose learner's distance was below the learning optimum
ABOVE_OPTIMUM = 8  # ... at or above it
T_PARTNERS = 9  # strategic partnerships formed with T-KIBS
P_PARTNERS = 10  # ... with P-KIBS
YOUNG_ENTRANTS = 11  # HTE entrants observed for YOUNG_WINDOW steps before the run ends
YOUNG_EXITS = 12  # ... of which exited within YOUNG_WINDOW steps of entry
MATCHES = 13  # ties brokered by the information platform
N_TALLY = 14

#: Steps (months) within which an entrant's exit counts as a young firm's exit: two years.
YOUNG_WINDOW = 24
#: Bins of ``Workspace.exit_innovations``; the last bin holds every count at or above it.
INNOVATION_BINS = 4096


class Agents(NamedTuple):
    """Per-agent state, one slot per agent (see the module docstring)."""

    agent_type: np.ndarray  # int64 (n)
    position: np.ndarray  # float64 (n, 2)
    knowledge: np.ndarray  # float64 (n, D)
    core: np.ndarray  # int64 (n)
    manage: np.ndarray  # float64 (n), managerial capability m_i
    capital: np.ndarray  # float64 (n), net worth
    potential: np.ndarray  # float64 (n), imitation potential (knowledge absorbed)
    own_potential: np.ndarray  # float64 (n), independent-innovation potential (own R&D)
    innovations: np.ndarray  # int64 (n)
    alive: np.ndarray  # bool (n)
    enrolled: np.ndarray  # bool (n, N_INSTRUMENTS): reached by instrument k (the instrument table)
    firm: np.ndarray  # int64 (n): the id of the firm in the slot (an entrant gets a new one)
    partner: np.ndarray  # int64 (n): an HTE's strategic partner's slot (-1: none) ...
    partner_firm: np.ndarray  # int64 (n): ... and its firm id (a partner that left is no partner)
    alignment: np.ndarray  # float64 (n): goal alignment of the HTE's partnership, in [0, 1]
    project: np.ndarray  # float64 (n): knowledge the HTE's joint project built, not yet launched


class Ties(NamedTuple):
    """The network in padded CSR form; every undirected tie is stored in both rows."""

    indptr: np.ndarray  # int64 (n + 1): row i's capacity is indptr[i + 1] - indptr[i]
    row_len: np.ndarray  # int64 (n): ties in row i
    indices: np.ndarray  # int64: the other end of each tie
    weights: np.ndarray  # float64: tie strength w in (0, 1]
    partner: np.ndarray  # bool: strategic partnership
    mirror: np.ndarray  # int64: slot of the same tie in the other end's row (-1: unused slot)


class Workspace(NamedTuple):
    """Scratch arrays and running totals of one replicate, allocated once (:func:`workspace`)."""

    gained: np.ndarray  # float64 (n): knowledge absorbed this step (imitation)
    own_gained: np.ndarray  # float64 (n): own R&D this step (independent innovation)
    order: np.ndarray  # int64 (n): the random-sequential meeting order
    pool: np.ndarray  # float64 (D): the platform's pooled UNI knowledge
    ledger: np.ndarray  # float64 (N_LEDGER): money over the run, by account
    tally: np.ndarray  # int64 (N_TALLY): counts over the run
    recipients: np.ndarray  # int64 (N_INSTRUMENTS): agents reached by each instrument this step
    type_start: np.ndarray  # int64 (N_TYPES + 1): type t holds by_type[type_start[t]:type_start[t + 1]]
    by_type: np.ndarray  # int64 (n): slots grouped by type, in slot order (a slot keeps its type)
    ranking: np.ndarray  # int64 (n): scratch, living KIBS of one type best first (:func:`rank_kibs`)
    clock: np.ndarray  # int64 (3): the current step, the run's last step, firms entered so far
    born: np.ndarray  # int64 (n): step at which the slot's firm entered (0: there at the start)
    exit_innovations: np.ndarray  # int64 (INNOVATION_BINS): exited HTEs by innovation count
    served: np.ndarray  # float64 (n): depth of the engineering service an HTE received this step
    per_unit: np.ndarray  # float64 (N_INSTRUMENTS): money per recipient this step (information:
    # the share of its members' upkeep the platform pays this step)
    demand: np.ndarray  # float64 (D): innovations launched in each field, a decaying count
    codified: np.ndarray  # float64 (D): the information platform's codified knowledge
    delivered: np.ndarray  # float64 (N_INSTRUMENTS): what each instrument's mechanism added (s.9)
    policy: np.ndarray  # uint64 (1): the random stream of the instruments' own draws
    members: np.ndarray  # int64 (N_INSTRUMENTS, n): each instrument's living members this step,
    # in slot order (the first member_count[k] of row k; ``instruments.list_members``)
    member_count: np.ndarray  # int64 (N_INSTRUMENTS)


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
    transfer_efficiency: float  # tau_0
    trust_weight: float  # psi: share of the transfer that depends on tie strength
    tie_reinforcement: float
    service_fee: float
    consulting_rate: float  # spontaneous consulting in a meeting with a P-KIBS
    production: bool
    uni_rate: float
    t_kibs_rate: float
    t_kibs_cost: float  # T-KIBS's cost of producing knowledge per step
    rd_gain: float
    rd_cost: float
    rd_cost_cut: float  # share of R&D cost an engineering service of full depth saves
    innovation: bool
    imitation_rate: float
    imitation_reward: float
    independent_rate: float
    independent_reward: float
    market_elasticity: float  # epsilon: demand factor (1 + launched_d / Q)^-epsilon
    market_capacity: float  # Q: launches per field in the market's memory that halve demand at epsilon 1
    market_keep: float  # 1 - 1 / memory: the share of the launch count kept from one month to the next
    innovation_knowledge: float
    conversion_management_weight: float
    finance: bool
    fixed_cost: float  # HTE
    kibs_fixed_cost: float  # T- and P-KIBS operating cost
    credit_line: float
    interest: float
    startup_prob: float
    startup_capital: float
    startup_search: int
    network_dynamics: bool
    tie_decay: float
    tie_floor: float
    new_tie_weight: float
    triadic_p: float
    proximity_p: float
    distance_scale: float
    broker_p: float
    # governance instruments (docs/ODD.md s.7.6), one entry per instrument in instrument order:
    money: tuple[float, ...]  # money per step
    reach: tuple[float, ...]  # probability that an eligible agent is reached
    unit_cost: tuple[float, ...]  # money per unit reached per step
    project_outlay: float  # C_o: the partners' own outlay per project month, split by risk share
    project_yield: float  # y_P: knowledge a project builds per month per (money)^gamma
    project_elasticity: float  # gamma: returns to the project's resources
    project_rate: float  # lambda_P: launch hazard per unit of knowledge built
    joint_value: float  # v_J: market value per unit of knowledge of a joint innovation
    benefit_share: float  # beta: the KIBS partner's share of the value
    risk_share: float  # s_r: the KIBS partner's share of the outlay
    partner_cover: float  # H: months of its partnerships' outlays a KIBS's capital covers to take one
    opportunism: float  # o: share of the resources a misaligned partnership wastes
    alignment_start: float  # g_0: a new partnership's goal alignment
    alignment_gain: float  # a success closes this share of 1 - g
    alignment_wear: float  # a month without success wears this share of g
    consulting_effect: float  # e_M: capability step per unit of consulting money
    service_effect: float  # e_S: service depth per unit of service money
    platform_fee_share: float  # f: share of a voucher paid to the universities' platform
    platform_transfer: float  # pi: members' learning intensity from the platform at full funding
    platform_effect: float  # e_P: platform funding per unit of fee per member
    match_cost: float  # c_m: money per brokered match
    match_candidates: int  # candidates the broker screens per match
    codified_transfer: float  # kappa_I: members' learning intensity from the codified pool
    search_draws: int  # KIBS a firm off the platform screens when it looks for one
    traits: TypeTraits  # what drawing an entrant needs
    prefetch_from: int = 2_000  # meetings and decay prefetch from this many agents on (PREFETCH_FROM)


#: Clusters from this many agents on fetch the data of meetings and tie decay a few agents
#: ahead (:func:`meetings_ahead`, :func:`decay_ties`); below it everything sits in the caches
#: anyway, and fetching ahead costs more than it saves (docs/bench/journal.md, the cluster
#: kernel).
PREFETCH_FROM = 2_000
#: How many agents ahead of the meeting in progress the next agents' data is fetched (their
#: state at twice this, their rows of ties at this).
PREFETCH_AHEAD = 8
#: How many agents ahead the partner each will draw is foreseen and its data fetched (its row
#: of ties arrived PREFETCH_AHEAD - PREDICT_AHEAD agents earlier); below 8 (the ring of
#: :func:`meetings_ahead`).
PREDICT_AHEAD = 4


@njit(cache=True, nogil=True, inline="always")
def is_kibs(t: int) -> bool:
    """T-KIBS or P-KIBS."""
    return t == T_KIBS or t == P_KIBS


@njit(cache=True, nogil=True)
def draw_agent(i: int, t: int, agents: Agents, traits: TypeTraits, rng_state: np.ndarray) -> None:
    """Draw the initial state of agent ``i`` of type ``t`` (also used for entrants).

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
    agents.potential[i] = 0.0
    agents.own_potential[i] = 0.0
    agents.partner[i] = -1
    agents.partner_firm[i] = -1
    agents.alignment[i] = 0.0
    agents.project[i] = 0.0


@njit(cache=True, nogil=True)
def workspace(agents: Agents) -> Workspace:
    """Fresh scratch arrays for a replicate of these agents (order = identity, totals 0)."""
    n = agents.agent_type.shape[0]
    type_start = np.zeros(N_TYPES + 1, dtype=np.int64)
    for i in range(n):
        type_start[agents.agent_type[i] + 1] += 1
    for t in range(N_TYPES):
        type_start[t + 1] += type_start[t]
    by_type = np.empty(n, dtype=np.int64)
    fill = type_start[:-1].copy()
    for i in range(n):
        by_type[fill[agents.agent_type[i]]] = i
        fill[agents.agent_type[i]] += 1
    return Workspace(
        np.zeros(n),
        np.zeros(n),
        np.arange(n),
        np.zeros(agents.knowledge.shape[1]),
        np.zeros(N_LEDGER),
        np.zeros(N_TALLY, dtype=np.int64),
        np.zeros(N_INSTRUMENTS, dtype=np.int64),
        type_start,
        by_type,
        np.zeros(n, dtype=np.int64),
        np.zeros(3, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.zeros(INNOVATION_BINS, dtype=np.int64),
        np.zeros(n),
        np.zeros(N_INSTRUMENTS),
        np.zeros(agents.knowledge.shape[1]),
        np.zeros(agents.knowledge.shape[1]),
        np.zeros(N_INSTRUMENTS),
        np.zeros(1, dtype=np.uint64),
        np.zeros((N_INSTRUMENTS, n), dtype=np.int64),
        np.zeros(N_INSTRUMENTS, dtype=np.int64),
    )
