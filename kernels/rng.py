"""Per-replicate random stream for the kernels: SplitMix64 with bounded integers by
multiply-shift.

Why not numba's ``np.random``: its per-thread global streams cannot be seeded reproducibly
inside ``prange`` and are shared by every replicate of a worker. Here each replicate owns its
state, a one-element ``uint64`` array seeded from ``numpy.random.SeedSequence`` (docs/ODD.md s.4),
so results depend on the replicate's seed alone, whatever executor, worker or thread runs it.

SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators",
OOPSLA) passes BigCrush and is the generator of the C anchor in ``shared/bench/cj_anchor.c``.
Bounded integers use Lemire's multiply-shift (2019, "Fast random integer generation in an
interval", ACM TOMACS 29(1)): ``((x >> 32) * n) >> 32`` for ``n < 2**32``, whose bias
(< n / 2**32) is far below Monte Carlo error at the sizes used here.

Hot loops keep the state in a local ``uint64`` and call :func:`step` so LLVM can hold it in a
register; the array-based helpers are for everything else.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53


def new_state(seed: int) -> np.ndarray:
    """A fresh random state for one replicate, from its 64-bit seed."""
    return np.array([seed], dtype=np.uint64)


#: Offset of a second stream's seed from the first's (:func:`second_stream`): an odd constant far
#: from any multiple of GOLDEN a run reaches (Steele et al.'s "split" draws a new gamma instead;
#: one fixed offset is enough for two streams of at most ~10^12 draws each).
SECOND_STREAM = np.uint64(0xD1B54A32D192ED03)


def second_stream(state: np.ndarray) -> np.ndarray:
    """A second random state for the same replicate, derived from ``state`` without advancing
    it: its seed is the SplitMix64 output of the first stream's state plus ``SECOND_STREAM``."""
    seed = (int(state[0]) + int(SECOND_STREAM)) % (1 << 64)  # wraps as uint64 arithmetic does
    return np.array([mix(np.uint64(seed))], dtype=np.uint64)


@njit(cache=True, nogil=True)
def mix(s: np.uint64) -> np.uint64:
    """SplitMix64 output function of a state value."""
    z = s
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True)
def step(s: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Advance a local state; returns (new state, 64 random bits)."""
    s = s + GOLDEN
    return s, mix(s)


@njit(cache=True, nogil=True)
def bounded_bits(z: np.uint64, n: np.int64) -> np.int64:
    """Map 64 random bits to an integer in [0, n) by multiply-shift (n < 2**32)."""
    return np.int64(((z >> _S32) * np.uint64(n)) >> _S32)


@njit(cache=True, nogil=True)
def unit_bits(z: np.uint64) -> float:
    """Map 64 random bits to a float in [0, 1) with 53 bits of precision."""
    return np.float64(z >> _S11) * _TWO_M53


@njit(cache=True, nogil=True)
def next_u64(state: np.ndarray) -> np.uint64:
    """Next 64 random bits from an array state (advances it)."""
    s, z = step(state[0])
    state[0] = s
    return z


@njit(cache=True, nogil=True)
def uniform(state: np.ndarray) -> float:
    """Uniform float in [0, 1)."""
    return unit_bits(next_u64(state))


@njit(cache=True, nogil=True)
def peek_uniform(state: np.ndarray, m: np.int64) -> float:
    """The m-th next :func:`uniform` (m = 1: the next one) without advancing the state:
    SplitMix64's state moves by a constant per draw, so any future output is one mix away."""
    return unit_bits(mix(state[0] + np.uint64(m) * GOLDEN))


@njit(cache=True, nogil=True)
def integer(state: np.ndarray, n: np.int64) -> np.int64:
    """Uniform integer in [0, n), n < 2**32."""
    return bounded_bits(next_u64(state), n)


@njit(cache=True, nogil=True)
def shuffle(values: np.ndarray, state: np.ndarray) -> None:
    """Shuffle ``values`` in place, uniformly (Fisher-Yates: from the last slot down, swap
    slot k with a uniform slot in [0, k])."""
    for k in range(values.shape[0] - 1, 0, -1):
        r = integer(state, k + 1)
        tmp = values[k]
        values[k] = values[r]
        values[r] = tmp
