"""The spatial type-aware generator ties each pair with exactly its model probability.

It draws candidates cell pair by cell pair with geometric skips and thinning instead of
visiting every pair; this checks it against the probabilities computed pair by pair.
"""

from __future__ import annotations

import numpy as np
import pytest
from kibs_mc.kernels.network import spatial_typed
from kibs_mc.kernels.rng import new_state

SOCIABILITY = np.array([1.0, 1.6, 1.3, 1.6, 2.0, 0.8])


def random_agents(n: int, seed: int):
    rng = np.random.default_rng(seed)
    position = rng.normal(0.5, 0.15, (n, 2))
    knowledge = rng.uniform(0, 5, (n, 4))
    agent_type = rng.integers(0, 6, n)
    return position, knowledge, agent_type


def pair_probabilities(position, knowledge, agent_type, scale, gamma, mean_degree):
    """min(1, c s_ij) for every pair, straight from the model's formula (ODD.md)."""
    dist = np.sqrt(((position[:, None, :] - position[None, :, :]) ** 2).sum(-1))
    num = np.abs(knowledge[:, None, :] - knowledge[None, :, :]).sum(-1)
    den = (knowledge[:, None, :] + knowledge[None, :, :]).sum(-1)
    score = (
        SOCIABILITY[agent_type][:, None]
        * SOCIABILITY[agent_type][None, :]
        * np.exp(-dist / scale)
        * (1 - num / den) ** gamma
    )
    upper = np.triu_indices(len(agent_type), 1)
    c = len(agent_type) * mean_degree / 2 / score[upper].sum()
    return np.minimum(1.0, c * score)


def adjacency(indptr, indices, n):
    a = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        for j in indices[indptr[i] : indptr[i + 1]]:
            a[i, j] += 1
    return a


# scale 4.0: cells are never narrower than a quarter of the distance scale, so this puts every
# agent in one cell and draws all pairs from the cell's own triangle (its O(1) pair index).
@pytest.mark.parametrize("scale", [0.15, 4.0])
def test_every_pair_is_tied_with_its_probability(scale):
    n, draws = 120, 400
    position, knowledge, agent_type = random_agents(n, 3)
    p = pair_probabilities(position, knowledge, agent_type, scale, 1.0, 8.0)
    counts = np.zeros((n, n))
    for seed in range(draws):
        a = adjacency(
            *spatial_typed(position, knowledge, agent_type, SOCIABILITY, scale, 1.0, 8.0, new_state(seed)), n
        )
        assert np.all(a == a.T) and np.all(np.diag(a) == 0) and a.max() <= 1
        counts += a
    upper = np.triu_indices(n, 1)
    freq, prob = counts[upper] / draws, p[upper]
    assert abs(freq.sum() / prob.sum() - 1) < 0.02  # mean degree on target
    # Pairs grouped by probability: observed frequency within 4 standard errors of the mean p.
    edges = np.quantile(prob, np.linspace(0, 1, 11))
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        group = (prob >= low) & (prob <= high)
        expected = prob[group].mean()
        se = np.sqrt((prob[group] * (1 - prob[group])).sum()) / group.sum() / np.sqrt(draws)
        assert abs(freq[group].mean() - expected) < 4 * se + 1e-12, (low, high)


def test_large_clusters_keep_their_mean_degree():
    position, knowledge, agent_type = random_agents(20_000, 4)  # estimated normalisation
    indptr, indices = spatial_typed(
        position, knowledge, agent_type, SOCIABILITY, 0.15, 1.0, 8.0, new_state(1)
    )
    assert abs(len(indices) / 20_000 - 8.0) < 0.3
