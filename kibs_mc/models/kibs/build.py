"""Cluster generation: agents by type, positions around the park centre, initial knowledge,
the initial network, platform membership and strategic partnerships (docs/ODD.md §5).

The random stream of a replicate is drawn in this order: agents (type by type, in type
order), the network, then who the governance instruments reach (``kernels.kibs.enrol``: one
uniform per eligible agent for each instrument, in ``kernels.kibs.ENROL_ORDER``). The number
of draws does not depend on the budget, so scenarios that share a seed share their cluster up to
what the instruments change (common random numbers). The instruments' own draws (searches,
brokered matches, project launches) come from a second stream derived from the seed
(``kernels.rng.second_stream``), so they never shift the cluster's stream.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from kibs_mc.kernels import kibs as kernel
from kibs_mc.kernels.kibs import Agents, KibsParams, Ties, TypeTraits, Workspace
from kibs_mc.kernels.network import barabasi_albert, erdos_renyi, pad_csr, spatial_typed, watts_strogatz
from kibs_mc.kernels.rng import second_stream, shuffle
from kibs_mc.models.kibs.schema import ClusterConfig


@dataclass(frozen=True)
class ClusterState:
    """One cluster: its agents, its ties and its ledger, changed in place by
    ``kernels.kibs.run_replicate``."""

    agents: Agents
    ties: Ties
    work: Workspace

    @property
    def n(self) -> int:
        return int(self.agents.agent_type.shape[0])

    def tie_count(self) -> int:
        return int(self.ties.row_len.sum() // 2)


def type_traits(cluster: ClusterConfig) -> TypeTraits:
    """Per-type arrays for the kernels (type order: kernels.kibs.TYPE_NAMES)."""
    return TypeTraits(
        spread=np.asarray(cluster.spread, dtype=np.float64),
        level=np.asarray(cluster.knowledge_level, dtype=np.float64),
        manage_mean=np.asarray(cluster.management_mean, dtype=np.float64),
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
        new_idx[new_ptr[new] : new_ptr[new + 1]] = perm[indices[indptr[old] : indptr[old + 1]]]
    return new_ptr, new_idx


def _permutation(n: int, rng_state: np.ndarray) -> np.ndarray:
    """Uniform random permutation (Fisher-Yates) from the replicate's stream."""
    perm = np.arange(n, dtype=np.int64)
    shuffle(perm, rng_state)
    return perm


def build_cluster(cluster: ClusterConfig, prm: KibsParams, rng_state: np.ndarray) -> ClusterState:
    """A random cluster: agents, network, and who the governance instruments reach."""
    traits = type_traits(cluster)
    policy = second_stream(rng_state)  # the instruments' own draws (kernels.kibs.instruments)
    counts = cluster.counts
    n = sum(counts)
    agent_type = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    agents = Agents(
        agent_type=agent_type,
        position=np.zeros((n, 2)),
        knowledge=np.zeros((n, cluster.fields)),
        core=np.zeros(n, dtype=np.int64),
        manage=np.zeros(n),
        capital=np.zeros(n),
        potential=np.zeros(n),
        own_potential=np.zeros(n),
        innovations=np.zeros(n, dtype=np.int64),
        alive=np.ones(n, dtype=np.bool_),
        enrolled=np.zeros((n, kernel.N_INSTRUMENTS), dtype=np.bool_),
        firm=np.arange(n, dtype=np.int64),
        partner=np.full(n, -1, dtype=np.int64),
        partner_firm=np.full(n, -1, dtype=np.int64),
        alignment=np.zeros(n),
        project=np.zeros(n),
    )
    for i in range(n):
        kernel.draw_agent(i, int(agent_type[i]), agents, traits, rng_state)
    position, knowledge = agents.position, agents.knowledge
    if cluster.network == "spatial":
        indptr, indices = spatial_typed(
            position,
            knowledge,
            agent_type,
            np.asarray(cluster.sociability, dtype=np.float64),
            cluster.distance_scale,
            cluster.similarity_weight,
            float(cluster.mean_degree),
            rng_state,
        )
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
    padded = pad_csr(indptr, indices, capacity, float(cluster.initial_tie_weight))
    ties = Ties(*padded, kernel.mirror_slots(padded[0], padded[1], padded[2]))
    work = kernel.workspace(agents)
    work.policy[:] = policy
    kernel.enrol(agents, ties, work, rng_state, prm)
    return in_huge_pages(ClusterState(agents, ties, work))


#: Transparent huge pages on x86-64 and most aarch64 Linux kernels.
HUGE_PAGE = 2 << 20
#: A state from this many bytes on (about 5 000 agents) is moved into huge pages.
HUGE_FROM = 4 << 20


def in_huge_pages(state: ClusterState) -> ClusterState:
    """The same state, every array moved into one private mapping that the kernel is asked to
    back with transparent huge pages (``madvise(MADV_HUGEPAGE)``; used where THP is enabled
    as ``madvise`` or ``always``), when the state has ``HUGE_FROM`` bytes or more.

    Why: in a large cluster a meeting reads and writes its partner's data anywhere in ~10 MB
    of arrays that are each too small for numpy to ask for huge pages, so with 4 KiB pages
    nearly every such access also misses the TLB (a large share of a step's cost at 50 000
    agents: docs/bench/journal.md). Values, shapes and dtypes are unchanged, so the
    run is the same; small states, and systems without MADV_HUGEPAGE, keep their arrays."""
    parts = (state.agents, state.ties, state.work)

    def lines(a: np.ndarray) -> int:  # bytes of whole cache lines: each array starts on its own
        return -(-a.nbytes // 64) * 64

    size = sum(lines(a) for part in parts for a in part if isinstance(a, np.ndarray))
    if size < HUGE_FROM or not hasattr(mmap, "MADV_HUGEPAGE") or not hasattr(mmap, "MAP_PRIVATE"):
        return state
    # private and anonymous: a shared mapping would be shmem, which THP leaves alone
    buffer = mmap.mmap(-1, size + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_HUGEPAGE)
    arena = np.frombuffer(buffer, dtype=np.uint8)  # the arrays below keep the mapping alive
    at = -arena.ctypes.data % HUGE_PAGE  # a huge page covers only an aligned 2 MiB
    moved = []
    for part in parts:
        fields = []
        for a in part:
            if isinstance(a, np.ndarray):
                b = arena[at : at + a.nbytes].view(a.dtype).reshape(a.shape)
                b[...] = a
                at += lines(a)
                a = b
            fields.append(a)
        moved.append(type(part)(*fields))
    return ClusterState(*moved)
