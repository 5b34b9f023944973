"""Network generators returning undirected graphs as CSR arrays (``indptr``, ``indices``).

Each undirected tie {i, j} appears twice: j in i's row and i in j's row. Rows keep the order
in which ties were made, so a graph depends only on its parameters and the random stream.
"""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.rng import integer, uniform
from numba import njit


@njit(cache=True)
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


@njit(cache=True)
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
