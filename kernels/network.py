"""Network generators returning undirected graphs as CSR arrays (``indptr``, ``indices``).

Each undirected tie {i, j} appears twice: j in i's row and i in j's row. Rows keep the order
in which ties were made, so a graph depends only on its parameters and the random stream.
"""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.rng import integer, uniform
from numba import njit


@njit(cache=True, nogil=True)
def edges_to_csr(n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR arrays of the undirected graph with ties (src[e], dst[e])."""
    m = src.shape[0]
    degree = np.zeros(n, dtype=np.int64)
    for e in range(m):
        degree[src[e]] += 1
        degree[dst[e]] += 1
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        indptr[i + 1] = indptr[i] + degree[i]
    fill = indptr[:-1].copy()
    indices = np.empty(2 * m, dtype=np.int64)
    for e in range(m):
        a = src[e]
        b = dst[e]
        indices[fill[a]] = b
        fill[a] += 1
        indices[fill[b]] = a
        fill[b] += 1
    return indptr, indices


@njit(cache=True, nogil=True)
def watts_strogatz(
    n: int, degree: int, rewire_p: float, rng_state: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Watts-Strogatz small world in CSR form.

    A ring where each agent is tied to its ``degree`` nearest neighbours (``degree / 2`` a
    side); then each tie (u, u + d), taken for d = 1 .. degree/2 and u = 0 .. n-1 in that
    order, moves its far end with probability ``rewire_p`` to an agent drawn uniformly among
    those that are neither u nor already tied to u. ``rewire_p = 0`` is the regular lattice,
    ``rewire_p = 1`` a random graph with the same number of ties.

    One uniform draw is made per tie whatever ``rewire_p`` is, so the stream's position after
    the network does not depend on the rewiring outcome's count.

    References:
        Watts, D. J. & Strogatz, S. H. (1998). Collective dynamics of 'small-world'
        networks. Nature 393, 440-442. Cowan, R. & Jonard, N. (2004), J. Econ. Dyn.
        Control 28, 1557-1575, section 2.
    """
    half = degree // 2
    m = n * half
    src = np.empty(m, dtype=np.int64)
    dst = np.empty(m, dtype=np.int64)
    deg = np.zeros(n, dtype=np.int64)
    ties = set()
    e = 0
    for d in range(1, half + 1):
        for u in range(n):
            v = (u + d) % n
            src[e] = u
            dst[e] = v
            ties.add(min(u, v) * n + max(u, v))
            deg[u] += 1
            deg[v] += 1
            e += 1
    e = 0
    for _d in range(1, half + 1):
        for u in range(n):
            draw = uniform(rng_state)
            if draw < rewire_p and deg[u] < n - 1:
                w = integer(rng_state, n)
                while w == u or (min(u, w) * n + max(u, w)) in ties:
                    w = integer(rng_state, n)
                v = dst[e]
                ties.discard(min(u, v) * n + max(u, v))
                ties.add(min(u, w) * n + max(u, w))
                deg[v] -= 1
                deg[w] += 1
                dst[e] = w
            e += 1
    return edges_to_csr(n, src, dst)


@njit(cache=True, nogil=True)
def erdos_renyi(n: int, ties: int, rng_state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """G(n, m) random graph: ``ties`` distinct ties between uniform pairs (Erdos & Renyi 1959),
    drawn until that many distinct non-loop pairs are found (``ties`` <= n(n-1)/2)."""
    src = np.empty(ties, dtype=np.int64)
    dst = np.empty(ties, dtype=np.int64)
    seen = set()
    e = 0
    while e < ties:
        u = integer(rng_state, n)
        v = integer(rng_state, n)
        if u == v:
            continue
        key = min(u, v) * n + max(u, v)
        if key in seen:
            continue
        seen.add(key)
        src[e] = u
        dst[e] = v
        e += 1
    return edges_to_csr(n, src, dst)


@njit(cache=True, nogil=True)
def barabasi_albert(n: int, m: int, rng_state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Preferential attachment (Barabasi & Albert 1999): a clique of m + 1 agents, then each new
    agent ties to m distinct earlier agents drawn with probability proportional to degree
    (uniform draws from the list of tie ends)."""
    m0 = m + 1
    total = m0 * m // 2 + (n - m0) * m
    src = np.empty(total, dtype=np.int64)
    dst = np.empty(total, dtype=np.int64)
    ends = np.empty(2 * total, dtype=np.int64)
    e = 0
    for u in range(m0):
        for v in range(u + 1, m0):
            src[e] = u
            dst[e] = v
            ends[2 * e] = u
            ends[2 * e + 1] = v
            e += 1
    chosen = np.empty(m, dtype=np.int64)
    for u in range(m0, n):
        c = 0
        while c < m:
            v = ends[integer(rng_state, 2 * e)]
            dup = False
            for k in range(c):
                if chosen[k] == v:
                    dup = True
            if not dup:
                chosen[c] = v
                c += 1
        for k in range(m):
            src[e] = u
            dst[e] = chosen[k]
            ends[2 * e] = u
            ends[2 * e + 1] = chosen[k]
            e += 1
    return edges_to_csr(n, src, dst)


#: Up to this many pairs the normalising sum of scores is exact; above, it is estimated.
EXACT_NORMALISATION_PAIRS = 4_000_000
#: Random pairs drawn to estimate the normalising sum for large clusters (relative error of
#: the expected degree well under 1% for the cluster presets).
NORMALISATION_SAMPLE = 1_000_000


# One kernel on purpose: its passes (normalisation, grid of cells, thinned draws over cell pairs,
# CSR fill) share their arrays and one random stream, whose order of draws fixes the network.
@njit(cache=True, nogil=True)
def spatial_typed(  # noqa: C901, PLR0912, PLR0913, PLR0915
    position: np.ndarray,
    knowledge: np.ndarray,
    agent_type: np.ndarray,
    sociability: np.ndarray,
    distance_scale: float,
    similarity_weight: float,
    mean_degree: float,
    rng_state: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Spatial, type-aware random graph (docs/ODD.md s.5, "Initialisation").

    Each pair i < j gets the score

        s_ij = sigma_{t_i} sigma_{t_j} exp(-dist_ij / s) (1 - delta_ij)^gamma,

    falling with geographic distance and rising with field similarity (1 - delta_ij, delta the
    L1 cognitive distance) -- geographic and organizational proximity (Boschma 2005) -- with a
    density sigma_a sigma_b per pair of types. Ties are drawn independently with probability
    min(1, c s_ij), c chosen so the expected number of ties is n * mean_degree / 2: c from the
    exact sum of scores up to EXACT_NORMALISATION_PAIRS pairs, else from the mean score of
    NORMALISATION_SAMPLE random pairs.

    The draw itself avoids visiting all n^2 / 2 pairs (Batagelj & Brandes 2005, "Efficient
    generation of large random networks", Phys. Rev. E 71, 036113, skipping geometrically; with
    thinning as in Lewis & Shedler 1979): agents are binned in a grid of square cells; for each
    pair of cells, q = min(1, c sigma_max^2 exp(-r_min / s)) bounds the probability of every pair
    across them (r_min the cells' distance, similarity <= 1), candidate pairs come at geometric
    gaps with parameter q, and each is kept with probability min(1, c s_ij) / q. Every pair is
    thus tied with exactly its probability, at a cost of O(cells^2 + candidates).
    """
    n = agent_type.shape[0]
    target = n * mean_degree / 2.0
    pairs = n * (n - 1) // 2
    score_sum = 0.0
    if pairs <= EXACT_NORMALISATION_PAIRS:
        for i in range(n):
            for j in range(i + 1, n):
                score_sum += _spatial_score(
                    position, knowledge, agent_type, sociability, distance_scale, similarity_weight, i, j
                )
    else:
        for _ in range(NORMALISATION_SAMPLE):
            i = integer(rng_state, n)
            j = integer(rng_state, n - 1)
            if j >= i:
                j += 1
            score_sum += _spatial_score(
                position, knowledge, agent_type, sociability, distance_scale, similarity_weight, i, j
            )
        score_sum *= pairs / NORMALISATION_SAMPLE
    c = target / score_sum if score_sum > 0.0 else 0.0
    sigma_max = 0.0
    for t in range(agent_type.shape[0]):
        sigma_max = max(sigma_max, sociability[agent_type[t]])
    # Grid of k x k cells over the agents' bounding box, about 16 agents a cell, but cells no
    # narrower than a quarter of the distance scale: the cell-pair loop then costs O(1) as n
    # grows (at most (4 side / s)^4 / 2 pairs) while the bound q stays within a factor
    # exp(sqrt(2) / 2) of every pair's distance term, so candidates stay O(ties).
    x0 = position[:, 0].min()
    y0 = position[:, 1].min()
    side = max(position[:, 0].max() - x0, position[:, 1].max() - y0, 1e-12)
    k = max(1, min(int(np.sqrt(n / 16.0)), int(np.ceil(4.0 * side / distance_scale))))
    width = side / k
    cell = np.empty(n, dtype=np.int64)
    for i in range(n):
        cx = min(k - 1, int((position[i, 0] - x0) / width))
        cy = min(k - 1, int((position[i, 1] - y0) / width))
        cell[i] = cx * k + cy
    cells = k * k
    start = np.zeros(cells + 1, dtype=np.int64)
    for i in range(n):
        start[cell[i] + 1] += 1
    for a in range(cells):
        start[a + 1] += start[a]
    members = np.empty(n, dtype=np.int64)
    fill = start[:-1].copy()
    for i in range(n):
        members[fill[cell[i]]] = i
        fill[cell[i]] += 1
    cap = max(16, int(2 * target) + 16)
    src = np.empty(cap, dtype=np.int64)
    dst = np.empty(cap, dtype=np.int64)
    e = 0
    for a in range(cells):
        na = start[a + 1] - start[a]
        if na == 0:
            continue
        for b in range(a, cells):
            nb = start[b + 1] - start[b]
            if nb == 0:
                continue
            gx = max(0, abs(a // k - b // k) - 1) * width
            gy = max(0, abs(a % k - b % k) - 1) * width
            q = min(1.0, c * sigma_max * sigma_max * np.exp(-np.sqrt(gx * gx + gy * gy) / distance_scale))
            count = na * (na - 1) // 2 if a == b else na * nb
            if q <= 0.0 or count == 0:
                continue
            log_miss = np.log1p(-q) if q < 1.0 else 0.0
            t = -1
            while True:
                if q < 1.0:
                    skip = np.log1p(-uniform(rng_state)) / log_miss  # pairs passed over, geometric
                    if skip >= count - t - 1:
                        break
                    t += 1 + int(skip)
                else:
                    t += 1
                    if t >= count:
                        break
                if a == b:  # t-th pair (u < v) of the cell's members, row by row
                    u, v = _triangle_pair(t, na)
                    i = members[start[a] + u]
                    j = members[start[a] + v]
                else:
                    i = members[start[a] + t // nb]
                    j = members[start[b] + t % nb]
                p = min(
                    1.0,
                    c
                    * _spatial_score(
                        position,
                        knowledge,
                        agent_type,
                        sociability,
                        distance_scale,
                        similarity_weight,
                        i,
                        j,
                    ),
                )
                if uniform(rng_state) * q < p:
                    if e == src.shape[0]:
                        src = np.concatenate((src, np.empty(src.shape[0], dtype=np.int64)))
                        dst = np.concatenate((dst, np.empty(dst.shape[0], dtype=np.int64)))
                    src[e] = min(i, j)
                    dst[e] = max(i, j)
                    e += 1
    return edges_to_csr(n, src[:e], dst[:e])


@njit(cache=True, nogil=True, inline="always")
def _triangle_pair(t: int, m: int) -> tuple[int, int]:
    """The t-th pair (u, v), u < v < m, in row-major order (0,1), (0,2) .. (0,m-1), (1,2) ..,
    in O(1): row u starts at S(u) = u (2m - u - 1) / 2; u from the quadratic's root, then
    corrected by whole steps against floating-point error."""
    b = 2.0 * m - 1.0
    u = int((b - np.sqrt(max(0.0, b * b - 8.0 * t))) / 2.0)
    u = max(0, min(u, m - 2))
    while u > 0 and u * (2 * m - u - 1) // 2 > t:
        u -= 1
    while (u + 1) * (2 * m - u - 2) // 2 <= t:
        u += 1
    return u, u + 1 + t - u * (2 * m - u - 1) // 2


@njit(cache=True, nogil=True)
def _spatial_score(  # noqa: PLR0913 - called per pair from spatial_typed: plain arrays
    position: np.ndarray,
    knowledge: np.ndarray,
    agent_type: np.ndarray,
    sociability: np.ndarray,
    distance_scale: float,
    similarity_weight: float,
    i: int,
    j: int,
) -> float:
    """s_ij of :func:`spatial_typed` for the pair (i, j)."""
    d = knowledge.shape[1]
    dx = position[i, 0] - position[j, 0]
    dy = position[i, 1] - position[j, 1]
    num = 0.0
    den = 0.0
    for f in range(d):
        num += abs(knowledge[i, f] - knowledge[j, f])
        den += knowledge[i, f] + knowledge[j, f]
    similarity = 1.0 - num / den if den > 0.0 else 1.0
    return (
        sociability[agent_type[i]]
        * sociability[agent_type[j]]
        * np.exp(-np.sqrt(dx * dx + dy * dy) / distance_scale)
        * similarity**similarity_weight
    )


@njit(cache=True, nogil=True)
def pad_csr(
    indptr: np.ndarray, indices: np.ndarray, capacity: np.ndarray, initial_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded CSR with room to grow: row i gets max(capacity[i], degree_i) slots.

    Returns (indptr, row_len, indices, weights, partner) as the cluster kernels use them; every
    tie gets ``initial_weight`` and no partnership flag. Unused slots hold -1.
    """
    n = indptr.shape[0] - 1
    padded = np.zeros(n + 1, dtype=np.int64)
    row_len = np.zeros(n, dtype=np.int64)
    for i in range(n):
        row_len[i] = indptr[i + 1] - indptr[i]
        padded[i + 1] = padded[i] + max(capacity[i], row_len[i])
    out = np.full(padded[n], -1, dtype=np.int64)
    weights = np.zeros(padded[n])
    partner = np.zeros(padded[n], dtype=np.bool_)
    for i in range(n):
        for k in range(row_len[i]):
            out[padded[i] + k] = indices[indptr[i] + k]
            weights[padded[i] + k] = initial_weight
    return padded, row_len, out, weights, partner
