"""The cluster model, version 2: HTEs, KIBS, universities, intermediaries and banks as firms
with balance sheets, and the four governance interfaces as policy instruments in money.

MODEL.md section 3; every equation below is written out in ``docs/ODD.md`` (section 7,
"Submodels"), which ties it to the paragraph of the seed paper it represents.

State of a cluster of n agents (one slot per agent; a slot freed by an exit may be reused by an
entrant of the same type), in two NamedTuples that every kernel takes whole (Numba compiles
NamedTuples of arrays into structs; a field access costs what a separate argument costs):

- :class:`Agents`: type, position, knowledge, core field, managerial capability, capital (net
  worth: negative capital is debt owed to the agent's banks), the two innovation potentials
  (imitation, independent), innovation count, alive, and the four instrument flags (which
  programme reaches the agent: platform ``member``, strategic ``contracted``, ``consulted``,
  information ``connected``).
- :class:`Ties`: the network in *padded* CSR form, so that ties can be made and dropped in
  place: row i holds ``row_len[i]`` ties in ``indices[indptr[i]:indptr[i] + row_len[i]]``, with
  capacity ``indptr[i + 1] - indptr[i]``; ``weights`` (tie strength w in (0, 1], social capital
  and trust), ``partner`` (strategic partnership) and ``mirror`` (the slot of the tie's copy in
  the other row, so updating both copies costs O(1)) run parallel to ``indices``. Every
  undirected tie is stored in both rows with the same weight and flag.

Money is conserved: every flow is either between two balance sheets (fees, consulting and
service contracts, benefit and risk shares, interest, defaults) or crosses the cluster's
boundary and is booked in the :class:`Workspace` ledger (government money in, market revenue
in, costs out, entrants' capital in, the net worth of exiting firms out), so that the sum of
capital over living agents changes by exactly the booked external flows (a test checks it).

Kernel parameters arrive as one :class:`KibsParams` tuple, built from the validated config by
``kibs_mc.governance.kernel_parameters`` (the single place where the governance budget becomes
instrument money and reach); :class:`TypeTraits` holds what drawing a new agent needs.
Randomness comes only from the replicate's SplitMix64 state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from kibs_mc.kernels.cowan_jonard import can_trade
from kibs_mc.kernels.rng import integer, peek_uniform, shuffle, uniform
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

HTE = 0
T_KIBS = 1
P_KIBS = 2
UNI = 3
INT = 4
FIN = 5
#: Type names in type order (the order of every per-type list in ``conf/cluster``).
TYPE_NAMES = ("hte", "t_kibs", "p_kibs", "uni", "intermediaries", "fin")
N_TYPES = 6

# Ledger accounts (Workspace.ledger, money summed over the run).
GOV_SPENT = 0  # government money paid into the cluster by the four instruments
MARKET_IN = 1  # innovation rewards and joint-project surplus from outside the cluster
COSTS_OUT = 2  # fixed and operating costs, R&D, project outlays, interest to outside lenders
ENTRY_IN = 3  # capital brought in by entrants
EXIT_OUT = 4  # net worth of exiting firms taken off the books (negative: debt written off)
KIBS_GROSS = 5  # KIBS revenue: fees, consulting and service contracts, benefit shares
KIBS_COSTS = 6  # KIBS costs: operating cost, production, project risk shares, interest
INTEREST = 7  # interest received by banks
DEFAULTS = 8  # loans written off by banks
SURPLUS = 9  # joint-project surplus generated
GOV_STRATEGIC = 10  # government money by instrument
GOV_MANAGEMENT = 11
GOV_BUSINESS = 12
GOV_INFORMATION = 13
HTE_KIBS_SERVICES = 14  # KIBS services bought by or for HTEs: fees, consulting and service contracts
HTE_SPENDING = 15  # HTEs' spending: fixed cost, R&D, interest, project outlay share, services bought
N_LEDGER = 16

# Tally counters (Workspace.tally).
HTE_EXITS = 0
KIBS_EXITS = 1
FIN_EXITS = 2
IMITATIONS = 3  # innovations by imitation
INDEPENDENT = 4  # independent innovations (own R&D and joint projects)
PROJECTS = 5  # joint-project steps run
PROJECT_SUCCESS = 6
BELOW_OPTIMUM = 7  # meetings whose learner's distance was below the learning optimum
ABOVE_OPTIMUM = 8  # ... at or above it
T_PARTNERS = 9  # strategic partnerships formed with T-KIBS
P_PARTNERS = 10  # ... with P-KIBS
YOUNG_ENTRANTS = 11  # HTE entrants observed for YOUNG_WINDOW steps before the run ends
YOUNG_EXITS = 12  # ... of which exited within YOUNG_WINDOW steps of entry
N_TALLY = 13

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
    member: np.ndarray  # bool (n), business interface: service vouchers and the platform
    contracted: np.ndarray  # bool (n), strategic interface: partnership programme
    consulted: np.ndarray  # bool (n), management interface: subsidised consulting
    connected: np.ndarray  # bool (n), information interface: on the information platform


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
    recipients: np.ndarray  # int64 (4): agents reached by each instrument this step
    type_start: np.ndarray  # int64 (N_TYPES + 1): type t holds by_type[type_start[t]:type_start[t + 1]]
    by_type: np.ndarray  # int64 (n): slots grouped by type, in slot order (a slot keeps its type)
    ranking: np.ndarray  # int64 (n): scratch, living KIBS of one type best first (:func:`rank_kibs`)
    clock: np.ndarray  # int64 (2): the current step and the last step of the run (run_replicate)
    born: np.ndarray  # int64 (n): step at which the slot's firm entered (0: there at the start)
    exit_innovations: np.ndarray  # int64 (INNOVATION_BINS): exited HTEs by innovation count


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
    information_gain: float  # tau = tau_0 + gain (1 - tau_0) (c_i + c_j) / 2, c = connected
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
    rd_cost_member: float  # R&D cost with the KIBS' engineering and software services
    platform_transfer: float
    innovation: bool
    imitation_rate: float
    imitation_reward: float
    independent_rate: float
    independent_reward: float
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
    long_range_p: float  # per connected agent-step
    # governance instruments: money per step and reach (probability that an eligible agent
    # is reached), MODEL.md s.3 v2, docs/ODD.md s.7.6
    strategic_money: float
    management_money: float
    business_money: float
    information_money: float
    partnership_share: float
    consulting_share: float
    platform_share: float
    connect_share: float
    project_cost: float
    project_rate: float
    project_value: float
    benefit_share: float
    risk_share: float
    opportunism: float
    goal_alignment: float
    consulting_effect: float  # per unit of money
    service_effect: float  # per unit of money
    platform_fee_share: float  # share of a voucher paid to the UNI platform
    information_synergy: float  # theta: connected HTEs get (1 + theta) of every instrument
    traits: TypeTraits  # what drawing an entrant needs
    prefetch_from: int = 2_000  # meetings and decay prefetch from this many agents on (PREFETCH_FROM)


#: Clusters from this many agents on fetch the data of meetings and tie decay a few agents
#: ahead (:func:`meetings_ahead`, :func:`decay_ties`); below it everything sits in the caches
#: anyway (measured for the meetings: no gain at 2000 agents, 1.8x at 5000, a cost of up to
#: 15% at 389; with the partner foreseen as well, 1.8x at 50 000).
PREFETCH_FROM = 2_000
#: How many agents ahead of the meeting in progress the next agents' data is fetched (their
#: state at twice this, their rows of ties at this).
PREFETCH_AHEAD = 8
#: How many agents ahead the partner each will draw is foreseen and its data fetched (its row
#: of ties arrived PREFETCH_AHEAD - PREDICT_AHEAD agents earlier); below 8 (the ring of
#: :func:`meetings_ahead`).
PREDICT_AHEAD = 4


def _emit_prefetch(builder, ptr, write):  # type: ignore[no-untyped-def]
    i32 = ir.IntType(32)
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    rw, high_locality, data = ir.Constant(i32, write), ir.Constant(i32, 3), ir.Constant(i32, 1)
    builder.call(fn, [builder.bitcast(ptr, i8p), rw, high_locality, data])


def _prefetch_intrinsic(write: int):  # type: ignore[no-untyped-def]
    """An intrinsic ``f(arr, row, col)`` that hints the CPU to fetch ``arr[row]`` (1-D; col is
    ignored) or ``arr[row, col]`` (2-D) into the caches (LLVM ``llvm.prefetch``, high locality;
    ``write``: the line will be written, so it is fetched for ownership). Changes no value."""

    @intrinsic
    def fetch(typingctx, arr, row, col):  # type: ignore[no-untyped-def]
        if not isinstance(arr, types.Array) or arr.ndim > 2:
            return None
        sig = types.void(arr, types.intp, types.intp)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            index = [args[1]] if aryty.ndim == 1 else [args[1], args[2]]
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, index, wraparound=False)
            _emit_prefetch(builder, ptr, write)
            return context.get_dummy_value()

        return sig, codegen

    return fetch


prefetch = _prefetch_intrinsic(0)
prefetch_write = _prefetch_intrinsic(1)


@njit(cache=True, nogil=True, inline="always")
def _prefetch_agent(agents: Agents, ties: Ties, work: Workspace, i: int) -> None:
    """Fetch what a meeting of i reads first: its row's place and length, its state (a
    knowledge row may straddle two cache lines: both ends)."""
    prefetch(ties.row_len, i, 0)
    prefetch(ties.indptr, i, 0)
    prefetch(agents.alive, i, 0)
    prefetch(agents.agent_type, i, 0)
    prefetch(agents.manage, i, 0)
    prefetch(agents.connected, i, 0)
    prefetch(agents.capital, i, 0)
    prefetch(work.gained, i, 0)
    prefetch_write(agents.knowledge, i, 0)
    prefetch_write(agents.knowledge, i, agents.knowledge.shape[1] - 1)


@njit(cache=True, nogil=True, inline="always")
def _prefetch_ties(ties: Ties, i: int) -> None:
    """Fetch i's row of ties, both ends of each array (weights for the partner draw, the
    chosen tie's other end, flag and mirror slot); ``indptr[i]`` and ``row_len[i]`` were
    fetched earlier."""
    start = ties.indptr[i]
    prefetch(ties.weights, start, 0)
    prefetch(ties.indices, start, 0)
    prefetch(ties.partner, start, 0)
    prefetch(ties.mirror, start, 0)
    last = start + ties.row_len[i] - 1
    if last > start:
        prefetch(ties.weights, last, 0)
        prefetch(ties.indices, last, 0)
        prefetch(ties.partner, last, 0)
        prefetch(ties.mirror, last, 0)


@njit(cache=True, nogil=True, inline="always")
def is_kibs(t: int) -> bool:
    """T-KIBS or P-KIBS."""
    return t == T_KIBS or t == P_KIBS


# --------------------------------------------------------------------------- agents


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


@njit(cache=True, nogil=True)
def mirror_slots(indptr: np.ndarray, row_len: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``Ties.mirror`` of padded CSR rows in which every tie is stored in both rows once."""
    mirror = np.full(indices.shape[0], -1, dtype=np.int64)
    for i in range(row_len.shape[0]):
        for p in range(indptr[i], indptr[i] + row_len[i]):
            j = indices[p]
            if j > i:
                for q in range(indptr[j], indptr[j] + row_len[j]):
                    if indices[q] == i:
                        mirror[p] = q
                        mirror[q] = p
                        break
    return mirror


@njit(cache=True, nogil=True, inline="always")
def add_tie(ties: Ties, i: int, j: int, w: float, is_partner: bool) -> bool:
    """Tie i and j with weight w; False (and nothing changed) if i == j, they are already tied,
    or either row is full."""
    if i == j or find_slot(ties, i, j) >= 0:
        return False
    indptr, row_len, indices, weights, partner, mirror = ties
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
    mirror[p] = q
    mirror[q] = p
    row_len[i] += 1
    row_len[j] += 1
    return True


@njit(cache=True, nogil=True, inline="always")
def _drop_slot(ties: Ties, i: int, p: int) -> None:
    indptr, row_len, indices, weights, partner, mirror = ties
    last = indptr[i] + row_len[i] - 1
    if last != p:
        indices[p] = indices[last]
        weights[p] = weights[last]
        partner[p] = partner[last]
        mirror[p] = mirror[last]
        mirror[mirror[p]] = p  # the moved tie's other copy points to its new slot
    mirror[last] = -1
    row_len[i] -= 1


@njit(cache=True, nogil=True, inline="always")
def remove_tie(ties: Ties, i: int, p: int) -> None:
    """Remove the tie in slot p of i's row, and its mirror in the other row. The last tie of
    each row moves into the freed slot."""
    j = ties.indices[p]
    q = ties.mirror[p]
    _drop_slot(ties, i, p)
    _drop_slot(ties, j, q)


@njit(cache=True, nogil=True, inline="always")
def set_weight(ties: Ties, i: int, p: int, w: float) -> None:
    """Set the weight of the tie in slot p of i's row and of its mirror."""
    ties.weights[p] = w
    ties.weights[ties.mirror[p]] = w


@njit(cache=True, nogil=True, inline="always")
def first_partner(ties: Ties, i: int) -> int:
    """The first strategic partner of i, or -1."""
    start = ties.indptr[i]
    for p in range(start, start + ties.row_len[i]):
        if ties.partner[p]:
            return ties.indices[p]
    return -1


@njit(cache=True, nogil=True)
def best_tied(agents: Agents, ties: Ties, i: int, t: int, by_management: bool) -> int:
    """The living neighbour of type t with the highest managerial capability (by_management)
    or the highest mean knowledge, first in slot order on ties; -1 if none."""
    best = -1
    best_value = -1.0
    knowledge = agents.knowledge
    start = ties.indptr[i]
    for p in range(start, start + ties.row_len[i]):
        j = ties.indices[p]
        if agents.agent_type[j] != t or not agents.alive[j]:
            continue
        if by_management:
            value = agents.manage[j]
        else:
            value = 0.0
            for f in range(knowledge.shape[1]):
                value += knowledge[j, f]
        if value > best_value:
            best_value = value
            best = j
    return best


# --------------------------------------------------------------------------- learning


@njit(cache=True, nogil=True, inline="always")
def absorptive_capacity(
    knowledge: np.ndarray,
    i: int,
    manage_i: float,
    base: float,
    knowledge_half: float,
    management_weight: float,
) -> float:
    """Absorptive capacity a_i = A_t * kbar_i / (kbar_i + K_half) * (1 - omega_m + omega_m m_i).

    Rises with prior knowledge kbar_i (the mean of k_i over fields) and with managerial
    capability m_i, from a type-specific base A_t (Cohen & Levinthal 1990, "Absorptive capacity",
    Admin. Sci. Q. 35:128-152; seed paper section II.A). a_i lies in [0, A_t].
    """
    d = knowledge.shape[1]
    total = 0.0
    for f in range(d):
        total += knowledge[i, f]
    return _capacity(total / d, manage_i, base, knowledge_half, management_weight)


@njit(cache=True, nogil=True, inline="always")
def _capacity(
    kbar: float, manage_i: float, base: float, knowledge_half: float, management_weight: float
) -> float:
    """:func:`absorptive_capacity` from the mean knowledge kbar_i."""
    if kbar <= 0.0:
        return 0.0
    return base * kbar / (kbar + knowledge_half) * (1.0 - management_weight + management_weight * manage_i)


@njit(cache=True, nogil=True)
def profile_distance(x: np.ndarray, y: np.ndarray) -> float:
    """delta = ||x - y||_1 / (||x||_1 + ||y||_1), in [0, 1] for non-negative vectors (0 if both
    are zero): the one cognitive distance of the model, between agents or an agent and a pool."""
    num = 0.0
    den = 0.0
    for f in range(x.shape[0]):
        num += abs(x[f] - y[f])
        den += x[f] + y[f]
    return num / den if den > 0.0 else 0.0


@njit(cache=True, nogil=True, inline="always")
def cognitive_distance(knowledge: np.ndarray, i: int, j: int) -> float:
    """delta_ij = ||k_i - k_j||_1 / (||k_i||_1 + ||k_j||_1), in [0, 1].

    Grows with differences in level as well as in profile (MODEL.md s.3), so a deeper expert in
    one's own field is distant, not identical (Nooteboom et al. 2007, Research Policy 36:1016).
    """
    num = 0.0
    den = 0.0
    for f in range(knowledge.shape[1]):
        x = knowledge[i, f]
        y = knowledge[j, f]
        num += abs(x - y)
        den += x + y
    return num / den if den > 0.0 else 0.0


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
    rate = a tau phi s). Returns the knowledge gained by i and by j.
    """
    gain_i = 0.0
    gain_j = 0.0
    for f in range(knowledge.shape[1]):
        # without branches: the side that does not lag gains +0.0, which changes no value
        # (knowledge is never -0.0), so this equals the two-branch form bit for bit
        x = knowledge[i, f]
        y = knowledge[j, f]
        g_i = rate_i * max(y - x, 0.0)
        g_j = rate_j * max(x - y, 0.0)
        knowledge[i, f] = x + g_i
        knowledge[j, f] = y + g_j
        gain_i += g_i
        gain_j += g_j
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
def _absorption(agents: Agents, i: int, prm: KibsParams) -> float:
    if prm.adaptive_absorption:
        return absorptive_capacity(
            agents.knowledge,
            i,
            agents.manage[i],
            prm.absorptive_base[agents.agent_type[i]],
            prm.knowledge_half,
            prm.absorption_management_weight,
        )
    return prm.fixed_absorption


@njit(cache=True, nogil=True, inline="always")
def _learning_rate(agents: Agents, i: int, delta: float, prm: KibsParams) -> float:
    """a_i phi_i(delta) (without tau and the trust factor)."""
    a = _absorption(agents, i, prm)
    if prm.distance_learning:
        return a * learning(delta, prm.optimum_base + prm.optimum_slope * a)
    return a


@njit(cache=True, nogil=True, inline="always")
def sharing(prm: KibsParams, weight: float, is_partner: bool) -> float:
    """Share of what could be learned that the two sides actually share on a tie:
    s = (1 - psi + psi w) (trust grows with tie strength, paper s.II.A social capital), times
    1 - o (1 - g) on a strategic partnership (opportunism o, curbed by goal alignment g,
    paper s.IV.A: partnership "based on the goal consistency")."""
    s = 1.0 - prm.trust_weight + prm.trust_weight * weight
    if is_partner:
        s *= 1.0 - prm.opportunism * (1.0 - prm.goal_alignment)
    return s


@njit(cache=True, nogil=True, inline="always")
def meet(i: int, p: int, agents: Agents, ties: Ties, work: Workspace, prm: KibsParams) -> bool:
    """One meeting of i with the partner in slot p of its row; True if knowledge moved.

    1. Barter (docking only): no transfer without a double coincidence of wants.
    2. Transfer with rate_i = a_i tau_ij phi_i(delta_ij) s_ij: tau_ij raised by the information
       platform when either side is connected, s_ij the sharing factor (trust, opportunism).
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
    tau = prm.transfer_efficiency
    if agents.connected[i] or agents.connected[j]:
        c = (1.0 if agents.connected[i] else 0.0) + (1.0 if agents.connected[j] else 0.0)
        tau += prm.information_gain * (1.0 - tau) * 0.5 * c
    share = tau * sharing(prm, ties.weights[p], ties.partner[p])
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
                # out here: as an inlined helper taking the state tuples it cost 150 ns a
                # meeting, measured.)
                p = choose_partner(ties, x, peek_uniform(rng_state, m))
                j = ties.indices[p]
                prefetch_write(ties.weights, ties.mirror[p], 0)
                prefetch_write(knowledge, j, 0)
                prefetch_write(knowledge, j, last_field)
                prefetch_write(work.gained, j, 0)
                prefetch_write(agents.manage, j, 0)
                prefetch_write(agents.capital, j, 0)
                prefetch(agents.agent_type, j, 0)
                prefetch(agents.connected, j, 0)
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
    from here cost the default cluster's meetings 6-15%, measured A/B.)
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


# --------------------------------------------------------------------------- production


@njit(cache=True, nogil=True)
def produce_knowledge(agents: Agents, work: Workspace, prm: KibsParams) -> None:
    """Knowledge production, once per step:

    - UNI: k_{i,c_i} += r_U (universities are the source of new knowledge; paper s.III.A,
      Ahrweiler, Pyka & Gilbert 2011);
    - T-KIBS with capital > 0: k_{i,c_i} += r_T at cost C_T (KIBS produce knowledge, paper
      s.II.B; learning is the KIBS' own spending);
    - HTE with capital > 0: in-house R&D, k_{i,c_i} += r_H at cost C_RD (C_RD (1 - x) for
      members of the business programme, whose engineering and software services and platform
      cut the cost of product development, paper s.IV.C); the gain counts towards the
      independent-innovation potential.
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
            ledger[KIBS_COSTS] += prm.t_kibs_cost
        elif t == HTE and capital[i] > 0.0 and prm.rd_gain > 0.0:
            knowledge[i, core[i]] += prm.rd_gain
            work.own_gained[i] += prm.rd_gain
            cost = prm.rd_cost_member if agents.member[i] else prm.rd_cost
            capital[i] -= cost
            ledger[COSTS_OUT] += cost
            ledger[HTE_SPENDING] += cost


# --------------------------------------------------------------------------- instruments


@njit(cache=True, nogil=True)
def count_recipients(agents: Agents, ties: Ties, work: Workspace) -> None:
    """Agents reached by each instrument this step (living, flagged; strategic: contracted
    HTEs with a partner; information: the living intermediaries that run the platform get the
    money, the connected agents the service, so its count is of intermediaries)."""
    r = work.recipients
    r[:] = 0
    for i in range(agents.agent_type.shape[0]):
        if not agents.alive[i]:
            continue
        t = agents.agent_type[i]
        if t == HTE:
            if agents.contracted[i] and first_partner(ties, i) >= 0:
                r[0] += 1
            if agents.consulted[i]:
                r[1] += 1
            if agents.member[i]:
                r[2] += 1
        elif t == INT:
            r[3] += 1


@njit(cache=True, nogil=True, inline="always")
def _synergy(agents: Agents, i: int, prm: KibsParams) -> float:
    """1 + theta for an HTE on the information platform: the other three interfaces "must be
    implemented through the information platform" (paper s.IV.D)."""
    return 1.0 + prm.information_synergy if agents.connected[i] else 1.0


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
    prm: KibsParams,
    ranked: int,
    cursor: np.ndarray,
) -> int:
    """The KIBS of type t that serves i: its best tied one (:func:`best_tied`), else a new tie
    (weight w_0) to the best living one with a free slot; -1 if none.

    The best with a free slot is the first in ``work.ranking[:ranked]`` (:func:`rank_kibs`) at
    or after ``cursor[0]`` whose row is not full; slots only fill during the instruments step,
    so the cursor only moves forward (O(1) amortised instead of a scan of every agent)."""
    j = best_tied(agents, ties, i, t, by_management)
    if j >= 0:
        return j
    ranking = work.ranking
    while cursor[0] < ranked:
        k = ranking[cursor[0]]
        if ties.row_len[k] < ties.indptr[k + 1] - ties.indptr[k]:
            break
        cursor[0] += 1
    if cursor[0] < ranked and add_tie(ties, i, ranking[cursor[0]], prm.new_tie_weight, False):
        return ranking[cursor[0]]
    return -1


@njit(cache=True, nogil=True)
def instruments(agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> None:
    """The four governance instruments spend their money for this step (paper s.IV).

    Each instrument's money per step M_X is split equally among its recipients and lands on
    balance sheets in the cluster:

    - management (s.IV.B): a consulted HTE buys consulting from its best P-KIBS (by
      capability) for m = M_M / n_M: the P-KIBS earns m, and m_i += (1 - exp(-e_M m (1 + theta
      c_i))) (m_j - m_i);
    - business (s.IV.C): a member HTE's voucher v = M_B / n_B buys engineering and software
      services from its best T-KIBS (share 1 - f of v; the T-KIBS earns it and transfers
      knowledge one-sidedly at rate a_i phi_i (1 - exp(-e_S v (1 - f) (1 + theta c_i)))) and
      access to the universities' common technology platform (share f, paid to the living
      UNI equally; members learn from the pooled UNI knowledge, as v1);
    - information (s.IV.D): M_I pays the living intermediaries that run the platform;
    - strategic (s.IV.A): the matching grant M_S / n_S of each partnership goes into its joint
      project (:func:`joint_projects`).

    No recipient, no money spent. A contracted HTE without a partner (its partner exited)
    looks for a new one first. One uniform per partnered HTE is drawn in joint_projects.
    """
    ledger = work.ledger
    capital = agents.capital
    n = agents.agent_type.shape[0]
    if prm.strategic_money > 0.0:
        for i in range(n):
            if (
                agents.alive[i]
                and agents.contracted[i]
                and agents.agent_type[i] == HTE
                and first_partner(ties, i) < 0
            ):
                form_partnership(i, agents, ties, work, prm)
    count_recipients(agents, ties, work)
    r = work.recipients
    if prm.management_money > 0.0 and r[1] > 0:
        money = prm.management_money / r[1]
        ranked = rank_kibs(agents, work, P_KIBS, True)
        cursor = np.zeros(1, dtype=np.int64)
        for i in range(n):
            if not (agents.alive[i] and agents.consulted[i] and agents.agent_type[i] == HTE):
                continue
            j = contract_with(agents, ties, work, i, P_KIBS, True, prm, ranked, cursor)
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
    if prm.business_money > 0.0 and r[2] > 0:
        voucher = prm.business_money / r[2]
        service = voucher * (1.0 - prm.platform_fee_share)
        platform = voucher * prm.platform_fee_share
        unis = 0
        for s in range(work.type_start[UNI], work.type_start[UNI + 1]):
            if agents.alive[work.by_type[s]]:
                unis += 1
        knowledge = agents.knowledge
        ranked = rank_kibs(agents, work, T_KIBS, False)
        cursor = np.zeros(1, dtype=np.int64)
        paid = 0
        for i in range(n):
            if not (agents.alive[i] and agents.member[i] and agents.agent_type[i] == HTE):
                continue
            j = contract_with(agents, ties, work, i, T_KIBS, False, prm, ranked, cursor)
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
    if prm.information_money > 0.0 and r[3] > 0:
        each = prm.information_money / r[3]
        for s in range(work.type_start[INT], work.type_start[INT + 1]):
            if agents.alive[work.by_type[s]]:
                capital[work.by_type[s]] += each
        ledger[GOV_SPENT] += prm.information_money
        ledger[GOV_INFORMATION] += prm.information_money


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
        rate = prm.platform_transfer * prm.transfer_efficiency * _learning_rate(agents, i, delta, prm)
        for f in range(d):
            if pool[f] > knowledge[i, f]:
                g = rate * (pool[f] - knowledge[i, f])
                knowledge[i, f] += g
                gained[i] += g


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
    if prm.strategic_money <= 0.0 or work.recipients[0] == 0:
        return 0
    grant = prm.strategic_money / work.recipients[0]
    ledger = work.ledger
    capital = agents.capital
    knowledge = agents.knowledge
    successes = 0
    for i in range(agents.agent_type.shape[0]):
        if not (agents.alive[i] and agents.contracted[i] and agents.agent_type[i] == HTE):
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


# --------------------------------------------------------------------------- innovation


@njit(cache=True, nogil=True)
def innovate(agents: Agents, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> int:
    """Innovation by HTEs along two routes (paper s.III.C: "imitation innovation capability and
    independent innovation capability"); returns the number of innovations this step.

    Imitation: the potential P_i accumulates knowledge absorbed (meetings, services, platform);
    an imitation happens with probability 1 - exp(-lambda_I conv_i P_i) and earns R_I.
    Independent innovation: the potential Q_i accumulates own R&D; it happens with probability
    1 - exp(-lambda_N conv_i Q_i), earns R_N and adds kappa to the core field (new knowledge;
    an imitation adds none). conv_i = 1 - omega + omega m_i: conversion needs management
    (engineer-founders lack it, paper s.IV.B). The reward comes from the market. Two uniforms per
    living HTE per step whatever happens.
    """
    agent_type = agents.agent_type
    capital = agents.capital
    w = prm.conversion_management_weight
    count = 0
    for i in range(agent_type.shape[0]):
        if not agents.alive[i] or agent_type[i] != HTE:
            continue
        agents.potential[i] += work.gained[i]
        agents.own_potential[i] += work.own_gained[i]
        conversion = 1.0 - w + w * agents.manage[i]
        u_imitate = uniform(rng_state)
        u_own = uniform(rng_state)
        if u_imitate < 1.0 - np.exp(-prm.imitation_rate * conversion * agents.potential[i]):
            count += 1
            work.tally[IMITATIONS] += 1
            agents.innovations[i] += 1
            agents.potential[i] = 0.0
            capital[i] += prm.imitation_reward
            work.ledger[MARKET_IN] += prm.imitation_reward
        if u_own < 1.0 - np.exp(-prm.independent_rate * conversion * agents.own_potential[i]):
            count += 1
            work.tally[INDEPENDENT] += 1
            agents.innovations[i] += 1
            agents.own_potential[i] = 0.0
            agents.knowledge[i, agents.core[i]] += prm.innovation_knowledge
            capital[i] += prm.independent_reward
            work.ledger[MARKET_IN] += prm.independent_reward
    return count


# --------------------------------------------------------------------------- finance


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


@njit(cache=True, nogil=True, inline="always")
def proximity_accept(agents: Agents, i: int, j: int, distance_scale: float) -> float:
    """Probability that a search by i ties it to j: exp(-dist_ij / s) (1 - delta_ij)
    (geographic and organizational proximity, paper s.II.A; Boschma 2005)."""
    position = agents.position
    dx = position[i, 0] - position[j, 0]
    dy = position[i, 1] - position[j, 1]
    return np.exp(-np.sqrt(dx * dx + dy * dy) / distance_scale) * (
        1.0 - cognitive_distance(agents.knowledge, i, j)
    )


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


@njit(cache=True, nogil=True)
def finance(agents: Agents, ties: Ties, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> int:
    """Finance and selection of firms (HTE, T-KIBS, P-KIBS, banks); returns the exits.

    Each living firm in slot order: an HTE pays the fixed cost F, a KIBS its operating cost F_K
    (costs out); a firm with negative capital (debt) pays interest r on it to its banks in
    proportion to tie weight (to outside lenders when it has none); a firm whose capital falls
    below -CL_i (its credit limit with the banks) exits (:func:`exit_firm`), and so does a bank
    whose net worth is negative (survival of the fittest, paper s.III.B). Five uniforms are
    drawn per exit whatever follows: with probability q an entrant of the same type takes the
    slot at once (drawn as at the start, with capital K_0 for an HTE and the type's capital
    otherwise, booked as capital in), makes ``startup_search`` proximity searches, and an HTE
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
    for i in range(n):
        if not alive[i]:
            continue
        t = agent_type[i]
        if t == HTE:
            capital[i] -= prm.fixed_cost
            ledger[COSTS_OUT] += prm.fixed_cost
            ledger[HTE_SPENDING] += prm.fixed_cost
        elif is_kibs(t):
            capital[i] -= prm.kibs_fixed_cost
            ledger[COSTS_OUT] += prm.kibs_fixed_cost
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
        u_member = uniform(rng_state)
        u_partner = uniform(rng_state)
        u_consult = uniform(rng_state)
        u_connect = uniform(rng_state)
        if u_start >= prm.startup_prob:
            continue
        draw_agent(i, t, agents, prm.traits, rng_state)
        if t == HTE:
            capital[i] = prm.startup_capital
        ledger[ENTRY_IN] += capital[i]
        alive[i] = True
        agents.innovations[i] = 0  # a new firm: its count starts afresh
        work.born[i] = now
        if t == HTE and now + YOUNG_WINDOW <= last:
            work.tally[YOUNG_ENTRANTS] += 1
        hte = t == HTE
        agents.member[i] = hte and u_member < prm.platform_share
        agents.contracted[i] = hte and u_partner < prm.partnership_share
        agents.consulted[i] = hte and u_consult < prm.consulting_share
        agents.connected[i] = u_connect < prm.connect_share
        for _ in range(prm.startup_search):
            j = integer(rng_state, n)
            if (
                alive[j]
                and j != i
                and uniform(rng_state) < proximity_accept(agents, i, j, prm.distance_scale)
            ):
                add_tie(ties, i, j, prm.new_tie_weight, False)
        if agents.contracted[i]:
            form_partnership(i, agents, ties, work, prm)
    return exits


# --------------------------------------------------------------------------- network


@njit(cache=True, nogil=True)
def decay_ties(
    ties: Ties, alive: np.ndarray, decay: float, floor: float, prefetch_from: int = PREFETCH_FROM
) -> int:
    """Ties that are not partnerships decay, w <- (1 - epsilon) w, and vanish below the floor
    w_min (social capital needs upkeep; Giuliani 2007). Returns the ties removed.

    Each row decays its own copy of every tie (both copies hold the same weight, so they stay
    equal without looking up the mirror); a tie is removed from its lower end, rows in slot
    order and each row from its last slot down."""
    indptr, row_len, indices, weights, partner, _ = ties
    keep = 1.0 - decay
    removed = 0
    n = row_len.shape[0]
    ahead = n >= prefetch_from
    for i in range(n):
        if ahead and i + PREFETCH_AHEAD < n:  # rows are far apart (padded): fetch ahead, both
            x = i + PREFETCH_AHEAD  # ends (a row may straddle cache lines)
            prefetch(weights, indptr[x], 0)
            prefetch(partner, indptr[x], 0)
            if row_len[x] > 1:
                prefetch(weights, indptr[x] + row_len[x] - 1, 0)
                prefetch(partner, indptr[x] + row_len[x] - 1, 0)
        if not alive[i]:
            continue
        start = indptr[i]
        for p in range(start + row_len[i] - 1, start - 1, -1):
            if partner[p]:
                continue  # partnerships never decay
            w = weights[p] * keep
            weights[p] = w
            if w < floor and indices[p] > i:
                remove_tie(ties, i, p)
                removed += 1
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
    4. long-range search by an agent on the information platform, with probability p_L
       (paper s.IV.D): a uniform candidate j anywhere, accepted with 1 - delta_ij.
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
            if (
                alive[j]
                and j != i
                and uniform(rng_state) < proximity_accept(agents, i, j, prm.distance_scale)
            ):
                if add_tie(ties, i, j, w0, False):
                    made += 1
        if agent_type[i] == INT:
            if uniform(rng_state) < prm.broker_p and row_len[i] > 1:
                a = indices[start + integer(rng_state, row_len[i])]
                b = indices[start + integer(rng_state, row_len[i])]
                if add_tie(ties, a, b, w0, False):
                    made += 1
        if uniform(rng_state) < prm.long_range_p and agents.connected[i]:
            j = integer(rng_state, n)
            if alive[j] and j != i and uniform(rng_state) < 1.0 - cognitive_distance(knowledge, i, j):
                if add_tie(ties, i, j, w0, False):
                    made += 1
    return made


# --------------------------------------------------------------------------- start


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
    """Who the instruments reach at the start (:func:`_reached`): the business programme, the
    strategic programme (each contracted HTE forms its partnership at once, in slot order),
    consulting (HTEs), the information platform (all agents)."""
    member = _reached(agents, rng_state, prm.platform_share, True)
    contracted = _reached(agents, rng_state, prm.partnership_share, True)
    consulted = _reached(agents, rng_state, prm.consulting_share, True)
    connected = _reached(agents, rng_state, prm.connect_share, False)
    for i in range(agents.agent_type.shape[0]):
        agents.member[i] = member[i]
        agents.consulted[i] = consulted[i]
        agents.connected[i] = connected[i]
        if contracted[i]:
            agents.contracted[i] = True
            form_partnership(i, agents, ties, work, prm)


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


# --------------------------------------------------------------------------- replicate


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
        np.zeros(4, dtype=np.int64),
        type_start,
        by_type,
        np.zeros(n, dtype=np.int64),
        np.zeros(2, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.zeros(INNOVATION_BINS, dtype=np.int64),
    )


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

    Each step: meetings; the governance instruments; knowledge production and platform
    transfer; joint projects; innovation; finance and selection; network dynamics (decay, then
    formation). A process switched off in ``prm`` draws nothing from the stream.

    ``work.clock`` holds the month (advanced once per step) and the run's last month, which
    :func:`finance` reads to date entries and to count only entrants observed for
    ``YOUNG_WINDOW`` months (one call per replicate).

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
        if prm.random_draw or agents.agent_type.shape[0] < prm.prefetch_from:
            meetings(agents, ties, work, rng_state, prm)
        else:
            meetings_ahead(agents, ties, work, rng_state, prm)
        instruments(agents, ties, work, rng_state, prm)
        if prm.production:
            produce_knowledge(agents, work, prm)
            platform_transfer(agents, work, prm)
        total_innovations += joint_projects(agents, ties, work, rng_state, prm)
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
