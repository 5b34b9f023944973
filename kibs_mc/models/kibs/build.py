"""Cluster generation: agents by type, positions around the park centre, initial knowledge,
the initial network, platform membership and strategic partnerships (MODEL.md s.3).

The random stream of a replicate is drawn in this order: agents (type by type, in type
order), the network, one uniform per HTE for platform membership, one uniform per HTE for a
strategic partnership. The draws do not depend on the levers, so scenarios that share a seed
share their cluster up to what the levers change (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kibs_mc.kernels import kibs as kernel
from kibs_mc.kernels.kibs import HTE, KibsParams, TypeTraits
from kibs_mc.kernels.network import barabasi_albert, erdos_renyi, pad_csr, spatial_typed, watts_strogatz
from kibs_mc.kernels.rng import shuffle, uniform
from kibs_mc.models.kibs.schema import ClusterConfig


@dataclass
class ClusterState:
    """Arrays of one cluster, changed in place by ``kernels.kibs.run_replicate``."""

    agent_type: np.ndarray
    position: np.ndarray
    knowledge: np.ndarray
    core: np.ndarray
    manage: np.ndarray
    capital: np.ndarray
    potential: np.ndarray
    innovations: np.ndarray
    alive: np.ndarray
    member: np.ndarray
    indptr: np.ndarray
    row_len: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    partner: np.ndarray

    @property
    def n(self) -> int:
        return int(self.agent_type.shape[0])

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The state in the argument order of ``kernels.kibs.run_replicate``."""
        return (self.agent_type, self.position, self.knowledge, self.core, self.manage, self.capital,
                self.potential, self.innovations, self.alive, self.member, self.indptr, self.row_len,
                self.indices, self.weights, self.partner)

    def ties(self) -> int:
        return int(self.row_len.sum() // 2)


def type_traits(cluster: ClusterConfig) -> TypeTraits:
    """Per-type arrays for the kernels (type order: kernels.kibs.TYPE_NAMES)."""
    return TypeTraits(
        spread=np.asarray(cluster.spread, dtype=np.float64),
        level=np.asarray(cluster.knowledge_level, dtype=np.float64),
        manage_mean=np.asarray(cluster.management_mean, dtype=np.float64),
        absorptive_base=np.asarray(cluster.absorptive_base, dtype=np.float64),
        capital=np.asarray(cluster.capital, dtype=np.float64),
        max_ties=np.asarray(cluster.max_ties, dtype=np.int64),
        knowledge_spread=float(cluster.knowledge_spread),
        core_boost=float(cluster.core_boost),
        manage_spread=float(cluster.management_spread),
    )


def _relabel(indptr: np.ndarray, indices: np.ndarray, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same graph with node v renamed perm[v] (rows in the new order)."""
    n = indptr.shape[0] - 1
    inverse = np.empty(n, dtype=np.int64)
    inverse[perm] = np.arange(n)
    degree = np.diff(indptr)[inverse]
    new_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degree, out=new_ptr[1:])
    new_idx = np.empty_like(indices)
    for new in range(n):
        old = inverse[new]
        new_idx[new_ptr[new]:new_ptr[new + 1]] = perm[indices[indptr[old]:indptr[old + 1]]]
    return new_ptr, new_idx


def _permutation(n: int, rng_state: np.ndarray) -> np.ndarray:
    """Uniform random permutation (Fisher-Yates) from the replicate's stream."""
    perm = np.arange(n, dtype=np.int64)
    shuffle(perm, rng_state)
    return perm


def build_cluster(cluster: ClusterConfig, prm: KibsParams, rng_state: np.ndarray) -> ClusterState:
    """A random cluster: agents, network, platform members and strategic partnerships."""
    traits = type_traits(cluster)
    counts = cluster.counts
    n = sum(counts)
    agent_type = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    position = np.zeros((n, 2))
    knowledge = np.zeros((n, cluster.fields))
    core = np.zeros(n, dtype=np.int64)
    manage = np.zeros(n)
    capital = np.zeros(n)
    for i in range(n):
        kernel.draw_agent(i, int(agent_type[i]), agent_type, position, knowledge, core, manage, capital,
                          rng_state, traits.spread, traits.level, traits.manage_mean, traits.capital,
                          traits.knowledge_spread, traits.core_boost, traits.manage_spread)
    if cluster.network == "spatial":
        indptr, indices = spatial_typed(position, knowledge, agent_type,
                                        np.asarray(cluster.sociability, dtype=np.float64),
                                        cluster.distance_scale, cluster.similarity_weight,
                                        float(cluster.mean_degree), rng_state)
    else:
        if cluster.network == "watts_strogatz":
            indptr, indices = watts_strogatz(n, cluster.mean_degree, cluster.rewire_p, rng_state)
        elif cluster.network == "erdos_renyi":
            indptr, indices = erdos_renyi(n, n * cluster.mean_degree // 2, rng_state)
        else:
            indptr, indices = barabasi_albert(n, cluster.mean_degree // 2, rng_state)
        # Agents are stored type by type; a random labelling spreads the types over the graph.
        indptr, indices = _relabel(indptr, indices, _permutation(n, rng_state))
    capacity = traits.max_ties[agent_type]
    indptr, row_len, indices, weights, partner = pad_csr(indptr, indices, capacity,
                                                         float(cluster.initial_tie_weight))
    alive = np.ones(n, dtype=np.bool_)
    state = ClusterState(agent_type, position, knowledge, core, manage, capital, np.zeros(n),
                         np.zeros(n, dtype=np.int64), alive, np.zeros(n, dtype=np.bool_),
                         indptr, row_len, indices, weights, partner)
    hte = np.flatnonzero(agent_type == HTE)
    for i in hte.tolist():
        state.member[i] = uniform(rng_state) < prm.platform_share
    for i in hte.tolist():
        if uniform(rng_state) < prm.partnership_share:
            kernel.form_partnership(int(i), agent_type, knowledge, manage, alive, indptr, row_len,
                                    indices, weights, partner, traits.absorptive_base, prm)
    return state
