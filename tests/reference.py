"""Slow pure-Python twins of the Cowan-Jonard kernels, used only by tests.

Written from the Cowan-Jonard rules (docs/ODD.md §8) with plain Python ints and lists,
independently of the Numba code, so that agreement between the two is evidence that both
implement the model.
"""

from __future__ import annotations

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


class SplitMix64:
    """SplitMix64 with the same output, uniform and bounded-integer maps as kernels/rng.py."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK

    def next(self) -> int:
        self.state = (self.state + GOLDEN) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self) -> float:
        return (self.next() >> 11) * 2.0**-53

    def integer(self, n: int) -> int:
        return ((self.next() >> 32) * n) >> 32


def watts_strogatz(n: int, degree: int, p: float, rng: SplitMix64) -> list[list[int]]:
    """Neighbour lists in the order ties were made (see kernels/network.py)."""
    half = degree // 2
    edges = [(u, (u + d) % n) for d in range(1, half + 1) for u in range(n)]
    ties = {frozenset(e) for e in edges}
    deg = [degree] * n
    for e, (u, v) in enumerate(edges):
        if rng.uniform() < p and deg[u] < n - 1:
            w = rng.integer(n)
            while w == u or frozenset((u, w)) in ties:
                w = rng.integer(n)
            ties.discard(frozenset((u, v)))
            ties.add(frozenset((u, w)))
            deg[v] -= 1
            deg[w] += 1
            edges[e] = (u, w)
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        neighbours[u].append(v)
        neighbours[v].append(u)
    return neighbours


def initial_knowledge(n: int, k: int, rng: SplitMix64, high: float) -> list[list[float]]:
    return [[high * rng.uniform() for _ in range(k)] for _ in range(n)]


def can_trade(a: list[float], b: list[float], tol: float) -> bool:
    a_ahead = any(x - y > tol * max(x, y) for x, y in zip(a, b, strict=True))
    b_ahead = any(y - x > tol * max(x, y) for x, y in zip(a, b, strict=True))
    return a_ahead and b_ahead


def barter(a: list[float], b: list[float], alpha: float) -> None:
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        if y > x:
            a[k] = x + alpha * (y - x)
        elif x > y:
            b[k] = y + alpha * (x - y)


def steady(neighbours: list[list[int]], v: list[list[float]], tol: float) -> bool:
    return not any(can_trade(v[i], v[j], tol) for i, row in enumerate(neighbours) for j in row)


def run_replicate(neighbours, v, rng: SplitMix64, alpha, tol, max_meetings, check_every):
    """Meetings to steady state; returns (meetings, trades, converged). ``v`` changes in place."""
    n = len(v)
    meetings = trades = 0
    block = check_every if check_every > 0 else max_meetings
    while meetings < max_meetings:
        todo = min(block, max_meetings - meetings)
        for _ in range(todo):
            i = rng.integer(n)
            if not neighbours[i]:
                continue
            j = neighbours[i][rng.integer(len(neighbours[i]))]
            if can_trade(v[i], v[j], tol):
                barter(v[i], v[j], alpha)
                trades += 1
        meetings += todo
        if check_every > 0 and steady(neighbours, v, tol):
            return meetings, trades, True
    return meetings, trades, False
