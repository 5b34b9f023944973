"""Certified best scenario: Kim & Nelson's (2001) fully sequential indifference-zone
selection, procedure KN (ACM TOMACS 11(3):251-273, s.3, with c = 1).

KN keeps a set I of contenders. From n0 first replicates of each it estimates the variance
S2_il of every pairwise difference (common random numbers allowed: the variance of the
*difference* is what counts, and pairing shrinks it), then after each further replicate r it
drops i when its mean falls below another contender's by more than
W_il(r) = max(0, delta / (2r) (h2 S2_il / delta^2 - r)), h2 = 2 eta (n0 - 1),
eta = ((2 alpha / (k - 1))^(-2 / (n0 - 1)) - 1) / 2. It stops when one is left: that one is
within ``delta`` of the best with probability at least 1 - alpha for normal outcomes (the
indifference-zone guarantee). W vanishes after stage floor(h2 max S2 / delta^2), so KN always
ends by then.

Why written here: PyPRS (the maintained parallel R&S package) pins its own Ray version and
runs its own tasks through simulation objects (no chunks, store or resume, no KN and no common
random numbers); sim-tools' KN pulls one replicate at a time from a model object and looks up
S2_il wrongly for l < i.

The procedure is written as a pure function of the observations so far: it replays the
screening stage by stage (r = n0, n0+1, ...) over the replicates that exist, exactly as the
fully sequential procedure would have taken them one at a time. Running replicates in chunks
therefore changes no decision; it only costs the surplus replicates a system received between
its elimination stage and the end of its chunk. Resuming replays the same data and reaches the
same state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class KNResult:
    survivors: list[int]  # systems still in contention (one when done)
    eliminated_at: dict[int, int] = field(default_factory=dict)  # system -> stage r it left
    stage: int = 0  # last stage r screened (replicates per surviving system used)
    done: bool = False  # one system left: selected with PCS >= 1 - alpha
    bound: int = 0  # stage by which KN ends for sure: max_il floor(h2 S2_il / delta^2) + 1
    eta: float = float("nan")
    h2: float = float("nan")

    @property
    def selected(self) -> int | None:
        return self.survivors[0] if self.done else None


def kn_eta(alpha: float, k: int, n0: int) -> float:
    """eta of KN (Kim & Nelson 2001, eq. in s.3 with c = 1)."""
    return 0.5 * ((2 * alpha / (k - 1)) ** (-2 / (n0 - 1)) - 1)


def kn(
    observations: Sequence[np.ndarray],
    delta: float,
    alpha: float = 0.05,
    n0: int = 10,
    larger_better: bool = True,
) -> KNResult:
    """Replay KN over ``observations[i]`` (replicates of system i, common random numbers:
    element r of every array comes from seed r).

    A system eliminated at stage r needs only its first r values; survivors need the same
    number each (their minimum count is the stage reached)."""
    k = len(observations)
    if k < 2:
        raise ValueError("KN needs at least two systems")
    if n0 < 2:
        raise ValueError("KN needs n0 >= 2")
    if not delta > 0:
        raise ValueError("KN needs delta > 0")
    sign = 1.0 if larger_better else -1.0
    counts = [len(x) for x in observations]
    if min(counts) < n0:
        return KNResult(survivors=list(range(k)), stage=0)
    first = np.stack([sign * np.asarray(x[:n0], dtype=float) for x in observations], axis=1)  # n0 x k
    eta = kn_eta(alpha, k, n0)
    h2 = 2 * eta * (n0 - 1)
    diff = first[:, :, None] - first[:, None, :]  # n0 x k x k
    s2 = diff.var(axis=0, ddof=1)  # S^2_il, variance of the differences (CRN-aware)
    bound = int(np.floor(h2 * s2.max() / delta**2)) + 1
    longest = max(counts)
    data = np.full((longest, k), np.nan)
    for i, x in enumerate(observations):
        data[: len(x), i] = sign * np.asarray(x, dtype=float)
    csum = np.nancumsum(data, axis=0)
    alive = np.ones(k, dtype=bool)
    eliminated: dict[int, int] = {}
    r = n0
    while True:
        idx = np.flatnonzero(alive)
        if len(idx) == 1:
            return KNResult([int(idx[0])], eliminated, r, True, bound, eta, h2)
        if r > bound:  # W = 0 from here on: only exact ties can remain; all are within delta
            best = int(idx[np.argmax(csum[bound - 1, idx])])
            eliminated.update({int(i): r for i in idx if i != best})
            return KNResult([best], eliminated, r, True, bound, eta, h2)
        if min(counts[i] for i in idx) < r:  # survivors need more replicates
            return KNResult([int(i) for i in idx], eliminated, r - 1, False, bound, eta, h2)
        mean = csum[r - 1, idx] / r
        w = np.maximum(0.0, delta / (2 * r) * (h2 * s2[np.ix_(idx, idx)] / delta**2 - r))
        # i stays iff mean_i >= mean_l - W_il for every other l in I_old
        out = (mean[:, None] < mean[None, :] - w).any(axis=1)
        for i in idx[out]:
            alive[i] = False
            eliminated[int(i)] = r
        if not alive.any():  # cannot happen (the largest mean always stays); guard anyway
            raise AssertionError("KN eliminated every system")
        r += 1


def next_count(result: KNResult, reached: int, step: int, cap: int) -> int:
    """Replicates every survivor should have after the next round: one more chunk (at least
    ``step``, growing by a quarter of what exists so that rounds stay few), never past the
    stage by which KN ends for sure, nor past ``cap``."""
    if result.done:
        return reached
    want = reached + max(step, math.ceil(reached / 4))
    return min(want, max(result.bound, reached + 1), cap)
