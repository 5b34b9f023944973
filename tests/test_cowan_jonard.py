"""The Cowan-Jonard kernels: the model's properties (docs/ODD.md §8), and agreement with the twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kibs_mc.kernels import cowan_jonard as cj
from kibs_mc.kernels.network import edges_to_csr, watts_strogatz
from kibs_mc.kernels.rng import integer, new_state, uniform

from tests import reference as ref


def neighbour_lists(indptr, indices):
    return [list(indices[indptr[i] : indptr[i + 1]]) for i in range(len(indptr) - 1)]


# ------------------------------------------------------------------ random stream


def test_rng_matches_reference_stream():
    state, twin = new_state(987654321), ref.SplitMix64(987654321)
    for n in (1, 2, 7, 500, 2**31):
        assert integer(state, n) == twin.integer(n)
        assert uniform(state) == twin.uniform()


def test_rng_bounded_integers_are_in_range_and_cover_it():
    state = new_state(5)
    draws = np.array([integer(state, 7) for _ in range(7000)])
    assert draws.min() == 0 and draws.max() == 6
    assert np.all(np.abs(np.bincount(draws) - 1000) < 150)


# ------------------------------------------------------------------ network


@pytest.mark.parametrize("p", [0.0, 0.05, 0.5, 1.0])
def test_watts_strogatz_is_simple_and_keeps_tie_count(p):
    n, degree = 200, 8
    indptr, indices = watts_strogatz(n, degree, p, new_state(11))
    assert indptr[-1] == n * degree  # each of n*degree/2 ties listed twice
    rows = neighbour_lists(indptr, indices)
    for i, row in enumerate(rows):
        assert i not in row, "self-loop"
        assert len(set(row)) == len(row), "duplicate tie"
        for j in row:
            assert i in rows[j], "tie not symmetric"
    if p == 0.0:
        for i, row in enumerate(rows):
            assert sorted(row) == sorted({(i + d) % n for d in range(-4, 5) if d})


def test_rewiring_moves_about_p_of_the_ties():
    n, degree, p = 1000, 10, 0.3
    rows = neighbour_lists(*watts_strogatz(n, degree, p, new_state(3)))
    ring = sum(1 for i, row in enumerate(rows) for j in row if min((i - j) % n, (j - i) % n) <= 5)
    moved = 1 - ring / (n * degree)
    assert abs(moved - p) < 0.03


def test_network_matches_twin():
    for seed in range(4):
        got = neighbour_lists(*watts_strogatz(40, 6, 0.3, new_state(seed)))
        assert got == ref.watts_strogatz(40, 6, 0.3, ref.SplitMix64(seed))


# ------------------------------------------------------------------ model properties


def small_world(seed, n=40, degree=4, k=5, p=0.2):
    state = new_state(seed)
    indptr, indices = watts_strogatz(n, degree, p, state)
    v = cj.initial_knowledge(n, k, state, 10.0)
    return indptr, indices, v, state


@pytest.mark.parametrize("seed", range(5))
def test_kernel_matches_twin_to_steady_state(seed):
    indptr, indices, v, state = small_world(seed)
    twin_rng = ref.SplitMix64(seed)
    nbrs = ref.watts_strogatz(40, 4, 0.2, twin_rng)
    tv = ref.initial_knowledge(40, 5, twin_rng, 10.0)
    np.testing.assert_array_equal(v, np.array(tv))
    got = cj.run_replicate(indptr, indices, v, state, 0.1, 0.01, 1_000_000, 40)
    want = ref.run_replicate(nbrs, tv, twin_rng, 0.1, 0.01, 1_000_000, 40)
    assert got == want
    assert got[2], "small world should reach steady state"
    np.testing.assert_allclose(v, np.array(tv), rtol=1e-13, atol=0)
    assert state[0] == twin_rng.state


def test_knowledge_never_decreases_and_stays_below_initial_category_max():
    indptr, indices, v, state = small_world(1, n=100, degree=6, k=8)
    ceiling = v.max(axis=0)
    before = v.copy()
    for _ in range(60):
        cj.run_replicate(indptr, indices, v, state, 0.3, 0.01, 200, 0)
        assert np.all(v >= before)
        assert np.all(v <= ceiling)
        before = v.copy()
    assert np.any(v > small_world(1, n=100, degree=6, k=8)[2]), "no trade happened"


@settings(max_examples=200, deadline=None)
@given(
    a=st.lists(st.floats(0, 100), min_size=2, max_size=6),
    seed=st.integers(0, 2**32),
    alpha=st.floats(0.01, 1.0),
)
def test_each_trade_raises_total_by_alpha_times_l1_gap(a, seed, alpha):
    rng = np.random.default_rng(seed)
    vi = np.array(a)
    vj = rng.uniform(0, 100, size=len(a))
    v = np.vstack([vi, vj])
    if not cj.can_trade(v, 0, 1, 0.01):
        return
    gap = np.abs(vi - vj).sum()
    total = v.sum()
    cj.barter(v, 0, 1, alpha)
    assert v.sum() - total == pytest.approx(alpha * gap, rel=1e-9, abs=1e-9)


def test_one_category_never_trades():
    indptr, indices, v, state = small_world(2, n=50, k=1)
    meetings, trades, converged = cj.run_replicate(indptr, indices, v, state, 0.5, 0.01, 100_000, 50)
    assert trades == 0 and converged and meetings == 50


def test_two_complementary_agents_end_at_one_one():
    indptr, indices = edges_to_csr(2, np.array([0]), np.array([1]))
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    meetings, trades, converged = cj.run_replicate(indptr, indices, v, new_state(0), 1.0, 0.01, 1, 0)
    assert (meetings, trades) == (1, 1)
    np.testing.assert_array_equal(v, [[1.0, 1.0], [1.0, 1.0]])


def test_no_trade_without_double_coincidence():
    v = np.array([[5.0, 5.0], [1.0, 1.0]])  # agent 0 dominates: agent 1 has nothing to offer
    assert not cj.can_trade(v, 0, 1, 0.01)
    v = np.array([[5.0, 1.0], [4.99, 1.5]])  # within tolerance in the first category
    assert not cj.can_trade(v, 0, 1, 0.01)
    assert cj.can_trade(v, 0, 1, 0.001)
