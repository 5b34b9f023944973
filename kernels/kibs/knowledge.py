"""What a meeting can transfer: absorptive capacity, cognitive distance, the inverted U of
learning in distance, the sharing factor of a tie, the transfer itself and the weighted
choice of whom to meet (docs/ODD.md s.7.1)."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.state import Agents, KibsParams, Ties
from numba import njit


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

    Grows with differences in level as well as in profile (docs/ODD.md s.7.1), so a deeper expert in
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
def sharing(prm: KibsParams, weight: float) -> float:
    """Share of what could be learned that the two sides actually share on a tie:
    s = 1 - psi + psi w (trust grows with tie strength, paper s.II.A social capital). A strategic
    partnership's tie shares what any tie of its weight shares; goal alignment acts in the joint
    project (``projects.joint_projects``)."""
    return 1.0 - prm.trust_weight + prm.trust_weight * weight


@njit(cache=True, nogil=True)
def learning_value(agents: Agents, i: int, j: int, prm: KibsParams) -> float:
    """What i would learn from j in one meeting of full sharing: sum_d a_i phi_i(delta_ij)
    max(0, k_jd - k_id), the complementarity by which a partner or a brokered match is chosen."""
    knowledge = agents.knowledge
    rate = _learning_rate(agents, i, cognitive_distance(knowledge, i, j), prm)
    value = 0.0
    for f in range(knowledge.shape[1]):
        if knowledge[j, f] > knowledge[i, f]:
            value += rate * (knowledge[j, f] - knowledge[i, f])
    return value
